"""No leak, by garbage: every fidelity outside a table's training view (its test targets, anything
at or above their level, a test-only table as a whole) is filled with garbage, and everything the
training stages build must be bit-identical to what they build from the clean tables: the banks of
simulation, SFT and RL (train, val with its sub-studies, rl, held), the text policy's lines, the
teacher's records, and the views the learned peers train on (standard and leave-one-family-out:
--config.tasks.held_out).
A split made to leak on purpose is flagged by check_no_leak and breaks the bit-identity."""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest

import lr_bs_sweep  # tests/lr_bs_sweep.py
from autollmr import pipeline
from autollmr.agent import bank as bank_lib
from autollmr.agent import simulate
from autollmr.gym import tasks as tasks_lib
from autollmr.peers import learned
from autollmr.text import train as lm_train
from configs import sft as sft_config

FAMILIES = "synthetic_steplaw_dense,grpo,synthetic_admire,synthetic_regmix"


def write_spec_table(folder, name, family="data_mixture_pretrain",
                     sizes=(1e7, 3e7, 1e8, 3e8)) -> str:
  """A CSV of generated runs (lr x batch size at each model size) and its spec; the spec's path.
  Four sizes: 30M trains, 100M validates, 300M is the test target."""
  rng = np.random.default_rng(len(name))
  rows = ["lr,bs,params,loss"]
  for n in sizes:
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
      for bs in (64, 128, 256):
        loss = (3 + 0.2 * np.log10(3e8 / n) + 0.3 * (np.log10(lr) + 3) ** 2
                + 0.05 * np.log2(bs / 128) ** 2 + 0.01 * rng.normal())
        rows.append(f"{lr},{bs},{n:g},{loss:.5f}")
  (folder / f"{name}.csv").write_text("\n".join(rows) + "\n")
  spec = lr_bs_sweep.lr_bs_spec(name, family, f"{name}.csv")
  path = folder / f"{name}.json"
  path.write_text(json.dumps(spec))
  return str(path)


@pytest.fixture
def leak_config(tmp_path, monkeypatch):
  """configs/sft.py:tiny on four synthetic tables (one 'max', one without training tasks), a spec
  table trained on ("mine") and a test-only one ("theirs"); one teacher seed, two draws."""
  monkeypatch.setenv("AUTOLLMR_CACHE", str(tmp_path / "cache"))
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  c = sft_config.get_config("tiny")
  c.tasks.specs = write_spec_table(tmp_path, "mine")
  c.tasks.test_specs = write_spec_table(tmp_path, "theirs", family="pretraining_hparams")
  c.tasks.families = FAMILIES + ",mine,theirs"
  c.sim.seeds, c.sim.draws, c.sft.val_draws = 2, 2, 2
  assert float(c.rl.holdout_configs) > 0  # the held bank is built
  return c


def training_fidelities(table, split) -> set:
  return {f for t in split["train"] + split["val"] for f in (t.target,) + t.visible}


def garble(table, fids, rng):
  """The table with fidelities `fids` replaced by garbage: huge values of either sign (also in
  invalid cells), validity and flags flipped at random (at least one valid result left, so the
  curation is the same), aux metrics likewise."""
  vals, valid = table.values_FxC.copy(), table.valid_FxC.copy()
  flagged = table.flagged_FxC.copy()
  aux = {k: v.copy() for k, v in table.aux_FxC.items()}
  C = table.num_configs
  junk = lambda: (rng.choice([-1.0, 1.0], C) * 10.0 ** rng.uniform(-3, 30, C)).astype(np.float32)
  for f in fids:
    valid[f] ^= rng.random(C) < 0.5
    valid[f, rng.integers(C)] = True
    vals[f] = np.where(valid[f] | (rng.random(C) < 0.5), junk(), np.nan)
    flagged[f] = valid[f] & (rng.random(C) < 0.5)
    for v in aux.values():
      v[f] = junk()
  return table.with_changes(values_FxC=vals, valid_FxC=valid, flagged_FxC=flagged, aux_FxC=aux)


