"""The benchmark's statistics against a case computed by hand (two families of unequal target
counts, a target with two seeds), the bootstrap's sanity, and the figures."""
import json

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sp_stats

from autollmr.evaluation import bench_plots
from autollmr.evaluation import bench_stats
from autollmr.evaluation import stats

# family A: table tA, target a1; family B: table tB1 (targets b1, b2) and tB2 (target b3).
TARGETS = {"a1": ("A", "tA"), "b1": ("B", "tB1"), "b2": ("B", "tB1"), "b3": ("B", "tB2")}
# (method, K) -> target -> regrets over seeds; b1 has two seeds
HAND = {
    ("agent", 1): dict(a1=[0.0], b1=[0.1, 0.3], b2=[0.4], b3=[0.6]),
    ("peer", 1): dict(a1=[0.5], b1=[0.2, 0.2], b2=[0.1], b3=[0.6005]),
    ("random", 1): dict(a1=[1.0], b1=[0.5, 0.5], b2=[0.5], b3=[0.9]),
    ("agent", 5): dict(a1=[0.0], b1=[0.0, 0.01], b2=[0.005], b3=[0.5]),
    ("peer", 5): dict(a1=[0.2], b1=[0.0, 0.0], b2=[0.0], b3=[0.3]),
    ("random", 5): dict(a1=[0.5], b1=[0.5, 0.5], b2=[0.5], b3=[0.5]),
}


def records(hand=HAND, regime="full", provenance="real"):
  return pd.DataFrame([
      dict(method=m, regime=regime, K=k, protocol="lofo", table=TARGETS[t][1],
           family=TARGETS[t][0], target=t, seed=s, regret=r, provenance=provenance)
      for (m, k), per in hand.items() for t, rs in per.items() for s, r in enumerate(rs)])


def one_table(scores_per_method, tables=None):
  """records: one seed, family F; target i in table tables[i] (default: all in one table)."""
  rows = []
  for m, scores in scores_per_method.items():
    for i, r in enumerate(scores):
      rows.append(dict(method=m, regime="full", K=1, protocol="lofo",
                       table=tables[i] if tables else "t", family="F", target=f"x{i}", seed=0,
                       regret=float(r), provenance="real"))
  return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def hand_summary():
  return bench_stats.summarize(records(), "agent", n_boot=2000)


def test_hand_case_means_ranks_and_pairs(hand_summary):
  cell = hand_summary["methods"]["agent"]["full"]["1"]
  # family A: 0.0; family B: (0.2 + 0.4 + 0.6) / 3 = 0.4; headline (0.0 + 0.4) / 2
  assert cell["mean"] == pytest.approx(0.2)
  peer = hand_summary["methods"]["peer"]["full"]["1"]
  assert peer["mean"] == pytest.approx((0.5 + (0.2 + 0.1 + 0.6005) / 3) / 2)
  assert hand_summary["methods"]["random"]["full"]["1"]["mean"] == pytest.approx((1 + 1.9 / 3) / 2)
  # ranks per target: a1 (1, 2, 3), b1 (1.5, 1.5, 3), b2 (2, 1, 3), b3 (1, 2, 3)
  assert cell["mean_rank"] == pytest.approx((1 + (1.5 + 2 + 1) / 3) / 2)
  assert peer["mean_rank"] == pytest.approx((2 + (1.5 + 1 + 2) / 3) / 2)
  assert hand_summary["methods"]["random"]["full"]["1"]["mean_rank"] == pytest.approx(3)
  assert cell["iqm"] == pytest.approx(0.3)  # trimmed mean of 0, .2, .4, .6
  assert cell["n_targets"] == 4 and cell["n_families"] == 2 and cell["complete"]
  assert hand_summary["slices"]["full"]["1"] == dict(n_targets=4, n_tables=3, n_families=2,
                                                     n_targets_resampled=2)  # b1, b2
  vs = cell["peers"]["peer"]
  assert vs["diff"] == pytest.approx(0.2 - peer["mean"])  # agent - peer < 0: the agent is better
  # a1 win, b1 tie (equal), b2 loss, b3 tie (|0.6 - 0.6005| <= TIE_TOL)
  assert (vs["win"], vs["tie"], vs["loss"], vs["n_targets"]) == (1, 2, 1, 4)
  assert (cell["peers"]["random"]["win"], cell["peers"]["random"]["loss"]) == (4, 0)
  # P(agent seed < peer seed): a1 1, b1 2 of 4 pairs, b2 0, b3 1 -> (1 + 1.5 / 3) / 2
  assert vs["prob_improvement"] == pytest.approx(0.75)
  assert "peers" not in peer  # only agents compare themselves to the others
  fam = {(r["method"], r["family"], r["K"]): r for r in hand_summary["families"]}
  assert fam[("agent", "B", 1)]["mean"] == pytest.approx(0.4)
  assert fam[("agent", "B", 1)]["mean_rank"] == pytest.approx(1.5)
  assert fam[("agent", "A", 1)]["n_targets"] == 1 and fam[("agent", "B", 1)]["n_targets"] == 3
  fv = {(r["peer"], r["family"], r["K"]): r for r in hand_summary["family_versus"]}
  assert (fv[("peer", "B", 1)]["win"], fv[("peer", "B", 1)]["tie"],
          fv[("peer", "B", 1)]["loss"]) == (0, 2, 1)
  assert fv[("peer", "A", 1)]["diff"] == pytest.approx(-0.5)


