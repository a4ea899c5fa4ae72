"""Validation of a policy and the gate an RL checkpoint must pass to replace the distilled one.

val_regret: greedy regret on a val bank (per table, per task); the distilled policy's final
validation is saved for RL's step 0 (save_final_val / final_val). An RL checkpoint is adopted only
if its paired gain in `val_select` over the starting policy exceeds rl.select_z standard errors
clustered by landscape (paired_gain), on the val tasks, their sub-studies and, under
rl.holdout_configs, every training table's held configs (gate_banks).
"""
from __future__ import annotations

import json
import os

from flax import nnx
import numpy as np

from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.agent import play as play_lib


def val_regret(config, model, val, by_table: dict | None = None,
               per_task: dict | None = None) -> float | None:
  """Mean greedy regret on the val tasks (eval-sized candidate sets); None without val tasks.
  `by_table`, if given, receives the mean per table (model selection reads both) and, where the
  bank has sub-study draws (bank_lib.val_bank), their mean under "sub_studies". `per_task`, if
  given, receives each val task's regret (mean over its seeds) under "tasks" and each draw's
  under "sub" (for paired comparisons of two policies, rl.select_z)."""
  if val is None or int(config.sft.val_seeds) <= 0:
    return None
  if "sub" in val and (by_table is not None or per_task is not None):
    sub = {} if per_task is not None else None
    v_sub = val_regret(config, model, val["sub"], None, sub)
    if by_table is not None:
      by_table["sub_studies"] = v_sub
    if per_task is not None:
      per_task["sub"] = sub["tasks"]
  n = len(val["tasks"])
  seeds = np.arange(int(config.sft.val_seeds))
  graphdef, state = nnx.split(model)
  model = nnx.merge(graphdef, sharding.host_local(state))  # played locally, on every host
  out = play_lib.play(model, val["params"], val["sizes"], np.repeat(np.arange(n), len(seeds)),
                      np.tile(seeds, n), val["family_N"])
  regret_E = np.asarray(out["regret"])
  if per_task is not None:
    per_task["tasks"] = regret_E.reshape(n, len(seeds)).mean(1)
  if by_table is not None:
    table_E = np.repeat([t.table for t in val["tasks"]], len(seeds))
    by_table.update({k: float(regret_E[table_E == k].mean()) for k in sorted(set(table_E))})
  return float(regret_E.mean())


FINAL_VAL = "val_final.npz"


def val_key(config, val) -> str:
  """What the val episodes depend on besides the policy; a saved result is reused only if equal."""
  names = [t.name for t in val["tasks"]] + [t.name for t in val.get("sub", {}).get("tasks", [])]
  s, e = config.sft, config.env
  return json.dumps([names, int(s.val_seeds), int(s.val_draws), float(s.val_drop_configs),
                     int(e.max_cheap_rows), int(e.max_target_configs)])


def save_final_val(config, workdir, val, step, v, per, per_task):
  """The final policy's val regrets (per task and draw), for RL's starting point: the same
  greedy episodes of the same parameters, ~30 s with 3 members on 2 CPU cores."""
  if not sharding.is_main():
    return
  meta = json.dumps(dict(key=val_key(config, val), step=int(step), val_regret=float(v),
                         val_by_table=per))
  np.savez(os.path.join(workdir, "sft", FINAL_VAL), meta=np.array(meta), **per_task)


def final_val(config, workdir, val) -> tuple[float, dict, dict] | None:
  """(val_regret, val_by_table, per_task) of the distilled policy as sft.train validated it after
  its last step, or None where there is no such record or it was made under other val settings."""
  path = os.path.join(workdir, "sft", FINAL_VAL)
  if val is None or not os.path.exists(path):
    return None
  with np.load(path) as f:
    saved = {k: f[k] for k in f.files}
  meta = json.loads(str(saved.pop("meta")))
  if meta["key"] != val_key(config, val) or meta["step"] != int(config.sft.steps):
    return None
  return meta["val_regret"], meta["val_by_table"], saved


def gate_banks(config, tables, splits):
  """The banks RL checkpoints are validated on: the val tasks (bank_lib.val_bank, with their
  sub-study draws) and, under `rl.holdout_configs`, the training tasks restricted to their held
  target configs (bank_lib.held_bank; else None)."""
  val = bank_lib.val_bank(config, tables, splits)
  held = (bank_lib.held_bank(config, tables, splits)
          if float(config.rl.holdout_configs) else None)
  return val, held


