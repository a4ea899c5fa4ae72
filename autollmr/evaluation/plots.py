"""Plots a researcher reads: learning curves, and the landscape of each table with the agent's
queries on it and regret against budget per family.

  python -m autollmr.plots curves --workdir=DIR      -> DIR/results/learning_curves.png
  python -m autollmr.plots landscape --workdir=DIR [--tables=a,b] [--axes=x,y]
                                                     -> DIR/results/landscape_<table>.png

Learning curves read DIR/sft/metrics.jsonl and DIR/rl/metrics.jsonl (what the stages log). A
landscape is one heatmap per fidelity of the objective over two config axes (default: the two
features with the most distinct values), each cell the best value over the other features (the
configs a researcher could still pick there); colours span each fidelity's best values to its
median + 1.5 IQR on the bad side, so diverged runs do not wash out the basin; bright = better. The
queries of the evaluation's transcripts (DIR/results/transcripts/queries.jsonl) are drawn on the
panel of the fidelity they ran at, numbered in order; the recommendation is starred. The eval
stage writes both (pipeline.stage_eval).
"""
from __future__ import annotations

import json
import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from autollmr import errors
from autollmr.evaluation import stats


def plot_regret_vs_budget(records, path):
  matplotlib.use("Agg")
  fam = stats.family_table(records)
  families = sorted({r["family"] for r in records})
  methods = sorted({r["method"] for r in records})
  budgets = sorted({r["budget"] for r in records})
  cols = min(3, len(families))
  rows = int(np.ceil(len(families) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
  cmap = plt.get_cmap("tab20")
  for ax, f in zip(axes.flat, families):
    for i, m in enumerate(methods):
      ks = [k for k in budgets if (m, f, k) in fam]
      if not ks:
        continue
      mean = np.array([fam[(m, f, k)].mean() for k in ks])
      ci = np.array([stats.bootstrap_ci(fam[(m, f, k)]) for k in ks])
      floor = 1e-4  # log axis: a zero regret is drawn at the floor
      ax.plot(ks, np.maximum(mean, floor), marker="o", ms=3, label=m, color=cmap(i % 20))
      ax.fill_between(ks, np.maximum(ci[:, 0], floor), np.maximum(ci[:, 1], floor),
                      alpha=0.15, color=cmap(i % 20))
    ax.set_yscale("log")
    ax.set_title(f)
    ax.set_xlabel("budget K (expensive runs)")
    ax.set_ylabel("normalized regret (0 drawn at 1e-4)")
    ax.set_xticks(budgets)
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(families):]:
    ax.axis("off")
  legend = {}  # every method once, whichever panel it appears in
  for ax in axes.flat:
    for h, l in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(l, h)
  fig.legend(list(legend.values()), list(legend), loc="lower center",
             ncol=min(6, len(legend)), fontsize=8)
  fig.tight_layout(rect=(0, 0.08, 1, 1))
  fig.savefig(path, dpi=110)
  plt.close(fig)


CURVES = (("sft", "loss"), ("sft", "acc"), ("sft", "val_regret"),
          ("rl", "regret"), ("rl", "val_regret"), ("rl", "kl"))

MAX_BINS = 24  # an axis with more distinct values is binned by quantiles


def _plt():
  matplotlib.use("Agg")
  return plt


def read_metrics(workdir: str) -> dict:
  """{stage: [rows]} for the stages with a metrics.jsonl."""
  out = {}
  for stage in ("sft", "rl"):
    path = os.path.join(workdir, stage, "metrics.jsonl")
    if os.path.exists(path):
      with open(path) as f:
        out[stage] = [json.loads(line) for line in f if line.strip()]
  return out


def curves(workdir: str, path: str) -> str:
  """The SFT and RL learning curves of a workdir as one PNG; FileNotFoundError if neither ran."""
  metrics = read_metrics(workdir)
  panels = [(s, k) for s, k in CURVES if any(r.get(k) is not None for r in metrics.get(s, []))]
  if not panels:
    raise errors.UserError(f"no metrics in {workdir}/sft/metrics.jsonl or "
                           f"{workdir}/rl/metrics.jsonl (run the sft / rl stages first)")
  plt = _plt()
  cols = min(3, len(panels))
  rows = int(np.ceil(len(panels) / cols))
  fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
  for ax, (stage, key) in zip(axes.flat, panels):
    pts = [(r["step"], r[key]) for r in metrics[stage] if r.get(key) is not None]
    x, y = zip(*pts)
    ax.plot(x, y, marker="o" if len(pts) < 30 else None, ms=3)
    ax.set_title(f"{stage.upper()}: {key}")
    ax.set_xlabel("update" if stage == "rl" else "step")
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[len(panels):]:
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def default_axes(table) -> tuple[int, int]:
  """The two config features with the most distinct values (ties: the larger spread)."""
  x = table.config_features_CxD[table.valid_FxC.any(0)]
  key = lambda j: (len(np.unique(np.round(x[:, j], 6))), float(x[:, j].std()))
  order = sorted(range(x.shape[1]), key=key, reverse=True)
  return (order[0], order[1]) if len(order) > 1 else (order[0], order[0])


def _binner(v: np.ndarray):
  """(bin index of each value, tick labels): distinct values, or quantile bins when many."""
  u = np.unique(np.round(v, 6))
  if len(u) <= MAX_BINS:
    return (lambda x: np.searchsorted(u, np.round(x, 6)).clip(0, len(u) - 1),
            [f"{t:.3g}" for t in u])
  edges = np.unique(np.quantile(v, np.linspace(0, 1, MAX_BINS + 1)))
  mids = 0.5 * (edges[:-1] + edges[1:])
  return (lambda x: (np.searchsorted(edges, x, side="right") - 1).clip(0, len(mids) - 1),
          [f"{t:.3g}" for t in mids])


def _colour_range(grid, sign: float):
  """(vmin, vmax): from the best values to the median + 1.5 IQR on the bad side (at most the
  90th percentile), so diverged runs do not wash out the basin."""
  v = sign * grid[np.isfinite(grid)]
  q2, q25, q50, q75, q90 = np.percentile(v, [2, 25, 50, 75, 90])
  bad = min(q90, q50 + 1.5 * (q75 - q25))
  if bad <= q2:
    bad = v.max() if v.max() > q2 else q2 + 1e-6
  lo, hi = sorted((sign * q2, sign * bad))
  return lo, hi


def landscape(table, queries: list[dict], path: str, axes=None) -> str:
  """One heatmap per fidelity (objective over two config axes, best over the others) with the
  queries of `queries` (transcripts.queries_record dicts of this table) overlaid."""
  plt = _plt()
  names = list(table.config_feature_names)
  if axes is None:
    jx, jy = default_axes(table)
  else:
    missing = [a for a in axes if a not in names]
    if missing:
      raise errors.UserError(
          f"table {table.name!r} has no config feature(s) {missing}; it has {names}")
    jx, jy = names.index(axes[0]), names.index(axes[1])
  X = table.config_features_CxD
  bx, tx = _binner(X[table.valid_FxC.any(0), jx])
  by, ty = _binner(X[table.valid_FxC.any(0), jy])
  fids = [f for f in range(table.num_fidelities) if table.valid_FxC[f].any()]
  cols = min(4, len(fids))
  rows = int(np.ceil(len(fids) / cols))
  fig, axs = plt.subplots(rows, cols, figsize=(3.6 * cols, 3.1 * rows + 0.6), squeeze=False)
  s = table.sign()
  cmap = "viridis_r" if table.direction == "min" else "viridis"  # bright = better
  episodes = [q for q in queries if q.get("table") == table.name]
  marks = plt.get_cmap("tab10")
  for ax, f in zip(axs.flat, fids):
    c = np.flatnonzero(table.valid_FxC[f])
    grid = np.full((len(ty), len(tx)), np.nan)
    for ix, iy, v in zip(bx(X[c, jx]), by(X[c, jy]), table.values_FxC[f, c]):
      if np.isnan(grid[iy, ix]) or s * v < s * grid[iy, ix]:
        grid[iy, ix] = v
    lo, hi = _colour_range(grid, s)
    im = ax.imshow(grid, origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi,
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    name = table.fidelity_names[f]
    for e, ep in enumerate(episodes):
      pts = [(i, q) for i, q in enumerate(ep["queries"], 1) if q["fidelity"] == name]
      for i, q in pts:
        x, y = bx(np.array([q["features"][jx]]))[0], by(np.array([q["features"][jy]]))[0]
        star = q["config"] == ep["recommendation"] and q["is_target"]
        ax.scatter([x], [y], s=140 if star else 60, marker="*" if star else "o",
                   facecolors="none" if not star else marks(e % 10),
                   edgecolors=marks(e % 10), linewidths=1.5)
        ax.annotate(str(i), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=7,
                    color=marks(e % 10))
    ax.set_title(name, fontsize=9)
    ax.set_xlabel(names[jx], fontsize=8)
    ax.set_ylabel(names[jy], fontsize=8)
    for setter, ticks in ((ax.set_xticks, tx), (ax.set_yticks, ty)):
      step = max(1, len(ticks) // 6)
      setter(range(0, len(ticks), step), ticks[::step], fontsize=7)
  for ax in list(axs.flat)[len(fids):]:
    ax.axis("off")
  who = sorted({ep["method"] for ep in episodes})
  fig.suptitle(f"{table.name}: {table.objective} ({table.direction}), best over the other config "
               f"features" + (f"; queries of {', '.join(who)} (numbered, * = recommendation)"
                              if who else ""), fontsize=10)
  fig.tight_layout(rect=(0, 0, 1, 0.97))
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return path


def read_queries(results_dir: str) -> list[dict]:
  path = os.path.join(results_dir, "transcripts", "queries.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def write_eval_plots(workdir: str, tables: dict, splits: dict, out_dir: str,
                     queries: list[dict]) -> list[str]:
  """The eval stage's plots: learning curves (when SFT/RL ran) and a landscape per table with
  test tasks, the transcripts' queries overlaid. Returns the paths written."""
  written = []
  if read_metrics(workdir):
    written.append(curves(workdir, os.path.join(out_dir, "learning_curves.png")))
  for name in sorted(splits):
    if splits[name]["test"]:
      written.append(landscape(tables[name], queries,
                               os.path.join(out_dir, f"landscape_{name}.png")))
  return written
