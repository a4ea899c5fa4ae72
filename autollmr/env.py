"""LLMConfig-Gym: the multi-fidelity configuration environment as pure JAX functions.

gymnax-shaped: `reset(key, params, task_id) -> (obs, state)`, `step(state, action, params) ->
(obs, state, reward, terminated, truncated, info)` with auto-reset by select. `EnvParams` holds
ONE table (traced arrays: one compiled program serves every table of the same padded shape) and
the tasks built on it as index arrays (a task is a view of the table, never a copy; an episode
holds only its task index). Sizes are static: A candidates, T max turns.

Decision process (WORKSPACE.md has the long form; env_reference.py is the same as plain Python):
- Candidates: per task a fixed list of A (config, fidelity) pairs: first the "cheap rows" (results
  at the visible fidelities V, capped, see `cheap_rows`), then the target configs (capped by the
  visible results, never the target's own: `target_candidates`); padding slots are absent
  configs. Action = a candidate index.
- Reset: each cheap row is revealed with probability rho, drawn from a counter hash of the
  episode's reveal seed and the row (rho = 1: all cheap results known, the paper's setting; rho = 0:
  online search). A hash, not a permutation, keeps reset and step O(1) in A.
- A query costs cost[f] / cost[t] (expensive-run units); budget B is in the same units.
- Invalid (absent config / index out of range / over the remaining budget): nothing revealed, turn
  spent, counted, `invalid_penalty`. Repeat (already queried or revealed): same value, cost charged,
  counted, `repeat_penalty`.
- Ends: terminated when the remaining budget cannot buy the cheapest allowed query; truncated
  after T turns. Terminal reward = 1 - regret of the recommendation (best observed target value),
  regret = (y_rec - y*) / (y_worst - y*) (mirrored for max), clipped to [0, 1]; 1 if no target
  observation.
- Observation: O(T), not O(A): the queried candidates and their normalized outcomes, the reveal
  seed, remaining budget and turn. `expand_obs` turns it into the fixed-shape A-sized arrays a
  policy reads (features, known mask, values, action mask), computed on the policy side.
"""
from __future__ import annotations

import dataclasses
import zlib

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from autollmr.table import Table
from autollmr.tasks import Task

# Normalized outcomes are symlog-compressed, then clipped: a level shift between fidelities (7B
# scores sit ~7 IQRs of the 3B spread above the 3B median on admire) keeps its ranking instead of
# clipping every target result to one value, and diverged runs (z ~ -150) still cannot dominate.
NORM_CLIP = 5.0


@struct.dataclass
class EnvParams:
  # The table (shared by all tasks of this params).
  values_FxC: jax.Array  # float32, NaN where no run
  pct_better_FxC: jax.Array  # fraction of valid configs at f strictly better than (f, c)
  config_features_CxD: jax.Array
  fidelity_features_FxG: jax.Array
  cost_F: jax.Array
  sign: jax.Array  # +1 min, -1 max
  # The tasks (leading axis N).
  cand_config_NxA: jax.Array  # int32
  cand_fid_NxA: jax.Array  # int32
  cand_exists_NxA: jax.Array  # bool; False on padding
  cand_cheap_NxA: jax.Array  # bool; a cheap row (revealable), else a target config
  target_N: jax.Array  # int32 target fidelity
  y_star_N: jax.Array  # best valid target value
  y_worst_N: jax.Array
  loc_NxF: jax.Array  # per-fidelity normalisation (visible stats; target uses nearest visible)
  scale_NxF: jax.Array
  min_cost_N: jax.Array  # cheapest allowed query, target units
  rho_N: jax.Array
  budget_N: jax.Array
  max_turns_N: jax.Array  # int32, <= T
  invalid_penalty: jax.Array
  repeat_penalty: jax.Array


