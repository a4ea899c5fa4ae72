"""The classical peers on a hand-built Step-Law-like bowl: every peer plays whole episodes through
the ReferenceEnv within budget and without invalid actions, each does what its docstring says,
and none reads a hidden table value (a context with garbage values changes nothing)."""
import itertools

import numpy as np
import pytest

from autollmr.gym.build import make_params
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task
from autollmr.peers import base as peer_base
from autollmr.peers import classical
from autollmr.peers import episode
from autollmr.peers import registry

LRS = np.arange(-13.0, -5.5, 0.5)  # log2 lr, 15 values
BSS = np.arange(16.0, 23.0, 1.0)  # log2 batch tokens, 7 values
FIDS = ((8.0, 9.3), (8.5, 9.8), (9.0, 10.3))  # (log10 N, log10 D): cost 6ND is 0.01, 0.1, 1
# The classical peers (SMAC apart: optional, tested below). The learned peers registered in PEERS
# read training values by design and have their own tests (test_learned_peers.py).
CORE = ["random", "topk_transfer", "trend", "steplaw_formula", "optuna_tpe", "optuna_tpe_hyperband"]
SEEDS = range(4)


def bowl_table(seed=0, name="bowl", holes=0.1) -> Table:
  """A bowl whose optimum moves with (N, D) as Step Law says; `holes` of each fidelity missing."""
  rng = np.random.default_rng(seed)
  x_CxD = np.array(list(itertools.product(LRS, BSS)), np.float32)
  vals, valid = [], []
  for n, d in FIDS:
    lr, bs = classical.steplaw_optimum(n, d)
    loss = (10.0 - 0.3 * n - 0.2 * d + 0.06 * (x_CxD[:, 0] - lr) ** 2
            + 0.04 * (x_CxD[:, 1] - bs) ** 2 + 0.002 * rng.normal(size=len(x_CxD)))
    vals.append(loss)
    valid.append(rng.random(len(x_CxD)) >= holes)
  return Table(
      name=name, family="test", provenance="synthetic", objective="loss", direction="min",
      fidelity_names=("small", "medium", "large"),
      config_feature_names=("log2_lr", "log2_bs_tokens"),
      fidelity_feature_names=("log10_N", "log10_D"), config_features_CxD=x_CxD,
      fidelity_features_FxG=np.array(FIDS, np.float32),
      values_FxC=np.where(valid, vals, np.nan).astype(np.float32), valid_FxC=np.array(valid),
      flagged_FxC=np.zeros((3, len(x_CxD)), bool),
      cost_F=np.array([6 * 10 ** (n + d) for n, d in FIDS]), cost_unit="FLOPs")


def setup(table, rho=1.0, budgets=(1, 2, 3), max_turns=24):
  tasks = [Task(table.name, "large", ("small", "medium"), rho=rho, budget=float(k),
                max_turns=max_turns) for k in budgets]
  params, sizes = make_params(table, tasks)
  return tasks, params, ReferenceEnv(params, sizes, auto_reset=True)


@pytest.fixture(scope="module")
def bowl():
  table = bowl_table()
  return dict(table=table, offline=setup(table, 1.0), online=setup(table, 0.0))


def expected_regret(table, ref, i, actions):
  """The recommendation's regret from the table directly: best target value the peer bought."""
  t = table.fidelity_index("large")
  ys = [table.values_FxC[t, ref.p.cand_config_NxA[i, a]] for a in actions
        if ref.p.cand_fid_NxA[i, a] == t]
  v = table.values_FxC[t][table.valid_FxC[t]]
  return 1.0 if not ys else float(np.clip((min(ys) - v.min()) / (v.max() - v.min()), 0, 1))


def play(name, bowl, mode, i, seed):
  table = bowl["table"]
  tasks, params, ref = bowl[mode]
  ctx = peer_base.make_context(table, tasks[i], params, i)
  return episode.run_episode(registry.PEERS[name], ref, ctx, i, seed), ref


