"""The benchmark's figures (python -m autollmr.benchmark), for the records of one provenance:

- regret vs K: one panel per regime, each method's headline mean regret (families weigh equally,
  bench_stats) against the budget K with its 95% bootstrap CI as a band; agents drawn bold;
- critical-difference diagrams (autorank's Nemenyi plot) at each K of bench_stats.CD_BUDGETS, one
  row per regime: mean rank per target, methods joined by a bar are not told apart at level
  bench_stats.ALPHA. The title gives the Friedman p-value.
"""
from __future__ import annotations

import autorank
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from autollmr.evaluation import bench_stats

FLOOR = 1e-4  # log axis: a zero regret is drawn here


def regimes_of(summary: dict) -> list[str]:
  found = {r for v in summary["methods"].values() for r in v}
  return [r for r in bench_stats.REGIMES if r in found] + sorted(found - set(bench_stats.REGIMES))


def plot_regret_vs_k(summary: dict, path: str) -> str:
  """summary: bench_stats.summarize's dict. One panel per regime; returns path."""
  matplotlib.use("Agg")
  regimes = regimes_of(summary)
  agents = summary["agents"]
  methods = [m for m in agents if m in summary["methods"]] + sorted(
      m for m in summary["methods"] if m not in agents)
  fig, axes = plt.subplots(1, len(regimes), figsize=(5.2 * len(regimes), 4), squeeze=False,
                           sharey=True)
  cmap = plt.get_cmap("tab20")
  for ax, regime in zip(axes.flat, regimes):
    ks_all = set()
    for i, m in enumerate(methods):
      cells = summary["methods"][m].get(regime, {})
      ks = sorted(int(k) for k in cells if cells[k]["mean"] is not None)
      if not ks:
        continue
      ks_all |= set(ks)
      c = [cells[str(k)] for k in ks]
      mean = np.maximum([x["mean"] for x in c], FLOOR)
      lo = np.maximum([x["ci_low"] for x in c], FLOOR)
      hi = np.maximum([x["ci_high"] for x in c], FLOOR)
      agent = m in agents
      ax.plot(ks, mean, marker="o", ms=3, lw=2.4 if agent else 1.1, label=m, color=cmap(i % 20),
              zorder=3 if agent else 2)
      ax.fill_between(ks, lo, hi, alpha=0.25 if agent else 0.1, color=cmap(i % 20), lw=0)
    ax.set_yscale("log")
    ax.set_title(f"regime: {regime}")
    ax.set_xlabel("budget K (expensive runs)")
    ax.set_xticks(sorted(ks_all))
    ax.grid(alpha=0.3)
  axes[0, 0].set_ylabel(f"mean normalized regret (0 drawn at {FLOOR:g})")
  handles, labels = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
  fig.suptitle(f"{summary['provenance']} targets: regret vs K, 95% CI (bootstrap over targets "
               "stratified by table)", fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path


def plot_cd_diagrams(df: pd.DataFrame, path: str, budgets=bench_stats.CD_BUDGETS) -> str | None:
  """Critical-difference diagrams, rows = regimes, columns = K in budgets (those played); a panel
  without a Friedman test (too few methods or targets) says so. Returns path (None: no panel)."""
  matplotlib.use("Agg")
  bench_stats.check_records(df)
  regimes = [r for r in bench_stats.REGIMES if r in set(df["regime"])] + sorted(
      set(df["regime"]) - set(bench_stats.REGIMES))
  ks = [k for k in budgets if k in set(df["K"])]
  if not regimes or not ks:
    return None
  n_methods = df["method"].nunique()
  fig, axes = plt.subplots(len(regimes), len(ks), squeeze=False,
                           figsize=(7 * len(ks), (1.2 + 0.12 * n_methods) * len(regimes)))
  for row, regime in zip(axes, regimes):
    for ax, k in zip(row, ks):
      res, info = bench_stats.friedman_rank(df, regime, k)
      if res is None:
        ax.axis("off")
        ax.text(0.5, 0.5, f"{regime}, K={k}: " + (info or {}).get("note", "not played"),
                ha="center", va="center", transform=ax.transAxes)
        continue
      autorank.plot_stats(res, allow_insignificant=True, ax=ax)
      ax.set_title(f"{regime}, K={k}: Friedman p = {res.pvalue:.3g} over {info['n_targets']} "
                   f"targets (CD = {res.cd:.2f})", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=120, bbox_inches="tight")
  plt.close(fig)
  return path