def garbage_tables(tables, splits, seed=0) -> dict:
  """Every fidelity no train / val task uses filled with garbage (a table without training tasks:
  all of it)."""
  rng = np.random.default_rng(seed)
  out = {}
  for name, table in tables.items():
    used = training_fidelities(table, splits[name])
    fids = [f for f, n in enumerate(table.fidelity_names) if n not in used]
    assert {t.target for t in splits[name]["test"]} <= {table.fidelity_names[f] for f in fids}
    out[name] = garble(table, fids, rng)
  return out


def assert_bit_identical(a, b, where):
  """Same tree, same leaves: arrays by dtype, shape and bytes (NaN payloads included)."""
  la, ta = jax.tree_util.tree_flatten_with_path(a)
  lb, tb = jax.tree_util.tree_flatten_with_path(b)
  assert ta == tb, f"{where}: different structure"
  for (path, x), (_, y) in zip(la, lb):
    name = f"{where}{jax.tree_util.keystr(path)}"
    if isinstance(x, (np.ndarray, jax.Array, np.generic)):
      x, y = np.asarray(x), np.asarray(y)
      assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, x.shape, y.dtype, y.shape)
      same = x.tobytes() == y.tobytes()
      assert same, f"{name} differs"
    else:
      assert x == y, f"{name} differs: {x!r} != {y!r}"


def table_tree(table) -> dict:
  """A Table's fields as a tree (arrays and plain values), for assert_bit_identical."""
  return {f.name: getattr(table, f.name) for f in dataclasses.fields(table)}


def banks(c, tables, splits) -> dict:
  """Everything simulation, SFT and RL build from the tables (agent/bank.py; text/train.py)."""
  out = dict(train=bank_lib.train_bank(c, tables, splits), val=bank_lib.val_bank(c, tables, splits),
             rl=bank_lib.rl_bank(c, tables, splits), held=bank_lib.held_bank(c, tables, splits))
  for split, size in (("train", c.sim), ("val", c.env)):
    out[f"build_{split}"] = bank_lib.build_bank(c, tables, splits, split, size.max_cheap_rows,
                                                size.max_target_configs)
    out[f"lines_{split}"] = lm_train.bank_lines(c, tables, splits, split, out[split])
  return out


def peer_views(c, tables, splits) -> dict:
  """(method, played table, test target, source) -> the training view a learned peer fits on
  (pipeline.peer_jobs ships the sources; learned.training_views is the one place values are
  read)."""
  out = {}
  try:
    for method, parts in pipeline.peer_jobs(c, tables, splits, ["meta_regressor", "fsbo"]):
      for table, tests, src in parts:
        learned.set_training_sources(**src)
        for t in tests:
          for view, ts in learned.training_views(table, table.fidelity_index(t.target)):
            out[(method, table.name, t.name, view.name)] = (table_tree(view), ts)
  finally:
    learned.set_training_sources(None)
  return out


def test_garbage_outside_training_changes_nothing_training_builds(tmp_path, leak_config):
  c = leak_config
  tables, splits = pipeline.build_tables(c)
  assert set(tables) == set(FAMILIES.split(",")) | {"mine", "theirs"}
  assert splits["mine"]["train"] and splits["mine"]["val"] and not splits["theirs"]["train"]
  dirty = garbage_tables(tables, splits)
  dirty_splits = pipeline.curate_all(c, dirty)
  for name in tables:
    assert not np.array_equal(tables[name].values_FxC, dirty[name].values_FxC, equal_nan=True)
    for k in ("train", "val"):
      assert dirty_splits[name][k] == splits[name][k], (name, k)
    assert tasks_lib.check_no_leak(dirty[name], dirty_splits[name]) == []

  clean = banks(c, tables, splits)
  assert all(clean[k] is not None for k in ("train", "val", "rl", "held")) and "sub" in clean["val"]
  assert {n for n, _ in clean["build_train"]["table_sizes"]} == {
      "synthetic_steplaw_dense", "grpo", "synthetic_admire", "mine"}
  assert_bit_identical(clean, banks(c, dirty, dirty_splits), "bank")

  peers = peer_views(c, tables, splits)
  assert {(tb, v) for _, tb, _, v in peers} >= {("synthetic_regmix", "mine"), ("mine", "mine")}
  assert not {v for *_, v in peers} & {"theirs", "synthetic_regmix"}
  assert_bit_identical(peers, peer_views(c, dirty, dirty_splits), "peer")

  # The teacher's records (what SFT distils) and the summary SFT checks its bank against.
  a = simulate.run(c, str(tmp_path / "clean"), tables, splits)
  b = simulate.run(c, str(tmp_path / "dirty"), dirty, dirty_splits)
  read = lambda d: open(os.path.join(d, "sim", simulate.RECORDS), "rb").read()
  assert a["n_steps"] > 0 and read(tmp_path / "clean") == read(tmp_path / "dirty")
  drop = lambda s: {k: v for k, v in s.items() if k != "seconds"}
  assert drop(a) == drop(b)


