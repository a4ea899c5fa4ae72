"""The policy in the jitted env: the view it reads and whole greedy or sampled episodes.

`play` runs episodes of the policy (vmap over episodes, lax.scan over turns, one jit) and returns
per-episode arrays (regret, cost, anytime regret, actions, per-decision time); the evaluation's
records (evaluation/agents.py) and validation (gate.py) read them. `greedy_action` is the one
greedy rule: here and in the step-by-step chooser (evaluation/choosers.py, the advisor's).
"""
from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from autollmr.gym import env as env_lib
from autollmr.gym import table as table_lib

# Greedy near-ties: log-probabilities within TIE_TOL of the best count as equal, and the lowest
# candidate index among them is played. Why: XLA sums in different orders for different batch
# shapes, so one episode's log-probabilities move in the last bits with the batch it is played in
# (measured: <= 2.7e-5 for the trained 3-member ensemble, |log p| <= 14; <= 5e-6 untrained) and a
# plain argmax at a near-tie followed them. 1e-3 is ~40x that noise (a probability ratio of 0.999).
TIE_TOL = 1e-3


def greedy_action(logits_BxA, tol: float = TIE_TOL):
  """Per row the lowest candidate index whose logit (or log-probability: the same gaps) is within
  `tol` of the row's best, so equal values (duplicate configs) and values apart by less than the
  batch noise give the same pick in any batch. A tolerance below the best rather than a fixed
  grid: a grid would split two equal values lying on one of its lines. Masked candidates
  (features.NEG) never come within `tol` of an allowed one."""
  best_B1 = jnp.max(logits_BxA, -1, keepdims=True)  # a max is exact in any order
  return jnp.argmax(logits_BxA >= best_B1 - tol, -1).astype(jnp.int32)  # first True


def view(params: env_lib.EnvParams, family_N, obs: env_lib.Obs, sizes,
         per_episode: bool = False) -> dict:
  """The policy's input for a batch of observations (leading axis B): expand_obs plus the
  existing-candidate mask, the table family and the turn as a fraction of the task's turns.
  per_episode: params holds one single-task EnvParams per observation (leading axis B on every
  leaf, e.g. drawn landscapes: gym/prior_env.py) and family_N one family per observation."""
  if per_episode:
    v = jax.vmap(lambda p, o: env_lib.expand_obs(p, o, sizes))(params, obs)
    exists_BxA, family_B, turns_B = (params.cand_exists_NxA[:, 0], family_N,
                                     params.max_turns_N[:, 0])
  else:
    v = jax.vmap(lambda o: env_lib.expand_obs(params, o, sizes))(obs)
    t = obs.task
    exists_BxA, family_B, turns_B = (params.cand_exists_NxA[t], family_N[t],
                                     params.max_turns_N[t])
  v["exists_A"] = exists_BxA
  v["family"] = family_B
  v["turn_frac"] = obs.turn.astype(jnp.float32) / turns_B.astype(jnp.float32)
  v["turns_left"] = turns_B - obs.turn
  return v


@functools.partial(jax.jit, static_argnames=("sizes", "greedy"))
def _rollout(model, params, family_N, task_B, seed_B, key, sizes, greedy):
  """Plays each (task, reveal seed) once, auto_reset off; frozen after its episode ends."""
  state = jax.vmap(lambda t, s: env_lib.fresh_state(params, sizes, t, s, 0))(task_B, seed_B)
  done_B = jnp.zeros(task_B.shape, bool)

  def turn(carry, key_t):
    state, done_B = carry
    obs = jax.vmap(lambda s: env_lib.observe(params, s))(state)
    logits_BxA, _ = model(view(params, family_N, obs, sizes))
    action_B = (greedy_action(logits_BxA) if greedy
                else jax.random.categorical(key_t, logits_BxA).astype(jnp.int32))
    _, nxt, _, _, _, info = jax.vmap(
        lambda s, a: env_lib.step(s, a, params, sizes, auto_reset=False))(state, action_B)
    state = jax.tree.map(lambda n, s: jnp.where(
        done_B.reshape(done_B.shape + (1,) * (n.ndim - 1)), s, n), nxt, state)
    out = dict(active=~done_B, action=action_B, is_target=info["is_target"] & ~done_B,
               regret=info["regret"])
    return (state, done_B | info["done"]), out

  (state, _), out_TxB = jax.lax.scan(turn, (state, done_B),
                                     jax.random.split(key, sizes.max_turns))
  target = params.target_N[state.task]
  pct = jnp.where(state.best_config >= 0,
                  params.pct_better_FxC[target, jnp.maximum(state.best_config, 0)], 1.0)
  final = dict(regret=env_lib.regret_of(params, state.task, state.best), percentile=pct,
               cost_spent=state.cost_spent, n_invalid=state.n_invalid, n_repeat=state.n_repeat)
  return final, out_TxB


