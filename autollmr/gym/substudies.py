"""Random sub-studies of a task or a table: the same landscape with configs (and visible
fidelities) dropped, y* recomputed. RL draws them (task randomization), validation and the
evaluation play fixed draws, and the RL gate holds out a fixed share of every table's configs.
"""
from __future__ import annotations

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from autollmr import errors
from autollmr.gym import env as env_lib
from autollmr.gym.env import EnvParams


def sub_studies(params: EnvParams, task_M, key, drop_configs: float, drop_fidelities: float):
  """M tasks, each a random sub-study of task task_M[m] (traced; jit-friendly).

  Task randomization for RL (rl.py) and validation draws (bank_lib.val_bank). Each config is
  dropped with probability `drop_configs` (at every fidelity: the study never ran it), each
  visible fidelity with probability `drop_fidelities` (its cheap rows absent). y* and y_worst are
  recomputed over the target configs left, so the optimum moves from draw to draw and a policy
  cannot memorize "config c is the answer on task t"; it has to read the evidence. A draw that
  leaves < 2 target configs or no cheap row falls back to dropping configs only, then to the
  task as it is. Returns params with M tasks (0..M-1); with nothing to drop, just those tasks.
  """
  for name, v in (("drop_configs", drop_configs), ("drop_fidelities", drop_fidelities)):
    if not 0.0 <= float(v) < 1.0:
      raise errors.UserError(f"{name} must be in [0, 1), got {v} (--config.rl.drop_configs, "
                             "--config.rl.drop_fidelities, --config.sft.val_drop_configs)")
  p = params.replace(**{k: getattr(params, k)[task_M] for k in env_lib.TASK_FIELDS})
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
  return with_candidates(p, exists2)


def with_candidates(p: EnvParams, exists_NxA) -> EnvParams:
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
    raise errors.UserError(
        f"--config.rl.holdout_configs must be in (0, 1) to hold configs out, got {frac}")
  C = params.values_FxC.shape[1]
  if held_C.shape != (C,):
    raise ValueError(f"config_holdout: held_C has shape {held_C.shape}, the config axis is {C}")
  in_held = held_C[params.cand_config_NxA]
  cheap, exists = params.cand_cheap_NxA, params.cand_exists_NxA
  part = exists & (cheap | (in_held if held else ~in_held))
  ok_N = jnp.sum(part & ~cheap, 1) >= 2
  return with_candidates(params, jnp.where(ok_N[:, None], part, exists)), ok_N


def sub_study_table(table, drop: float, seed: int):
  """A random sub-study of a table, for evaluation: each config dropped with probability `drop`
  at every fidelity (the study never ran it), as sub_studies does for training, but on the
  Table, so the peers and the agents play it unchanged and y* is the sub-study's best. Why: a
  family has one or two test targets, so a single pick decides its cell; N sub-studies of each
  target give N landscapes with the same scale shift, and a mean with a spread. Redrawn (at most
  100 times) until every fidelity that had two valid configs keeps two."""
  if not 0.0 < float(drop) < 1.0:
    raise errors.UserError(f"--config.eval.sub_drop must be in (0, 1), got {drop}")
  rng = np.random.default_rng(seed)
  had = table.valid_FxC.sum(1) >= 2
  for _ in range(100):
    valid = table.valid_FxC & (rng.random(table.num_configs) >= drop)[None]
    if np.all(valid.sum(1)[had] >= 2):
      return table.with_changes(valid_FxC=valid, flagged_FxC=table.flagged_FxC & valid)
  raise errors.UserError(
      f"table {table.name!r}: no sub-study with drop {drop} keeps two configs per "
      "fidelity (lower --config.eval.sub_drop)")


def sparse_table(table, visible, n: int, seed: int):
  """The `sparse` evidence regime of one target: each visible fidelity keeps at most n of its
  valid results (a random design drawn from `seed`, the same for every method); the others are
  not run (invalid), so a method sees what a lab with a small sweep has. Other fidelities are
  untouched (the target keeps every config it is scored on)."""
  rng = np.random.default_rng(seed)
  valid = table.valid_FxC.copy()
  for f in (table.fidelity_index(v) for v in visible):
    have = np.flatnonzero(valid[f])
    if have.size > n:
      valid[f] = False
      valid[f, rng.choice(have, n, replace=False)] = True
  return table.with_changes(valid_FxC=valid, flagged_FxC=table.flagged_FxC & valid,
                            values_FxC=np.where(valid, table.values_FxC, np.nan).astype(
                                np.float32))
