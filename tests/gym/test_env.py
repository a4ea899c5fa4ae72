"""The jitted env against its NumPy twin (env_reference.py), plus the invariants the rules promise.

Every params is padded to one shape (F_PAD x C_PAD table, N_TASKS tasks, A_PAD candidates, T_PAD
turns) and the rollout is jitted once with params traced, so hypothesis examples reuse one program.
"""
import dataclasses

from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autollmr.gym import build as build_lib
from autollmr.gym import env as env_lib
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task

F_PAD, C_PAD, D, G = 4, 20, 2, 1
N_TASKS, T_PAD = 3, 6
A_PAD = (F_PAD - 1) * C_PAD + C_PAD  # every cheap row plus every target config
STEPS = 40  # per rollout: several episodes, so auto-reset is crossed
BATCH = 2 * N_TASKS  # episodes per batched rollout: one batch shape, one compile
SETTINGS = settings(max_examples=12, deadline=None, database=None)


def make_table(rng, F, C, direction="min", hole_frac=0.3, ties=False, name="t") -> Table:
  vals = rng.normal(size=(F, C)).astype(np.float32) + np.arange(F, dtype=np.float32)[:, None]
  if ties:  # equal values exercise the strict-improvement and percentile tie rules
    vals = np.round(vals, 1)
  holes = rng.random((F, C)) < hole_frac
  holes[np.arange(F), rng.integers(0, C, F)] = False  # at least one run per fidelity
  vals[holes] = np.nan
  cost = np.cumsum(rng.uniform(0.3, 3.0, F))  # strictly increasing with fidelity
  return Table(
      name=name, family="test", provenance="synthetic", objective="loss", direction=direction,
      fidelity_names=tuple(f"f{i}" for i in range(F)),
      config_feature_names=tuple(f"x{i}" for i in range(D)), fidelity_feature_names=("g",),
      config_features_CxD=rng.normal(size=(C, D)).astype(np.float32),
      fidelity_features_FxG=np.log(cost)[:, None].astype(np.float32),
      values_FxC=vals, valid_FxC=~holes, flagged_FxC=np.zeros((F, C), bool), cost_F=cost,
      cost_unit="s")


def random_tasks(rng, table: Table, n: int) -> list[Task]:
  tasks = []
  for _ in range(n):
    t = int(rng.integers(0, table.num_fidelities))
    vis = tuple(table.fidelity_names[v] for v in range(t) if rng.random() < 0.7)
    tasks.append(Task(table.name, table.fidelity_names[t], vis, rho=float(rng.choice([0, .3, 1])),
                      budget=float(rng.choice([1, 2.5, 5])),
                      max_turns=int(rng.integers(1, T_PAD + 1))))
  return tasks


def pad_params(params: env_lib.EnvParams) -> env_lib.EnvParams:
  """Pads the table axes to (F_PAD, C_PAD): unused fidelities and configs no task points at."""
  F, C = params.values_FxC.shape
  df, dc = F_PAD - F, C_PAD - C
  p = lambda x, w, v: jnp.pad(x, w, constant_values=v)
  return params.replace(
      values_FxC=p(params.values_FxC, ((0, df), (0, dc)), jnp.nan),
      pct_better_FxC=p(params.pct_better_FxC, ((0, df), (0, dc)), 0.0),
      config_features_CxD=p(params.config_features_CxD, ((0, dc), (0, 0)), 0.0),
      fidelity_features_FxG=p(params.fidelity_features_FxG, ((0, df), (0, 0)), 0.0),
      cost_F=p(params.cost_F, ((0, df),), 1.0),
      loc_NxF=p(params.loc_NxF, ((0, 0), (0, df)), 0.0),
      scale_NxF=p(params.scale_NxF, ((0, 0), (0, df)), 1.0))


def build(seed, F=None, C=None, direction=None, tasks=None, cap=512, ties=False):
  rng = np.random.default_rng(seed)
  F = F or int(rng.integers(2, F_PAD + 1))
  C = C or int(rng.integers(3, C_PAD + 1))
  direction = direction or str(rng.choice(["min", "max"]))
  table = make_table(rng, F, C, direction, hole_frac=float(rng.uniform(0, 0.5)), ties=ties)
  tasks = tasks or random_tasks(rng, table, N_TASKS)
  params, sizes = build_lib.make_params(
      table,
      tasks,
      max_cheap_rows=cap,
      invalid_penalty=float(rng.choice([0, 0.1])),
      repeat_penalty=float(rng.choice([0, 0.05])),
      pad_to=A_PAD,
      pad_turns_to=T_PAD)
  assert sizes == env_lib.EnvSizes(A_PAD, T_PAD)
  return table, tasks, pad_params(params), sizes


