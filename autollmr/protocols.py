"""The benchmark's protocols and regimes (the command is autollmr/benchmark.py).

A protocol says which agent is scored on which targets, so that a target's values never reach the
training of the agent (or learned peer) scored on it:
- `standard`: one run of the pipeline as configured (train on a table's lower levels, test its
  top level or `tasks.targets`) in WORKDIR/standard/;
- `lofo` (leave one family out): one run per family in WORKDIR/lofo/<family>/ with
  `tasks.held_out` = that family's tables: every level above a held-out table's lowest is a
  target, the agent trains on the other families only, and so do the learned peers.
A regime is the evidence a method has at a target, the same draw for every method:
- `full`: every cheap result known (rho = 1); `online`: none (rho = 0), cheap runs are bought
  from the same budget; `sparse`: at most benchmark.sparse_n known results per visible
  fidelity, eval.designs random designs per target.
Each (protocol fold, regime) is one `pipeline.run` in the fold's workdir: the training stages run
once per fold and are skipped for the next regime (each regime's results go to
results/<regime>/), and a killed benchmark resumes where it stopped.
"""
from __future__ import annotations

import copy
import json
import os

import pandas as pd

from autollmr import errors
from autollmr import pipeline
from autollmr.evaluation import agents
from autollmr.gym import landscape_stats
from autollmr.gym import tasks as tasks_lib

PROTOCOLS = ("standard", "lofo")
REGIMES = ("full", "sparse", "online")


def regime_config(config, regime: str):
  """The pipeline config of one regime (a copy)."""
  c = copy.deepcopy(config)
  c.tasks.test_rho = 0.0 if regime == "online" else 1.0
  c.eval.sparse_n = int(config.benchmark.sparse_n) if regime == "sparse" else 0
  return c


def folds(config, tables: dict) -> list[tuple[str, str, object]]:
  """[(protocol, fold name, config)]: the runs the protocols need, in order."""
  protocols = pipeline.csv_list(config.benchmark.protocols)
  bad = [p for p in protocols if p not in PROTOCOLS]
  if bad:
    raise errors.UserError(f"--config.benchmark.protocols names {bad}; protocols: "
                           f"{list(PROTOCOLS)}")
  out = []
  if "standard" in protocols:
    out.append(("standard", "standard", copy.deepcopy(config)))
  if "lofo" in protocols:
    for family in sorted({t.family for t in tables.values()}):
      names = sorted(n for n, t in tables.items() if t.family == family)
      if not any(tasks_lib.curate(tables[n], budgets=(1,), every_level=True)["test"]
                 for n in names):
        continue  # no table of the family has a level above its lowest: nothing to test
      c = copy.deepcopy(config)
      c.tasks.held_out = ",".join(names)
      out.append(("lofo", os.path.join("lofo", family), c))
  return out


def regimes(config) -> list[str]:
  out = pipeline.csv_list(config.benchmark.regimes)
  bad = [r for r in out if r not in REGIMES]
  if bad:
    raise errors.UserError(f"--config.benchmark.regimes names {bad}; regimes: {list(REGIMES)}")
  return out


def run_all(config, workdir: str) -> pd.DataFrame:
  """Runs every fold x regime (resuming) and returns the records as bench_stats reads them."""
  tables, _ = pipeline.build_tables(config)
  rows = []
  for protocol, name, fold_config in folds(config, tables):
    for regime in regimes(config):
      c = regime_config(fold_config, regime)
      fold_dir = os.path.join(workdir, name)
      print(f"[benchmark] {name}: regime {regime}")
      pipeline.run(c, fold_dir)
      path = os.path.join(fold_dir, pipeline.results_dir(c), "episodes.jsonl")
      with open(path) as f:
        rows += [record_row(json.loads(line), protocol, regime, tables) for line in f]
  return with_moved(pd.DataFrame(rows), tables)


def record_row(r: dict, protocol: str, regime: str, tables: dict) -> dict:
  """An eval record as a benchmark row: a sparse design's suffix "~i" moves into the seed (the
  designs of a target are its repeats, like seeds)."""
  target, _, draw = r["task"].partition("~")
  table = tables[r["family"]]  # records name the table under "family"
  return dict(method=r["method"], regime=regime, K=int(r["budget"]), protocol=protocol,
              table=table.name, family=table.family, target=target,
              seed=int(draw or 0) * 1000 + int(r["seed"]), regret=float(r["regret"]),
              provenance=table.provenance)


def with_moved(df: pd.DataFrame, tables: dict) -> pd.DataFrame:
  """df plus `moved`: whether the target's optimum moved (landscape_stats.moved_regret above
  MOVED_REGRET), computed once per (table, target)."""
  by_name = {t.name: t for t in tables.values()}
  pairs = df[["table", "target"]].drop_duplicates().itertuples(index=False)
  moved = {(n, g): bool(landscape_stats.moved_regret(
      by_name[n], list(by_name[n].fidelity_names).index(g)) > landscape_stats.MOVED_REGRET)
           for n, g in pairs}
  return df.assign(moved=[moved[k] for k in zip(df["table"], df["target"])])


def agent_methods(df: pd.DataFrame) -> list[str]:
  return [m for m in (agents.METHOD, agents.RL_METHOD) if m in set(df["method"])]
