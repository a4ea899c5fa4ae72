"""Playing the peers on test tasks: every peer, task, budget and seed, as records.

Peers are Python ask/tell policies stepped through gym.reference.ReferenceEnv one decision at a
time; agents play the same tasks, budgets and seeds in the jitted env (evaluation/agents.py), and
the env decides cost, budget and the recommendation for both. A record is one episode.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import sys

from tqdm import tqdm

from autollmr.gym import build
from autollmr.gym.reference import ReferenceEnv
from autollmr.peers import base as peer_base
from autollmr.peers import episode
from autollmr.peers import learned
from autollmr.peers import registry


def progress(total, desc):
  return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
              disable=os.environ.get("AUTOLLMR_NO_PROGRESS") == "1")


def online_copy(task):
  """The same test task in the online mode: nothing revealed, cheap runs must be bought."""
  return dataclasses.replace(task, rho=0.0, max_turns=int(task.budget) + 8)


def build_eval_params(table, tasks, cfg):
  """EnvParams of the tasks on the table. Under `eval.sub_studies` the candidate axis is padded to
  a multiple of 64, so the sub-studies of a table share one compiled agent rollout."""
  return build.make_params(
      table,
      tasks,
      max_cheap_rows=cfg.env.max_cheap_rows,
      max_target_configs=cfg.env.max_target_configs,
      invalid_penalty=cfg.env.invalid_penalty,
      repeat_penalty=cfg.env.repeat_penalty,
      pad_multiple=64 if int(cfg.eval.sub_studies) > 0 else 1)


def run_peers(table, tasks, methods, seeds, cfg, bar=None) -> list[dict]:
  """Plays each peer on each task (online peers on the rho = 0 copy) for each seed. A BUDGET_FREE
  peer plays each task family once at its largest budget and the smaller budgets are read off
  that episode's prefix where it is a legal episode of the smaller budget (else played)."""
  methods = [m for m in methods if registry.applicable(m, table)]
  online = [m for m in methods if m in registry.ONLINE_PEERS]
  all_tasks = list(tasks) + ([online_copy(t) for t in tasks] if online else [])
  params, sizes = build_eval_params(table, all_tasks, cfg)
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  # Tasks that differ only in budget (and turns), largest budget first.
  order = sorted(range(len(all_tasks)), key=lambda i: -all_tasks[i].budget)
  longest = {}  # (method, task without budget, seed) -> the largest-budget episode played
  records = []
  for i in order:
    task = all_tasks[i]
    ctx = peer_base.make_context(table, task, params, i)
    is_online = task.rho == 0.0 and i >= len(tasks)
    stem = (task.target, task.visible, task.rho, task.split, is_online)
    for m in methods:
      if (m in registry.ONLINE_PEERS) != is_online:
        continue
      for seed in seeds:
        key = (m, stem, int(seed))
        out = None
        if m in registry.BUDGET_FREE and key in longest:
          out = episode.prefix_result(longest[key], int(task.budget), task.max_turns)
        if out is None:
          out = episode.run_episode(registry.PEERS[m], ref, ctx, i, int(seed))
          longest.setdefault(key, out)
        records.append(record(m, table, task, seed, out))
        if bar is not None:
          bar.update(1)
  return records


def run_peer_job(method, parts, seeds, cfg) -> list[list[dict]]:
  """One peer on parts [(table, tasks, sources)] (sources: the learned peers' training sources,
  learned.set_training_sources kwargs): run_peers' records per part. The unit of work of
  peer_pool: one method on one table (and its sub-studies), so a learned peer's fits stay
  cached in the process that reuses them."""
  out = []
  try:
    for table, tasks, sources in parts:
      learned.set_training_sources(**sources)
      out.append(run_peers(table, tasks, [method], seeds, cfg))
  finally:
    learned.set_training_sources(None)
  return out


def submit_peer_jobs(jobs, seeds, cfg, pool=None, bar=None) -> list:
  """Futures of run_peer_job for jobs [(method, parts)], in job order; the slow peers are
  submitted first so two workers finish together. pool None: each job runs here, now."""
  slow = ("smac_mf", "smac_hpo", "optuna_tpe_hyperband", "optuna_tpe", "fsbo", "meta_regressor")
  futures = [None] * len(jobs)
  for j in sorted(range(len(jobs)), key=lambda j: slow.index(jobs[j][0])
                  if jobs[j][0] in slow else len(slow)):
    method, parts = jobs[j]
    if pool is None:
      futures[j] = concurrent.futures.Future()
      futures[j].set_result(run_peer_job(method, parts, seeds, cfg))
    else:
      futures[j] = pool.submit(run_peer_job, method, parts, list(seeds), cfg)
    if bar is not None:
      n = sum(len(tasks) for _, tasks, _ in parts) * len(seeds)
      futures[j].add_done_callback(lambda _, n=n: bar.update(n))
  return futures


def count_peer_episodes(tables_tasks, methods, seeds) -> int:
  n = 0
  for table, tasks in tables_tasks:
    n += sum(1 for m in methods if registry.applicable(m, table)) * len(tasks) * len(seeds)
  return n


def record(method, table, task, seed, out) -> dict:
  return dict(method=method, family=table.name, task=task.target, budget=int(task.budget),
              rho=task.rho, seed=int(seed), regret=float(out["regret"]),
              percentile=float(out["percentile"]), cost=float(out["cost_spent"]),
              n_invalid=int(out["n_invalid"]), n_repeat=int(out["n_repeat"]),
              n_turns=int(out["n_turns"]), decision_ms=float(out["decision_ms_mean"]),
              anytime_regret=[float(x) for x in out.get("anytime_regret", [])])
