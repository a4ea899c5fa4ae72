"""Drawn landscapes as env tasks on device: one EnvParams (a single task) per prior draw, pure JAX.

Why: RL can then play a new landscape for every episode group, as many as training asks for, with
no host round trip (training on a prior, as PFNs4BO / ifBO do). A drawn task is what the host
makes of a drawn table (`prior.curate` + `build.make_params`): a target drawn among the fidelities
above the lowest, every cheaper fidelity visible, a budget and a rho drawn from the given lists,
max_turns = budget + extra turns (online_extra_turns below rho 1), the target normalized like the
nearest visible fidelity. One layout difference: candidate slot f * C + c is the cheap result
(f, c) and slot (F - 1) * C + c the target config c, absent where there is no run (the host packs
them densely); the policy reads candidates as a set. tests/gym/test_prior_env.py checks a drawn
task against the host build of the same table.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from autollmr.gym import prior
from autollmr.gym import table as table_lib
from autollmr.gym.env import EnvParams
from autollmr.gym.env import EnvSizes


@functools.partial(jax.jit, static_argnames=("kind", "budgets", "rhos", "extra_turns",
                                             "online_extra_turns", "d_max", "g_max", "sizes"))
def task_of(d: prior.Draw, key, kind: str, budgets: tuple, rhos: tuple, extra_turns: int,
            online_extra_turns: int, d_max: int, g_max: int, invalid_penalty=0.1,
            repeat_penalty=0.0, sizes: prior.PriorSizes = prior.PriorSizes()):
  """(EnvParams with one task, family id) of one draw `d`; key draws the target, budget, rho."""
  F, C = sizes.fidelities, sizes.configs
  k_t, k_b, k_r = jax.random.split(key, 3)
  t = jax.random.randint(k_t, (), 1, d.n_fid)  # every level above the lowest is a target
  budget = jax.random.choice(k_b, jnp.asarray(budgets, jnp.float32))
  rho = jax.random.choice(k_r, jnp.asarray(rhos, jnp.float32))
  max_turns = budget.astype(jnp.int32) + jnp.where(rho >= 1.0, extra_turns, online_extra_turns)
  valid_FxC, values_FxC = d.valid_FxC, d.values_FxC
  f_F = jnp.arange(F)

  # candidates: the cheap block (fidelities 0..F-2, visible below t), then the target's configs
  cheap_fid = jnp.repeat(jnp.arange(F - 1, dtype=jnp.int32), C)
  cheap_cfg = jnp.tile(jnp.arange(C, dtype=jnp.int32), F - 1)
  cheap_ok = valid_FxC[cheap_fid, cheap_cfg] & (cheap_fid < t)
  cand_fid = jnp.concatenate([jnp.where(cheap_ok, cheap_fid, t), jnp.full((C,), t, jnp.int32)])
  cand_cfg = jnp.concatenate([cheap_cfg, jnp.arange(C, dtype=jnp.int32)])
  exists = jnp.concatenate([cheap_ok, valid_FxC[t]])
  cheap = jnp.concatenate([jnp.ones(((F - 1) * C,), bool), jnp.zeros((C,), bool)]) & exists

  # normalization: each visible fidelity's median and IQR; the target like the nearest visible
  q_3xF = jnp.nanpercentile(values_FxC, jnp.asarray([25.0, 50.0, 75.0]), axis=1)
  vis_F = f_F < t
  loc_F = jnp.where(vis_F, q_3xF[1], 0.0)
  scale_F = jnp.where(vis_F, jnp.maximum(q_3xF[2] - q_3xF[0], 1e-6), 1.0)
  loc_F = loc_F.at[t].set(loc_F[t - 1])
  scale_F = scale_F.at[t].set(scale_F[t - 1])
  # pct_better[f, c]: the share of f's runs strictly better (make_params: 1 for no run at f)
  better_FxCxC = valid_FxC[:, None, :] & (values_FxC[:, None, :] < values_FxC[:, :, None])
  n_F = jnp.maximum(valid_FxC.sum(1), 1)
  pct_FxC = jnp.where(valid_FxC, better_FxCxC.sum(2) / n_F[:, None], 1.0)
  pct_FxC = jnp.where(valid_FxC.any(1, keepdims=True), pct_FxC, 0.0)

  pad = lambda x, w: jnp.pad(x, ((0, 0), (0, w - x.shape[1])))
  cost = d.cost_F.astype(jnp.float32)
  params = EnvParams(
      values_FxC=values_FxC.astype(jnp.float32), pct_better_FxC=pct_FxC.astype(jnp.float32),
      config_features_CxD=pad(d.config_features_CxD, d_max).astype(jnp.float32),
      fidelity_features_FxG=pad(d.fidelity_features_FxG, g_max).astype(jnp.float32),
      cost_F=cost, sign=jnp.float32(1.0),
      cand_config_NxA=cand_cfg[None], cand_fid_NxA=cand_fid[None], cand_exists_NxA=exists[None],
      cand_cheap_NxA=cheap[None], target_N=t[None].astype(jnp.int32),
      y_star_N=jnp.nanmin(values_FxC[t])[None], y_worst_N=jnp.nanmax(values_FxC[t])[None],
      loc_NxF=loc_F[None].astype(jnp.float32), scale_NxF=scale_F[None].astype(jnp.float32),
      min_cost_N=(cost[0] / cost[t])[None], rho_N=rho[None], budget_N=budget[None],
      max_turns_N=max_turns[None], invalid_penalty=jnp.float32(invalid_penalty),
      repeat_penalty=jnp.float32(repeat_penalty))
  return params, jnp.int32(table_lib.family_id(kind))


def env_sizes(budgets: tuple, online_extra_turns: int,
              sizes: prior.PriorSizes = prior.PriorSizes()) -> EnvSizes:
  """The static sizes of every drawn task: all (fidelity, config) slots, the longest episode."""
  return EnvSizes(num_candidates=sizes.fidelities * sizes.configs,
                  max_turns=int(max(budgets)) + int(online_extra_turns))


def draw_tasks(key, n: int, kinds: tuple, budgets: tuple, rhos: tuple, extra_turns: int,
               online_extra_turns: int, d_max: int, g_max: int, invalid_penalty=0.1,
               repeat_penalty=0.0, sizes: prior.PriorSizes = prior.PriorSizes()):
  """n drawn tasks, the kinds in turn (n // len(kinds) each, the first n % len(kinds) kinds one
  more): (EnvParams whose every leaf has a leading axis n, one task each; family_n). Traceable."""
  parts = []
  for i, kind in enumerate(kinds):
    m = n // len(kinds) + (i < n % len(kinds))
    if m == 0:
      continue
    k_draw, k_task = jax.random.split(jax.random.fold_in(key, i))
    ds = prior.draws(k_draw, kind, m, sizes)
    parts.append(jax.vmap(lambda dd, k, kind=kind: task_of(
        dd, k, kind, budgets, rhos, extra_turns, online_extra_turns, d_max, g_max,
        invalid_penalty, repeat_penalty, sizes))(ds, jax.random.split(k_task, m)))
  return jax.tree.map(lambda *x: jnp.concatenate(x), *parts)