@struct.dataclass
class EnvState:
  task: jax.Array  # int32
  seed: jax.Array  # uint32 reveal seed of this episode
  episode: jax.Array  # uint32 episode counter of this slot (auto-reset seeds)
  queried_T: jax.Array  # int32 candidate index per query slot, -1 empty
  norm_T: jax.Array  # float32 normalized outcome of each query (as Obs shows it), 0 where empty
  budget_left: jax.Array
  turn: jax.Array
  best: jax.Array  # best sign*value observed at the target (inf if none)
  best_config: jax.Array  # int32 config index of that recommendation (-1 if none)
  n_invalid: jax.Array
  n_repeat: jax.Array
  cost_spent: jax.Array


@struct.dataclass
class Obs:
  task: jax.Array
  seed: jax.Array
  queried_T: jax.Array  # -1 where empty (also for invalid and repeated queries)
  norm_T: jax.Array  # normalized outcome (higher is better), 0 where empty
  budget_left: jax.Array
  turn: jax.Array


@dataclasses.dataclass(frozen=True)
class EnvSizes:
  """Static sizes (hashable; pass as a static argument)."""
  num_candidates: int  # A
  max_turns: int  # T


# --- hashing: the O(1) seeded reveal, bit-identical in NumPy (env_reference.py) ----------------

def hash32(x):
  """lowbias32 (C. Wellons): a fast, well-mixed uint32 -> uint32 hash."""
  x = x.astype(jnp.uint32)
  x = x ^ (x >> 16)
  x = x * jnp.uint32(0x7FEB352D)
  x = x ^ (x >> 15)
  x = x * jnp.uint32(0x846CA68B)
  return x ^ (x >> 16)


def uniform_from(seed, idx):
  """A float in [0, 1) from (seed, idx); 24 bits so float32 represents it exactly."""
  h = hash32(seed ^ hash32(idx.astype(jnp.uint32) + jnp.uint32(0x9E3779B9)))
  return (h >> 8).astype(jnp.float32) * jnp.float32(2.0 ** -24)


def revealed(params: EnvParams, task, seed, idx):
  return params.cand_cheap_NxA[task, idx] & (uniform_from(seed, idx) < params.rho_N[task])


# --- reset / step --------------------------------------------------------------------------------

def _fresh_state(params: EnvParams, sizes: EnvSizes, task, seed, episode) -> EnvState:
  f32 = jnp.float32
  return EnvState(
      task=jnp.asarray(task, jnp.int32), seed=jnp.asarray(seed, jnp.uint32),
      episode=jnp.asarray(episode, jnp.uint32),
      queried_T=jnp.full((sizes.max_turns,), -1, jnp.int32),
      norm_T=jnp.zeros((sizes.max_turns,), f32),
      budget_left=params.budget_N[task].astype(f32), turn=jnp.int32(0),
      best=f32(jnp.inf), best_config=jnp.int32(-1), n_invalid=jnp.int32(0), n_repeat=jnp.int32(0), cost_spent=f32(0))


def reset(key, params: EnvParams, sizes: EnvSizes, task) -> tuple[Obs, EnvState]:
  seed = jax.random.bits(key, dtype=jnp.uint32)
  state = _fresh_state(params, sizes, task, seed, 0)
  return observe(params, state), state


def normalize(params: EnvParams, task, f, y):
  """Outcome y at fidelity f on the task's scale, higher is better, clipped."""
  z = -params.sign * (y - params.loc_NxF[task, f]) / params.scale_NxF[task, f]
  return jnp.clip(jnp.sign(z) * jnp.log1p(jnp.abs(z)), -NORM_CLIP, NORM_CLIP)


def observe(params: EnvParams, state: EnvState) -> Obs:
  # norm_T is normalized once, when queried: re-deriving it here cost 3T gathers a step.
  return Obs(task=state.task, seed=state.seed, queried_T=state.queried_T, norm_T=state.norm_T,
             budget_left=state.budget_left, turn=state.turn)


def regret_of(params: EnvParams, task, best):
  """Normalized regret of a recommendation with sign*value `best` (inf: nothing observed)."""
  s = params.sign
  gap = s * params.y_worst_N[task] - s * params.y_star_N[task]
  r = (best - s * params.y_star_N[task]) / jnp.maximum(gap, 1e-12)
  return jnp.where(jnp.isfinite(best), jnp.clip(r, 0.0, 1.0), 1.0)


