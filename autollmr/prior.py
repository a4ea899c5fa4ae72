"""The landscape prior against the real tables: `python -m autollmr.prior calibrate --workdir=DIR`.

  [--config=configs/rl.py] [--config.prior.draws=200] [--config.prior.band=2.5,97.5]

For every real table of the config (provenance "real"; curated as the main job curates it) the
statistics of gym/landscape_stats.py over its training fidelities (those of its train + val tasks,
adjacent pairs by level), and the real table's percentile among `prior.draws` tables of its kind drawn
from the prior (gym/prior.py: `prior.kind_of(family)`, every drawn fidelity). A statistic outside
the band says the prior does not draw tables like this one. The pairs that end at a test target
(its nearest visible fidelity -> the target) are reported apart, never tuned on.

Writes DIR/calibration.md, DIR/calibration.json and DIR/calibration_<kind>.png (per statistic a
histogram of the draws, the real tables' values as vertical lines); prints one line per table
naming the statistics outside the band.
"""
from __future__ import annotations

import json
import os

from absl import flags
from absl import logging
import matplotlib
import matplotlib.pyplot as plt
from ml_collections import config_flags
import numpy as np

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.gym import landscape_stats as ls
from autollmr.gym import prior as prior_lib
from autollmr.gym import tasks as tasks_lib

_CONFIG = config_flags.DEFINE_config_file("config", "configs/rl.py", "The config whose tables "
                                          "are calibrated against (its --config.tasks.*).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where calibration.{md,json,png} go.",
                               required=True)


def percentile(value: float, draws: np.ndarray) -> float:
  """The share of draws below `value` (ties count half), in percent; NaN when undefined."""
  draws = draws[np.isfinite(draws)]
  if not np.isfinite(value) or draws.size == 0:
    return float("nan")
  return float(100 * (np.sum(draws < value) + 0.5 * np.sum(draws == value)) / draws.size)


def ranked(stats: dict, draws: dict, band) -> dict:
  """stats (landscape_stats.of_pairs) with each mean's percentile among the draws and whether it
  falls inside the band."""
  pct = {s: percentile(stats["mean"][s], draws[s]) for s in ls.STATS}
  inside = {s: None if np.isnan(p) else bool(band[0] <= p <= band[1]) for s, p in pct.items()}
  return dict(stats, percentile=pct, inside=inside)


def calibrate_table(table, split: dict, draws: dict, band) -> dict:
  """One real table: its training pairs and its test-target pairs, ranked among the draws."""
  idx = table.fidelity_names.index
  train = tasks_lib.training_table(table, split["train"] + split["val"]).fidelity_names
  train_F = ls.by_level(table, [idx(n) for n in train])
  test_pairs = sorted({(ls.by_level(table, [idx(v) for v in t.visible])[-1], idx(t.target))
                       for t in split["test"] if t.visible})  # nearest visible -> the target
  return dict(family=table.family, kind=prior_lib.kind_of(table.family),
              training=dict(ranked(ls.adjacent(table, train_F), draws, band),
                            fidelities=[table.fidelity_names[f] for f in train_F]),
              test=ranked(ls.of_pairs(table, test_pairs), draws, band))


def draw_stats(kind: str, n: int, seed: int) -> dict:
  """{statistic: its value on each of n drawn tables of the kind (every drawn fidelity)}."""
  rows = [ls.adjacent(t, ls.by_level(t, range(t.num_fidelities)))["mean"]
          for t in prior_lib.sample_tables(seed, kind, n)]
  return {s: np.array([r[s] for r in rows]) for s in ls.STATS}


def _cell(value: float, pct: float, inside) -> str:
  if np.isnan(value):
    return "n/a"
  text = f"{value:.3g} (p{pct:.1f})" if not np.isnan(pct) else f"{value:.3g} (p n/a)"
  return text if inside in (True, None) else f"**{text} out**"


def markdown(out: dict, draws: dict) -> str:
  lo, hi = out["band"]
  head = "| table | kind | " + " | ".join(ls.STATS) + " |\n|" + "---|" * (len(ls.STATS) + 2)
  lines = [
      "# The landscape prior against the real tables", "",
      f"`python -m autollmr.prior calibrate`: {out['draws']} draws per kind (seed "
      f"{out['seed']}), band p{lo:g}-p{hi:g}. Each cell: the real table's value (mean over its "
      "adjacent fidelity pairs) and its percentile among the draws of its kind; **out**: outside "
      "the band. Statistics: gym/landscape_stats.py.", "",
      "## Training fidelities (the fidelities of the train + val tasks)", "", head]
  for name, r in out["tables"].items():
    x = r["training"]
    lines.append(f"| {name} | {r['kind']} | " + " | ".join(
        _cell(x["mean"][s], x["percentile"][s], x["inside"][s]) for s in ls.STATS) + " |")
  lines += ["", "## Test-target pairs (nearest visible fidelity -> target): reported, never "
            "tuned on", "", head]
  for name, r in out["tables"].items():
    x = r["test"]
    lines.append(f"| {name} | {r['kind']} | " + " | ".join(
        _cell(x["mean"][s], x["percentile"][s], x["inside"][s]) for s in ls.STATS) + " |")
  lines += ["", "## The draws: median [p%g, p%g] per kind" % (lo, hi), "",
            "| kind | " + " | ".join(ls.STATS) + " |\n|" + "---|" * (len(ls.STATS) + 1)]
  for kind, d in draws.items():
    q = lambda v: "n/a" if not np.isfinite(v).any() else "%.3g [%.3g, %.3g]" % tuple(
        np.percentile(v[np.isfinite(v)], [50, lo, hi]))
    lines.append(f"| {kind} | " + " | ".join(q(d[s]) for s in ls.STATS) + " |")
  return "\n".join(lines) + "\n"


