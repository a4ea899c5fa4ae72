"""The leaderboard's overall score is the mean over families (each family weighs 1), not a pooled
mean over records: checked against a hand computation on families with unequal numbers of
targets, where the two differ, in stats.py and in every report that shows it."""
import numpy as np

from autollmr.evaluation import report
from autollmr.evaluation import stats

# family -> target -> per-seed regrets (seeds 0, 1) of the agent "x_agent"; family "a" has three
# targets, "b" one, so a pooled mean gives "a" three times b's weight.
AGENT = {"a": {"t1": (0.0, 0.3), "t2": (0.0, 0.3), "t3": (0.3, 0.0)}, "b": {"u1": (0.5, 0.7)}}
# by hand: a = (0.1, 0.2) per seed, b = (0.5, 0.7); overall per seed (0.3, 0.45), mean 0.375.
# Pooled over the 8 records: 2.1 / 8 = 0.2625.
WANT_SEEDS, WANT, POOLED = (0.3, 0.45), 0.375, 0.2625
# a peer "p": every target of "a" at 0.05, "b" at 0.6: overall (0.05 + 0.6) / 2 = 0.325, pooled
# (3 * 0.05 + 0.6) / 4 = 0.1875: the agent is behind the peer overall, ahead pooled.
PEER_A, PEER_B, PEER_WANT = 0.05, 0.6, 0.325


def records(train_seed=None) -> list[dict]:
  out = []
  for fam, targets in AGENT.items():
    for task, regrets in targets.items():
      for seed, r in enumerate(regrets):
        for method, v in (("x_agent", r), ("p", PEER_A if fam == "a" else PEER_B)):
          rec = dict(method=method, family=fam, task=task, budget=1, seed=seed, regret=v,
                     percentile=v, cost=1.0, n_invalid=0, n_repeat=0, n_turns=3,
                     decision_ms=1.0, rho=1.0, anytime_regret=[v])
          if train_seed is not None:
            rec["train_seed"] = train_seed
          out.append(rec)
  return out


def row(md: str, method: str, after: str = "") -> str:
  """The first markdown table row of `method` after the line holding `after`."""
  lines = md.splitlines()
  start = next(i for i, line in enumerate(lines) if after in line) if after else 0
  return next(line for line in lines[start:] if line.startswith(f"| {method} "))


def test_overall_is_the_mean_over_families():
  recs = records()
  pooled = np.mean([r["regret"] for r in recs if r["method"] == "x_agent"])
  assert np.isclose(pooled, POOLED) and not np.isclose(pooled, WANT)  # the case tells them apart
  fam = stats.family_table(recs)
  np.testing.assert_allclose(fam[("x_agent", "a", 1)], [0.1, 0.2])
  np.testing.assert_allclose(fam[("x_agent", "b", 1)], [0.5, 0.7])
  overall = stats.overall_table(recs)
  per_seed, n_families = overall[("x_agent", 1)]
  assert n_families == 2
  np.testing.assert_allclose(per_seed, WANT_SEEDS)
  assert np.isclose(per_seed.mean(), WANT)
  assert np.isclose(overall[("p", 1)][0].mean(), PEER_WANT)


def test_reports_show_the_mean_over_families():
  recs = records()
  summary = report.summary_md(recs, "cmd")  # the README's table
  assert f"{WANT:.4f}" in row(summary, "x_agent") and f"{PEER_WANT:.4f}" in row(summary, "p")
  board = report.leaderboard_md(recs, "cmd")
  assert row(board, "x_agent", "Overall").split("|")[2].strip().startswith(f"{WANT:.4f} [")
  assert row(board, "p", "Overall").split("|")[2].strip().startswith(f"**{PEER_WANT:.4f} [")
  line, = stats.versus_best_peer(recs, [1])
  assert line.startswith(f"x_agent at K=1: overall {WANT:.4f} against the best peer's "
                         f"{PEER_WANT:.4f} (p)")
  text = report.summary_text(recs)  # what the main job prints: the last column is overall
  agent_line = next(s for s in text.splitlines() if s.startswith("x_agent"))
  assert agent_line.split()[-1].rstrip("*") == f"{WANT:.4f}"
  # ablate --train_seeds: each training seed's overall is the same mean over families
  recs2 = records(0) + [dict(r, train_seed=1, regret=r["regret"] + 0.1) for r in records()]
  md = report.per_training_seed_md(recs2, ["x_agent"])
  assert f"| x_agent | 0 | {WANT:.4f} |" in md and f"| x_agent | 1 | {WANT + 0.1:.4f} |" in md
