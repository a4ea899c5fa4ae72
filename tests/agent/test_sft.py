"""Distillation: kill-and-resume equality, ensembles and their own data streams (the tiny pipeline
end to end is tests/e2e/test_smoke_run.py)."""
import json
import os
import shutil

from flax import nnx
import grain
import jax
import numpy as np
import pytest

from autollmr import errors
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import model as model_lib
from autollmr.agent import sft
from autollmr.agent import simulate


def _params(model):
  return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_killed_and_resumed_run_matches_a_straight_run(tmp_path, tiny_setup):
  c, tables, splits = tiny_setup
  c.sft.steps, c.sft.checkpoint_every, c.sft.val_seeds = 5, 2, 0
  c.sft.val_every = 2  # validation rows at 2, 4 and the last step (val_regret None: no val seeds)
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  simulate.run(c, straight, tables, splits)
  shutil.copytree(os.path.join(straight, "sim"), os.path.join(killed, "sim"))
  a = sft.train(c, straight, tables, splits)
  sft.train(c, killed, tables, splits, stop_after=3)  # dies after step 3; last save at 2
  assert not checkpoints.sft_done(c, killed)
  b = sft.train(c, killed, tables, splits)
  assert a["step"] == b["step"] == 5
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
               _params(a["model"]), _params(b["model"]))
  loaded = checkpoints.load_sft_policy(c, killed)
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(x, y),
               _params(loaded), _params(b["model"]))
  with open(os.path.join(killed, "sft", "metrics.jsonl")) as f:
    rows = [json.loads(line) for line in f]
  steps = [r["step"] for r in rows]
  assert steps == sorted(set(steps))  # the resumed run rewrote what came after its checkpoint
  assert [r["step"] for r in rows if "val_regret" in r] == [2, 4, 5]
  c.seed = 1  # another seed draws another bank than the records index: one clear error
  with pytest.raises(errors.UserError, match="simulated with --config.seed=0"):
    sft.train(c, killed, tables, splits)


def test_ensemble_members_are_each_distilled_and_reload(tmp_path, tiny_setup):
  """model.members = 2: SFT moves both members (each on its own loss, so they stay apart) and the
  checkpoint reloads as the same ensemble."""
  c, tables, splits = tiny_setup
  c = c.copy_and_resolve_references()
  c.model.members = 2
  c.sft.steps, c.sft.checkpoint_every, c.sft.val_seeds = 3, 3, 0
  workdir = str(tmp_path / "ens")
  simulate.run(c, workdir, tables, splits)
  out = sft.train(c, workdir, tables, splits)
  init = _params(model_lib.make_policy(c.model, seed=int(c.seed)))
  trained = _params(out["model"])
  m0, m1 = trained["members"][0], trained["members"][1]
  moved = lambda a, b: any(not np.allclose(x, y)
                           for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
  assert moved(m0, init["members"][0]) and moved(m1, init["members"][1]) and moved(m0, m1)
  loaded = checkpoints.load_sft_policy(c, workdir)
  assert isinstance(loaded, model_lib.Ensemble)
  jax.tree.map(np.testing.assert_array_equal, _params(loaded), trained)


def test_member_draws_give_each_member_its_own_data_and_resume(tmp_path, tiny_setup):
  """sim.member_draws: the bank holds copy 0 + each member's own draws, the records come in one
  contiguous range per member holding only that member's copies, SFT fits each member on its own
  stream, and a killed run resumes every stream's iterator (same parameters as a straight run)."""
  c, tables, splits = tiny_setup
  c = c.copy_and_resolve_references()
  c.model.members, c.sim.member_draws, c.sim.draws = 2, True, 3
  c.sft.steps, c.sft.checkpoint_every, c.sft.val_seeds = 5, 2, 0
  c.sft.val_every = 2  # validation rows at 2, 4 and the last step (val_regret None: no val seeds)
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  summary = simulate.run(c, straight, tables, splits)
  bank = bank_lib.train_bank(c, tables, splits)
  n = len(bank["tasks"]) // 5  # 1 + 2 members x 2 draws copies
  assert bank_lib.bank_copies(c) == 5 and len(bank["tasks"]) == 5 * n
  assert bank_lib.stream_copies(c, 0) == [0, 1, 2] and bank_lib.stream_copies(c, 1) == [0, 3, 4]
  (a0, a1), (b0, b1) = summary["streams"]
  assert a0 == 0 and a1 == b0 and b1 == summary["n_steps"]
  src = grain_source(os.path.join(straight, "sim", simulate.RECORDS))
  for m, (lo, hi) in enumerate(summary["streams"]):
    copies = {int(simulate.decode_step(src[i])["task"]) // n for i in range(lo, hi)}
    assert copies <= set(bank_lib.stream_copies(c, m)) and len(copies) > 1
  shutil.copytree(os.path.join(straight, "sim"), os.path.join(killed, "sim"))
  a = sft.train(c, straight, tables, splits)
  sft.train(c, killed, tables, splits, stop_after=3)
  b = sft.train(c, killed, tables, splits)
  jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7),
               _params(a["model"]), _params(b["model"]))
  init = _params(model_lib.make_policy(c.model, seed=int(c.seed)))
  trained = _params(a["model"])
  for i in range(2):
    assert any(not np.allclose(x, y) for x, y in zip(
        jax.tree.leaves(trained["members"][i]), jax.tree.leaves(init["members"][i])))
  c.sim.member_draws = False  # two streams, a config asking for one
  with pytest.raises(errors.UserError, match="member_draws|training bank differs"):
    sft.train(c, str(tmp_path / "straight"), tables, splits)


def grain_source(path):
  return grain.sources.ArrayRecordDataSource([path])
