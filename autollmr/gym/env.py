"""LLMConfig-Gym: the multi-fidelity configuration environment as pure JAX functions.

gymnax-shaped: `reset(key, params, task_id) -> (obs, state)`, `step(state, action, params) ->
(obs, state, reward, terminated, truncated, info)` with auto-reset by select. `EnvParams` holds
ONE table (traced arrays: one compiled program serves every table of the same padded shape) and
the tasks built on it as index arrays (a task is a view of the table, never a copy; an episode
holds only its task index). Sizes are static: A candidates, T max turns.

Decision process (WORKSPACE.md has the long form; reference.py is the same as plain Python):
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

Host-side building of EnvParams from a table and tasks: build.py; random sub-studies: substudies.py.
"""
from __future__ import annotations

import dataclasses

from flax import struct
import jax
import jax.numpy as jnp

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


def fresh_state(params: EnvParams, sizes: EnvSizes, task, seed, episode) -> EnvState:
  f32 = jnp.float32
  return EnvState(
      task=jnp.asarray(task, jnp.int32),
      seed=jnp.asarray(seed, jnp.uint32),
      episode=jnp.asarray(episode, jnp.uint32),
      queried_T=jnp.full((sizes.max_turns,), -1, jnp.int32),
      norm_T=jnp.zeros((sizes.max_turns,), f32),
      budget_left=params.budget_N[task].astype(f32),
      turn=jnp.int32(0),
      best=f32(jnp.inf),
      best_config=jnp.int32(-1),
      n_invalid=jnp.int32(0),
      n_repeat=jnp.int32(0),
      cost_spent=f32(0))


def reset(key, params: EnvParams, sizes: EnvSizes, task) -> tuple[Obs, EnvState]:
  seed = jax.random.bits(key, dtype=jnp.uint32)
  state = fresh_state(params, sizes, task, seed, 0)
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
    fresh = fresh_state(params, sizes, t, hash32(state.seed ^ hash32(episode)), episode)
    fresh = fresh.replace(queried_T=nxt.queried_T, norm_T=nxt.norm_T)  # already reset above
    nxt = jax.tree.map(lambda r, s: jnp.where(done, r, s), fresh, nxt)
  return observe(params, nxt), nxt, reward, terminated, truncated, info


# The EnvParams fields with a leading task axis N (sub_studies gathers them; simulate stacks them).
TASK_FIELDS = ("cand_config_NxA", "cand_fid_NxA", "cand_exists_NxA", "cand_cheap_NxA", "target_N",
               "y_star_N", "y_worst_N", "loc_NxF", "scale_NxF", "min_cost_N", "rho_N",
               "budget_N", "max_turns_N")


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
