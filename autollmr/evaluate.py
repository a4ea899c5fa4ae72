"""Side-by-side evaluation: every method on every test task, every budget, many seeds.

Writes under WORKDIR/results/: leaderboard.json, leaderboard.md, regret_vs_budget.png,
cost_to_target.md (and episodes.jsonl, every episode's record, for anyone who wants to re-cut it).

Methods are either peers (Python ask/tell, stepped through env_reference.ReferenceEnv one decision
at a time) or agents (a function that plays a batch of episodes in the jitted env). Both see the
same tasks, budgets and seeds, and the env decides cost, budget and the recommendation.
"""
from __future__ import annotations

import collections
import contextlib
import json
import os
import sys

import numpy as np

from autollmr import env as env_lib
from autollmr import peers as peers_lib
from autollmr.env_reference import ReferenceEnv

REGRET_TARGET = 0.01  # cost_to_target: runs needed to reach this regret
MAX_K_SHOWN = 5


def progress(total, desc):
  from tqdm import tqdm
  return tqdm(total=total, desc=desc, file=sys.stderr, leave=False,
              disable=os.environ.get("AUTOLLMR_NO_PROGRESS") == "1")


def online_copy(task):
  """The same test task in the online mode: nothing revealed, cheap runs must be bought."""
  import dataclasses
  return dataclasses.replace(task, rho=0.0, max_turns=int(task.budget) + 8)


def build_eval_params(table, tasks, cfg):
  """EnvParams of the tasks on the table. Under `eval.sub_studies` the candidate axis is padded to
  a multiple of 64, so the sub-studies of a table share one compiled agent rollout."""
  return env_lib.make_params(table, tasks, max_cheap_rows=cfg.env.max_cheap_rows,
                             max_target_configs=cfg.env.max_target_configs,
                             invalid_penalty=cfg.env.invalid_penalty,
                             repeat_penalty=cfg.env.repeat_penalty,
                             pad_multiple=64 if int(cfg.eval.sub_studies) > 0 else 1)


def sub_study_table(table, drop: float, seed: int):
  """A random sub-study of a table, for evaluation: each config dropped with probability `drop`
  at every fidelity (the study never ran it), as env.sub_studies does for training, but on the
  Table, so the peers and the agents play it unchanged and y* is the sub-study's best. Why: a
  family has one or two test targets, so a single pick decides its cell; N sub-studies of each
  target give N landscapes with the same scale shift, and a mean with a spread. Redrawn (at most
  100 times) until every fidelity that had two valid configs keeps two."""
  if not 0.0 < float(drop) < 1.0:
    raise ValueError(f"--config.eval.sub_drop must be in (0, 1), got {drop}")
  rng = np.random.default_rng(seed)
  had = table.valid_FxC.sum(1) >= 2
  for _ in range(100):
    valid = table.valid_FxC & (rng.random(table.num_configs) >= drop)[None]
    if np.all(valid.sum(1)[had] >= 2):
      return table.with_changes(valid_FxC=valid, flagged_FxC=table.flagged_FxC & valid)
  raise ValueError(f"table {table.name!r}: no sub-study with drop {drop} keeps two configs per "
                   "fidelity (lower --config.eval.sub_drop)")


def run_peers(table, tasks, methods, seeds, cfg, bar=None) -> list[dict]:
  """Plays each peer on each task (online peers on the rho = 0 copy) for each seed. A BUDGET_FREE
  peer plays each task family once at its largest budget and the smaller budgets are read off
  that episode's prefix where it is a legal episode of the smaller budget (else played)."""
  methods = [m for m in methods if peers_lib.applicable(m, table)]
  online = [m for m in methods if m in peers_lib.ONLINE_PEERS]
  all_tasks = list(tasks) + ([online_copy(t) for t in tasks] if online else [])
  params, sizes = build_eval_params(table, all_tasks, cfg)
  ref = ReferenceEnv(params, sizes, auto_reset=False)
  # Tasks that differ only in budget (and turns), largest budget first.
  order = sorted(range(len(all_tasks)), key=lambda i: -all_tasks[i].budget)
  longest = {}  # (method, task without budget, seed) -> the largest-budget episode played
  records = []
  for i in order:
    task = all_tasks[i]
    ctx = peers_lib.make_context(table, task, params, i)
    is_online = task.rho == 0.0 and i >= len(tasks)
    stem = (task.target, task.visible, task.rho, task.split, is_online)
    for m in methods:
      if (m in peers_lib.ONLINE_PEERS) != is_online:
        continue
      for seed in seeds:
        key = (m, stem, int(seed))
        out = None
        if m in peers_lib.BUDGET_FREE and key in longest:
          out = peers_lib.prefix_result(longest[key], int(task.budget), task.max_turns)
        if out is None:
          out = peers_lib.run_episode(peers_lib.PEERS[m], ref, ctx, i, int(seed))
          longest.setdefault(key, out)
        records.append(_record(m, table, task, seed, out))
        if bar is not None:
          bar.update(1)
  return records


