"""Landscape statistics (gym/landscape_stats.py) on tiny hand-made tables, computed by hand."""
import numpy as np
import pytest

from autollmr.gym import landscape_stats as ls
from autollmr.gym import synthetic
from autollmr.gym.table import Table


def table(values_FxC, x_C=(0, 1, 2, 3, 4), flagged_FxC=None, direction="min", levels=None):
  """One feature x (plus a constant one, which must be dropped), NaN = no run."""
  y_FxC = np.asarray(values_FxC, np.float32)
  F, C = y_FxC.shape
  x_CxD = np.stack([np.asarray(x_C, np.float32), np.ones(C, np.float32)], 1)
  return Table(
      name="t", family="other", provenance="synthetic", objective="loss", direction=direction,
      fidelity_names=tuple(f"f{i}" for i in range(F)), config_feature_names=("x", "const"),
      fidelity_feature_names=("log10_N",),
      config_features_CxD=x_CxD,
      fidelity_features_FxG=np.asarray(levels or range(F), np.float32)[:, None],
      values_FxC=y_FxC, valid_FxC=~np.isnan(y_FxC),
      flagged_FxC=np.zeros((F, C), bool) if flagged_FxC is None else np.asarray(flagged_FxC),
      cost_F=np.arange(1.0, F + 1), cost_unit="run")


def test_an_optimum_that_stays_put():
  t = table([[5, 4, 3, 2, 1], [7, 6, 5, 4, 3]])  # best: x = 4 at both
  s = ls.pair(t, 0, 1)
  assert s["rank_corr"] == pytest.approx(1.0)
  assert s["opt_shift"] == 0.0
  assert s["topk_regret_1"] == 0.0 and s["topk_regret_5"] == 0.0
  assert s["flagged"] == 0.0
  # neighbours one step apart differ by 1; IQR of 1..5 is 2 (and of 3..7): 1 / 2 at both
  assert s["noise_ratio"] == pytest.approx(0.5)


def test_a_reversed_ranking():
  t = table([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5]])
  s = ls.pair(t, 0, 1)
  assert s["rank_corr"] == pytest.approx(-1.0)
  # best x = 4 at f, x = 0 at g: z = +-sqrt(2) (x's sd is sqrt(2)); one varying feature
  assert s["opt_shift"] == pytest.approx(2 * np.sqrt(2))
  assert s["topk_regret_1"] == pytest.approx(1.0)  # the best at f is the worst at g
  assert s["topk_regret_5"] == 0.0  # all five configs: the best at g is among them


def test_direction_max_mirrors():
  s = ls.pair(table([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1]], direction="max"), 0, 1)
  assert s["topk_regret_1"] == pytest.approx(1.0)
  assert s["opt_shift"] == pytest.approx(2 * np.sqrt(2))


def test_topk_among_configs_valid_at_g_and_too_few_common_configs():
  nan = np.nan
  # x = 4 is best at f but never ran at g: top-1 is x = 3, the second best at g (2 - 1) / (4 - 1)
  t = table([[5, 4, 3, 2, 1], [nan, 4, 3, 2, nan]])
  s = ls.pair(t, 0, 1)
  assert s["topk_regret_1"] == pytest.approx(0.0)
  t = table([[5, 4, 3, 1, 2], [nan, 4, 1, 2, nan]])
  assert ls.pair(t, 0, 1)["topk_regret_1"] == pytest.approx((2 - 1) / (4 - 1))
  assert np.isnan(ls.pair(t, 0, 1)["rank_corr"])  # 3 common configs < 4


def test_flagged_fraction_exact():
  nan = np.nan
  flagged = np.zeros((2, 5), bool)
  flagged[0, [0, 1]] = True
  flagged[1, 3] = True
  t = table([[5, 4, 3, 2, 1], [nan, 4, 3, 2, 1]], flagged_FxC=flagged)
  assert ls.pair(t, 0, 1)["flagged"] == pytest.approx(3 / 9)  # 9 valid cells, 3 flagged


def test_adjacent_pairs_by_level_and_their_mean():
  # fidelity rows given out of order: levels 2, 0, 1 -> pairs (f1, f2), (f2, f0)
  t = table([[1, 2, 3, 4, 5], [5, 4, 3, 2, 1], [5, 4, 3, 2, 1]], levels=[2, 0, 1])
  order = ls.by_level(t, [0, 1, 2])
  assert order == [1, 2, 0]
  out = ls.adjacent(t, order)
  assert [(p["f"], p["g"]) for p in out["pairs"]] == [("f1", "f2"), ("f2", "f0")]
  assert [p["rank_corr"] for p in out["pairs"]] == pytest.approx([1.0, -1.0])
  assert out["mean"]["rank_corr"] == pytest.approx(0.0)
  assert out["mean"]["topk_regret_1"] == pytest.approx(0.5)
  assert all(np.isnan(v) for v in ls.adjacent(t, [0])["mean"].values())  # no pair


@pytest.mark.parametrize("t", synthetic.synthetic_tables(), ids=lambda t: t.name)
def test_synthetic_tables_in_range(t):
  out = ls.adjacent(t, ls.by_level(t, range(t.num_fidelities)))["mean"]
  assert set(out) == set(ls.STATS)
  for k in ("topk_regret_1", "topk_regret_5", "flagged"):
    assert np.isnan(out[k]) or 0.0 <= out[k] <= 1.0, (k, out[k])
  assert np.isnan(out["rank_corr"]) or -1.0 <= out["rank_corr"] <= 1.0
  assert out["opt_shift"] >= 0.0 and out["noise_ratio"] >= 0.0


def test_moved_regret_reads_the_nearest_cheaper_fidelity():
  """The target f2's nearest cheaper fidelity is f1 (not f0): its best config x = 0 has regret
  (3 - 1) / (5 - 1) = 0.5 at f2, a moved optimum; f0's best x = 4 is f1's worst; f0 has nothing
  below."""
  t = table([[5, 4, 3, 2, 1], [1, 2, 3, 4, 5], [3, 5, 4, 2, 1]])
  assert ls.moved_regret(t, 2) == pytest.approx(0.5) and 0.5 > ls.MOVED_REGRET
  assert ls.moved_regret(t, 1) == pytest.approx(1.0)
  assert np.isnan(ls.moved_regret(t, 0))
