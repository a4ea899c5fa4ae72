"""The environment's plain Python/NumPy twin: the rules of env.py as straight-line code.

Same semantics, bit for bit (tests/gym/test_env.py checks it on random tasks and action sequences).
It is what to read to learn the rules, and what the Python peers (Optuna, SMAC, ...) step,
one decision at a time, so their cost, budget and recommendation are the agent's exactly.
"""
from __future__ import annotations

import jax
import numpy as np

from autollmr.gym import env as env_lib
from autollmr.gym.env import EnvParams
from autollmr.gym.env import EnvSizes

U32 = np.uint32


def hash32(x) -> np.uint32:
  x = np.asarray(x, np.uint64).astype(U32)
  with np.errstate(over="ignore"):
    x = x ^ (x >> U32(16))
    x = (x * U32(0x7FEB352D)).astype(U32)
    x = x ^ (x >> U32(15))
    x = (x * U32(0x846CA68B)).astype(U32)
    return x ^ (x >> U32(16))


def uniform_from(seed, idx) -> np.float32:
  with np.errstate(over="ignore"):
    inner = hash32((np.asarray(idx, np.uint64) + 0x9E3779B9) & 0xFFFFFFFF)
    h = hash32(U32(seed) ^ inner)
  return np.float32(h >> U32(8)) * np.float32(2.0 ** -24)


class ReferenceEnv:
  """One episode at a time. `params` is env.EnvParams (any array type); `sizes` its EnvSizes."""

  def __init__(self, params: EnvParams, sizes: EnvSizes, auto_reset: bool = True):
    self.p = jax.tree.map(np.asarray, params)
    self.sizes = sizes
    self.auto_reset = auto_reset

  # --- episode ---------------------------------------------------------------------------------
  def reset(self, task: int, seed: int, episode: int = 0) -> dict:
    p, T = self.p, self.sizes.max_turns
    self.task, self.seed, self.episode = int(task), U32(seed), U32(episode)
    self.queried = [-1] * T
    self.values = [np.float32(0)] * T
    self.budget_left = np.float32(p.budget_N[task])
    self.turn = 0
    self.best = np.float32(np.inf)
    self.best_config = -1
    self.n_invalid = self.n_repeat = 0
    self.cost_spent = np.float32(0)
    return self.observe()

  def is_revealed(self, a: int) -> bool:
    p = self.p
    return bool(p.cand_cheap_NxA[self.task, a]) and bool(
        uniform_from(self.seed, a) < p.rho_N[self.task])

  def cost(self, a: int) -> np.float32:
    p, t = self.p, self.task
    f = p.cand_fid_NxA[t, a]
    return np.float32(np.float32(p.cost_F[f]) / np.float32(p.cost_F[p.target_N[t]]))

  def step(self, action: int):
    p, t, A = self.p, self.task, self.sizes.num_candidates
    in_range = 0 <= action < A
    a = min(max(int(action), 0), A - 1)
    f, c = int(p.cand_fid_NxA[t, a]), int(p.cand_config_NxA[t, a])
    target = int(p.target_N[t])
    cost = self.cost(a)
    invalid = (not in_range) or (not p.cand_exists_NxA[t, a]) or (
        cost > self.budget_left + np.float32(1e-6))
    seen = (a in self.queried) or self.is_revealed(a)
    repeat = (not invalid) and seen
    y = np.float32(p.values_FxC[f, c])
    is_target = (not invalid) and f == target
    if not invalid and not seen:
      slot = min(self.turn, self.sizes.max_turns - 1)
      self.queried[slot], self.values[slot] = a, y
    charge = np.float32(0) if invalid else cost
    self.budget_left = np.float32(max(self.budget_left - charge, np.float32(0)))
    self.cost_spent = np.float32(self.cost_spent + charge)
    if is_target and np.float32(p.sign * y) < self.best:
      self.best, self.best_config = np.float32(p.sign * y), c
    self.turn += 1
    self.n_invalid += int(invalid)
    self.n_repeat += int(repeat)

    terminated = bool(self.budget_left < np.float32(p.min_cost_N[t]) - np.float32(1e-6))
    truncated = bool(self.turn >= p.max_turns_N[t]) and not terminated
    done = terminated or truncated
    regret = self.regret()
    pct = (np.float32(p.pct_better_FxC[target, self.best_config]) if self.best_config >= 0
           else np.float32(1.0))
    reward = np.float32((1.0 - regret) if done else 0.0)
    if invalid:
      reward = np.float32(reward - p.invalid_penalty)
    if repeat:
      reward = np.float32(reward - p.repeat_penalty)
    info = dict(regret=regret, percentile=pct, recommendation=self.best_config,
                cost_spent=self.cost_spent, n_invalid=self.n_invalid, n_repeat=self.n_repeat,
                invalid=invalid, repeat=repeat, value=np.float32(np.nan) if invalid else y,
                is_target=is_target, done=done)
    if done and self.auto_reset:
      episode = U32(self.episode + U32(1))
      self.reset(t, hash32(self.seed ^ hash32(episode)), episode)
    return self.observe(), reward, terminated, truncated, info

  def regret(self) -> np.float32:
    p, t = self.p, self.task
    if not np.isfinite(self.best):
      return np.float32(1.0)
    s = np.float32(p.sign)
    star = np.float32(s * p.y_star_N[t])
    gap = np.float32(np.float32(s * p.y_worst_N[t]) - star)
    r = np.float32(np.float32(self.best - star) / np.float32(max(gap, np.float32(1e-12))))
    return np.float32(min(max(r, 0.0), 1.0))

  # --- what the agent sees ---------------------------------------------------------------------
  def norm(self, a: int, y) -> np.float32:
    p, t = self.p, self.task
    f = p.cand_fid_NxA[t, a]
    z = np.float32(-p.sign * np.float32(y - p.loc_NxF[t, f]) / p.scale_NxF[t, f])
    z = np.float32(np.sign(z) * np.log1p(np.abs(z)))  # symlog, as env.normalize
    return np.float32(min(max(z, -env_lib.NORM_CLIP), env_lib.NORM_CLIP))

  def observe(self) -> dict:
    norm = [self.norm(a, y) if a >= 0 else np.float32(0) for a, y in
            zip(self.queried, self.values)]
    return dict(task=self.task, seed=self.seed, queried_T=np.array(self.queried, np.int32),
                norm_T=np.array(norm, np.float32), budget_left=self.budget_left, turn=self.turn)

  def expand(self) -> dict:
    """The same per-candidate view as env.expand_obs, for the current episode."""
    p, t, A = self.p, self.task, self.sizes.num_candidates
    cfg, fid = p.cand_config_NxA[t], p.cand_fid_NxA[t]
    exists = p.cand_exists_NxA[t]
    known = np.zeros(A, bool)
    value = np.zeros(A, np.float32)
    for a in range(A):
      if a in self.queried:
        known[a], value[a] = True, self.norm(a, self.values[self.queried.index(a)])
      elif self.is_revealed(a):
        known[a], value[a] = True, self.norm(a, p.values_FxC[fid[a], cfg[a]])
    known &= exists
    cost = np.array([self.cost(a) for a in range(A)], np.float32)
    return dict(config_features_AxD=p.config_features_CxD[cfg],
                fidelity_features_AxG=p.fidelity_features_FxG[fid], cost_A=cost,
                is_target_A=(fid == p.target_N[t]) & exists, known_A=known,
                value_A=np.where(known, value, 0).astype(np.float32),
                action_mask_A=exists & (cost <= self.budget_left + np.float32(1e-6)),
                budget_left=self.budget_left, turn=self.turn)