def _write_columns(x_T, write_T, v, reset, empty):
  """x_T with v where write_T, emptied where reset; built column by column and stacked, so that
  vmapped XLA:CPU lays the [B, T] state out T-major and each column is one contiguous [B] select
  (a one-hot select over T-minor [B, T] ran ~4x slower; `.at[slot].set` became a scatter)."""
  return jnp.stack([jnp.where(reset, empty, jnp.where(w, v, x)) for w, x in zip(write_T, x_T)])


def step(state: EnvState, action, params: EnvParams, sizes: EnvSizes, auto_reset: bool = True):
  """One query. Returns (obs, state, reward, terminated, truncated, info)."""
  t, A, T = state.task, sizes.num_candidates, sizes.max_turns
  in_range = (action >= 0) & (action < A)
  a = jnp.clip(action, 0, A - 1).astype(jnp.int32)
  f = params.cand_fid_NxA[t, a]
  c = params.cand_config_NxA[t, a]
  target = params.target_N[t]
  cost = (params.cost_F[f] / params.cost_F[target]).astype(jnp.float32)
  exists = in_range & params.cand_exists_NxA[t, a]
  invalid = ~exists | (cost > state.budget_left + 1e-6)
  seen = jnp.any(state.queried_T == a) | revealed(params, t, state.seed, a)
  y = params.values_FxC[f, c]
  norm = normalize(params, t, f, y)
  # Barriers materialize values many outputs share; without them XLA:CPU fuses a copy of the
  # gathers and hashes behind them into every consumer (about 2x slower overall).
  a, c, cost, y, norm, invalid, seen = jax.lax.optimization_barrier(
      (a, c, cost, y, norm, invalid, seen))
  repeat = ~invalid & seen
  new = ~invalid & ~seen
  is_target = ~invalid & (f == target)
  charge = jnp.where(invalid, 0.0, cost)
  budget_left = jnp.maximum(state.budget_left - charge, 0.0)  # the 1e-6 slack may overshoot
  improves = is_target & (params.sign * y < state.best)
  best = jnp.where(improves, params.sign * y, state.best)
  best_config = jnp.where(improves, c, state.best_config)
  turn = state.turn + 1
  terminated = budget_left < params.min_cost_N[t] - 1e-6
  truncated = (turn >= params.max_turns_N[t]) & ~terminated
  done = jax.lax.optimization_barrier(terminated | truncated)

  reset = done if auto_reset else jnp.bool_(False)
  write_T = [new & (jnp.minimum(state.turn, T - 1) == i) for i in range(T)]
  nxt = state.replace(
      queried_T=_write_columns(state.queried_T, write_T, a, reset, -1),
      norm_T=_write_columns(state.norm_T, write_T, norm, reset, 0.0), budget_left=budget_left,
      turn=turn, best=best, best_config=best_config,
      n_invalid=state.n_invalid + invalid.astype(jnp.int32),
      n_repeat=state.n_repeat + repeat.astype(jnp.int32), cost_spent=state.cost_spent + charge)
  regret = regret_of(params, t, best)
  pct = jnp.where(best_config >= 0,
                  params.pct_better_FxC[target, jnp.maximum(best_config, 0)], 1.0)
  reward = (jnp.where(done, 1.0 - regret, 0.0)
            - jnp.where(invalid, params.invalid_penalty, 0.0)
            - jnp.where(repeat, params.repeat_penalty, 0.0))
  info = dict(regret=regret, percentile=pct, recommendation=best_config, cost_spent=nxt.cost_spent,
              n_invalid=nxt.n_invalid, n_repeat=nxt.n_repeat, invalid=invalid, repeat=repeat,
              value=jnp.where(invalid, jnp.nan, y), is_target=is_target, done=done)
  if auto_reset:
    episode = state.episode + jnp.uint32(1)
    fresh = _fresh_state(params, sizes, t, hash32(state.seed ^ hash32(episode)), episode)
    fresh = fresh.replace(queried_T=nxt.queried_T, norm_T=nxt.norm_T)  # already reset above
    nxt = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, nxt)
  return observe(params, nxt), nxt, reward, terminated, truncated, info


