"""The landscape prior: well-formed tables, every effect both absent and present, train-only."""
import numpy as np
import pytest

from autollmr.gym import prior
from autollmr.gym import tasks as tasks_lib
from configs import common


@pytest.fixture(scope="module")
def drawn():
  return {k: prior.sample_tables(0, k, 60) for k in ("pretraining_hparams", "compute_allocation")}


def top1_regret(t):
  """Regret at the top fidelity of the next-lower fidelity's best config."""
  lo, hi = t.valid_FxC[-2], t.valid_FxC[-1]
  both = lo & hi
  c = np.flatnonzero(both)[np.argmin(t.values_FxC[-2, both])]
  v = t.values_FxC[-1, hi]
  return (t.values_FxC[-1, c] - v.min()) / max(v.max() - v.min(), 1e-12)


def test_tables_are_well_formed(drawn):
  for tables in drawn.values():
    for t in tables:  # Table.__post_init__ checks shapes and names
      assert 2 <= t.num_fidelities <= prior.PriorSizes().fidelities
      assert (t.valid_FxC.sum(1) >= 3).all()
      assert np.isfinite(t.values_FxC[t.valid_FxC]).all()
      assert np.isnan(t.values_FxC[~t.valid_FxC]).all()
      assert not (t.flagged_FxC & ~t.valid_FxC).any()
      assert (np.diff(t.cost_F) > 0).all()
      assert (np.diff(t.fidelity_features_FxG[:, 0]) > 0).all()  # a larger model each level


def test_every_effect_absent_and_present(drawn):
  tables = drawn["pretraining_hparams"]
  reg = np.array([top1_regret(t) for t in tables if (t.valid_FxC[-2] & t.valid_FxC[-1]).sum()])
  assert (reg == 0).mean() > 0.2 and (reg > 0.05).mean() > 0.1  # the optimum stays / moves
  flagged = np.array([t.flagged_FxC.any() for t in tables])
  assert 0.1 < flagged.mean() < 0.9  # divergence cliffs in some draws only
  shifted = np.array([(t.valid_FxC.sum(1) < t.num_configs).any() for t in tables])
  assert 0.1 < shifted.mean() < 0.95  # missing runs / configuration-space shift in some draws
  for t in drawn["compute_allocation"]:  # each budget runs the sizes around its own optimum
    assert not (t.valid_FxC[0] == t.valid_FxC[-1]).all()


def test_draws_are_reproducible(drawn):
  again = prior.sample_tables(0, "pretraining_hparams", 60)  # the compiled program is reused
  for a, b in zip(drawn["pretraining_hparams"], again):
    np.testing.assert_array_equal(a.values_FxC, b.values_FxC)
    np.testing.assert_array_equal(a.config_features_CxD, b.config_features_CxD)


def test_drawn_tables_train_and_validate_only():
  pc = common.base().prior
  pc.tables, pc.val_tables, pc.kinds = 2, 1, "compute_allocation"  # the quickest to compile
  tables, splits = prior.tables_and_splits(pc, (1, 3), extra_turns=2)
  assert len(tables) == 3 and all(prior.is_drawn(n) for n in tables)
  for n, s in splits.items():
    assert not s["test"]
    tasks = s["train"] + s["val"]
    assert tasks and {t.split for t in tasks} == {"val" if "_val_" in n else "train"}
    low = tables[n].fidelity_names[0]
    assert all(t.target != low and low in t.visible for t in tasks)
  assert tasks_lib.check_no_leak(tables[n], splits[n]) == []
  pc.kinds = "astrology"
  with pytest.raises(Exception, match="astrology"):
    prior.tables_and_splits(pc, (1,), extra_turns=2)
