"""Why an RL run kept (or did not keep) a checkpoint: its paired validation gains, re-derivable.

  python -m autollmr.rl_audit --workdir=DIR              # from rl/val_<step>.npz (no replay)
  python -m autollmr.rl_audit --workdir=DIR --replay     # re-validate the checkpoints on disk
  python -m autollmr.rl_audit --workdir=DIR --headroom   # where RL could gain at all (headroom)

For each validated RL checkpoint: val_select, the paired gain over the starting policy, its
standard error clustered by landscape (gate.paired_gain, the rule's s.e.; runs older than that
rule get their tasks' landscapes from their config) and the unclustered one (each task and
sub-study draw an independent pair, the rule before 2026-11-24), and whether it passes
rl.select_z. --replay restores the checkpoints kept on disk (rl/ckpt: the last two; rl/best) and
plays the val bank again: for runs that predate rl/val_<step>.npz. The run's own config.json is
used (same val bank, same seed). --headroom plays the starting policy instead (`headroom`):
greedy against sampled episodes on RL's training tasks and on the gate's banks.
"""
from __future__ import annotations

import glob
import json
import os
import re

from absl import flags
from absl import logging
import jax
import ml_collections
import numpy as np

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import gate
from autollmr.agent import play as play_lib


def unclustered_gain(per_task: dict, start: dict) -> tuple[float, float]:
  """The pre-2026-11-24 s.e.: the val tasks and the draws as independent pairs, weighed 1/2
  (runs with a held bank, rl.holdout_configs: their clusters, equal weights)."""
  if "held" in per_task:
    d = gate.clusters(per_task)[0] - gate.clusters(start)[0]
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
  groups = [k for k in ("tasks", "sub") if k in per_task and k in start]
  gain, var = 0.0, 0.0
  for k in groups:
    u = np.asarray(per_task[k], np.float64) - np.asarray(start[k], np.float64)
    gain += u.mean() / len(groups)
    var += u.var(ddof=1) / len(u) / len(groups) ** 2 if len(u) > 1 else 0.0
  return float(gain), float(np.sqrt(var))


def gate_banks(config):
  """The run's gate banks (gate.gate_banks), rebuilt from its config."""
  return gate.gate_banks(config, *pipeline.build_tables(config))


def headroom(config, workdir, group: int = 8) -> dict[str, dict[str, tuple]]:
  """Where RL could gain, before spending its compute: per bank and table, the starting policy's
  (checkpoints.start_policy) mean regret played greedily (what is evaluated; seeds as
  sft.val_seeds), the
  mean of `group` sampled episodes per task (as RL's rollouts sample) and the mean over tasks of
  the best of those `group`. Why: GRPO learns only
  from the spread within a group, and a gain the gate can show is bounded by how far the greedy
  regret sits above zero on its banks. Banks: "train" (RL's training tasks, bank_lib.rl_bank, as
  they are: RL plays random sub-studies of them), "held", "val" and "val_sub" (the gate's,
  gate.gate_banks: the held training tasks, the val tasks, their sub-study draws). Tables weigh
  equally in "overall"."""
  tables, splits = pipeline.build_tables(config)  # as pipeline.run builds them
  val, held = gate.gate_banks(config, tables, splits)
  banks = dict(train=bank_lib.rl_bank(config, tables, splits), held=held, val=val,
               val_sub=val.get("sub") if val is not None else None)
  model = checkpoints.start_policy(config, workdir)
  seeds = np.arange(max(int(config.sft.val_seeds), 1))
  out = {}
  for name, bank in banks.items():
    if bank is None:
      continue
    n = len(bank["tasks"])
    play = lambda s, **kw: play_lib.play(model, bank["params"], bank["sizes"], np.repeat(
        np.arange(n), len(s)), np.tile(s, n), bank["family_N"], **kw)["regret"].reshape(n, -1)
    greedy_n = play(seeds).mean(1)
    sampled_nxG = play(np.arange(group), greedy=False, key=jax.random.key(int(config.seed)))
    table_n = np.array([t.table for t in bank["tasks"]])
    cols = (greedy_n, sampled_nxG.mean(1), sampled_nxG.min(1))
    rows = {k: tuple(float(c[table_n == k].mean()) for c in cols) for k in sorted(set(table_n))}
    rows["overall"] = tuple(float(np.mean([r[i] for r in rows.values()])) for i in range(3))
    out[name] = rows
  return out


