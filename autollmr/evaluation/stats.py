"""Aggregation of episode records: per task, per family, overall (families weigh equally)."""
from __future__ import annotations

import collections
from math import comb

import numpy as np

REGRET_TARGET = 0.01  # cost_to_target: runs needed to reach this regret

MAX_K_SHOWN = 5


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


def random_search_expectation(table, task, max_target_configs: int = 512) -> float:
  """Closed form: E[min regret of K target configs drawn uniformly without replacement]."""
  t = table.fidelity_index(task.target)
  v = table.values_FxC[t][table.valid_FxC[t]].astype(np.float64) * table.sign()
  star, worst = v.min(), v.max()
  r = np.sort(np.clip((v - star) / max(worst - star, 1e-12), 0, 1))
  n, k = len(r), int(task.budget)
  probs = np.array([comb(n - i - 1, k - 1) for i in range(n)], np.float64) / comb(n, k)
  return float(np.dot(probs, r))


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
