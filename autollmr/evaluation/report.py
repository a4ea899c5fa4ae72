"""Writing the evaluation: leaderboard.json / .md, episodes.jsonl, cost_to_target.md, the
regret-vs-budget plot, and the summary the main job prints.
"""
from __future__ import annotations

import json
import os
import subprocess

import numpy as np

from autollmr.evaluation import plots
from autollmr.evaluation import stats


def policies_played(records: list[dict]) -> dict:
  """method -> (policy played, note) for the agents whose records name it (rl_agent: the RL stage
  may have kept the distilled policy, evaluation/agents.played)."""
  return {r["method"]: (r["policy_played"], r["policy_note"]) for r in records
          if "policy_played" in r}


def method_label(method: str, played: dict) -> str:
  """The method as the reports show it: 'rl_agent (sft policy)' when the RL stage kept the
  distilled policy, so a reader never takes it for an RL-trained one."""
  if method in played and played[method][0] != "rl":
    return f"{method} ({played[method][0]} policy)"
  return method


def played_lines(records: list[dict]) -> list[str]:
  """One line per agent whose policy is named: what it played."""
  return [f"{m} played {'an RL policy' if p == 'rl' else f'the {p} policy'} ({note})."
          for m, (p, note) in sorted(policies_played(records).items())]


def write_results(records: list[dict], out_dir: str, command: str, extra_md: str = "") -> dict:
  os.makedirs(out_dir, exist_ok=True)
  rows = stats.aggregate(records)
  played = policies_played(records)
  for row in rows:  # the leaderboard says which policy an agent's row played
    if row["method"] in played:
      row["policy_played"], row["policy_note"] = played[row["method"]]
  with open(os.path.join(out_dir, "leaderboard.json"), "w") as f:
    json.dump(rows, f, indent=1)
  with open(os.path.join(out_dir, "episodes.jsonl"), "w") as f:
    for r in records:
      f.write(json.dumps(r) + "\n")
  md = leaderboard_md(records, command) + extra_md
  with open(os.path.join(out_dir, "leaderboard.md"), "w") as f:
    f.write(md)
  with open(os.path.join(out_dir, "cost_to_target.md"), "w") as f:
    f.write(cost_to_target_md(records, command))
  plots.plot_regret_vs_budget(records, os.path.join(out_dir, "regret_vs_budget.png"))
  with open(os.path.join(out_dir, "summary.md"), "w") as f:
    f.write(summary_md(records, command))
  return dict(rows=rows, markdown=md)


def commit() -> str:
  """The checkout's commit (short hash; "+changes" when the tree differs from it), or "unknown"."""
  repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  try:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
                          text=True, timeout=10, check=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                           capture_output=True, text=True, timeout=10).stdout.strip()
  except (OSError, subprocess.SubprocessError):
    return "unknown"
  return head + ("+changes" if dirty else "")


def summary_md(records: list[dict], command: str) -> str:
  """The short results table the README shows: each method's overall mean regret (families weigh
  equally) at every K, the best per column bold, with the command and commit that made it."""
  allf = stats.overall_table(records)
  families = sorted({r["family"] for r in records})
  budgets = sorted({r["budget"] for r in records})
  methods = sorted({m for m, k in allf if allf[(m, k)][1] == len(families)})
  played = policies_played(records)
  cell = {(m, k): float(allf[(m, k)][0].mean()) for m in methods for k in budgets
          if (m, k) in allf}
  best = {k: min(v for (m, kk), v in cell.items() if kk == k) for k in budgets}
  lines = [f"Made by `{command}` at commit {commit()}: mean normalized regret of the recommended "
           f"config over {len(families)} families ({', '.join(families)}), each family weighing "
           "1; lower is better, the best per column in bold.", "",
           "| method | " + " | ".join(f"K={k}" for k in budgets) + " |",
           "|---|" + "---:|" * len(budgets)]
  for m in methods:
    vals = [cell.get((m, k)) for k in budgets]
    lines.append(f"| {method_label(m, played)} | " + " | ".join(
        "-" if v is None else (f"**{v:.4f}**" if np.isclose(v, best[k]) else f"{v:.4f}")
        for v, k in zip(vals, budgets)) + " |")
  notes = played_lines(records)
  return "\n".join(lines + ([""] + notes if notes else [])) + "\n"


def _md_grid(title, methods, budgets, cell, label=lambda m: m) -> list[str]:
  """A methods x budgets markdown table; the lowest mean regret per column is bold."""
  lines = [f"### {title}", "", "| method | " + " | ".join(f"K={k}" for k in budgets) + " |",
           "|---|" + "---:|" * len(budgets)]
  best = {}
  for k in budgets:
    vals = [cell(m, k)[0] for m in methods if cell(m, k) is not None]
    best[k] = min(vals) if vals else None
  for m in methods:
    cells = []
    for k in budgets:
      c = cell(m, k)
      if c is None:
        cells.append("-")
        continue
      mean, lo, hi = c
      s = f"{mean:.4f} [{lo:.3f}, {hi:.3f}]"
      cells.append(f"**{s}**" if best[k] is not None and np.isclose(mean, best[k]) else s)
    lines.append(f"| {label(m)} | " + " | ".join(cells) + " |")
  return lines + [""]


