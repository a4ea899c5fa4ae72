"""Model selection on validation tasks: a grid of config overrides x training seeds.

  python -m autollmr.select --config=configs/sft.py --workdir=DIR \\
      --grid=model.layers=1,2 --grid=sim.draws=1,4 \\
      --seeds=0,1,2 --jobs=2 --config.tasks.val_families=hwgpt,hwgpt_lat

Every grid point x seed runs the curate, simulate and sft stages of `autollmr.main` (a subprocess,
in DIR/<point>/seed<k>; a finished run is not run again) and its final validation regret, overall
and per table, goes to DIR/selection.{json,md}: mean and standard error over seeds per point.
The runs stop before the eval stage, so no test result is ever read. Any other `--config.x=y`
is passed to every run (above: hwgpt's training-level tasks become validation tasks, a
configuration-space shift like the test's, see tasks.val_families).
"""
from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import numpy as np

from autollmr import cli
from autollmr import errors

_CONFIG = config_flags.DEFINE_config_file("config", "configs/sft.py", "Config file (as for "
                                          "autollmr.main); --config.x=y go to every run.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where the runs and selection.{json,md} go.",
                               required=True)
_GRID = flags.DEFINE_multi_string("grid", [], "key=v1,v2,...: one axis of the grid (repeatable).")
_SEEDS = flags.DEFINE_string("seeds", "0,1,2", "Training seeds (config.seed) per grid point.")
_JOBS = flags.DEFINE_integer("jobs", 1, "Runs at a time.")


def parse_grid(specs: list[str]) -> list[dict]:
  """['a.b=1,2', 'c=x'] -> [{'a.b': '1', 'c': 'x'}, {'a.b': '2', 'c': 'x'}]."""
  axes = []
  for spec in specs:
    key, sep, values = spec.partition("=")
    vals = [v for v in values.split(",") if v]
    if not sep or not key or not vals:
      raise errors.UserError(f"--grid={spec!r}: expected key=v1,v2,... (e.g. model.layers=1,2)")
    axes.append([(key, v) for v in vals])
  return [dict(p) for p in itertools.product(*axes)]


def point_name(point: dict) -> str:
  return "_".join(f"{k.split('.')[-1]}-{v}" for k, v in point.items()) or "default"


def final_val(run_dir: str) -> dict | None:
  """The last logged validation regret of an sft run."""
  path = os.path.join(run_dir, "sft", "metrics.jsonl")
  rows = [json.loads(l) for l in open(path) if l.strip()]
  rows = [r for r in rows if r.get("val_regret") is not None]
  if not rows:
    raise errors.UserError(f"{path}: no val_regret logged: the config has no validation tasks "
                           "(set --config.tasks.val_families or use tables with val levels)")
  return dict(val_regret=rows[-1]["val_regret"], by_table=rows[-1].get("val_by_table", {}),
              step=rows[-1]["step"])


def run_one(config: str, run_dir: str, point: dict, seed: int, extra: list[str]) -> dict:
  marker = os.path.join(run_dir, "select_done")  # written after a run that exited cleanly
  if not os.path.exists(marker):
    cmd = [sys.executable, "-m", "autollmr.main", f"--config={config}", f"--workdir={run_dir}",
           f"--config.seed={seed}", "--config.stages=curate,simulate,sft",
           *[f"--config.{k}={v}" for k, v in point.items()], *extra]
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, "log.txt"), "w") as log:
      rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT,
                          env=dict(os.environ, AUTOLLMR_NO_PROGRESS="1")).returncode
    if rc != 0:
      raise RuntimeError(f"run failed (exit {rc}): {' '.join(cmd)}; see {run_dir}/log.txt")
    open(marker, "w").close()
  return dict(point=point, seed=seed, **final_val(run_dir))


def summarize(results: list[dict]) -> list[dict]:
  rows = []
  for name in dict.fromkeys(point_name(r["point"]) for r in results):
    rs = [r for r in results if point_name(r["point"]) == name]
    v = np.array([r["val_regret"] for r in rs])
    tables = sorted({k for r in rs for k in r["by_table"]})
    rows.append(dict(point=rs[0]["point"], name=name, n=len(rs), val_regret_mean=float(v.mean()),
                     val_regret_se=float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) > 1 else 0.0,
                     by_table={t: float(np.mean([r["by_table"][t] for r in rs
                                                 if t in r["by_table"]])) for t in tables}))
  return rows


def write(workdir: str, results: list[dict], rows: list[dict], command: str) -> str:
  with open(os.path.join(workdir, "selection.json"), "w") as f:
    json.dump(dict(command=command, runs=results, points=rows), f, indent=1)
  tables = sorted({t for r in rows for t in r["by_table"]})
  best = min(r["val_regret_mean"] for r in rows)
  lines = ["Validation regret per grid point (mean +- s.e. over seeds; lower is better).",
           f"Made by: `{command}`", "",
           "| point | n | val regret | " + " | ".join(tables) + " |",
           "|---|---|---|" + "---|" * len(tables)]
  for r in rows:
    v = f"{r['val_regret_mean']:.4f} +- {r['val_regret_se']:.4f}"
    v = f"**{v}**" if r["val_regret_mean"] == best else v
    lines.append(f"| {r['name']} | {r['n']} | {v} | "
                 + " | ".join(f"{r['by_table'].get(t, float('nan')):.4f}" for t in tables) + " |")
  md = "\n".join(lines) + "\n"
  with open(os.path.join(workdir, "selection.md"), "w") as f:
    f.write(md)
  return md


def main(argv):
  if argv[1:]:
    raise errors.UserError(f"unexpected arguments {argv[1:]}")
  extra = [a for a in sys.argv[1:] if a.startswith("--config.")]  # checked by the flag parser
  config_file = config_flags.get_config_filename(flags.FLAGS["config"])
  workdir = os.path.expanduser(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  seeds = [int(s) for s in _SEEDS.value.split(",") if s.strip()]
  jobs = [(p, s) for p in parse_grid(_GRID.value) for s in seeds]
  print(f"[select] {len(jobs)} runs ({len(jobs) // len(seeds)} points x {len(seeds)} seeds), "
        f"{_JOBS.value} at a time, under {workdir}")
  with concurrent.futures.ThreadPoolExecutor(max(1, _JOBS.value)) as ex:
    futs = [ex.submit(run_one, config_file,
                      os.path.join(workdir, point_name(p), f"seed{s}"), p, s, extra)
            for p, s in jobs]
    results = []
    for f in concurrent.futures.as_completed(futs):
      results.append(f.result())
      r = results[-1]
      print(f"[select] {point_name(r['point'])} seed {r['seed']}: val regret "
            f"{r['val_regret']:.4f}", flush=True)
  order = {point_name(p): i for i, p in enumerate(parse_grid(_GRID.value))}
  results.sort(key=lambda r: (order[point_name(r["point"])], r["seed"]))
  command = "python -m autollmr.select " + " ".join(sys.argv[1:])
  print(write(workdir, results, summarize(results), command))


if __name__ == "__main__":
  cli.run(main)