# --- task randomization: random sub-studies of a task -----------------------------------------

# The EnvParams fields with a leading task axis N (sub_studies gathers them; simulate stacks them).
TASK_FIELDS = ("cand_config_NxA", "cand_fid_NxA", "cand_exists_NxA", "cand_cheap_NxA", "target_N",
               "y_star_N", "y_worst_N", "loc_NxF", "scale_NxF", "min_cost_N", "rho_N",
               "budget_N", "max_turns_N")


def sub_studies(params: EnvParams, task_M, key, drop_configs: float, drop_fidelities: float):
  """M tasks, each a random sub-study of task task_M[m] (traced; jit-friendly).

  Task randomization for RL (rl.py) and validation draws (simulate.val_bank). Each config is
  dropped with probability `drop_configs` (at every fidelity: the study never ran it), each
  visible fidelity with probability `drop_fidelities` (its cheap rows absent). y* and y_worst are
  recomputed over the target configs left, so the optimum moves from draw to draw and a policy
  cannot memorize "config c is the answer on task t"; it has to read the evidence. A draw that
  leaves < 2 target configs or no cheap row falls back to dropping configs only, then to the
  task as it is. Returns params with M tasks (0..M-1); with nothing to drop, just those tasks.
  """
  for name, v in (("drop_configs", drop_configs), ("drop_fidelities", drop_fidelities)):
    if not 0.0 <= float(v) < 1.0:
      raise ValueError(f"{name} must be in [0, 1), got {v} (--config.rl.drop_configs, "
                       "--config.rl.drop_fidelities, --config.sft.val_drop_configs)")
  p = params.replace(**{k: getattr(params, k)[task_M] for k in TASK_FIELDS})
  if not drop_configs and not drop_fidelities:
    return p
  F, C = params.values_FxC.shape
  M = task_M.shape[0]
  k_c, k_f = jax.random.split(key)
  keep_MxC = jax.random.uniform(k_c, (M, C)) >= drop_configs
  keep_MxF = jax.random.uniform(k_f, (M, F)) >= drop_fidelities
  cfg, fid, cheap, exists = p.cand_config_NxA, p.cand_fid_NxA, p.cand_cheap_NxA, p.cand_exists_NxA
  keep_cfg = jnp.take_along_axis(keep_MxC, cfg, 1)
  keep_fid = jnp.take_along_axis(keep_MxF, fid, 1) | ~cheap
  had_cheap = jnp.any(exists & cheap, 1)
  ok = lambda ex: ((jnp.any(ex & cheap, 1) | ~had_cheap) & (jnp.sum(ex & ~cheap, 1) >= 2))[:, None]
  both, cfg_only = exists & keep_cfg & keep_fid, exists & keep_cfg
  exists2 = jnp.where(ok(both), both, jnp.where(ok(cfg_only), cfg_only, exists))
  return _with_candidates(p, exists2)


def _with_candidates(p: EnvParams, exists_NxA) -> EnvParams:
  """p with these candidates, y* and y_worst recomputed over the target configs left."""
  signed_NxA = p.sign * p.values_FxC[p.cand_fid_NxA, p.cand_config_NxA]
  tgt = exists_NxA & ~p.cand_cheap_NxA
  y_star = p.sign * jnp.min(jnp.where(tgt, signed_NxA, jnp.inf), 1)
  y_worst = p.sign * jnp.max(jnp.where(tgt, signed_NxA, -jnp.inf), 1)
  return p.replace(cand_exists_NxA=exists_NxA, y_star_N=y_star, y_worst_N=y_worst)


HOLDOUT_KEY = 20261124  # fixed: RL's bank and the gate's bank must split the configs the same way


def held_configs(table_sizes, frac: float) -> jax.Array:
  """The held-config mask over a bank's config axis: per table (name, number of configs), in bank
  order, a fixed random draw keyed by the table's name. Why per table: a table's held half must
  not change when other tables join the bank (aux objectives, synthetic draws, fewer families)."""
  parts = [jax.random.uniform(jax.random.fold_in(jax.random.key(HOLDOUT_KEY),
                                                 zlib.crc32(name.encode()) & 0x7FFFFFFF), (C,))
           < float(frac) for name, C in table_sizes]
  return jnp.concatenate(parts) if parts else jnp.zeros((0,), bool)