def landscapes(config) -> dict:
  """Which val (and held) task is which, for runs whose val_<step>.npz predate "landscape" (no
  policy is played)."""
  val, held = gate_banks(config)
  tasks = (list(val["tasks"]) if val is not None else []) + (
      list(held["tasks"]) if held is not None else [])
  return dict(table=np.array([t.table for t in tasks]),
              landscape=np.array([f"{t.table}:{t.target}" for t in tasks]))


def replay(config, workdir) -> dict[int, dict]:
  """Per-task val regrets of every RL checkpoint on disk (rl/ckpt and rl/best), played again."""
  val, held = gate_banks(config)
  if val is None and held is None:
    raise errors.UserError(
        f"{workdir}: the run has no val tasks (config.json tasks), nothing to audit")
  out = {}
  for sub in ("ckpt", "best"):
    if not os.path.isdir(os.path.join(workdir, "rl", sub)):
      continue
    mngr = checkpoints.rl_manager(workdir, sub)
    steps = mngr.all_steps()
    mngr.close()
    for step in steps:
      if step in out:
        continue
      out[step] = gate.validate(config, checkpoints.restore_rl_policy(config, workdir, sub, step),
                                val, held)[1]
  return out


def audit(config, workdir, per_step: dict[int, dict]) -> list[dict]:
  start_path = os.path.join(workdir, "rl", "val_start.npz")
  if not os.path.exists(start_path):
    raise errors.UserError(f"{start_path}: no starting-policy val regrets (rl.select_on_val off, "
                           "or a run from before paired selection)")
  start = dict(np.load(start_path))
  if "landscape" not in start:  # an older run: cluster its tasks by landscape as the rule now does
    start |= landscapes(config)
  rows = []
  for step in sorted(per_step):
    per = per_step[step]
    gain, se = gate.paired_gain(per, start)
    _, se_old = unclustered_gain(per, start)
    sel = gate.select_value(per)
    rows.append(
        dict(
            step=step,
            val_select=sel,
            gain=gain,
            se=se,
            z=gain / se if se else float("nan"),
            se_unclustered=se_old,
            z_unclustered=gain / se_old if se_old else float("nan"),
            passes=bool(gain < -float(config.rl.select_z) * se)))
  return rows


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # jax's backend probing logs at INFO under absl
  workdir = os.path.expanduser(flags.FLAGS.workdir)
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise errors.UserError(f"{path}: not a workdir of autollmr.main")
  config = ml_collections.ConfigDict(json.load(open(path)))
  if flags.FLAGS.headroom:
    print(f"{workdir}: the starting policy's regret, greedy / mean of {flags.FLAGS.group} sampled "
          f"/ best of {flags.FLAGS.group} sampled (per task, then the table's mean)")
    for name, rows in headroom(config, workdir, flags.FLAGS.group).items():
      print(f"{name}:")
      for table, (g, s, b) in rows.items():
        print(f"  {table:16s} {g:.4f} / {s:.4f} / {b:.4f}")
    return
  if flags.FLAGS.replay:
    per_step = replay(config, workdir)
  else:
    files = glob.glob(os.path.join(workdir, "rl", "val_*.npz"))
    per_step = {int(m.group(1)): dict(np.load(f)) for f in files
                if (m := re.search(r"val_(\d+)\.npz$", f))}
    if not per_step:
      raise errors.UserError(f"{workdir}/rl has no val_<step>.npz (older run?): use --replay")
  best = checkpoints.read_best(workdir)
  print(f"{workdir}: select_z {config.rl.select_z}; kept step "
        f"{best['step'] if best else '?'} (0 = the starting policy)")
  print("step  val_select      gain   s.e. (clustered)      z   s.e. (unclustered)      z  passes")
  for r in audit(config, workdir, per_step):
    print(f"{r['step']:4d}  {r['val_select']:10.5f}  {r['gain']:+8.5f}  {r['se']:17.5f}  "
          f"{r['z']:+5.2f}  {r['se_unclustered']:19.5f}  {r['z_unclustered']:+5.2f}  "
          f"{'yes' if r['passes'] else 'no'}")


if __name__ == "__main__":  # flags defined here only: tests import this module beside others
  flags.DEFINE_string("workdir", None, "A workdir with an rl/ stage.", required=True)
  flags.DEFINE_bool("replay", False, "Re-validate the checkpoints on disk.")
  flags.DEFINE_bool("headroom", False, "Instead: the starting policy's greedy, sampled and "
                    "best-of-group regret on RL's training bank and the gate's banks.")
  flags.DEFINE_integer("group", 8, "Sampled episodes per task for --headroom.")
  cli.run(main)