def plot(kind: str, draws: dict, tables: dict, path: str) -> None:
  """Per statistic the draws' histogram, each real table's training (solid) and test (dotted)
  value as a vertical line."""
  matplotlib.use("Agg")
  fig, axes = plt.subplots(2, 3, figsize=(14, 7))
  colors, labelled = plt.get_cmap("tab10"), set()
  for ax, s in zip(axes.flat, ls.STATS):
    v = draws[s][np.isfinite(draws[s])]
    ax.hist(v, bins=30, color="0.75")
    for i, (name, r) in enumerate(tables.items()):
      for part, style in (("training", "-"), ("test", ":")):
        x = r[part]["mean"][s]
        if np.isfinite(x):  # each (table, part) in the legend once
          label = f"{name} ({part})" if (name, part) not in labelled else None
          labelled.add((name, part))
          ax.axvline(x, color=colors(i % 10), ls=style, lw=2, label=label)
    ax.set_title(f"{s} ({v.size} draws)")
  fig.legend(loc="lower center", ncol=4, fontsize=8)
  fig.suptitle(f"prior kind {kind}: draws (grey) and the real tables")
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _json(x):
  """NaN -> null, numpy -> lists, recursively."""
  if isinstance(x, dict):
    return {k: _json(v) for k, v in x.items()}
  if isinstance(x, (list, tuple, np.ndarray)):
    return [_json(v) for v in x]
  if isinstance(x, (float, np.floating)):
    return None if np.isnan(x) else float(x)
  return x


def main(argv):
  if argv[1:] != ["calibrate"]:
    raise errors.UserError(f"expected 'calibrate', got {argv[1:]}")
  logging.set_verbosity(logging.WARNING)  # jax's backend probing is loud at INFO
  config = _CONFIG.value
  pc = config.prior
  try:
    band = tuple(float(b) for b in str(pc.band).split(","))
  except ValueError:
    band = ()
  if len(band) != 2 or not 0 <= band[0] < band[1] <= 100:
    raise errors.UserError("--config.prior.band needs two percentiles lo,hi with 0 <= lo < hi "
                           f"<= 100, got {pc.band}")
  n_draws, seed = int(pc.draws), int(pc.calibration_seed)
  if n_draws < 1:
    raise errors.UserError(f"--config.prior.draws must be at least 1, got {n_draws}")
  tables = {n: t for n, t in pipeline.load_tables(config).items() if t.provenance == "real"}
  if not tables:
    raise errors.UserError("no real table here (provenance 'real'): point --config.data_dir or "
                           "$AUTOLLMR_DATA at the data directory")
  splits = pipeline.curate_all(config, tables)
  kinds = sorted({prior_lib.kind_of(t.family) for t in tables.values()})
  draws = {k: draw_stats(k, n_draws, seed) for k in kinds}
  out = dict(draws=n_draws, band=list(band), seed=seed, tables={})
  for name, t in tables.items():
    r = calibrate_table(t, splits[name], draws[prior_lib.kind_of(t.family)], band)
    out["tables"][name] = r
    off = [f"{s} {r['training']['mean'][s]:.3g} (p{r['training']['percentile'][s]:.1f})"
           for s in ls.STATS if r["training"]["inside"][s] is False]
    none = all(p is None for p in r["training"]["inside"].values())
    print(f"{name} ({r['kind']}): " + ("no training pair" if none else "outside the band: "
                                       + ", ".join(off) if off else "every statistic inside"))
  os.makedirs(_WORKDIR.value, exist_ok=True)
  with open(os.path.join(_WORKDIR.value, "calibration.json"), "w") as f:
    json.dump(_json(dict(out, draw_stats=draws)), f, indent=1)
  with open(os.path.join(_WORKDIR.value, "calibration.md"), "w") as f:
    f.write(markdown(out, draws))
  for k in kinds:
    plot(k, draws[k], {n: r for n, r in out["tables"].items() if r["kind"] == k},
         os.path.join(_WORKDIR.value, f"calibration_{k}.png"))
  print(f"wrote {_WORKDIR.value}/calibration.md, calibration.json, "
        + ", ".join(f"calibration_{k}.png" for k in kinds))


if __name__ == "__main__":
  cli.run(main)