def config_holdout(params: EnvParams, frac: float, held: bool, held_C: jax.Array):
  """Splits every task's target configs into two fixed, disjoint parts: a share `frac` of the
  configs (held_C, the mask from held_configs) is "held". held=False keeps the
  other target configs (RL trains on these, rl.holdout_configs); held=True keeps only the held
  ones (the gate that decides whether an RL checkpoint replaces the distilled policy plays
  these). Cheap rows stay in both: the lab's cheap sweep is the same, only the configs whose
  target result RL may learn from differ. y* and y_worst are recomputed per part. Returns
  (params, ok_N): ok_N False where the part would keep < 2 target configs (those tasks are
  left as they are; a gate should drop them)."""
  if not 0.0 < float(frac) < 1.0:
    raise ValueError(f"--config.rl.holdout_configs must be in (0, 1) to hold configs out, got {frac}")
  C = params.values_FxC.shape[1]
  if held_C.shape != (C,):
    raise ValueError(f"config_holdout: held_C has shape {held_C.shape}, the config axis is {C}")
  in_held = held_C[params.cand_config_NxA]
  cheap, exists = params.cand_cheap_NxA, params.cand_exists_NxA
  part = exists & (cheap | (in_held if held else ~in_held))
  ok_N = jnp.sum(part & ~cheap, 1) >= 2
  return _with_candidates(params, jnp.where(ok_N[:, None], part, exists)), ok_N


# --- the A-sized view a policy reads ------------------------------------------------------------

def expand_obs(params: EnvParams, obs: Obs, sizes: EnvSizes) -> dict:
  """Fixed-shape per-candidate arrays for one episode (vmap for a batch)."""
  t, A = obs.task, sizes.num_candidates
  idx = jnp.arange(A)
  cfg = params.cand_config_NxA[t]
  fid = params.cand_fid_NxA[t]
  target = params.target_N[t]
  cost_A = (params.cost_F[fid] / params.cost_F[target]).astype(jnp.float32)
  rev_A = revealed(params, t, obs.seed, idx)
  hit_TxA = (obs.queried_T[:, None] == idx[None, :])
  queried_A = jnp.any(hit_TxA, axis=0)
  qnorm_A = jnp.sum(jnp.where(hit_TxA, obs.norm_T[:, None], 0.0), axis=0)
  rnorm = normalize(params, t, fid, params.values_FxC[fid, cfg])
  known_A = (rev_A | queried_A) & params.cand_exists_NxA[t]
  value_A = jnp.where(queried_A, qnorm_A, jnp.where(rev_A, rnorm, 0.0))
  return dict(
      config_features_AxD=params.config_features_CxD[cfg],
      fidelity_features_AxG=params.fidelity_features_FxG[fid],
      cost_A=cost_A, is_target_A=(fid == target) & params.cand_exists_NxA[t],
      known_A=known_A, value_A=jnp.where(known_A, value_A, 0.0),
      action_mask_A=params.cand_exists_NxA[t] & (cost_A <= obs.budget_left + 1e-6),
      budget_left=obs.budget_left, turn=obs.turn)


# --- building params from a table and tasks (host side, NumPy) ----------------------------------