def random_actions(rng, params, task, n) -> np.ndarray:
  """Mostly real candidates; some padding slots, out-of-range indices and repeats."""
  n_real = int(np.asarray(params.cand_exists_NxA[task]).sum())
  acts = rng.integers(0, n_real, n)
  odd = rng.random(n)
  acts = np.where(odd < 0.1, rng.choice([-1, A_PAD, A_PAD + 3], n), acts)
  acts = np.where((odd >= 0.1) & (odd < 0.15), rng.integers(n_real, A_PAD + 1, n) % A_PAD, acts)
  rep = (odd >= 0.15) & (odd < 0.3)
  acts[1:][rep[1:]] = acts[:-1][rep[1:]]  # repeat the previous action
  return acts.astype(np.int32)


SIZES = env_lib.EnvSizes(A_PAD, T_PAD)


def _rollout(params, task, seed, actions_L, sizes=SIZES):
  """One slot: reset-by-seed, then STEPS actions with auto-reset; stacked per-step outputs."""
  state = env_lib.fresh_state(params, sizes, task, seed, 0)

  def body(state, a):
    obs0 = env_lib.observe(params, state)
    ex = env_lib.expand_obs(params, obs0, sizes)
    obs, state, r, term, trunc, info = env_lib.step(state, a, params, sizes)
    obs = {k.name: getattr(obs, k.name) for k in dataclasses.fields(obs)}
    return state, dict(obs=obs, reward=r, terminated=term, truncated=trunc, info=info, ex=ex,
                       n_invalid=state.n_invalid, n_repeat=state.n_repeat,
                       cost_spent=state.cost_spent, best_config=state.best_config)
  return jax.lax.scan(body, state, actions_L)[1]


rollout = jax.jit(_rollout)
rollout_batch = jax.jit(jax.vmap(_rollout, in_axes=(None, 0, 0, 0)))


def reference_rollout(params, task, seed, actions_L):
  ref = ReferenceEnv(params, SIZES)
  ref.reset(task, seed)
  out = []
  for a in actions_L:
    ex = ref.expand()
    obs, r, term, trunc, info = ref.step(int(a))
    out.append(dict(obs=obs, reward=r, terminated=term, truncated=trunc, info=info, ex=ex,
                    n_invalid=ref.n_invalid, n_repeat=ref.n_repeat, cost_spent=ref.cost_spent,
                    best_config=ref.best_config))
  return out


