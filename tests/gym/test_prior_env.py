"""A task drawn on device (gym/prior_env.py) is the host's build of the same drawn table."""
import jax
import numpy as np
import pytest

from autollmr.gym import build
from autollmr.gym import prior
from autollmr.gym import prior_env
from autollmr.gym import table as table_lib
from autollmr.gym.tasks import Task

BUDGETS, RHOS = (1.0, 3.0, 5.0), (1.0, 0.3)


@pytest.mark.parametrize("kind", ["pretraining_hparams", "compute_allocation"])
def test_drawn_task_is_the_host_build(kind):
  d = prior.draws(jax.random.key(3), kind, 4)
  params, fam = jax.vmap(lambda dd, k: prior_env.task_of(
      dd, k, kind, BUDGETS, RHOS, 2, 8, 8, 4))(d, jax.random.split(jax.random.key(5), 4))
  params = jax.tree.map(np.asarray, params)
  assert (np.asarray(fam) == table_lib.family_id(kind)).all()
  for i, table in enumerate(prior.to_tables(d, kind, "prior_t_")):
    p = jax.tree.map(lambda x: x[i], params)
    t, budget = int(p.target_N[0]), float(p.budget_N[0])
    rho = min(RHOS, key=lambda r: abs(r - float(p.rho_N[0])))
    assert 1 <= t < table.num_fidelities and budget in BUDGETS
    assert abs(rho - float(p.rho_N[0])) < 1e-6
    assert int(p.max_turns_N[0]) == int(budget) + (2 if rho >= 1 else 8)
    task = Task(table.name, f"f{t}", tuple(f"f{g}" for g in range(t)), rho=rho, budget=budget,
                max_turns=int(p.max_turns_N[0]), split="train")
    h, _ = build.make_params(table, [task])
    h = jax.tree.map(np.asarray, h)
    F = table.num_fidelities
    np.testing.assert_array_equal(p.values_FxC[:F], h.values_FxC)
    np.testing.assert_allclose(p.pct_better_FxC[:F], h.pct_better_FxC, atol=1e-6)
    for k in ("y_star_N", "y_worst_N", "min_cost_N", "rho_N", "budget_N", "max_turns_N"):
      np.testing.assert_allclose(getattr(p, k), getattr(h, k), rtol=1e-5, err_msg=k)
    np.testing.assert_allclose(p.loc_NxF[0, :t + 1], h.loc_NxF[0, :t + 1], rtol=1e-5)
    np.testing.assert_allclose(p.scale_NxF[0, :t + 1], h.scale_NxF[0, :t + 1], rtol=1e-5)
    D, G = table.config_features_CxD.shape[1], table.fidelity_features_FxG.shape[1]
    np.testing.assert_allclose(p.config_features_CxD[:, :D], h.config_features_CxD)
    np.testing.assert_allclose(p.fidelity_features_FxG[:F, :G], h.fidelity_features_FxG)
    cands = lambda q: sorted(zip(q.cand_fid_NxA[0][q.cand_exists_NxA[0]].tolist(),
                                 q.cand_config_NxA[0][q.cand_exists_NxA[0]].tolist(),
                                 q.cand_cheap_NxA[0][q.cand_exists_NxA[0]].tolist()))
    assert cands(p) == cands(h)
    assert not p.cand_cheap_NxA[0][~p.cand_exists_NxA[0]].any()


def test_draw_tasks_mixes_kinds():
  params, fam = prior_env.draw_tasks(jax.random.key(0), 5, ("rl_hparams", "data_mixture_pretrain"),
                                     BUDGETS, RHOS, 2, 8, 8, 4)
  sizes = prior_env.env_sizes(BUDGETS, 8)
  assert params.cand_exists_NxA.shape == (5, 1, sizes.num_candidates)
  assert sorted(np.asarray(fam).tolist()) == sorted(
      [table_lib.family_id("rl_hparams")] * 3 + [table_lib.family_id("data_mixture_pretrain")] * 2)
  assert (np.asarray(params.max_turns_N) <= sizes.max_turns).all()
