"""Curation: the splits, and that no test target's values can reach training."""
import json

import numpy as np
import pytest

import lr_bs_sweep  # tests/lr_bs_sweep.py
from autollmr import errors
from autollmr import pipeline
from autollmr.agent import bank as bank_lib
from autollmr.gym import build
from autollmr.gym import sources
from autollmr.gym import synthetic
from autollmr.gym import tasks as tasks_lib
from configs import sft as sft_config
from autollmr.peers import learned
from configs import common


def _tables():
  out = {t.name: t for t in synthetic.synthetic_tables()}
  out["grpo"] = synthetic.grpo_table()
  out["synthetic_hwgpt_lat"] = sources.constrain(out["synthetic_hwgpt"], "lat_ms_h100", 0.5)
  available = set(sources.available_tables())  # a data dir may lack a source; a load never fails
  for n in ("steplaw_dense", "hwgpt", "admire", "regmix"):
    if n in available:
      out[n] = sources.load_table(n)
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


def test_held_out_tables_test_every_level_and_train_nothing():
  """--config.tasks.held_out (the benchmark's lofo protocol): every level above the lowest is a
  test target of the held-out table; the other tables only train."""
  c = sft_config.get_config("tiny")
  c.tasks.families = "synthetic_steplaw_dense,synthetic_admire,grpo"
  c.tasks.held_out = "synthetic_steplaw_dense"
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AUTOLLMR_DATA", "none")
    tables, splits = pipeline.build_tables(c)
  t = tables["synthetic_steplaw_dense"]
  lv = tasks_lib.levels(t)
  s = splits["synthetic_steplaw_dense"]
  assert not s["train"] and not s["val"]
  assert {x.target for x in s["test"]} == {n for f, n in enumerate(t.fidelity_names)
                                           if lv[f] > min(lv) and t.valid_FxC[f].any()}
  assert all(lv[t.fidelity_names.index(v)] < lv[t.fidelity_names.index(x.target)]
             for x in s["test"] for v in x.visible)
  assert not splits["synthetic_admire"]["test"] and splits["synthetic_admire"]["train"]
  c.tasks.held_out = "nope"
  with pytest.raises(errors.UserError, match="--config.tasks.held_out names"):
    with pytest.MonkeyPatch.context() as mp:
      mp.setenv("AUTOLLMR_DATA", "none")
      pipeline.build_tables(c)


# --- spec tables and chosen targets (--config.tasks.specs / test_specs / targets) ----------------