def test_lofo_never_reads_the_held_out_family(leak_config):
  """The lofo protocol (--config.tasks.held_out = a family's tables): the agent's banks and the
  learned peers scored on that family never read it, so its tables may hold garbage at every
  fidelity."""
  c = leak_config
  tables, _ = pipeline.build_tables(c)
  for family in ("pretraining_hparams", "data_mixture_pretrain"):
    names = [n for n, t in tables.items() if t.family == family]
    c.tasks.held_out = ",".join(names)
    tables, splits = pipeline.build_tables(c)
    rng = np.random.default_rng(len(family))
    dirty = dict(tables, **{n: garble(tables[n], range(tables[n].num_fidelities), rng)
                            for n in names})
    dirty_splits = pipeline.curate_all(c, dirty)
    assert all(splits[n]["test"] for n in names if n != "synthetic_regmix")
    assert all(not s["test"] for n, s in splits.items() if n not in names)
    assert_bit_identical(banks(c, tables, splits), banks(c, dirty, dirty_splits),
                         f"lofo {family} bank")
    views = peer_views(c, tables, splits)
    assert views and not {k[3] for k in views} & set(names), (family, sorted(views))
    assert_bit_identical(views, peer_views(c, dirty, dirty_splits), f"lofo {family} peer")


def test_a_split_made_to_leak_is_flagged_and_breaks_bit_identity(tmp_path, leak_config):
  """The checks can fail: a test target in a train task's visible set, or as a train task's
  target, is flagged by check_no_leak (the curate stage refuses the split), and then the garbage
  reaches the banks."""
  c = leak_config
  tables, splits = pipeline.build_tables(c)
  dirty = garbage_tables(tables, splits)
  for name in ("mine", "synthetic_steplaw_dense", "grpo"):
    s = splits[name]
    assert tasks_lib.check_no_leak(tables[name], s) == []
    test_target = s["test"][0].target
    seen = dataclasses.replace(s["train"][0], visible=s["train"][0].visible + (test_target,))
    as_target = dataclasses.replace(s["train"][0], target=test_target)
    for leaky, say in ((seen, "visible"), (as_target, "target")):
      bad = dict(s, train=[leaky] + s["train"][1:])
      problems = tasks_lib.check_no_leak(tables[name], bad)
      assert f"test target {test_target!r} is used by a training task" in problems, (say, problems)
      assert f"test target {test_target!r} is a fidelity of the training view" in problems
      with pytest.raises(RuntimeError, match=f"test values reach training on {name}"):
        pipeline.stage_curate(c, str(tmp_path / name / say), tables, dict(splits, **{name: bad}))
    # a train task aimed at the test target (one that sees it cannot be built: it costs more)
    bad_splits = dict(splits, **{name: dict(s, train=[as_target] + s["train"][1:])})
    with pytest.raises(AssertionError, match="differs"):
      assert_bit_identical(bank_lib.build_bank(c, tables, bad_splits, "train", 16, 16),
                           bank_lib.build_bank(c, dirty, bad_splits, "train", 16, 16), name)
  # ... and as a val task: flagged too
  s = splits["mine"]
  val = dataclasses.replace(s["val"][0], target=s["test"][0].target)
  problems = tasks_lib.check_no_leak(tables["mine"], dict(s, val=[val] + s["val"][1:]))
  assert f"test target {val.target!r} is used by a training task" in problems, problems