def cheap_rows(table: Table, visible: list[int], cap: int) -> list[tuple[int, int]]:
  """The (fidelity, config) results at the visible fidelities an episode can see, at most `cap`.

  Rule when over the cap: the cap is split evenly over the visible fidelities (unused share goes
  to the others, nearest-to-target first); within a fidelity, half the quota is its best results
  and half is spread evenly over the rest by rank, so the landscape's shape survives.
  """
  per = {f: np.flatnonzero(table.valid_FxC[f]) for f in visible}
  total = sum(len(v) for v in per.values())
  if total <= cap:
    return [(f, int(c)) for f in visible for c in per[f]]
  quota = {f: 0 for f in visible}
  left = cap
  order = sorted(visible, key=lambda f: -table.cost_F[f])  # nearest to the target first
  while left > 0:
    open_ = [f for f in order if quota[f] < len(per[f])]
    if not open_:
      break
    share = max(1, left // len(open_))
    for f in open_:
      give = min(share, len(per[f]) - quota[f], left)
      quota[f] += give
      left -= give
      if left == 0:
        break
  rows = []
  for f in visible:
    cs = per[f]
    ranked = cs[np.argsort(table.sign() * table.values_FxC[f, cs], kind="stable")]
    k = quota[f]
    top = ranked[: (k + 1) // 2]
    rest = ranked[(k + 1) // 2:]
    m = k - len(top)
    spread = rest[np.linspace(0, len(rest) - 1, m).round().astype(int)] if m > 0 else rest[:0]
    rows += [(f, int(c)) for c in sorted(np.concatenate([top, spread]).tolist())]
  return rows


def target_candidates(table: Table, target: int, visible: list[int], cap: int) -> np.ndarray:
  """The target configs an episode may query, at most `cap`, chosen without the target's values.

  Over the cap, configs are ranked by what the episode can see: first those with a result at the
  nearest visible fidelity (by that value), then those whose nearest result is one fidelity
  cheaper, ..., then those with none; half the cap is the top of that ranking and half is spread
  evenly over the rest, as in `cheap_rows`. (Before 2026-11-25 the ranking used the target's own
  values: every capped candidate set then held the true top configs, so in training a policy
  could learn that being a candidate means being good, which no evaluation offers, and a table
  over the eval cap would have leaked its target.)
  """
  cfgs = np.flatnonzero(table.valid_FxC[target])
  if len(cfgs) <= cap:
    return cfgs
  tier = np.full(len(cfgs), len(visible), np.int64)
  val = np.zeros(len(cfgs))
  for i, f in enumerate(sorted(visible, key=lambda f: -table.cost_F[f])):
    v = table.valid_FxC[f, cfgs] & (tier == len(visible))
    tier[v], val[v] = i, table.sign() * table.values_FxC[f, cfgs[v]]
  ranked = cfgs[np.lexsort((val, tier))]  # last key is primary: tier, then value
  top = ranked[: (cap + 1) // 2]
  rest = ranked[(cap + 1) // 2:]
  m = cap - len(top)
  spread = rest[np.linspace(0, len(rest) - 1, m).round().astype(int)]
  return np.sort(np.concatenate([top, spread]))


def make_params(table: Table, tasks: list[Task], max_cheap_rows: int = 512,
                max_target_configs: int = 512, invalid_penalty: float = 0.1,
                repeat_penalty: float = 0.0, pad_to: int | None = None,
                pad_turns_to: int | None = None,
                pad_multiple: int = 1) -> tuple[EnvParams, EnvSizes]:
  """Builds EnvParams for `tasks` on `table` (all tasks must name this table). The candidate axis
  is padded to at least `pad_to` and to a multiple of `pad_multiple`."""
  sign = table.sign()
  per_task = []
  for task in tasks:
    if task.table != table.name:
      raise ValueError(f"task {task.name!r} is on table {task.table!r}, not {table.name!r}")
    t = table.fidelity_index(task.target)
    vis = [table.fidelity_index(v) for v in task.visible]
    for v in vis:
      if table.cost_F[v] > table.cost_F[t]:
        raise ValueError(f"task {task.name!r}: visible fidelity {table.fidelity_names[v]!r} "
                         f"costs more than the target {task.target!r}")
    cheap = cheap_rows(table, vis, max_cheap_rows)
    tgt_cfgs = np.flatnonzero(table.valid_FxC[t])
    if tgt_cfgs.size == 0:
      raise ValueError(f"task {task.name!r}: target {task.target!r} has no valid config")
    cand = target_candidates(table, t, vis, max_target_configs)
    tvals = table.values_FxC[t, tgt_cfgs]  # y* over every valid config, candidates or not
    y_star = tvals[np.argmin(sign * tvals)]
    y_worst = tvals[np.argmax(sign * tvals)]
    tgt_cfgs = cand
    loc = np.zeros(table.num_fidelities, np.float32)
    scale = np.ones(table.num_fidelities, np.float32)
    for f in vis:
      v = table.values_FxC[f][table.valid_FxC[f]]
      lo, med, hi = np.percentile(v, [25, 50, 75])
      loc[f], scale[f] = med, max(hi - lo, 1e-6)
    if vis:  # the target is normalised like its nearest visible fidelity: no target stats leak
      near = max(vis, key=lambda f: table.cost_F[f])
      loc[t], scale[t] = loc[near], scale[near]
    else:
      scale[t] = 1.0
      loc[t] = 0.0
    allowed = vis + [t]
    per_task.append(dict(
        cfg=[c for _, c in cheap] + tgt_cfgs.tolist(),
        fid=[f for f, _ in cheap] + [t] * len(tgt_cfgs), n_cheap=len(cheap), target=t,
        y_star=y_star, y_worst=y_worst, loc=loc, scale=scale,
        min_cost=min(table.cost_F[f] for f in allowed) / table.cost_F[t],
        rho=task.rho, budget=task.budget, max_turns=task.max_turns))
  A = max(len(p["cfg"]) for p in per_task)
  A = max(A, pad_to or 0)
  A = -(-A // pad_multiple) * pad_multiple
  T = max(max(p["max_turns"] for p in per_task), pad_turns_to or 0)
  N = len(tasks)
  cfg = np.zeros((N, A), np.int32)
  fid = np.zeros((N, A), np.int32)
  exists = np.zeros((N, A), bool)
  cheap_m = np.zeros((N, A), bool)
  for i, p in enumerate(per_task):
    n = len(p["cfg"])
    cfg[i, :n], fid[i, :n], exists[i, :n] = p["cfg"], p["fid"], True
    cheap_m[i, :p["n_cheap"]] = True
    fid[i, n:] = p["target"]  # padding points at the target: its cost is well defined
  vals = table.values_FxC.astype(np.float32)
  signed = np.where(table.valid_FxC, sign * vals, np.nan)
  pct = np.zeros_like(vals)
  for f in range(table.num_fidelities):
    v = signed[f][table.valid_FxC[f]]
    if v.size:
      pct[f] = np.searchsorted(np.sort(v), signed[f], side="left") / v.size
  values = np.where(table.valid_FxC, vals, np.nan).astype(np.float32)
  f32 = lambda k: np.array([p[k] for p in per_task], np.float32)
  params = EnvParams(
      values_FxC=jnp.asarray(values), pct_better_FxC=jnp.asarray(pct),
      config_features_CxD=jnp.asarray(table.config_features_CxD, jnp.float32),
      fidelity_features_FxG=jnp.asarray(table.fidelity_features_FxG, jnp.float32),
      cost_F=jnp.asarray(table.cost_F, jnp.float32), sign=jnp.float32(sign),
      cand_config_NxA=jnp.asarray(cfg), cand_fid_NxA=jnp.asarray(fid),
      cand_exists_NxA=jnp.asarray(exists), cand_cheap_NxA=jnp.asarray(cheap_m),
      target_N=jnp.asarray([p["target"] for p in per_task], jnp.int32),
      y_star_N=jnp.asarray(f32("y_star")), y_worst_N=jnp.asarray(f32("y_worst")),
      loc_NxF=jnp.asarray(np.stack([p["loc"] for p in per_task])),
      scale_NxF=jnp.asarray(np.stack([p["scale"] for p in per_task])),
      min_cost_N=jnp.asarray(f32("min_cost")), rho_N=jnp.asarray(f32("rho")),
      budget_N=jnp.asarray(f32("budget")),
      max_turns_N=jnp.asarray([p["max_turns"] for p in per_task], jnp.int32),
      invalid_penalty=jnp.float32(invalid_penalty), repeat_penalty=jnp.float32(repeat_penalty))
  return params, EnvSizes(num_candidates=A, max_turns=T)