def run_peer_job(method, parts, seeds, cfg) -> list[list[dict]]:
  """One peer on parts [(table, tasks, sources)] (sources: the learned peers' training sources,
  learned_peers.set_training_sources kwargs): run_peers' records per part. The unit of work of
  peer_pool: one method on one table (and its sub-studies), so a learned peer's fits stay
  cached in the process that reuses them."""
  from autollmr import learned_peers
  out = []
  try:
    for table, tasks, sources in parts:
      learned_peers.set_training_sources(**sources)
      out.append(run_peers(table, tasks, [method], seeds, cfg))
  finally:
    learned_peers.set_training_sources(None)
  return out


def submit_peer_jobs(jobs, seeds, cfg, pool=None, bar=None) -> list:
  """Futures of run_peer_job for jobs [(method, parts)], in job order; the slow peers are
  submitted first so two workers finish together. pool None: each job runs here, now."""
  import concurrent.futures
  slow = ("smac_mf", "smac_hpo", "optuna_tpe_hyperband", "optuna_tpe", "fsbo", "meta_regressor")
  futures = [None] * len(jobs)
  for j in sorted(range(len(jobs)), key=lambda j: slow.index(jobs[j][0])
                  if jobs[j][0] in slow else len(slow)):
    method, parts = jobs[j]
    if pool is None:
      futures[j] = concurrent.futures.Future()
      futures[j].set_result(run_peer_job(method, parts, seeds, cfg))
    else:
      futures[j] = pool.submit(run_peer_job, method, parts, list(seeds), cfg)
    if bar is not None:
      n = sum(len(tasks) for _, tasks, _ in parts) * len(seeds)
      futures[j].add_done_callback(lambda _, n=n: bar.update(n))
  return futures


def eval_workers(cfg) -> int:
  """--config.eval.workers: processes that play the peers; 0 = this process, -1 = one per CPU
  core (at most 8)."""
  w = int(cfg.eval.workers)
  if w < -1:
    raise ValueError(f"--config.eval.workers must be -1 (one per core), 0 (this process) or a "
                     f"count, got {w}")
  return min(os.cpu_count() or 1, 8) if w == -1 else w


# One thread per worker: the workers fill the cores, not each worker's numerical libraries. The
# CPU backend: an accelerator belongs to the main process.
WORKER_ENV = dict(JAX_PLATFORMS="cpu", AUTOLLMR_NO_PROGRESS="1", OMP_NUM_THREADS="1",
                  OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
WORKER_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"  # XLA:CPU on one thread


def _worker_init():
  """Runs in each worker before it imports JAX or NumPy (spawned workers import only the main
  module's top level, and autollmr.main's imports neither)."""
  os.environ.update(WORKER_ENV)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + WORKER_XLA_FLAGS).strip()
  import jax
  jax.config.update("jax_platforms", "cpu")  # in case the main module imported JAX already


@contextlib.contextmanager
def peer_pool(workers: int):
  """Worker processes for the peers (yields None for workers = 0): the peers are Python ask/tell
  loops, so one single-threaded worker per core halves the peers' time on two cores. Spawned,
  not forked (JAX holds threads). PYTHONHASHSEED is fixed (0 unless set) for the workers, so
  SMAC's choices, which depend on string hashing, repeat from run to run; this process's own
  environment is otherwise left alone."""
  if workers <= 0:
    yield None
    return
  import concurrent.futures
  import multiprocessing
  old = os.environ.get("PYTHONHASHSEED")
  os.environ["PYTHONHASHSEED"] = old or "0"  # read at interpreter start: set before spawning
  try:
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init) as pool:
      yield pool
  finally:
    if old is None:
      os.environ.pop("PYTHONHASHSEED", None)


def count_peer_episodes(tables_tasks, methods, seeds) -> int:
  n = 0
  for table, tasks in tables_tasks:
    n += sum(1 for m in methods if peers_lib.applicable(m, table)) * len(tasks) * len(seeds)
  return n


def _record(method, table, task, seed, out) -> dict:
  return dict(method=method, family=table.name, task=task.target, budget=int(task.budget),
              rho=task.rho, seed=int(seed), regret=float(out["regret"]),
              percentile=float(out["percentile"]), cost=float(out["cost_spent"]),
              n_invalid=int(out["n_invalid"]), n_repeat=int(out["n_repeat"]),
              n_turns=int(out["n_turns"]), decision_ms=float(out["decision_ms_mean"]),
              anytime_regret=[float(x) for x in out.get("anytime_regret", [])])


