"""The learned peers (meta_regressor, fsbo): training never sees a test target, the JAX GP is the
textbook GP, both play valid episodes within budget (trained, borrowed and self-fitted), and the
meta-regressor beats random where transfer works."""
import dataclasses
import itertools

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from autollmr.gym import synthetic
from autollmr.gym import tasks as tasks_lib
from autollmr.gym.build import make_params
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.peers import base as peer_base
from autollmr.peers import classical
from autollmr.peers import episode
from autollmr.peers import fsbo
from autollmr.peers import learned
from autollmr.peers import registry

LRS = np.arange(-13.0, -5.5, 0.5)
BSS = np.arange(16.0, 23.0, 1.0)
FIDS = ((8.0, 9.3), (8.3, 9.6), (8.6, 9.9), (9.0, 10.3))  # 4 levels: train, val, test
LEARNED = ("meta_regressor", "fsbo")


@pytest.fixture(autouse=True)
def fast(monkeypatch):
  monkeypatch.setattr(fsbo, "META_STEPS", 40)  # the shapes (and so the compiles) stay the same
  learned.CACHE.clear()
  learned.set_training_sources(None)
  yield
  learned.CACHE.clear()
  learned.set_training_sources(None)


def bowl4(seed=0, name="bowl4") -> Table:
  """A Step-Law bowl at 4 model sizes: its optimum moves with (N, D), 10% holes."""
  rng = np.random.default_rng(seed)
  x_CxD = np.array(list(itertools.product(LRS, BSS)), np.float32)
  vals, valid = [], []
  for n, d in FIDS:
    lr, bs = classical.steplaw_optimum(n, d)
    vals.append(10.0 - 0.3 * n - 0.2 * d + 0.06 * (x_CxD[:, 0] - lr) ** 2
                + 0.04 * (x_CxD[:, 1] - bs) ** 2 + 0.002 * rng.normal(size=len(x_CxD)))
    valid.append(rng.random(len(x_CxD)) >= 0.1)
  return Table(
      name=name, family="test", provenance="synthetic", objective="loss", direction="min",
      fidelity_names=("s", "m", "l", "xl"), config_feature_names=("log2_lr", "log2_bs_tokens"),
      fidelity_feature_names=("log10_N", "log10_D"), config_features_CxD=x_CxD,
      fidelity_features_FxG=np.array(FIDS, np.float32),
      values_FxC=np.where(valid, vals, np.nan).astype(np.float32), valid_FxC=np.array(valid),
      flagged_FxC=np.zeros((4, len(x_CxD)), bool),
      cost_F=np.array([6 * 10 ** (n + d) for n, d in FIDS]), cost_unit="FLOPs")


def episodes(table, names=LEARNED, budgets=(1, 3), seeds=range(2), tasks=None):
  tasks = tasks or tasks_lib.curate(table, budgets=budgets)["test"]
  params, sizes = make_params(table, tasks)
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  out = []
  for name, (i, task), seed in itertools.product(names, enumerate(tasks), seeds):
    ctx = peer_base.make_context(table, task, params, i)
    out.append((name, task, episode.run_episode(registry.PEERS[name], ref, ctx, i, seed)))
  return out


def first_scores(table, name, task_table=None):
  """The peer's scores at its first decision on the test task of `table` (trained on
  `task_table`'s training view: same env, only the context's table differs)."""
  task = tasks_lib.curate(table, budgets=(1,))["test"][0]
  params, sizes = make_params(table, [task])
  ref = ReferenceEnv(params, sizes)
  ref.reset(0, 0)
  learned.CACHE.clear()
  peer = registry.PEERS[name](peer_base.make_context(task_table or table, task, params, 0), 0)
  return peer.scores(ref.expand())


# --- (a) no test target value reaches training -------------------------------------------------

def test_training_reads_only_the_training_view(monkeypatch):
  table = bowl4()
  split = tasks_lib.curate(table)
  assert not tasks_lib.check_no_leak(table, split)
  seen = []
  real = learned.obs_from_table
  monkeypatch.setattr(learned, "obs_from_table", lambda v, t, **kw: (
      seen.append((v.fidelity_names, t.target)), real(v, t, **kw))[1])
  learned.fit_regressor(table, table.fidelity_index("xl"))
  assert seen and all("xl" not in names for names, _ in seen)
  assert {t for _, t in seen} == {"m", "l"}  # the train and val targets


@pytest.mark.parametrize("name", LEARNED)
def test_test_target_values_do_not_change_predictions(name):
  table = bowl4()
  xl = table.fidelity_index("xl")
  vals = table.values_FxC.copy()
  noise = np.random.default_rng(5).normal(size=vals.shape[1]) * 1e3
  vals[xl] = np.where(table.valid_FxC[xl], noise, np.nan)  # garbage at the test target only
  garbage = table.with_changes(values_FxC=vals.astype(np.float32))
  honest = first_scores(table, name)
  blind = first_scores(table, name, task_table=garbage)
  np.testing.assert_array_equal(honest, blind)
  # and the cheap (training) values do matter: the test would catch a leak-free no-op
  m = table.fidelity_index("m")
  vals = table.values_FxC.copy()
  vals[m, table.valid_FxC[m]] = np.random.default_rng(6).permutation(vals[m, table.valid_FxC[m]])
  cheap = table.with_changes(values_FxC=vals)
  assert not np.array_equal(honest, first_scores(table, name, task_table=cheap))


