"""benchmark.md, benchmark.json and the plots of `python -m autollmr.benchmark`, from its records.

Real-data targets and the others (semi-synthetic grpo, synthetic stand-ins) are summarized apart
and never mixed (bench_stats.by_provenance); each protocol apart too (a top-level target is a
target of both, scored by differently trained agents).
"""
from __future__ import annotations

import json
import os
import subprocess

import pandas as pd

from autollmr.evaluation import bench_plots
from autollmr.evaluation import bench_stats


def commit() -> str:
  """The repository's commit ("+dirty" when the tree has changes), or "unknown"."""
  here = os.path.dirname(os.path.abspath(__file__))
  try:
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, check=True).stdout.strip()
    return head + ("+dirty" if dirty else "")
  except (OSError, subprocess.CalledProcessError):
    return "unknown"


def targets_list(df: pd.DataFrame) -> list[dict]:
  keys = ["table", "target", "protocol", "regime", "provenance"]
  return df[keys].drop_duplicates().sort_values(keys).to_dict("records")


def write(df: pd.DataFrame, agents: list[str], out_dir: str, command: str, seconds: float,
          n_boot: int) -> dict:
  """Writes the report; returns benchmark.json's dict."""
  os.makedirs(out_dir, exist_ok=True)
  out = dict(commit=commit(), command=command, seconds=round(seconds, 1),
             protocols=sorted(set(df["protocol"])),
             regimes=[r for r in bench_stats.REGIMES if r in set(df["regime"])],
             agents=agents, targets=targets_list(df), results={})
  md = [f"# Benchmark\n\nCommand: `{command}`  \nCommit: `{out['commit']}`  \n"
        f"Runtime: {seconds / 60:.1f} min\n"]
  for prov, part in bench_stats.by_provenance(df).items():
    for protocol in sorted(set(part["protocol"])):
      sub = part[part["protocol"] == protocol]
      n = len(sub[["table", "target"]].drop_duplicates())
      summary = bench_stats.summarize(sub, agents, n_boot=n_boot)
      out["results"].setdefault(prov, {})[protocol] = summary
      stem = f"{prov}_{protocol}"
      pngs = [bench_plots.plot_regret_vs_k(summary, os.path.join(out_dir, f"regret_vs_k_{stem}.png")),
              bench_plots.plot_cd_diagrams(sub, os.path.join(out_dir, f"cd_{stem}.png"))]
      tables = ", ".join(f"{t} ({k})" for t, k in
                         sub[["table", "target"]].drop_duplicates().groupby("table").size().items())
      md.append(f"## {prov} data, protocol `{protocol}`: {n} targets\n\nTables (targets): "
                f"{tables}.\n\n" + " ".join(f"![]({os.path.basename(p)})" for p in pngs if p)
                + "\n\n" + bench_stats.markdown(summary, level=3))
  with open(os.path.join(out_dir, "benchmark.json"), "w") as f:
    json.dump(out, f, indent=1, allow_nan=False)
  with open(os.path.join(out_dir, "benchmark.md"), "w") as f:
    f.write("\n".join(md))
  df.to_csv(os.path.join(out_dir, "records.csv"), index=False)
  return out