# --- aggregation ---------------------------------------------------------------------------------

def iqm(x: np.ndarray) -> float:
  x = np.sort(np.asarray(x, np.float64))
  lo, hi = int(np.floor(0.25 * len(x))), int(np.ceil(0.75 * len(x)))
  return float(x[lo:max(hi, lo + 1)].mean())


def bootstrap_ci(x, n_boot: int = 1000, seed: int = 0) -> list[float]:
  x = np.asarray(x, np.float64)
  if len(x) < 2:
    return [float(x.mean()), float(x.mean())]
  rng = np.random.default_rng(seed)
  means = x[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
  return [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))]


def aggregate(records: list[dict]) -> list[dict]:
  groups = collections.defaultdict(list)
  for r in records:
    groups[(r["method"], r["family"], r["task"], r["budget"])].append(r)
  rows = []
  for (method, family, task, budget), rs in sorted(groups.items()):
    reg = np.array([r["regret"] for r in rs])
    turns = max(sum(r["n_turns"] for r in rs), 1)
    rows.append(dict(
        method=method, family=family, task=task, budget=budget,
        regret_mean=float(reg.mean()), regret_iqm=iqm(reg), regret_ci95=bootstrap_ci(reg),
        percentile_mean=float(np.mean([r["percentile"] for r in rs])),
        cost_mean=float(np.mean([r["cost"] for r in rs])),
        invalid_rate=sum(r["n_invalid"] for r in rs) / turns,
        repeat_rate=sum(r["n_repeat"] for r in rs) / turns,
        decision_ms_mean=float(np.mean([r["decision_ms"] for r in rs])),
        rho=rs[0]["rho"], n=len(rs)))
  return rows


def family_table(records: list[dict]) -> dict:
  """(method, family, budget) -> per-seed regrets averaged over the family's test targets."""
  per = collections.defaultdict(lambda: collections.defaultdict(list))
  for r in records:
    per[(r["method"], r["family"], r["budget"])][r["seed"]].append(r["regret"])
  return {k: np.array([np.mean(v) for v in seeds.values()]) for k, seeds in per.items()}


def overall_table(records: list[dict]) -> dict:
  """(method, budget) -> per-seed regret averaged over all families (each family weighs 1)."""
  fam = family_table(records)
  per = collections.defaultdict(list)
  for (m, f, k), v in fam.items():
    per[(m, k)].append(v)
  out = {}
  for (m, k), vs in per.items():
    n = min(len(v) for v in vs)
    out[(m, k)] = (np.mean([v[:n] for v in vs], axis=0), len(vs))
  return out


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
        per[s] = {key: float(v.mean()) for key, (v, _) in overall_table(rs).items()}
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


def cost_to_target(records: list[dict], target=REGRET_TARGET, cap=MAX_K_SHOWN) -> dict:
  """(method, family) -> expected number of target runs to reach regret <= target.

  From the largest-budget episodes' anytime curves: the index of the first target run whose
  best-so-far regret is <= target; an episode that never gets there counts as cap + 1.
  """
  kmax = collections.defaultdict(int)
  for r in records:
    kmax[(r["method"], r["family"])] = max(kmax[(r["method"], r["family"])], r["budget"])
  per = collections.defaultdict(list)
  for r in records:
    if r["budget"] != kmax[(r["method"], r["family"])]:
      continue
    hit = [i + 1 for i, g in enumerate(r["anytime_regret"]) if g <= target]
    per[(r["method"], r["family"])].append(min(hit[0], cap + 1) if hit else cap + 1)
  return {k: (float(np.mean(v)), float(np.mean(np.array(v) <= cap))) for k, v in per.items()}


# --- writing -------------------------------------------------------------------------------------

def write_results(records: list[dict], out_dir: str, command: str, extra_md: str = "") -> dict:
  os.makedirs(out_dir, exist_ok=True)
  rows = aggregate(records)
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
  plot_regret_vs_budget(records, os.path.join(out_dir, "regret_vs_budget.png"))
  return dict(rows=rows, markdown=md)


def _md_grid(title, methods, budgets, cell) -> list[str]:
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
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return lines + [""]


def leaderboard_md(records: list[dict], command: str) -> str:
  fam = family_table(records)
  allf = overall_table(records)
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
    return (float(v.mean()), *bootstrap_ci(v))

  lines += _md_grid("Overall (families weigh equally)", methods, budgets, cell_overall)
  for f in families:
    def cell(m, k, f=f):
      if (m, f, k) not in fam:
        return None
      v = fam[(m, f, k)]
      return (float(v.mean()), *bootstrap_ci(v))
    ms = [m for m in methods if any((m, f, k) in fam for k in budgets)]
    tasks = sorted({r["task"] for r in records if r["family"] == f})
    lines += _md_grid(f"{f} (targets: {', '.join(tasks)})", ms, budgets, cell)
  versus = versus_best_peer(records, budgets)
  if versus:
    lines += ["## Agents against the best peer", ""] + [f"- {v}" for v in versus] + [""]
  return "\n".join(lines)