def validate(config, model, val, held=None) -> tuple[dict, dict]:
  """val_regret (the val tasks), val_by_table, and val_select, the early-stopping criterion: the
  mean of the val tasks' regret and their sub-studies' (sft.val_draws) where there are draws (the
  few val tasks alone move in steps of one decision), else the val tasks' regret. Also the
  per-task regrets behind val_select (val_regret's per_task) for paired_gain, with each
  task's table and landscape. With a held bank (rl.holdout_configs) val_select is select_value
  over the val and the held training tasks, the tables weighing equally (as in the leaderboard)."""
  per, per_task = {}, {}
  v = val_regret(config, model, val, per, per_task) if val is not None else None
  row = val_row(v, per)
  tasks = list(val["tasks"]) if "tasks" in per_task else []
  if held is not None and int(config.sft.val_seeds) > 0:
    h = {}
    per["held"] = val_regret(config, model, held, None, h)
    per_task["held"] = h["tasks"]
    tasks += list(held["tasks"])
  if tasks:  # the budgets K = 1..5 of one target share its landscape: one cluster (paired_gain)
    per_task["table"] = np.array([t.table for t in tasks])
    per_task["landscape"] = np.array([f"{t.table}:{t.target}" for t in tasks])
  if "held" in per_task:
    row["val_select"] = select_value(per_task)
  return row, per_task


def val_row(v, per):
  sel = v if v is None or "sub_studies" not in per else 0.5 * (v + per["sub_studies"])
  return dict(val_regret=v, val_by_table=per, val_select=sel)


def clusters(per_task: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(value_n, weight_n, cluster_n) of the tasks behind val_select. A val task's value is 1/2 its
  regret + 1/2 the mean over its sub-study draws (entries i, i + n, i + 2n, ... of "sub",
  bank_lib.val_bank); a held training task's (rl.holdout_configs) its regret. Weights: with held
  tasks the tables ("table", one per task) weigh equally, else every task does. Clusters: the
  tasks of one landscape ("landscape": table and target; its budgets K = 1..5 share the
  landscape and the policy's first picks, so they move together), or each task its own where
  the record predates "landscape"."""
  parts = []
  if "tasks" in per_task:
    c = np.asarray(per_task["tasks"], np.float64)
    n = len(c)
    if "sub" in per_task:
      s = np.asarray(per_task["sub"], np.float64)
      if len(s) % n:
        raise ValueError(f"paired_gain: {len(s)} sub-study draws for {n} val tasks")
      c = 0.5 * c + 0.5 * s.reshape(-1, n).mean(0)
    parts.append(c)
  if "held" in per_task:
    parts.append(np.asarray(per_task["held"], np.float64))
  c_n = np.concatenate(parts) if parts else np.zeros(0)
  group_n = (np.unique(np.asarray(per_task["landscape"]), return_inverse=True)[1]
             if "landscape" in per_task else np.arange(len(c_n)))
  if "held" in per_task:
    _, inv, counts = np.unique(np.asarray(per_task["table"]), return_inverse=True,
                               return_counts=True)
    return c_n, 1.0 / (len(counts) * counts[inv]), group_n
  return c_n, np.full(len(c_n), 1.0 / max(len(c_n), 1)), group_n


def select_value(per_task: dict) -> float:
  """val_select from per-task regrets (the weighted mean of the clusters)."""
  c_n, w_n, _ = clusters(per_task)
  return float((c_n * w_n).sum())


def paired_gain(per_task: dict, start: dict) -> tuple[float, float]:
  """val_select(policy) - val_select(start) and its standard error, pairing each task (a val task
  with its sub-study draws, or a held training task; `clusters`) with itself. The s.e. is
  cluster-robust over the G landscapes: with D_g = sum of w_i d_i over cluster g and W_g its
  weight, sqrt(G / (G - 1) sum_g (D_g - W_g gain)^2) (one task per cluster and equal weights:
  std(d) / sqrt(n)); not that of independent tasks or draws, too small when the draws of a task,
  or the budgets of a landscape, move together. Why the test: a checkpoint is adopted only if
  its gain exceeds rl.select_z standard errors (on validation, gains of 2-4% in val_select were
  noise that did not carry over to held-out sub-studies)."""
  keys = [k for k in ("tasks", "sub", "held") if k in per_task and k in start]
  if not keys:
    return 0.0, 0.0
  # which task is which is the bank's, the same for both (a start saved by final_val has none)
  meta = {k: per_task[k] if k in per_task else start[k] for k in ("table", "landscape")
          if k in per_task or k in start}
  c1, w_n, g_n = clusters({k: per_task[k] for k in keys} | meta)
  c0, _, _ = clusters({k: start[k] for k in keys} | meta)
  if c1.shape != c0.shape:
    raise ValueError(f"paired_gain: {len(c1)} tasks against {len(c0)} of the start")
  d_n = c1 - c0
  gain = float((w_n * d_n).sum())
  G = int(g_n.max()) + 1 if len(g_n) else 0
  D_g = np.bincount(g_n, w_n * d_n, G)
  W_g = np.bincount(g_n, w_n, G)
  se = float(np.sqrt(G / (G - 1) * ((D_g - W_g * gain) ** 2).sum())) if G > 1 else 0.0
  return gain, se