def assert_same(jax_out, ref_out, where):
  """Integers and booleans exactly; floats to 1e-6 (a division may round by one ulp)."""
  flat_ref = [jax.tree_util.tree_flatten_with_path(o) for o in ref_out]
  flat_jax = jax.tree_util.tree_flatten_with_path(jax_out)[0]
  for path, leaf in flat_jax:
    leaf = np.asarray(leaf)
    ref = np.stack([np.asarray(dict(fr[0])[path]) for fr in flat_ref])
    name = f"{where} {jax.tree_util.keystr(path)}"
    if leaf.dtype.kind == "f":
      np.testing.assert_allclose(leaf, ref.astype(np.float32), rtol=1e-6, atol=1e-6,
                                 err_msg=name)
    else:
      np.testing.assert_array_equal(leaf, ref.astype(leaf.dtype), err_msg=name)


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1), cap=st.sampled_from([8, 512]), ties=st.booleans())
def test_matches_reference(seed, cap, ties):
  _, _, params, _ = build(seed, cap=cap, ties=ties)
  rng = np.random.default_rng(seed + 1)
  tasks = np.tile(np.arange(N_TASKS, dtype=np.int32), BATCH // N_TASKS)
  seeds = rng.integers(0, 2**32, BATCH, dtype=np.uint32)
  acts = np.stack([random_actions(rng, params, t, STEPS) for t in tasks])
  out = rollout_batch(params, tasks, seeds, acts)
  for i, t in enumerate(tasks):
    mine = jax.tree.map(lambda x: x[i], out)
    assert_same(mine, reference_rollout(params, t, seeds[i], acts[i]), f"episode {i}")


@SETTINGS
@given(seed=st.integers(0, 2**31 - 1))
def test_vmapped_equals_single(seed):
  _, _, params, _ = build(seed)
  rng = np.random.default_rng(seed + 2)
  # Every task twice, different seeds and actions.
  tasks = np.tile(np.arange(N_TASKS, dtype=np.int32), BATCH // N_TASKS)
  seeds = rng.integers(0, 2**32, len(tasks), dtype=np.uint32)
  acts = np.stack([random_actions(rng, params, t, STEPS) for t in tasks])
  out = rollout_batch(params, tasks, seeds, acts)
  for i, t in enumerate(tasks):
    one = rollout(params, t, seeds[i], acts[i])
    jax.tree.map(lambda b, s: np.testing.assert_array_equal(np.asarray(b)[i], np.asarray(s)),
                 out, one)


@settings(max_examples=6, deadline=None, database=None)
@given(seed=st.integers(0, 2**31 - 1))
def test_budget_never_negative(seed):
  _, _, params, _ = build(seed)
  rng = np.random.default_rng(seed + 3)
  tasks = np.tile(np.arange(N_TASKS, dtype=np.int32), BATCH // N_TASKS)
  seeds = rng.integers(0, 2**32, len(tasks), dtype=np.uint32)
  for _ in range(8):  # 8 x BATCH x STEPS steps, many episodes (an episode is <= T_PAD turns)
    acts = np.stack([random_actions(rng, params, t, STEPS) for t in tasks])
    out = rollout_batch(params, tasks, seeds, acts)
    assert np.all(np.asarray(out["obs"]["budget_left"]) >= 0)
    assert np.all(np.asarray(out["cost_spent"]) >= 0)
    seeds = rng.integers(0, 2**32, len(tasks), dtype=np.uint32)


def test_budget_not_negative_after_rounding():
  # Three cheap runs at 1/3 each: in float32 they sum to 1 + 6e-8, inside the 1e-6 slack of
  # budget 1, so all three are valid; what is left must be 0, not -6e-8.
  params = tiny(budget=1.0, cost_F=(1.0, 3.0))
  state = env_lib.fresh_state(params, SIZES, 0, 0, 0)
  ref = ReferenceEnv(params, SIZES, auto_reset=False)
  ref.reset(0, 0)
  for a in [0, 1, 2]:
    obs, state, _, term, _, info = env_lib.step(state, a, params, SIZES, auto_reset=False)
    ref.step(a)
    assert not info["invalid"]
  assert term and obs.budget_left == 0 and ref.budget_left == 0


# --- explicit small examples ---------------------------------------------------------------------

def tiny(direction="min", rho=0.0, budget=5.0, max_turns=T_PAD, cost_F=(1.0, 2.0)):
  """2 fidelities x 4 configs, no holes; target f1 (cost 1), f0 visible (cost 0.5)."""
  vals = np.array([[3., 1., 2., 4.], [30., 10., 20., 40.]], np.float32)
  table = Table(
      name="tiny", family="test", provenance="synthetic", objective="loss", direction=direction,
      fidelity_names=("lo", "hi"), config_feature_names=("x",), fidelity_feature_names=("g",),
      config_features_CxD=np.arange(4, dtype=np.float32)[:, None],
      fidelity_features_FxG=np.zeros((2, 1), np.float32), values_FxC=vals,
      valid_FxC=np.ones((2, 4), bool), flagged_FxC=np.zeros((2, 4), bool),
      cost_F=np.array(cost_F), cost_unit="s")
  task = Task("tiny", "hi", ("lo",), rho=rho, budget=budget, max_turns=max_turns)
  params, sizes = build_lib.make_params(table, [task] * N_TASKS, pad_to=A_PAD, pad_turns_to=T_PAD)
  return pad_params(params)  # candidates: 0-3 cheap rows (f0, c0-3), 4-7 targets (f1, c0-3)


def play(params, actions, task=0, seed=0):
  padded = np.int32(actions + [0] * (STEPS - len(actions)))
  out = rollout(params, np.int32(task), np.uint32(seed), padded)
  return jax.tree.map(lambda x: np.asarray(x)[:len(actions)], out)


def test_invalid_and_repeat_counted():
  params = tiny(rho=0.0, budget=5.0)
  # 0 new; 0 repeat; -1, A, A+3 out of range; 10 padding; 1 new; 1 repeat.
  acts = [0, 0, -1, A_PAD, A_PAD + 3, 10, 1, 1]
  out = play(params, acts[:T_PAD])
  np.testing.assert_array_equal(out["info"]["invalid"], [0, 0, 1, 1, 1, 1])
  np.testing.assert_array_equal(out["info"]["repeat"], [0, 1, 0, 0, 0, 0])
  np.testing.assert_array_equal(out["n_invalid"][:5], [0, 0, 1, 2, 3])
  assert out["info"]["n_invalid"][-1] == 4 and out["info"]["n_repeat"][-1] == 1
  # Invalid queries charge nothing; a repeat is charged (0.5 each for the two f0 queries).
  np.testing.assert_allclose(out["info"]["cost_spent"], [.5, 1, 1, 1, 1, 1])
  np.testing.assert_allclose(out["reward"][2:5], -0.1)  # the invalid penalty
  # Over the budget: budget 1 buys one target run; the second is invalid, not charged.
  params = tiny(rho=0.0, budget=1.0)
  out = play(params, [4, 5])
  np.testing.assert_array_equal(out["info"]["invalid"], [0, 0])
  assert out["terminated"][0]  # 0 left < 0.5, the cheapest query
  params = tiny(rho=0.0, budget=1.6)  # 0.6 left after a target run: still buys a cheap one
  out = play(params, [4, 5])
  np.testing.assert_array_equal(out["info"]["invalid"], [0, 1])
  assert out["info"]["n_invalid"][1] == 1
  np.testing.assert_allclose(out["info"]["cost_spent"], [1, 1])
  # Revealed rows (rho = 1) count as repeats when queried.
  out = play(tiny(rho=1.0), [2, 6])
  np.testing.assert_array_equal(out["info"]["repeat"], [1, 0])


@pytest.mark.parametrize("direction", ["min", "max"])
def test_regret_zero_at_best_one_when_nothing_observed(direction):
  params = tiny(direction, max_turns=2)
  best_cand = 5 if direction == "min" else 7  # target config 1 (10) or 3 (40)
  worst_cand = 7 if direction == "min" else 5
  out = play(params, [0, best_cand])  # a cheap row, then the best target config
  assert out["truncated"][1] and not out["terminated"][1]
  assert out["info"]["regret"][1] == 0 and out["reward"][1] == 1
  assert out["info"]["recommendation"][1] == best_cand - 4
  assert out["info"]["percentile"][1] == 0
  out = play(params, [0, 1])  # only cheap rows: nothing at the target
  assert out["info"]["regret"][1] == 1 and out["reward"][1] == 0
  assert out["info"]["recommendation"][1] == -1 and out["info"]["percentile"][1] == 1
  out = play(params, [worst_cand, 2])
  assert out["info"]["regret"][1] == 1 and out["info"]["percentile"][1] == 0.75
  out = play(params, [6, 0])  # config 2 (20): 1/3 of the way to the worst for min, 2/3 for max
  want = (20 - 10) / 30 if direction == "min" else (40 - 20) / 30
  np.testing.assert_allclose(out["info"]["regret"][1], want, rtol=1e-6)


def test_terminated_and_truncated_apart():
  # Budget 1: one target query spends it all -> terminated, not truncated, at turn 1.
  out = play(tiny(budget=1.0, max_turns=4), [4])
  assert out["terminated"][0] and not out["truncated"][0]
  # Plenty of budget: T turns -> truncated, not terminated; then the slot auto-resets.
  out = play(tiny(budget=5.0, max_turns=3), [0, 1, 2, 3])
  np.testing.assert_array_equal(out["truncated"], [0, 0, 1, 0])
  assert not out["terminated"].any()
  np.testing.assert_array_equal(out["obs"]["turn"], [1, 2, 0, 1])
  np.testing.assert_allclose(out["obs"]["budget_left"], [4.5, 4, 5, 4.5])
  # Both at once (budget runs out on the last turn): terminated wins.
  out = play(tiny(budget=1.0, max_turns=2), [0, 0])
  assert out["terminated"][1] and not out["truncated"][1]


def test_target_cap_ignores_the_target_values():
  """Over `max_target_configs`, the candidates are picked from the visible results: shuffling the
  target's own values changes nothing, and the nearest visible fidelity's best configs are in."""
  rng = np.random.default_rng(3)
  table = make_table(rng, 3, 60, hole_frac=0.0)
  task = Task(table.name, "f2", ("f0", "f1"), rho=1.0, budget=5.0, max_turns=5)
  picks = []
  for perm in (np.arange(60), rng.permutation(60)):
    vals = table.values_FxC.copy()
    vals[2] = vals[2, perm]
    t2 = table.with_changes(values_FxC=vals)
    cand = build_lib.target_candidates(t2, 2, [0, 1], 10)
    params, _ = build_lib.make_params(t2, [task], max_target_configs=10)
    is_tgt = np.asarray(params.cand_fid_NxA[0] == 2) & np.asarray(params.cand_exists_NxA[0])
    assert sorted(np.asarray(params.cand_config_NxA[0])[is_tgt].tolist()) == cand.tolist()
    # y* stays the best of every valid target config, candidate or not
    assert np.isclose(float(params.y_star_N[0]), np.nanmin(vals[2]))
    picks.append(cand.tolist())
  assert picks[0] == picks[1] and len(picks[0]) == 10
  best_at_f1 = np.argsort(table.values_FxC[1])[:5]  # direction "min"
  assert set(best_at_f1.tolist()) <= set(picks[0])


@pytest.mark.parametrize("direction", ["min", "max"])
def test_target_scored_on_its_nearest_visible_fidelity(direction):
  """A target result is normalized with the median and IQR of the nearest visible fidelity, never
  its own (which would leak the target's spread): checked against a hand computation on a table
  whose target median / IQR (400 / 600) are far from the nearest visible one's (30 / 20)."""
  vals = np.array([[5., 1., 4., 2., 3.],  # lo: median 3, IQR 4 - 2 = 2
                   [10., 30., 20., 50., 40.],  # mid, the nearest visible: median 30, IQR 20
                   [100., 400., 200., 1600., 800.]], np.float32)  # hi: median 400, IQR 600
  table = Table(
      name="three", family="test", provenance="synthetic", objective="loss", direction=direction,
      fidelity_names=("lo", "mid", "hi"), config_feature_names=("x",),
      fidelity_feature_names=("g",), config_features_CxD=np.arange(5, dtype=np.float32)[:, None],
      fidelity_features_FxG=np.zeros((3, 1), np.float32), values_FxC=vals,
      valid_FxC=np.ones((3, 5), bool), flagged_FxC=np.zeros((3, 5), bool),
      cost_F=np.array([1.0, 2.0, 4.0]), cost_unit="s")
  task = Task("three", "hi", ("lo", "mid"), rho=0.0, budget=5.0, max_turns=T_PAD)
  params, _ = build_lib.make_params(table, [task] * N_TASKS, pad_to=A_PAD, pad_turns_to=T_PAD)
  params = pad_params(params)  # candidates: 0-4 lo, 5-9 mid, 10-14 hi (configs 0-4 each)
  s = 1.0 if direction == "min" else -1.0
  symlog = lambda z: np.sign(z) * np.log1p(np.abs(z))
  # hi config 0 (100), 2 (200), 3 (1600); lo config 1 (1); mid config 0 (10)
  acts = [10, 12, 13, 1, 5]
  want = [symlog(-s * (100 - 30) / 20), symlog(-s * (200 - 30) / 20),
          symlog(-s * (1600 - 30) / 20), symlog(-s * (1 - 3) / 2), symlog(-s * (10 - 30) / 20)]
  assert abs(want[2]) < env_lib.NORM_CLIP  # -78.5 IQRs: symlog keeps it inside the clip
  out = play(params, acts)
  np.testing.assert_allclose(out["obs"]["norm_T"][-1][:5], want, rtol=1e-5)
  ref = ReferenceEnv(params, SIZES)
  ref.reset(0, 0)
  for a in acts:
    obs = ref.step(a)[0]
  np.testing.assert_allclose(obs["norm_T"][:5], want, rtol=1e-5)
  # the statistics themselves: (median, IQR) of lo, mid, and mid's again for hi
  np.testing.assert_array_equal(np.asarray(params.loc_NxF[0, :3]), [3, 30, 30])
  np.testing.assert_array_equal(np.asarray(params.scale_NxF[0, :3]), [2, 20, 20])