def test_a_train_task_never_trains_on_its_own_target():
  table = bowl4()
  views = learned.training_views(table, table.fidelity_index("l"))
  assert all("l" not in v.fidelity_names for v, _ in views)


# --- (b) the JAX GP is the textbook GP ----------------------------------------------------------

def test_gp_posterior_matches_numpy():
  rng = np.random.default_rng(0)
  n, a, h = 7, 5, 3
  z, zc, y = rng.normal(size=(n, h)), rng.normal(size=(a, h)), rng.normal(size=n)
  mask = np.ones(n, bool)
  mask[[2, 5]] = False  # padding: must be exactly as if absent
  kp = dict(log_ls=0.3, log_sf=-0.2, log_sn=-1.0, m=0.4)
  f32 = lambda x: jnp.asarray(x, jnp.float32)
  mean, var = fsbo.gp_posterior({k: f32(v) for k, v in kp.items()}, f32(z), f32(y), mask, f32(zc))
  ei = fsbo.expected_improvement(mean, var, 0.5)
  nll = fsbo.gp_nll({k: f32(v) for k, v in kp.items()}, f32(z), f32(y), mask)

  ls, sf2, sn2 = np.exp(kp["log_ls"]), np.exp(2 * kp["log_sf"]), np.exp(2 * kp["log_sn"])
  k = lambda p, q: sf2 * np.exp(-0.5 * ((p[:, None] - q[None]) ** 2).sum(-1) / ls ** 2)
  zo, yo = z[mask], y[mask] - kp["m"]
  K = k(zo, zo) + (sn2 + fsbo.JITTER) * np.eye(len(zo))
  Kc = k(zo, zc)
  mean_np = kp["m"] + Kc.T @ np.linalg.solve(K, yo)
  var_np = sf2 - np.einsum("na,na->a", Kc, np.linalg.solve(K, Kc))
  sd = np.sqrt(var_np)
  ei_np = (mean_np - 0.5) * scipy.stats.norm.cdf((mean_np - 0.5) / sd) + sd * scipy.stats.norm.pdf(
      (mean_np - 0.5) / sd)
  nll_np = (0.5 * yo @ np.linalg.solve(K, yo) + 0.5 * np.linalg.slogdet(K)[1]
            + 0.5 * len(yo) * np.log(2 * np.pi)) / len(yo)
  np.testing.assert_allclose(np.asarray(mean), mean_np, atol=1e-5)
  np.testing.assert_allclose(np.asarray(var), var_np, atol=1e-5)
  np.testing.assert_allclose(np.asarray(ei), ei_np, atol=1e-5)
  np.testing.assert_allclose(float(nll), nll_np, atol=1e-5)


# --- (c) episodes end to end ------------------------------------------------------------------

def check(outs):
  for name, task, out in outs:
    assert out["n_invalid"] == 0 and out["n_repeat"] == 0, (name, task.name)
    assert out["cost_spent"] <= task.budget + 1e-5
    assert len(out["anytime_regret"]) >= 1 and 0 <= out["regret"] <= 1
    assert out["decision_ms_mean"] > 0


def test_episodes_on_a_small_table():
  table = bowl4()
  tests = tasks_lib.curate(table, budgets=(1, 3))["test"]
  nothing_shown = [dataclasses.replace(t, rho=0.0) for t in tests]  # no cheap result known
  check(episodes(table, tasks=tests + nothing_shown))


def test_episodes_on_synthetic_tables_self_fit_and_borrowed():
  tables = {t.name: t for t in synthetic.synthetic_tables()}
  regmix = tables["synthetic_regmix"]  # two fidelities: no training task of its own
  assert learned.training_views(regmix, 1) == []
  check(episodes(regmix, budgets=(2,), seeds=range(1)))
  # leave one family out: trained on another family's tasks (feature names differ, so only the
  # family-agnostic features are used; the GP pads its inputs)
  bowl = bowl4()
  learned.set_training_sources([(bowl, tasks_lib.curate(bowl)["train"])])
  assert [v.name for v, _ in learned.training_views(regmix, 1)] == ["bowl4"]
  check(episodes(regmix, budgets=(2,), seeds=range(1)))


def test_self_fit_from_visible_fidelities():
  learned.set_training_sources(
      [])  # nothing to train on: fit on the test task's own visible results
  check(episodes(bowl4(), budgets=(1,), seeds=range(1)))


# --- (d) it learns something ---------------------------------------------------------------------

def test_meta_regressor_beats_random_where_transfer_works():
  outs = episodes(bowl4(seed=1), names=("meta_regressor", "random"), budgets=(1,),
                  seeds=range(4))
  mean = lambda n: np.mean([o["regret"] for m, _, o in outs if m == n])
  assert mean("meta_regressor") < mean("random"), (mean("meta_regressor"), mean("random"))
  assert mean("meta_regressor") < 0.05
