"""Trajectory simulation: deterministic for a seed, readable by grain, train tasks only."""
import os

import grain
import numpy as np

from autollmr.agent import bank as bank_lib
from autollmr.agent import simulate
from autollmr.agent import teacher
from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import tasks as tasks_lib


def test_dataset_identical_across_runs(tmp_path, tiny_setup):
  c, tables, splits = tiny_setup
  a = simulate.run(c, str(tmp_path / "a"), tables, splits)
  b = simulate.run(c, str(tmp_path / "b"), tables, splits)
  read = lambda d: open(os.path.join(d, "sim", simulate.RECORDS), "rb").read()
  assert read(tmp_path / "a") == read(tmp_path / "b")
  assert a["n_steps"] == b["n_steps"] > 0
  assert a["teacher_regret_mean"] <= a["rollout_regret_mean"] + 1e-6  # best-of-N never worse

  src = grain.sources.ArrayRecordDataSource([os.path.join(tmp_path, "a", "sim", simulate.RECORDS)])
  assert len(src) == a["n_steps"]
  rec = simulate.decode_step(src[0])
  assert set(rec) >= {"task", "seed", "queried_T", "norm_T", "budget_left", "turn", "action",
                      "regret"}
  # Only train tasks are simulated (and their sub-study copies, "#draw"); their names are
  # recorded for the SFT stage to check.
  train_names = {t.name for s in splits.values() for t in s["train"]}
  assert {n.rsplit("#", 1)[0] for n in a["names"]} == train_names
  assert len(a["names"]) == c.sim.draws * len(train_names)
  tasks = {int(simulate.decode_step(src[i])["task"]) for i in range(len(src))}
  assert tasks <= set(range(len(a["names"])))


def test_union_bank_keeps_regret(tiny_setup):
  """The stacked bank (one sign for all tables) gives the same regrets as one table's params."""
  import jax.numpy as jnp
  c, tables, splits = tiny_setup
  c.sim.draws = 1  # the tasks themselves, no sub-study copies
  bank = bank_lib.train_bank(c, tables, splits)
  name = "grpo"  # a 'max' table: its values are negated inside the bank
  view = tasks_lib.training_table(tables[name], splits[name]["train"] + splits[name]["val"])
  own, sizes = build.make_params(
      view,
      splits[name]["train"],
      c.sim.max_cheap_rows,
      c.sim.max_target_configs,
      pad_to=bank["sizes"].num_candidates,
      pad_turns_to=bank["sizes"].max_turns)
  first = bank["names"].index(splits[name]["train"][0].name)
  for a in range(0, 40, 3):
    s0 = env_lib.fresh_state(own, sizes, 0, jnp.uint32(1), 0)
    s1 = env_lib.fresh_state(bank["params"], bank["sizes"], first, jnp.uint32(1), 0)
    o0, _, _, _, _, i0 = env_lib.step(s0, a, own, sizes, auto_reset=False)
    o1, _, _, _, _, i1 = env_lib.step(s1, a, bank["params"], bank["sizes"], auto_reset=False)
    np.testing.assert_allclose(i0["regret"], i1["regret"], atol=1e-6)
    np.testing.assert_allclose(o0.norm_T, o1.norm_T, atol=1e-5)


def test_train_bank_draws(tiny_setup):
  """sim.draws = 3: the training tasks as they are, then two random sub-studies of each."""
  c, tables, splits = tiny_setup
  c.sim.draws = 1
  one = bank_lib.train_bank(c, tables, splits)
  c.sim.draws, c.rl.drop_configs = 3, 0.5
  three = bank_lib.train_bank(c, tables, splits)
  n = len(one["tasks"])
  assert len(three["tasks"]) == len(three["names"]) == 3 * n
  assert three["names"][:n] == [f"{x}#0" for x in one["names"]]  # copy 0: the tasks as they are
  ex1, ex3 = np.asarray(one["params"].cand_exists_NxA), np.asarray(three["params"].cand_exists_NxA)
  np.testing.assert_array_equal(ex3[:n], ex1)
  assert (ex3[n:] <= np.tile(ex1, (2, 1))).all() and (ex3[n:] != np.tile(ex1, (2, 1))).any()
  np.testing.assert_array_equal(three["family_N"], np.tile(one["family_N"], 3))


def test_teacher_with_ridge_scorer(tmp_path, tiny_setup):
  """model.ridges adds the ridge fits to the teacher's scorers: still deterministic, and
  best-of-N over more scorers is no worse than over the kernels alone."""
  c, tables, splits = tiny_setup
  c = c.copy_and_resolve_references()
  c.model.ridges = ""
  base = simulate.run(c, str(tmp_path / "k"), tables, splits)
  assert base["ridges"] == []
  c.model.ridges = "1:0,1:1"
  c.sim.rollouts = c.sim.rollouts + 2 * len(teacher.strategies(c)[1])  # room for the ridges
  a = simulate.run(c, str(tmp_path / "a"), tables, splits)
  simulate.run(c, str(tmp_path / "b"), tables, splits)
  read = lambda d: open(os.path.join(d, "sim", simulate.RECORDS), "rb").read()
  assert read(tmp_path / "a") == read(tmp_path / "b") and a["ridges"] == [[1.0, 0.0], [1.0, 1.0]]
  assert a["teacher_regret_mean"] <= base["teacher_regret_mean"] + 1e-6