def leaderboard_md(records: list[dict], command: str) -> str:
  fam = stats.family_table(records)
  allf = stats.overall_table(records)
  methods = sorted({r["method"] for r in records})
  families = sorted({r["family"] for r in records})
  budgets = sorted({r["budget"] for r in records})
  n_seeds = len({r["seed"] for r in records})
  lines = ["# Leaderboard: mean normalized regret at the target (lower is better)", "",
           f"Made by: `{command}`", "",
           f"Cells: mean over seeds ({n_seeds}) and the family's test targets, [95% bootstrap CI]."
           " Bold: best in the column. Online peers (rho = 0) buy their cheap runs; the others"
           " see all cheap results.", ""]

  def cell_overall(m, k):
    if (m, k) not in allf:
      return None
    v, nf = allf[(m, k)]
    if nf < len(families):
      return None  # a method that does not apply to every family has no overall number
    return (float(v.mean()), *stats.bootstrap_ci(v))

  played = policies_played(records)
  label = lambda m: method_label(m, played)
  if played:
    lines += ["## Policies played", ""] + [f"- {x}" for x in played_lines(records)] + [""]
  lines += _md_grid("Overall (families weigh equally)", methods, budgets, cell_overall, label)
  for f in families:
    def cell(m, k, f=f):
      if (m, f, k) not in fam:
        return None
      v = fam[(m, f, k)]
      return (float(v.mean()), *stats.bootstrap_ci(v))
    ms = [m for m in methods if any((m, f, k) in fam for k in budgets)]
    tasks = sorted({r["task"] for r in records if r["family"] == f})
    lines += _md_grid(f"{f} (targets: {', '.join(tasks)})", ms, budgets, cell, label)
  versus = stats.versus_best_peer(records, budgets)
  if versus:
    lines += ["## Agents against the best peer", ""] + [f"- {v}" for v in versus] + [""]
  return "\n".join(lines)


def cost_to_target_md(records, command) -> str:
  ctt = stats.cost_to_target(records)
  methods = sorted({m for m, _ in ctt})
  families = sorted({f for _, f in ctt})
  k_max = stats.MAX_K_SHOWN
  played = policies_played(records)
  lines = [
      f"# Expected expensive runs to reach regret <= {stats.REGRET_TARGET}", "",
      f"Made by: `{command}`", "",
      f"From the K={k_max} episodes' anytime curves; an episode that does not get there "
      f"counts as {k_max + 1}; '> {k_max}' when the mean exceeds {k_max}. "
      "In brackets: the fraction of seeds that got there.", "",
      "| method | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)
  ]
  for m in methods:
    cells = []
    for f in families:
      if (m, f) not in ctt:
        cells.append("-")
        continue
      mean, frac = ctt[(m, f)]
      cells.append((f"> {stats.MAX_K_SHOWN}" if mean > stats.MAX_K_SHOWN else f"{mean:.2f}") +
                   f" ({frac:.0%})")
    lines.append(f"| {method_label(m, played)} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def summary_text(records: list[dict]) -> str:
  """What the main job prints at the end: per family and overall, at the smallest and largest K."""
  budgets = sorted({r["budget"] for r in records})
  ks = sorted({budgets[0], budgets[-1]})
  fam = stats.family_table(records)
  allf = stats.overall_table(records)
  families = sorted({r["family"] for r in records})
  methods = sorted({r["method"] for r in records})
  cols = families + ["overall"]
  w = max(12, max(len(c) for c in cols) + 1)
  played = policies_played(records)
  mw = max([22] + [len(method_label(m, played)) + 1 for m in methods])
  lines = []
  for k in ks:
    lines.append(f"\nMean normalized regret at K={k} (lower is better; best per column marked *)")
    lines.append(f"{'method':<{mw}}" + "".join(f"{c[:w - 1]:>{w}}" for c in cols))
    grid = {}
    for m in methods:
      for f in families:
        if (m, f, k) in fam:
          grid[(m, f)] = float(fam[(m, f, k)].mean())
      if (m, k) in allf and allf[(m, k)][1] == len(families):
        grid[(m, "overall")] = float(allf[(m, k)][0].mean())
    best = {c: min([v for (m, cc), v in grid.items() if cc == c], default=None) for c in cols}
    for m in methods:
      cells = []
      for c in cols:
        v = grid.get((m, c))
        cells.append(f"{'-':>{w}}" if v is None else
                     f"{(f'{v:.4f}' + ('*' if np.isclose(v, best[c]) else ' ')):>{w}}")
      lines.append(f"{method_label(m, played):<{mw}}" + "".join(cells))
  return "\n".join(lines + [""] + stats.versus_best_peer(records, ks) + played_lines(records))


def per_training_seed_md(records: list[dict], methods) -> str:
  """Overall mean regret (mean over families, as in the leaderboard) of each agent, per training
  seed, at every K; then the mean and the sample sd over the training seeds."""
  seeds = sorted({r["train_seed"] for r in records if "train_seed" in r})
  budgets = sorted({r["budget"] for r in records})
  lines = ["", "## Per training seed (overall mean regret; mean and sd over training seeds)", "",
           "The cells above pool the training seeds; their CIs are over eval seeds only, which a "
           "greedy agent at rho = 1 plays alike. The spread between retrained agents is here.", "",
           "| method | training seed | " + " | ".join(f"K={k}" for k in budgets) + " |",
           "|---|---|" + "---:|" * len(budgets)]
  for m in methods:
    per = {}
    for s in seeds:
      rs = [r for r in records if r["method"] == m and r.get("train_seed") == s]
      if rs:
        per[s] = {key: float(v.mean()) for key, (v, _) in stats.overall_table(rs).items()}
    for s, tab in per.items():
      lines.append(f"| {m} | {s} | " + " | ".join(
          f"{tab[(m, k)]:.4f}" if (m, k) in tab else "-" for k in budgets) + " |")
    if len(per) > 1:
      cells = []
      for k in budgets:
        v = np.array([tab[(m, k)] for tab in per.values() if (m, k) in tab])
        cells.append(f"{v.mean():.4f} +- {v.std(ddof=1):.4f}" if len(v) > 1 else "-")
      lines.append(f"| {m} | mean +- sd ({len(per)}) | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"