@pytest.mark.parametrize("name", CORE)
def test_episodes_end_to_end(name, bowl):
  modes = ["online"] if name in registry.ONLINE_PEERS - {"random"} else ["offline"]
  for mode, i in itertools.product(modes, range(3)):
    out, ref = play(name, bowl, mode, i, seed=i)
    k = i + 1
    assert out["n_invalid"] == 0 and out["n_repeat"] == 0
    assert out["cost_spent"] <= k + 1e-5
    assert out["n_turns"] == len(out["actions"])
    assert out["decision_ms_mean"] >= 0
    assert ref.auto_reset, "run_episode restores the env's auto_reset"
    assert out["regret"] == pytest.approx(expected_regret(bowl["table"], ref, i, out["actions"]),
                                          abs=1e-5)
    assert len(out["anytime_regret"]) >= 1 and out["anytime_regret"][-1] == out["regret"]
    assert all(np.diff(out["anytime_regret"]) <= 0)


def test_topk_transfer_k1_picks_best_visible_config(bowl):
  table = bowl["table"]
  t, m = table.fidelity_index("large"), table.fidelity_index("medium")
  out, ref = play("topk_transfer", bowl, "offline", 0, seed=0)
  best_m = np.flatnonzero(table.valid_FxC[m])[np.argmin(table.values_FxC[m][table.valid_FxC[m]])]
  c = ref.p.cand_config_NxA[0, out["actions"][0]]
  if table.valid_FxC[t, best_m]:
    assert c == best_m
  else:  # a hole at the target: the nearest target config instead
    x = table.config_features_CxD
    d = np.where(table.valid_FxC[t], ((x - x[best_m]) ** 2 / x.std(0) ** 2).sum(1), np.inf)
    assert c == np.argmin(d)


def test_topk_transfer_maps_across_disjoint_spaces():
  # configs 0..104 exist only at the cheap fidelities, 105..209 (shifted copies) only at the target
  base = bowl_table(holes=0.0)
  x = np.concatenate([base.config_features_CxD, base.config_features_CxD + 0.01])
  vals = np.full((3, 210), np.nan, np.float32)
  vals[:2, :105] = base.values_FxC[:2]
  vals[2, 105:] = base.values_FxC[2]
  table = base.with_changes(config_features_CxD=x, values_FxC=vals, valid_FxC=~np.isnan(vals),
                            flagged_FxC=np.zeros((3, 210), bool))
  tasks, params, ref = setup(table, budgets=(1,))
  out = episode.run_episode(registry.PEERS["topk_transfer"], ref,
                            peer_base.make_context(table, tasks[0], params, 0), 0, 0)
  m = 1
  best_m = np.nanargmin(vals[m])
  assert ref.p.cand_config_NxA[0, out["actions"][0]] == best_m + 105
  assert out["n_invalid"] == 0


def test_trend_beats_random_on_the_bowl(bowl):
  mean = lambda n: np.mean([play(n, bowl, "offline", i, s)[0]["regret"]
                            for i in range(3) for s in SEEDS])
  trend, rand = mean("trend"), mean("random")
  assert trend < rand, (trend, rand)
  assert trend < 0.05


def test_steplaw_formula_picks_candidate_nearest_the_formula(bowl):
  table = bowl["table"]
  out, ref = play("steplaw_formula", bowl, "offline", 2, seed=0)
  lr, bs = 1.79 * 1e9 ** -0.713 * 10 ** (10.3 * 0.307), 0.58 * 10 ** (10.3 * 0.571)
  t = table.fidelity_index("large")
  x = table.config_features_CxD
  d = np.where(table.valid_FxC[t], (x[:, 0] - np.log2(lr)) ** 2 + (x[:, 1] - np.log2(bs)) ** 2,
               np.inf)
  cfgs = [ref.p.cand_config_NxA[2, a] for a in out["actions"]]
  assert cfgs == list(np.argsort(d, kind="stable")[:3])


