"""The banks: every table's tasks stacked into one EnvParams, so one compiled program serves all.

train_bank (the teacher's and SFT's training tasks, with sub-study copies per ensemble member),
val_bank (the val tasks and fixed sub-studies of them), rl_bank (RL's training tasks without the
held configs' target results) and held_bank (the training tasks restricted to the held configs:
the RL gate). Only `tasks.training_table` views are ever built here, so test targets cannot reach
training.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from autollmr import errors
from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import substudies
from autollmr.gym import table as table_lib
from autollmr.gym import tasks as tasks_lib


def union_params(parts, d_max: int, g_max: int, invalid_penalty: float,
                 repeat_penalty: float) -> env_lib.EnvParams:
  """Stacks EnvParams of different tables (same padded A and T) into one.

  Fidelity and config indices are offset block-wise; a 'max' table's values (and its y*, y_worst
  and normalisation locations) are negated so one sign (+1) serves all, which leaves every
  normalized outcome, regret and percentile unchanged. One compiled program then serves all.
  """
  F = sum(p.values_FxC.shape[0] for p in parts)
  C = sum(p.values_FxC.shape[1] for p in parts)
  values = np.full((F, C), np.nan, np.float32)
  pct = np.zeros((F, C), np.float32)
  cfeat = np.zeros((C, d_max), np.float32)
  ffeat = np.zeros((F, g_max), np.float32)
  cols = {k: [] for k in env_lib.TASK_FIELDS}
  cost = []
  fo = co = 0
  for p in parts:
    p = jax.tree.map(np.asarray, p)
    f, c = p.values_FxC.shape
    d, g = p.config_features_CxD.shape[1], p.fidelity_features_FxG.shape[1]
    if d > d_max or g > g_max:
      raise errors.UserError(
          f"a table has {d} config / {g} fidelity features; the policy takes at most "
          f"{d_max} / {g_max} (raise model.max_config_features / "
          "model.max_fidelity_features)")
    s = float(p.sign)
    values[fo:fo + f, co:co + c] = s * p.values_FxC
    pct[fo:fo + f, co:co + c] = p.pct_better_FxC
    cfeat[co:co + c, :d] = p.config_features_CxD
    ffeat[fo:fo + f, :g] = p.fidelity_features_FxG
    cost.append(p.cost_F)
    n = p.target_N.shape[0]
    loc = np.zeros((n, F), np.float32)
    scale = np.ones((n, F), np.float32)
    loc[:, fo:fo + f], scale[:, fo:fo + f] = s * p.loc_NxF, p.scale_NxF
    for k, v in dict(cand_config_NxA=p.cand_config_NxA + co, cand_fid_NxA=p.cand_fid_NxA + fo,
                     cand_exists_NxA=p.cand_exists_NxA, cand_cheap_NxA=p.cand_cheap_NxA,
                     target_N=p.target_N + fo, y_star_N=s * p.y_star_N,
                     y_worst_N=s * p.y_worst_N, loc_NxF=loc, scale_NxF=scale,
                     min_cost_N=p.min_cost_N, rho_N=p.rho_N, budget_N=p.budget_N,
                     max_turns_N=p.max_turns_N).items():
      cols[k].append(v)
    fo, co = fo + f, co + c
  cat = {k: jnp.asarray(np.concatenate(v)) for k, v in cols.items()}
  return env_lib.EnvParams(
      values_FxC=jnp.asarray(values), pct_better_FxC=jnp.asarray(pct),
      config_features_CxD=jnp.asarray(cfeat), fidelity_features_FxG=jnp.asarray(ffeat),
      cost_F=jnp.asarray(np.concatenate(cost)), sign=jnp.float32(1.0),
      invalid_penalty=jnp.float32(invalid_penalty), repeat_penalty=jnp.float32(repeat_penalty),
      **cat)


def build_bank(config, tables, splits, split: str, max_cheap_rows: int,
               max_target_configs: int) -> dict:
  """One EnvParams over the `split` ("train" or "val") tasks of every table, built from each
  table's `training_table` view (train + val fidelities only). Returns params, sizes, family_N,
  names (one per task) and tasks."""
  built = []
  for name in sorted(splits):
    s = splits[name]
    if not s[split]:
      continue
    view = tasks_lib.training_table(tables[name], s["train"] + s["val"])
    built.append((view, s[split]))
  if not built:
    return None
  make = lambda v, ts, **kw: build.make_params(
      v, ts, max_cheap_rows=max_cheap_rows, max_target_configs=max_target_configs,
      invalid_penalty=config.env.invalid_penalty, repeat_penalty=config.env.repeat_penalty, **kw)
  sizes = [make(v, ts)[1] for v, ts in built]
  A = max(s.num_candidates for s in sizes)
  T = max(s.max_turns for s in sizes)
  parts = [make(v, ts, pad_to=A, pad_turns_to=T)[0] for v, ts in built]
  params = union_params(parts, config.model.max_config_features,
                        config.model.max_fidelity_features, config.env.invalid_penalty,
                        config.env.repeat_penalty)
  all_tasks = [t for _, ts in built for t in ts]
  family = [table_lib.family_id(v.family) for v, ts in built for _ in ts]
  return dict(params=params, sizes=env_lib.EnvSizes(A, T), tasks=all_tasks,
              names=[t.name for t in all_tasks], family_N=jnp.asarray(family, jnp.int32),
              table_sizes=[(v.name, p.values_FxC.shape[1]) for (v, _), p in zip(built, parts)])


def val_bank(config, tables, splits) -> dict | None:
  """The val tasks at eval size; with `sft.val_draws` = n > 0 also n random sub-studies of each
  (substudies.sub_studies, drop `sft.val_drop_configs`, fixed key) under "sub": a validation signal
  with
  many optima instead of a handful, which the few val tasks alone saturate (~0.003)."""
  val = build_bank(config, tables, splits, "val", config.env.max_cheap_rows,
                   config.env.max_target_configs)
  n = int(config.sft.val_draws)
  if val is None or n <= 0:
    return val
  task_M = jnp.tile(jnp.arange(len(val["tasks"]), dtype=jnp.int32), n)
  sub = substudies.sub_studies(val["params"], task_M, jax.random.key(20261123),
                               float(config.sft.val_drop_configs), 0.0)
  val["sub"] = dict(params=sub, sizes=val["sizes"], family_N=val["family_N"][task_M],
                    tasks=[val["tasks"][i] for i in np.asarray(task_M)])
  return val


def rl_bank(config, tables, splits) -> dict | None:
  """The training tasks RL draws its episodes from (each as random sub-studies, rl.drop_*):
  training-sized candidate sets (sim.max_*), and under
  `rl.holdout_configs` without the target results of the held configs (substudies.config_holdout:
  those are for the gate, held_bank)."""
  bank = build_bank(config, tables, splits, "train", config.sim.max_cheap_rows,
                    config.sim.max_target_configs)
  if bank is not None and float(config.rl.holdout_configs):
    frac = float(config.rl.holdout_configs)
    bank["params"] = substudies.config_holdout(
        bank["params"], frac, False, substudies.held_configs(bank["table_sizes"], frac))[0]
  return bank


def held_bank(config, tables, splits) -> dict | None:
  """The training tasks at eval size, each with only its held target configs
  (substudies.config_holdout, `rl.holdout_configs`): the share of every training task RL never sees
  a
  target result of, on which its checkpoints are gated (rl.py) beside the val tasks. Why: the val
  tasks cover two families (the ones with >= 2 training levels); these cover every family RL
  trains on. Tasks with < 2 held target configs are left out."""
  bank = build_bank(config, tables, splits, "train", config.env.max_cheap_rows,
                    config.env.max_target_configs)
  if bank is None:
    return None
  frac = float(config.rl.holdout_configs)
  params, ok_N = substudies.config_holdout(bank["params"], frac, True,
                                           substudies.held_configs(bank["table_sizes"], frac))
  keep = np.flatnonzero(np.asarray(ok_N))
  if not len(keep):
    return None
  params = substudies.sub_studies(params, jnp.asarray(keep, jnp.int32), jax.random.key(0), 0.0, 0.0)
  return dict(params=params, sizes=bank["sizes"], tasks=[bank["tasks"][i] for i in keep],
              names=[bank["names"][i] for i in keep], family_N=bank["family_N"][keep])


def data_streams(config) -> int:
  """How many separate teacher datasets SFT reads: one per ensemble member under
  `sim.member_draws`, else one that every member shares."""
  if not config.sim.member_draws:
    return 1
  return max(1, int(config.model.members))


def bank_copies(config) -> int:
  """Copies of the training tasks in train_bank: copy 0, then draws - 1 sub-studies per stream."""
  return 1 + (max(1, int(config.sim.draws)) - 1) * data_streams(config)


def stream_copies(config, m: int) -> list[int]:
  """The bank copies stream (member) m is simulated on: copy 0 and its own draws."""
  d = max(1, int(config.sim.draws)) - 1
  return [0] + list(range(1 + m * d, 1 + (m + 1) * d))


def train_bank(config, tables, splits):
  """The training tasks at training size (simulate, sft). With `sim.draws` = S > 1 the bank holds
  S copies of them: copy 0 as they are, copies 1..S-1 random sub-studies (substudies.sub_studies
  with
  rl.drop_configs / rl.drop_fidelities, fixed key), so the teacher is distilled on S landscapes
  per training task instead of one (why: 65 training tasks are 13 landscapes, which a policy can
  learn by heart). Under `sim.member_draws` each of the M ensemble members gets its own S - 1
  draws (1 + M (S - 1) copies, `stream_copies`). Task names get a "#copy" suffix."""
  bank = build_bank(config, tables, splits, "train", config.sim.max_cheap_rows,
                    config.sim.max_target_configs)
  S = bank_copies(config)
  if bank is None or S <= 1:
    return bank
  n = len(bank["tasks"])
  task_M = jnp.tile(jnp.arange(n, dtype=jnp.int32), S)
  p = bank["params"]
  sub = substudies.sub_studies(p, task_M, jax.random.key(int(config.seed) + 7919),
                               float(config.rl.drop_configs), float(config.rl.drop_fidelities))
  keep = lambda x, orig: x.at[:n].set(orig)  # copy 0: the tasks themselves
  sub = sub.replace(cand_exists_NxA=keep(sub.cand_exists_NxA, p.cand_exists_NxA),
                    y_star_N=keep(sub.y_star_N, p.y_star_N),
                    y_worst_N=keep(sub.y_worst_N, p.y_worst_N))
  return dict(params=sub, sizes=bank["sizes"], tasks=bank["tasks"] * S,
              names=[f"{nm}#{d}" for d in range(S) for nm in bank["names"]],
              family_N=jnp.tile(bank["family_N"], S))