def write_spec_table(folder, name="mine", family="data_mixture_pretrain",
                     sizes=(1e7, 3e7, 1e8, 3e8)) -> str:
  """A CSV of generated runs (lr x batch size at each model size) and its spec; the spec's path."""
  rng = np.random.default_rng(0)
  rows = ["lr,bs,params,loss"]
  for n in sizes:
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
      for bs in (64, 128, 256):
        loss = (3 + 0.2 * np.log10(3e8 / n) + 0.3 * (np.log10(lr) + 3 - 0.1 * np.log10(n / 1e7))
                ** 2 + 0.05 * np.log2(bs / 128) ** 2 + 0.01 * rng.normal())
        rows.append(f"{lr},{bs},{n:g},{loss:.5f}")
  (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
  spec = lr_bs_sweep.lr_bs_spec(name, family, f"{name}.csv")
  path = folder / f"{name}.json"
  path.write_text(json.dumps(spec))
  return str(path)


@pytest.fixture
def spec_config(tmp_path, monkeypatch):
  """configs/common.py on the synthetic tables, a table cache in tmp_path, budgets 1 and 2."""
  monkeypatch.setenv("AUTOLLMR_CACHE", str(tmp_path / "cache"))
  c = common.base()
  c.data_dir = "none"
  c.tasks.budgets = "1,2"
  return c


@pytest.mark.parametrize("targets", ["", "mine=N=100M,synthetic_admire=Qwen2.5-3B"])
@pytest.mark.parametrize("kind", ["specs", "test_specs"])
def test_spec_tables_and_chosen_targets_never_reach_training(tmp_path, spec_config, kind,
                                                             targets):
  """A spec table (trained on, or only tested) beside built-in ones, with and without chosen
  targets: no fidelity at or above a test target's level reaches a training task, the training
  view (simulation, SFT, RL: the banks) or the learned peers' training sources; a test-only table
  reaches none of them at all."""
  c = spec_config
  c.tasks[kind] = write_spec_table(tmp_path)  # family data_mixture_pretrain: regmix borrows it
  c.tasks.families = "mine,synthetic_regmix,synthetic_admire"
  c.tasks.targets = targets
  tables, splits = pipeline.build_tables(c)
  assert set(tables) == {"mine", "synthetic_regmix", "synthetic_admire"}
  chosen = {"mine": {"N=100M"}, "synthetic_admire": {"Qwen2.5-3B"}} if targets else {}
  ceiling = {}  # table -> the lowest test target's level: training stays strictly below it
  for name, table in tables.items():
    s = splits[name]
    lv = dict(zip(table.fidelity_names, tasks_lib.levels(table)))
    tested = {t.target for t in s["test"]}
    assert tested == chosen.get(name, {f for f in lv if lv[f] == max(lv.values())})
    ceiling[name] = min(lv[t] for t in tested)
    assert tasks_lib.check_no_leak(table, s) == []
    train = s["train"] + s["val"]
    if name == "mine" and kind == "test_specs":
      assert not train
    for t in train:
      assert all(lv[f] < ceiling[name] for f in (t.target,) + t.visible), t
    if train:
      view = tasks_lib.training_table(table, train)
      assert all(lv[f] < ceiling[name] for f in view.fidelity_names), view.fidelity_names
  assert splits["mine"]["train"] or kind == "test_specs"  # 30M (and 100M without targets)
  # The banks simulation, SFT and RL build: training_table views of the train / val tasks only.
  for split in ("train", "val"):
    bank = bank_lib.build_bank(c, tables, splits, split, 64, 128)
    names = [n for n, _ in bank["table_sizes"]] if bank else []
    assert ("mine" in names) == (kind == "specs" and bool(splits["mine"][split])), (split, names)
    for t in bank["tasks"] if bank else []:
      lv = dict(zip(tables[t.table].fidelity_names, tasks_lib.levels(tables[t.table])))
      assert all(lv[f] < ceiling[t.table] for f in (t.target,) + t.visible), t
    if bank:
      fids = sum(tasks_lib.training_table(tables[n], splits[n]["train"] + splits[n]["val"])
                 .num_fidelities for n in names)
      assert bank["params"].values_FxC.shape[0] == fids
  # The learned peers (meta_regressor, fsbo) train on training_views of what the eval stage
  # ships them: never a test-only table, never a fidelity at or above a test target's level.
  seen = set()
  try:
    for _, parts in pipeline.peer_jobs(c, tables, splits, ["meta_regressor"]):
      for table, tests, src in parts:
        learned.set_training_sources(**src)
        for t in tests:
          for view, ts in learned.training_views(table, table.fidelity_index(t.target)):
            seen.add((table.name, view.name))
            assert not (view.name == "mine" and kind == "test_specs"), (table.name, view.name)
            lv = dict(zip(tables[view.name].fidelity_names, tasks_lib.levels(tables[view.name])))
            assert all(lv[f] < ceiling[view.name] for f in view.fidelity_names), view.name
            assert all(x in splits[view.name]["train"] + splits[view.name]["val"] for x in ts)
  finally:
    learned.set_training_sources(None)
  if kind == "specs":  # regmix, with no training tasks of its own, borrows its family's
    assert ("synthetic_regmix", "mine") in seen and ("mine", "mine") in seen
  else:
    assert not {v for _, v in seen} & {"mine"}


def test_chosen_targets_on_a_table():
  """A chosen target replaces the top level; training stays below its level; test_only leaves
  test tasks only; unknown or unlearnable targets are one line listing what exists."""
  table = _tables()["synthetic_steplaw_dense"]  # 5 model sizes
  lv = dict(zip(table.fidelity_names, tasks_lib.levels(table)))
  target = "N=537M,D=10B"
  split = tasks_lib.curate(table, budgets=(1,), targets=(target,))
  assert {t.target for t in split["test"]} == {target}
  assert all(lv[v] < lv[target] for v in split["test"][0].visible)
  train = split["train"] + split["val"]
  assert train and all(lv[f] < lv[target] for t in train for f in (t.target,) + t.visible)
  assert {lv[t.target] for t in split["val"]} == {max(lv[t.target] for t in train)}
  only = tasks_lib.curate(table, budgets=(1,), targets=(target,), test_only=True)
  assert only["test"] == split["test"] and not only["train"] + only["val"]
  only = tasks_lib.curate(table, budgets=(1,), test_only=True)
  assert only["test"] == tasks_lib.curate(table, budgets=(1,))["test"] and not only["train"]
  with pytest.raises(errors.UserError, match=r"no such fidelity; its fidelities: \['N=215M,D=4B'"):
    tasks_lib.curate(table, targets=("N=70B",))
  with pytest.raises(errors.UserError, match="no lower-level, cheaper fidelity"):
    tasks_lib.curate(table, targets=("N=215M,D=4B",))


def test_spec_and_target_flags_name_the_mistake(tmp_path, spec_config):
  c = spec_config
  c.tasks.families = "synthetic_admire,synthetic_regmix"
  tables = pipeline.load_tables(c)
  for targets, names in (("nope=1B", "tables in use: synthetic_admire, synthetic_regmix"),
                         ("synthetic_admire=70B", "'Qwen2.5-0.5B', 'Qwen2.5-3B', 'Qwen2.5-7B'")):
    c.tasks.targets = targets
    with pytest.raises(errors.UserError, match="--config.tasks.targets") as e:
      pipeline.curate_all(c, tables)
    assert names in str(e.value) and "\n" not in str(e.value)
  c.tasks.targets = ""
  c.tasks.specs = str(tmp_path / "missing.json")
  with pytest.raises(errors.UserError, match="tasks.specs: spec file not found: .*missing"):
    pipeline.load_tables(c)
  (tmp_path / "a").mkdir()
  (tmp_path / "b").mkdir()
  c.tasks.specs = write_spec_table(tmp_path / "a", name="synthetic_admire")
  with pytest.raises(errors.UserError, match=r"a/synthetic_admire.json .*built-in.*synthetic.py"):
    pipeline.load_tables(c)
  c.tasks.specs = write_spec_table(tmp_path / "a")
  c.tasks.test_specs = write_spec_table(tmp_path / "b")
  with pytest.raises(errors.UserError, match=r"a/mine.json and .*b/mine.json are both named"):
    pipeline.load_tables(c)
  c.tasks.specs, c.tasks.test_specs = write_spec_table(tmp_path, sizes=(1e7,)), ""
  c.tasks.families = "mine"
  with pytest.raises(errors.UserError, match=r"'mine' \(.*mine.json\) gives no test task"):
    pipeline.build_tables(c)