def test_hand_case_runs_to_target(hand_summary):
  rt = hand_summary["runs_to_target"]
  # agent: a1 at K=1, b1 (0.005) and b2 at K=5, b3 never -> (1 + (5 + 5) / 2) / 2
  assert rt["agent"]["full"] == dict(mean=3.0, n_reached=3, n_never=1, n_targets=4, max_K=5)
  # peer: only b1, b2 (family B) get there, at K=5
  assert rt["peer"]["full"]["mean"] == 5.0 and rt["peer"]["full"]["n_never"] == 2
  assert rt["random"]["full"]["mean"] is None and rt["random"]["full"]["n_never"] == 4
  fam = {(r["method"], r["family"]): r for r in hand_summary["family_runs_to_target"]}
  assert fam[("agent", "B")]["mean"] == 5.0 and fam[("agent", "B")]["n_never"] == 1
  assert fam[("peer", "A")]["mean"] is None


def test_not_the_pooled_mean(hand_summary):
  """The overall score is the mean over families, not a pooled mean over records (0.28) nor over
  targets (0.3); with equal seeds it is the leaderboard's overall number (stats.overall_table)."""
  df = records()
  agent = df[(df["method"] == "agent") & (df["K"] == 1)]
  mean = hand_summary["methods"]["agent"]["full"]["1"]["mean"]
  assert agent["regret"].mean() == pytest.approx(0.28) and mean != pytest.approx(0.28)
  assert mean != pytest.approx(agent.groupby("target")["regret"].mean().mean())
  rng = np.random.default_rng(1)
  rows = [dict(method=m, regime="full", K=1, protocol="standard", table=f"t{f}{i % 2}",
               family=f"F{f}", target=f"x{f}{i}", seed=s, regret=float(rng.uniform()),
               provenance="real")
          for m in ("agent", "peer") for f, n in enumerate((1, 2, 5)) for i in range(n)
          for s in range(3)]
  got = bench_stats.summarize(pd.DataFrame(rows), "agent", n_boot=200)["methods"]
  board = stats.overall_table([dict(r, budget=r["K"], task=r["target"]) for r in rows])
  for m in ("agent", "peer"):
    assert got[m]["full"]["1"]["mean"] == pytest.approx(float(board[(m, 1)][0].mean()))


def test_friedman_is_scipys_over_targets(hand_summary):
  info = hand_summary["friedman"]["full"]["1"]  # 4 targets: below autorank's 5
  assert info["p"] is None and "5 targets" in info["note"]
  assert set(hand_summary["friedman"]["full"]) == {"1", "5"}
  rng = np.random.default_rng(3)
  mat = {m: rng.uniform(size=7) * (0.5 if m == "agent" else 1) for m in ("agent", "p1", "p2", "p3")}
  mat["p3"][:] = mat["p2"]  # ties between methods get averaged ranks
  info = bench_stats.summarize(one_table(mat), "agent", n_boot=100)["friedman"]["full"]["1"]
  assert info["p"] == pytest.approx(sp_stats.friedmanchisquare(*mat.values()).pvalue)
  ranks = sp_stats.rankdata(np.stack(list(mat.values()), 1), axis=1).mean(0)
  assert info["mean_rank_per_target"] == pytest.approx(dict(zip(mat, ranks)))
  assert info["n_targets"] == 7 and info["cd"] > 0 and info["left_out"] == []


def test_json_round_trip_and_same_numbers(hand_summary):
  assert json.loads(json.dumps(hand_summary, allow_nan=False)) == hand_summary
  assert bench_stats.summarize(records(), "agent", n_boot=2000) == hand_summary


