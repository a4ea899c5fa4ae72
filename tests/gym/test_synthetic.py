"""The generated tables: shapes as documented, deterministic per seed, and the GRPO response
model has the properties the notes promise (moving lr optimum, flagged collapse region)."""
import json

import numpy as np
import pytest

from autollmr.gym import synthetic
from autollmr.gym.table import Table


@pytest.fixture(scope="module")
def tables():
  return {t.name: t for t in synthetic.synthetic_tables(0) + [synthetic.grpo_table(0)]}


def test_all_tables_construct_and_describe(tables):
  assert set(tables) == {"synthetic_steplaw_dense", "synthetic_hwgpt", "synthetic_admire",
                         "synthetic_regmix", "grpo"}
  for t in tables.values():
    assert isinstance(t, Table)
    assert t.provenance == ("semi-synthetic" if t.name == "grpo" else "synthetic")
    assert t.values_FxC.dtype == np.float32 and t.config_features_CxD.dtype == np.float32
    assert t.fidelity_features_FxG.dtype == np.float32 and t.cost_F.dtype == np.float64
    assert t.valid_FxC.dtype == bool and t.flagged_FxC.dtype == bool
    assert not np.any(t.flagged_FxC & ~t.valid_FxC)
    assert np.all(np.isfinite(t.config_features_CxD)) and np.all(np.isfinite(t.cost_F))
    assert np.all(np.diff(t.cost_F) >= 0), "fidelities must be ordered cheapest first"
    assert len(set(t.config_labels)) == t.num_configs
    assert t.notes and t.excluded == {}
    json.dumps(t.describe())  # must be JSON-serialisable


def test_steplaw_shape(tables):
  t = tables["synthetic_steplaw_dense"]
  assert t.num_fidelities == 17 and t.fidelity_names[0] == "N=215M,D=4B"
  assert t.fidelity_names[-1] == "N=1.07B,D=56.9B"
  assert t.config_feature_names == ("log2_lr", "log2_bs_tokens")
  assert t.fidelity_feature_names == ("log10_N", "log10_D")
  n_valid = t.valid_FxC.sum(1)
  assert np.all((n_valid >= 100) & (n_valid <= 120))
  assert len({tuple(row) for row in t.valid_FxC}) > 1, "config sets should differ across cells"
  assert np.all(t.values_FxC[t.flagged_FxC] > 3.5)
  assert np.all(t.values_FxC[t.valid_FxC & ~t.flagged_FxC] <= 3.5)
  assert 0 < t.flagged_FxC.sum() < 0.3 * t.valid_FxC.sum()


def test_hwgpt_spaces_are_disjoint(tables):
  t = tables["synthetic_hwgpt"]
  assert t.fidelity_names == ("S", "M", "L")
  assert t.config_feature_names == ("embed_tier", "depth_tier", "heads_frac", "mlp_ratio", "bias",
                                    "log10_params")
  assert np.all(t.valid_FxC.sum(0) == 1)  # each arch lives in exactly one space
  assert np.all(t.valid_FxC.sum(1) >= 200)
  lat = t.aux_FxC["lat_ms_h100"]
  assert np.array_equal(np.isnan(lat), ~t.valid_FxC) and np.all(lat[t.valid_FxC] > 0)
  # bigger archs have lower perplexity within a space
  f = 0
  v = t.valid_FxC[f]
  assert np.corrcoef(t.config_features_CxD[v, 5], t.values_FxC[f, v])[0, 1] < -0.8


def test_admire_nested(tables):
  t = tables["synthetic_admire"]
  assert t.num_configs == 256 and t.config_features_CxD.shape[1] == 19
  assert tuple(t.valid_FxC.sum(1)) == (256, 128, 76)
  assert np.all(t.valid_FxC[0] >= t.valid_FxC[1]) and np.all(t.valid_FxC[1] >= t.valid_FxC[2])
  np.testing.assert_allclose(t.config_features_CxD.sum(1), 1.0, atol=1e-5)


def test_regmix_shared_configs_and_rank_correlation(tables):
  t = tables["synthetic_regmix"]
  assert t.fidelity_names == ("1M", "60M") and t.num_configs == 256
  assert t.config_features_CxD.shape[1] == 17 and t.valid_FxC.all()
  for seed in range(3):
    rho, n = synthetic.synthetic_tables(seed)[3].spearman(0, 1)
    assert n == 256 and 0.7 < rho < 0.95


def _same(a: Table, b: Table) -> bool:
  pairs = [(getattr(a, k), getattr(b, k)) for k in Table.ARRAYS]
  pairs += [(a.aux_FxC[k], b.aux_FxC[k]) for k in a.aux_FxC]
  return all(np.array_equal(x, y, equal_nan=x.dtype.kind == "f") for x, y in pairs)


def test_deterministic_per_seed(tables):
  again = {t.name: t for t in synthetic.synthetic_tables(0) + [synthetic.grpo_table(0)]}
  other = {t.name: t for t in synthetic.synthetic_tables(1) + [synthetic.grpo_table(1)]}
  for name, t in tables.items():
    assert _same(t, again[name]), name
    assert t.config_labels == again[name].config_labels
    assert not np.array_equal(t.values_FxC, other[name].values_FxC, equal_nan=True), name


def test_grpo_shape(tables):
  t = tables["grpo"]
  assert t.num_fidelities >= 3 and t.valid_FxC.all()
  assert t.direction == "max" and t.objective == "heldout_accuracy"
  assert 200 <= t.num_configs <= 800
  assert "lr=1e-06,G=16,kl=0.001" in t.config_labels
  assert np.all(np.diff(t.fidelity_features_FxG[:, 0]) > 0)  # log10 params increases
  assert np.all((t.values_FxC >= 0) & (t.values_FxC <= 1))
  # bigger models reach higher accuracy at their best config
  best = [t.best_value(f) for f in range(t.num_fidelities)]
  assert np.all(np.diff(best) > 0)


def _best_lr(t: Table, f: int) -> float:
  """The lr with the highest median accuracy over the other axes (robust to noise)."""
  log2_lr = t.config_features_CxD[:, 0]
  grid = np.unique(log2_lr)
  med = [np.median(t.values_FxC[f, log2_lr == x]) for x in grid]
  return float(grid[int(np.argmax(med))])


def test_grpo_optimum_lr_moves_with_size():
  for seed in range(3):
    t = synthetic.grpo_table(seed)
    best = [_best_lr(t, f) for f in range(t.num_fidelities)]
    assert best[0] >= best[-1] + 1.0, best  # lr* falls 2.2 octaves 1.5B -> 32B; allow noise
    assert np.all(np.diff(best) <= 0.5), best  # never moves up by more than one grid step


def test_grpo_collapse_region_flagged_and_worse(tables):
  t = tables["grpo"]
  log2_lr, log10_kl = t.config_features_CxD[:, 0], t.config_features_CxD[:, 2]
  n_flagged = t.flagged_FxC.sum(1)
  assert np.all(n_flagged > 0) and n_flagged[0] > n_flagged[-1]  # worse at small N
  for f in range(t.num_fidelities):
    fl = t.flagged_FxC[f]
    assert t.values_FxC[f, fl].mean() < t.values_FxC[f, ~fl].mean() - 0.02
    assert log2_lr[fl].mean() > log2_lr.mean() + 1.0  # high lr ...
    assert log10_kl[fl].mean() < log10_kl.mean()  # ... and low KL
  # with the strongest KL, nothing collapses at 7B and above
  strong_kl = log10_kl == log10_kl.max()
  assert not t.flagged_FxC[2:, strong_kl].any()
