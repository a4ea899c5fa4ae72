"""benchmark.md, benchmark.json and the plots of `python -m autollmr.benchmark`, from its records.

Real-data targets and the others (semi-synthetic grpo, synthetic stand-ins) are summarized apart
and never mixed (bench_stats.by_provenance); each protocol apart too (a top-level target is a
target of both, scored by differently trained agents). Each protocol's targets where the optimum
moved (records' `moved`: the nearest cheaper fidelity's best config has regret above
landscape_stats.MOVED_REGRET at the target) get their own statistics too (benchmark.json "moved").
"""
from __future__ import annotations

import json
import os
import subprocess

import pandas as pd

from autollmr import errors

from autollmr.evaluation import bench_plots
from autollmr.evaluation import bench_stats
from autollmr.gym import landscape_stats


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
             agents=agents, targets=targets_list(df), results={}, moved={})
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
      moved = sub[sub["moved"]] if "moved" in sub else sub.iloc[:0]
      if not moved.empty and set(agents) <= set(moved["method"]):
        out["moved"].setdefault(prov, {})[protocol] = bench_stats.summarize(moved, agents,
                                                                            n_boot=n_boot)
        md.append(moved_md(out["moved"][prov][protocol], agents,
                           len(moved[["table", "target"]].drop_duplicates())))
  with open(os.path.join(out_dir, "benchmark.json"), "w") as f:
    json.dump(out, f, indent=1, allow_nan=False)
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(summary_md(out))
  with open(os.path.join(out_dir, "benchmark.md"), "w") as f:
    f.write("\n".join(md))
  df.to_csv(os.path.join(out_dir, "records.csv"), index=False)
  return out


def moved_md(summary: dict, agents: list[str], n: int) -> str:
  """The moved-optimum targets at K = 1 and the largest K: each method's mean [95% CI] per regime,
  and each agent minus it [paired 95% CI]."""
  ks = sorted({int(k) for v in summary["methods"].values() for r in v.values() for k in r})
  ks = sorted({ks[0], ks[-1]})
  head = " | ".join(f"K = {k}" for k in ks)
  lines = [f"### Targets where the optimum moved: {n}", "",
           "The nearest cheaper fidelity's best config has regret above "
           f"{landscape_stats.MOVED_REGRET} at these targets (gym/landscape_stats.moved_regret). "
           "Agent minus method: paired 95% CI.", "",
           f"| regime | method | {head} | "
           + " | ".join(f"{a} - method, K = {k}" for a in agents for k in ks) + " |",
           "|---" * (2 + len(ks) * (1 + len(agents))) + "|"]
  cell = lambda c: f"{c['mean']:.4f} [{c['ci_low']:.4f}, {c['ci_high']:.4f}]"
  diff = lambda d: f"{d['diff']:+.4f} [{d['diff_ci_low']:+.4f}, {d['diff_ci_high']:+.4f}]"
  for regime in bench_stats.REGIMES:
    for m in sorted(summary["methods"]):
      by_k = summary["methods"][m].get(regime)
      if not by_k:
        continue
      vs = []
      for a in agents:
        peers = [summary["methods"][a][regime].get(str(k), {}).get("peers", {}) for k in ks]
        vs += [diff(p[m]) if m in p else "" for p in peers]
      lines.append(f"| {regime} | {m} | " + " | ".join(
          cell(by_k[str(k)]) if str(k) in by_k else "" for k in ks) + " | " + " | ".join(vs) + " |")
  return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- benchmark summary: begin -->", "<!-- benchmark summary: end -->"


def summary_md(out: dict) -> str:
  """The headline table (the README's results): real-data targets (else whatever there is), the
  lofo protocol (else standard), mean regret [95% CI] per method and regime at the smallest and
  largest K."""
  provs = out["results"]
  prov = "real" if "real" in provs else sorted(provs)[0]
  protocol = "lofo" if "lofo" in provs[prov] else sorted(provs[prov])[0]
  summ = provs[prov][protocol]
  regimes = [r for r in out["regimes"] if any(r in m for m in summ["methods"].values())]
  ks = sorted({int(k) for m in summ["methods"].values() for r in m.values() for k in r})
  budgets = sorted({str(ks[0]), str(ks[-1])}, key=int)
  n = len({(t["table"], t["target"]) for t in out["targets"]
           if t["provenance"] == prov and t["protocol"] == protocol})
  cols = [(r, k) for r in regimes for k in budgets]
  lines = [f"Made by `{out['command']}` at commit {out['commit'][:7]} in "
           f"{out['seconds'] / 60:.0f} min: {n} {prov}-data targets, protocol `{protocol}`; mean "
           "normalized regret [95% CI] (families weigh equally; lower is better; bold: best).", "",
           "| method | " + " | ".join(f"{r} K={k}" for r, k in cols) + " |",
           "|---|" + "---:|" * len(cols)]
  best = {c: min((m[c[0]][c[1]]["mean"] for m in summ["methods"].values()
                  if c[0] in m and c[1] in m[c[0]] and m[c[0]][c[1]]["complete"]), default=None)
          for c in cols}
  partial = []
  for method in sorted(summ["methods"]):
    first = next(iter(next(iter(summ["methods"][method].values())).values()))
    name = method
    if not first["complete"]:  # e.g. a formula that applies to one family only: never bold
      name = f"{method} \\*"
      partial.append(f"\\* {method} applies to {first['n_families']} famil"
                     f"{'y' if first['n_families'] == 1 else 'ies'} ({first['n_targets']} "
                     "targets) only: its mean is over those, not comparable.")
    cells = []
    for r, k in cols:
      c = summ["methods"][method].get(r, {}).get(k)
      if c is None:
        cells.append("-")
        continue
      txt = f"{c['mean']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"
      cells.append(f"**{txt}**" if c["complete"] and c["mean"] == best[(r, k)] else txt)
    lines.append(f"| {name} | " + " | ".join(cells) + " |")
  lines += [""] + partial + ([""] if partial else [])
  lines.append("Where the agent stands (95% CI of agent minus peer: below 0 = `below`, the agent's "
               "regret is lower; above 0 = `above`; else not distinguishable):")
  for agent in out["agents"]:  # where each agent stands, from the paired CIs (agent - peer)
    for r, k in cols:
      cell = summ["methods"].get(agent, {}).get(r, {}).get(k)
      if not cell:
        continue
      groups = {"below": [], "not distinguishable from": [], "above": []}
      for peer, p in sorted(cell["peers"].items()):
        if summ["methods"][peer][r][k]["complete"]:
          groups[bench_stats.standing(p)].append(peer)
      said = "; ".join(f"{g} {', '.join(v)}" for g, v in groups.items() if v)
      lines.append(f"- {agent}, {r}, K = {k}: {said}.")
  return "\n".join(lines) + "\n"


def update_readme(path: str, summary: str) -> None:
  """Replaces the text between the README's benchmark markers with `summary`."""
  with open(path) as f:
    text = f.read()
  if README_BEGIN not in text or README_END not in text:
    raise errors.UserError(f"--readme {path}: no '{README_BEGIN}' ... '{README_END}' markers")
  head, rest = text.split(README_BEGIN, 1)
  _, tail = rest.split(README_END, 1)
  with open(path, "w") as f:
    f.write(head + README_BEGIN + "\n" + summary + README_END + tail)
