"""Plots of a workdir: `python -m autollmr.plots curves|landscape --workdir=DIR`.

  curves     DIR/results/learning_curves.png: the SFT and RL learning curves
  landscape  DIR/results/landscape_<table>.png: objective heatmaps per fidelity over two config
             axes, the transcripts' queries on them (--tables=a,b, --axes=x,y)

The eval stage writes both (evaluation/plots.py).
"""
from __future__ import annotations

import os

from absl import flags

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.evaluation import plots

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir of `python -m autollmr.main`.",
                               required=True)
_TABLES = flags.DEFINE_list("tables", [], "landscape: tables (default: those of the transcripts, "
                            "else the workdir's families).")
_AXES = flags.DEFINE_list("axes", [], "landscape: two config feature names, x,y.")
_OUT = flags.DEFINE_string("out", "", "Output directory (default WORKDIR/results).")


def main(argv):
  if argv[1:] not in (["curves"], ["landscape"]):
    raise errors.UserError(f"expected 'curves' or 'landscape', got {argv[1:]}")
  out_dir = _OUT.value or os.path.join(_WORKDIR.value, "results")
  os.makedirs(out_dir, exist_ok=True)
  if argv[1] == "curves":
    print(plots.curves(_WORKDIR.value, os.path.join(out_dir, "learning_curves.png")))
    return
  config = cli.workdir_config(_WORKDIR.value)
  queries = plots.read_queries(os.path.join(_WORKDIR.value, "results"))
  families = [x for x in config.tasks.families.split(",") if x]
  names = _TABLES.value or sorted({q["table"] for q in queries}) or families
  if not names:
    raise errors.UserError(f"no tables: give --tables (no transcripts or families in "
                           f"{_WORKDIR.value})")
  if _AXES.value and len(_AXES.value) != 2:
    raise errors.UserError(f"--axes needs two config feature names, got {_AXES.value}")
  for n in names:
    print(plots.landscape(pipeline.load_table(config, n), queries,
                          os.path.join(out_dir, f"landscape_{n}.png"), _AXES.value or None))


if __name__ == "__main__":
  cli.run(main)