_COMPILED = {}


def _compiled(args, sizes, greedy):
  """AOT-compiled rollout, cached by argument shapes: decision time excludes compilation."""
  leaves, treedef = jax.tree.flatten(args)
  key = (treedef, tuple((x.shape, x.dtype) for x in leaves), sizes, greedy)
  if key not in _COMPILED:
    _COMPILED[key] = _rollout.lower(*args, sizes=sizes, greedy=greedy).compile()
  return _COMPILED[key]


def play(model, params, sizes, task_indices, seeds, family_N=None, greedy=True,
         key=None, max_batch: int = 256) -> dict:
  """Per-episode arrays (numpy, leading axis = episode) of the policy on (task, seed) pairs.

  Keys: regret, percentile, cost_spent, n_invalid, n_repeat, n_turns, decision_ms (wall time of
  the compiled rollout over all its decisions; the same for every episode of the call),
  anytime_regret (E x T, regret after each target query, NaN-padded), n_target, actions (E x T,
  -1 after the end). `seeds` are the reveal seeds, as the peers' `ReferenceEnv.reset(task, seed)`.
  More than `max_batch` episodes are played in equal chunks (the last padded with copies of its
  final episode, one compilation for all): memory is O(max_batch), not O(E) (a 1,000-task val
  bank with ridge fits asked for 41 GB in one batch). Chunk c samples with fold_in(key, c).
  """
  task_E = np.asarray(task_indices, np.int32)
  seed_E = np.asarray(seeds, np.int64).astype(np.uint32)
  if family_N is None:
    family_N = jnp.full(params.target_N.shape, table_lib.family_id("other"), jnp.int32)
  family_N = jnp.asarray(family_N, jnp.int32)
  key = jax.random.key(0) if key is None else key
  E = len(task_E)
  n_chunks = max(1, -(-E // max_batch))
  B = -(-E // n_chunks)  # equal chunks: at most n_chunks - 1 padded episodes
  finals, outs, wall_ms = [], [], 0.0
  for c in range(n_chunks):
    idx = np.minimum(np.arange(c * B, (c + 1) * B), E - 1)
    args = (model, params, family_N, jnp.asarray(task_E[idx]),
            jnp.asarray(seed_E[idx]), key if n_chunks == 1 else jax.random.fold_in(key, c))
    compiled = _compiled(args, sizes, greedy)
    t0 = time.perf_counter()
    final, out = jax.block_until_ready(compiled(*args))
    wall_ms += 1e3 * (time.perf_counter() - t0)
    finals.append(final)
    outs.append(out)
  if n_chunks > 1:  # episodes are axis 0 of `final`, axis 1 of the per-turn outputs
    final = jax.tree.map(lambda *x: np.concatenate(x)[:E], *finals)
    out = jax.tree.map(lambda *x: np.concatenate(x, 1)[:, :E], *outs)
  return summarize_play(final, out, wall_ms)


def summarize_play(final, out_TxE: dict, wall_ms: float) -> dict:
  """Host-side episode summary of a played batch (shared with lm_agent.play): final info, turns,
  per-decision time, anytime regret after each target query (E x T, NaN-padded), actions."""
  final = jax.tree.map(np.asarray, final)
  out = {k: np.asarray(v).T for k, v in out_TxE.items()}  # E x T
  n_turns = out["active"].sum(1)
  hit = out["is_target"]
  anytime = np.full(hit.shape, np.nan, np.float32)
  for e in range(hit.shape[0]):
    r = out["regret"][e][hit[e]]
    anytime[e, :len(r)] = r
  return dict(final, n_turns=n_turns,
              decision_ms=np.full(n_turns.shape, wall_ms / max(int(n_turns.sum()), 1)),
              anytime_regret=anytime, n_target=hit.sum(1),
              actions=np.where(out["active"], out["action"], -1))
