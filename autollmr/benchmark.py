"""The benchmark: `python -m autollmr.benchmark --workdir=DIR [--config=configs/benchmark.py]`.

Trains what each protocol needs (resuming, like the main job), plays the agent(s) and every peer
on every target of every protocol and regime (autollmr/protocols.py), and writes DIR/benchmark.md,
DIR/benchmark.json, DIR/records.csv and plots (evaluation/bench_report.py, bench_stats.py).
`--config=configs/benchmark.py:quick` is the smoke preset.
"""
from __future__ import annotations

import os
import shlex
import sys
import time

from absl import flags
from absl import logging
from ml_collections import config_flags

from autollmr import cli
from autollmr import protocols
from autollmr.evaluation import bench_report

_CONFIG = config_flags.DEFINE_config_file("config", "configs/benchmark.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "benchmark", "Where the folds, records and report go.")
_README = flags.DEFINE_string("readme", None, "Also put the summary table into this README, "
                              "between its benchmark summary markers.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  config, workdir = _CONFIG.value, os.path.expanduser(_WORKDIR.value)
  t0 = time.time()
  df = protocols.run_all(config, workdir)
  command = "python -m autollmr.benchmark " + " ".join(shlex.quote(a) for a in sys.argv[1:])
  out = bench_report.write(df, protocols.agent_methods(df), workdir, command, time.time() - t0,
                           int(config.benchmark.n_boot))
  if _README.value:
    bench_report.update_readme(_README.value, bench_report.summary_md(out))
  print(f"[benchmark] {len(out['targets'])} (target, protocol, regime) cells, "
        f"{len(df)} episodes in {out['seconds'] / 60:.1f} min; wrote {workdir}/benchmark.md, "
        "benchmark.json, records.csv and plots")


if __name__ == "__main__":
  cli.run(main)