def test_steplaw_formula_only_where_it_applies():
  table = bowl_table()
  other = table.with_changes(config_feature_names=("a", "b"))
  assert registry.applicable("steplaw_formula", table)
  assert not registry.applicable("steplaw_formula", other)
  assert registry.applicable("trend", other)
  tasks, params, _ = setup(other, budgets=(1,))
  with pytest.raises(ValueError, match="steplaw_formula needs"):
    registry.PEERS["steplaw_formula"](peer_base.make_context(other, tasks[0], params, 0), 0)


def test_optuna_tpe_adds_prior_trials(bowl, monkeypatch):
  monkeypatch.setattr(peer_base, "PRIOR_CAP", 150)  # below the 187 known cheap results
  table = bowl["table"]
  tasks, params, ref = bowl["offline"]
  peer = registry.PEERS["optuna_tpe"](peer_base.make_context(table, tasks[0], params, 0), 0)
  ref.reset(0, 0)
  view = ref.expand()
  n_cheap = int((view["known_A"] & ~view["is_target_A"]).sum())
  assert n_cheap > peer_base.PRIOR_CAP  # so the cap is exercised
  peer.act(view)
  assert peer.n_prior == peer_base.PRIOR_CAP
  assert len(peer.study.trials) == peer_base.PRIOR_CAP + 1  # the priors plus the asked trial
  # whole nearest fidelity first ("medium"), the rest from "small"
  fid = ref.p.cand_fid_NxA[0]
  n_medium = int((view["known_A"] & (fid == table.fidelity_index("medium"))).sum())
  prior_vals = sorted(t.value for t in peer.study.trials[:peer_base.PRIOR_CAP])
  medium_vals = view["value_A"][view["known_A"] & (fid == table.fidelity_index("medium"))]
  assert n_medium < peer_base.PRIOR_CAP
  assert np.all(np.isin(np.float32(medium_vals), np.float32(prior_vals)))


def test_hyperband_buys_cheap_runs_before_target(bowl):
  for seed in SEEDS:
    out, ref = play("optuna_tpe_hyperband", bowl, "online", 2, seed)
    cost = [float(ref.p.cost_F[ref.p.cand_fid_NxA[2, a]] / ref.p.cost_F[2]) for a in out["actions"]]
    first_target = cost.index(1.0)
    assert first_target > 0 and all(c < 1 for c in cost[:first_target])
    assert out["regret"] < 1.0


def test_peers_never_read_hidden_values(bowl):
  table = bowl["table"]
  t = table.fidelity_index("large")
  rng = np.random.default_rng(1)
  vals = rng.normal(size=table.values_FxC.shape).astype(np.float32)
  vals[t] = np.nan  # the target's values are gone, the cheap ones are garbage
  valid = np.ones_like(table.valid_FxC)
  valid[t] = False
  garbage = table.with_changes(values_FxC=vals, valid_FxC=valid)
  for name in CORE:
    mode = "online" if name in registry.ONLINE_PEERS - {"random"} else "offline"
    tasks, params, ref = bowl[mode]
    for i in (0, 2):
      honest = episode.run_episode(registry.PEERS[name], ref,
                                   peer_base.make_context(table, tasks[i], params, i), i, 3)
      blind = episode.run_episode(registry.PEERS[name], ref,
                                  peer_base.make_context(garbage, tasks[i], params, i), i, 3)
      assert honest["actions"] == blind["actions"], name


# --- SMAC (optional) ------------------------------------------------------------------------------

smac_only = pytest.mark.skipif(not registry.smac_available(), reason="smac is not installed")


@smac_only
@pytest.mark.parametrize("name,mode", [("smac_hpo", "offline"), ("smac_mf", "online")])
def test_smac_episodes(name, mode, bowl):
  out, ref = play(name, bowl, mode, 1, seed=0)
  assert out["n_invalid"] == 0 and out["n_repeat"] == 0 and out["cost_spent"] <= 2 + 1e-5
  assert out["regret"] == pytest.approx(expected_regret(bowl["table"], ref, 1, out["actions"]),
                                        abs=1e-5)
  assert out["regret"] < 1.0
