"""The simulate stage: teacher episodes on the TRAINING tasks (teacher.py), stored as ArrayRecord.

Output, in WORKDIR/sim/:
  steps.array_record  one record per decision (msgpack: task, seed, Obs fields, action, regret,
                      stream: the ensemble member it was simulated for, sim.member_draws)
  summary.json        sizes, mean teacher regret, the bank's task names and the seed (SFT checks
                      both), the record range [start, end) of each data stream (sim.member_draws)
"""
from __future__ import annotations

import json
import os
import time

from array_record.python.array_record_module import ArrayRecordWriter
from flax import serialization
import jax
import numpy as np

from autollmr import errors
from autollmr.agent import bank as bank_lib
from autollmr.agent import teacher

RECORDS = "steps.array_record"


def encode_step(rec: dict) -> bytes:
  return serialization.msgpack_serialize(rec)


def decode_step(b: bytes) -> dict:
  return serialization.msgpack_restore(b)


def run(config, workdir, tables, splits) -> dict:
  out_dir = os.path.join(workdir, "sim")
  path = os.path.join(out_dir, RECORDS)
  t0 = time.time()
  bank = bank_lib.train_bank(config, tables, splits)
  if bank is None:
    raise errors.UserError("[simulate] no training tasks: every table lacks a train split")
  n_tasks = len(bank["tasks"])
  # sim.seeds episodes per training task and stream (member under sim.member_draws), shared
  # out over the stream's sim.draws copies
  M, draws = bank_lib.data_streams(config), max(1, int(config.sim.draws))
  n = n_tasks // bank_lib.bank_copies(config)  # training tasks per copy
  seeds = np.arange(max(1, int(config.sim.seeds) // draws))
  pairs_task, pairs_seed, ranges = [], [], []
  for m in range(M):  # records are written stream by stream: SFT slices them (summary "streams")
    tasks_m = np.concatenate(
        [np.arange(c * n, (c + 1) * n) for c in bank_lib.stream_copies(config, m)])
    pairs_task.append(np.repeat(tasks_m, len(seeds)))
    pairs_seed.append(np.tile(seeds + m * len(seeds), len(tasks_m)) + 1000 * int(config.seed))
  pairs_task, pairs_seed = np.concatenate(pairs_task), np.concatenate(pairs_seed)
  out = teacher.run_teacher(config, bank, pairs_task, pairs_seed, jax.random.key(int(config.seed)))
  stream_P = np.repeat(np.arange(M), len(pairs_task) // M)
  os.makedirs(out_dir, exist_ok=True)
  n_steps = 0
  tmp = path + ".tmp"
  if jax.process_index() == 0:
    writer = ArrayRecordWriter(tmp, "group_size:1")
    for p in range(len(pairs_task)):
      if p == 0 or stream_P[p] != stream_P[p - 1]:
        ranges.append([n_steps, n_steps])
      for t in np.flatnonzero(out["active"][p]):
        writer.write(encode_step(dict(
            task=np.int32(pairs_task[p]), seed=np.uint32(pairs_seed[p]),
            queried_T=out["queried_T"][p, t], norm_T=out["norm_T"][p, t],
            budget_left=np.float32(out["budget_left"][p, t]), turn=np.int32(out["turn"][p, t]),
            action=np.int32(out["action"][p, t]), regret=np.float32(out["regret_P"][p]),
            stream=np.int32(stream_P[p]))))
        n_steps += 1
        ranges[-1][1] = n_steps
    writer.close()
    os.replace(tmp, path)  # atomic: a half-written file never looks finished
  per_table = {}
  for i, task in enumerate(bank["tasks"]):
    per_table.setdefault(task.table, []).append(out["regret_P"][pairs_task == i].mean())
  summary = dict(
      n_tasks=n_tasks, n_episodes=int(len(pairs_task)), n_steps=n_steps,
      rollouts=int(config.sim.rollouts),
      kernels=teacher.strategies(config)[0].tolist(), modes=teacher.strategies(config)[1].tolist(),
      ridges=[list(r) for r in teacher.teacher_ridges(config)],
      bytes=os.path.getsize(path) if os.path.exists(path) else 0,
      teacher_regret_mean=float(out["regret_P"].mean()),
      rollout_regret_mean=float(out["regret_PxN"].mean()),
      teacher_regret_per_table={k: float(np.mean(v)) for k, v in per_table.items()},
      seconds=time.time() - t0, names=bank["names"], streams=ranges, seed=int(config.seed),
      sizes=dict(A=bank["sizes"].num_candidates, T=bank["sizes"].max_turns))
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
  return summary