def cost_to_target_md(records, command) -> str:
  ctt = cost_to_target(records)
  methods = sorted({m for m, _ in ctt})
  families = sorted({f for _, f in ctt})
  lines = [f"# Expected expensive runs to reach regret <= {REGRET_TARGET}", "",
           f"Made by: `{command}`", "",
           f"From the K={MAX_K_SHOWN} episodes' anytime curves; an episode that does not get there "
           f"counts as {MAX_K_SHOWN + 1}; '> {MAX_K_SHOWN}' when the mean exceeds {MAX_K_SHOWN}. "
           "In brackets: the fraction of seeds that got there.", "",
           "| method | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
  for m in methods:
    cells = []
    for f in families:
      if (m, f) not in ctt:
        cells.append("-")
        continue
      mean, frac = ctt[(m, f)]
      cells.append((f"> {MAX_K_SHOWN}" if mean > MAX_K_SHOWN else f"{mean:.2f}") + f" ({frac:.0%})")
    lines.append(f"| {m} | " + " | ".join(cells) + " |")
  return "\n".join(lines) + "\n"


def plot_regret_vs_budget(records, path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  fam = family_table(records)
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
      ci = np.array([bootstrap_ci(fam[(m, f, k)]) for k in ks])
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


def random_search_expectation(table, task, max_target_configs: int = 512) -> float:
  """Closed form: E[min regret of K target configs drawn uniformly without replacement]."""
  from math import comb
  t = table.fidelity_index(task.target)
  v = table.values_FxC[t][table.valid_FxC[t]].astype(np.float64) * table.sign()
  star, worst = v.min(), v.max()
  r = np.sort(np.clip((v - star) / max(worst - star, 1e-12), 0, 1))
  n, k = len(r), int(task.budget)
  probs = np.array([comb(n - i - 1, k - 1) for i in range(n)], np.float64) / comb(n, k)
  return float(np.dot(probs, r))


def summary_text(records: list[dict]) -> str:
  """What the main job prints at the end: per family and overall, at the smallest and largest K."""
  budgets = sorted({r["budget"] for r in records})
  ks = sorted({budgets[0], budgets[-1]})
  fam = family_table(records)
  allf = overall_table(records)
  families = sorted({r["family"] for r in records})
  methods = sorted({r["method"] for r in records})
  cols = families + ["overall"]
  w = max(12, max(len(c) for c in cols) + 1)
  lines = []
  for k in ks:
    lines.append(f"\nMean normalized regret at K={k} (lower is better; best per column marked *)")
    lines.append(f"{'method':<22}" + "".join(f"{c[:w - 1]:>{w}}" for c in cols))
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
      lines.append(f"{m:<22}" + "".join(cells))
  return "\n".join(lines + [""] + versus_best_peer(records, ks))


def versus_best_peer(records: list[dict], budgets) -> list[str]:
  """Each agent (method *_agent) against the best peer at each budget: overall, and per family
  below (strictly), level with (within 1e-6: both 0, say) or behind the family's best peer."""
  fam = family_table(records)
  allf = overall_table(records)
  families = sorted({r["family"] for r in records})
  methods = sorted({r["method"] for r in records})
  agents = [m for m in methods if m.endswith("_agent")]
  peers = [m for m in methods if m not in agents]
  lines = []
  for a in agents:
    for k in budgets:
      over = {m: float(allf[(m, k)][0].mean()) for m in peers
              if (m, k) in allf and allf[(m, k)][1] == len(families)}
      if (a, k) not in allf or not over:
        continue
      best = min(over, key=over.get)
      out = {"below": [], "level with": [], "behind": []}
      for f in families:
        vs = [float(fam[(m, f, k)].mean()) for m in peers if (m, f, k) in fam]
        if (a, f, k) not in fam or not vs:
          continue
        d = float(fam[(a, f, k)].mean()) - min(vs)
        out["below" if d < -1e-6 else "behind" if d > 1e-6 else "level with"].append(f)
      lines.append(f"{a} at K={k}: overall {float(allf[(a, k)][0].mean()):.4f} against the best "
                   f"peer's {over[best]:.4f} ({best}); per family "
                   + "; ".join(f"{w} the best peer on {len(fs)} ({', '.join(fs)})"
                               for w, fs in out.items() if fs))
  return lines