def test_ci_contains_mean_shrinks_and_collapses(hand_summary):
  for m in ("agent", "peer", "random"):
    c = hand_summary["methods"][m]["full"]["1"]
    assert c["ci_low"] <= c["mean"] <= c["ci_high"]
    # random's b1 and b2 (the only table with two targets) are equal: no spread
    assert (c["ci_low"] < c["ci_high"]) == (m != "random")
  vs = hand_summary["methods"]["agent"]["full"]["1"]["peers"]["peer"]
  assert vs["diff_ci_low"] <= vs["diff"] <= vs["diff_ci_high"]
  rng = np.random.default_rng(0)

  def width(n):
    c = bench_stats.summarize(one_table({"agent": rng.uniform(size=n)}), "agent", n_boot=2000)
    c = c["methods"]["agent"]["full"]["1"]
    assert c["ci_low"] <= c["mean"] <= c["ci_high"]
    return c["ci_high"] - c["ci_low"]

  assert width(80) < 0.6 * width(5)
  same = bench_stats.summarize(one_table({"agent": [0.3] * 6}), "agent")["methods"]["agent"]
  assert same["full"]["1"]["ci_low"] == same["full"]["1"]["ci_high"] == pytest.approx(0.3)


def test_bootstrap_stratified_by_table_and_paired():
  # one target per table: a stratified draw keeps every target, so there is no spread
  df = one_table({"agent": [0.1, 0.5, 0.9]}, tables=["t0", "t1", "t2"])
  c = bench_stats.summarize(df, "agent")["methods"]["agent"]["full"]["1"]
  assert c["ci_low"] == pytest.approx(0.5) and c["ci_high"] == pytest.approx(0.5)
  # a peer 0.1 worse on every target: the paired difference is exactly -0.1 in every draw
  a = np.random.default_rng(0).uniform(0, 0.8, size=12)
  out = bench_stats.summarize(one_table({"agent": a, "peer": a + 0.1}), "agent")
  vs = out["methods"]["agent"]["full"]["1"]["peers"]["peer"]
  assert vs["diff_ci_low"] == pytest.approx(-0.1) and vs["diff_ci_high"] == pytest.approx(-0.1)
  assert out["methods"]["agent"]["full"]["1"]["ci_high"] > out["methods"]["agent"]["full"]["1"][
      "ci_low"] + 0.05  # while each method's own CI is wide
  idx = bench_stats.stratified_draws(np.array([0, 0, 1, 1, 1]), 50, 0)
  assert np.all(idx[:, :2] < 2) and np.all(idx[:, 2:] >= 2)  # draws stay in their table


def test_records_checked_and_split_by_provenance():
  semi = records(provenance="semi-synthetic")
  both = pd.concat([records(), semi])
  with pytest.raises(ValueError, match="provenance"):
    bench_stats.summarize(both, "agent")
  parts = bench_stats.by_provenance(both)
  assert sorted(parts) == ["real", "semi-synthetic"] and len(parts["real"]) == len(records())
  with pytest.raises(ValueError, match="duplicate"):
    bench_stats.summarize(pd.concat([records(), records().iloc[:1]]), "agent")
  with pytest.raises(ValueError, match="no records"):
    bench_stats.summarize(records(), ["agent", "nobody"])


def test_markdown_states_where_the_agent_stands(hand_summary):
  md = bench_stats.markdown(hand_summary)
  assert "| agent | 0.2000 [" in md and "Regime `full`" in md
  assert "Friedman test at K = 1: not run" in md
  line = next(x for x in md.splitlines() if x.startswith("- agent at K = 1"))
  # agent - peer is below 0 in every draw, for both peers
  assert "below random (-0.6167 [" in line and ", peer (-0.2001 [" in line
  assert "not distinguishable" not in line and "above" not in line
  both = bench_stats.summarize(records(), ["agent", "peer"], n_boot=500)
  line = next(x for x in bench_stats.markdown(both).splitlines() if x.startswith("- peer at K = 1"))
  assert "above agent" in line  # the peer's regret is higher than the agent's
  fuzzy = dict(diff=0.01, diff_ci_low=-0.02, diff_ci_high=0.03)
  assert bench_stats.standing(fuzzy) == "not distinguishable from"


def test_plots(tmp_path, hand_summary):
  two = pd.concat([records(), records(regime="online")])
  s = bench_stats.summarize(two, "agent", n_boot=200)
  for path in (bench_plots.plot_regret_vs_k(s, str(tmp_path / "rvk.png")),
               bench_plots.plot_cd_diagrams(two, str(tmp_path / "cd.png"))):
    assert open(path, "rb").read(4) == b"\x89PNG"
