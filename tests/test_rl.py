"""Multi-turn RL: group advantages, the curriculum, and the whole pipeline on a tiny config."""
import json
import os
import time

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from autollmr import pipeline
from autollmr import rl
from autollmr import sft
from autollmr.tasks import Task
from configs import rl as rl_config


def test_group_advantages_are_normalized_per_group():
  reward_TxB = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.5, 0.1]])
  active = jnp.ones((2, 4), bool)
  adv = np.asarray(rl.advantages(reward_TxB, active, group=2, turn_level=False))
  np.testing.assert_allclose(adv[0], adv[1])  # every turn gets the episode's advantage
  np.testing.assert_allclose(adv[0], [1, -1, 1, -1], atol=1e-4)
  adv_t = np.asarray(rl.advantages(reward_TxB, active.at[1, 1].set(False), 2, True))
  assert adv_t[1, 1] == 0  # inactive turns carry nothing


def test_curriculum_ramps_in_low_rho_tasks():
  c = rl_config.get_config()
  tasks = [Task("t", "b", ("a",), rho=1.0), Task("t", "b", ("a",), rho=0.0)]
  w0 = rl.curriculum_weights(tasks, 0.0, c.rl)
  w1 = rl.curriculum_weights(tasks, 1.0, c.rl)
  assert w0[1] == 0 and np.isclose(w1[1], c.rl.low_rho_weight) and np.isclose(w1.sum(), 1)


def test_tiny_pipeline_end_to_end(tmp_path, monkeypatch):
  """curate -> simulate -> sft -> rl -> eval on two synthetic tables, under 2 minutes."""
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  monkeypatch.setenv("AUTOLLMR_NO_PROGRESS", "1")
  c = rl_config.get_config("tiny")
  t0 = time.time()
  pipeline.run(c, str(tmp_path))
  assert time.time() - t0 < 120
  rows = json.loads((tmp_path / "results" / "leaderboard.json").read_text())
  methods = {r["method"] for r in rows}
  assert {"sft_agent", "rl_agent", "random"} <= methods
  assert all(r["invalid_rate"] == 0 for r in rows if r["method"].endswith("_agent"))
  metrics = [json.loads(l) for l in open(tmp_path / "rl" / "metrics.jsonl")]
  assert metrics[-1]["step"] == c.rl.steps and "kl" in metrics[-1]
  assert os.listdir(tmp_path / "rl" / "tb")
  assert rl.done(c, str(tmp_path))
  # Early stopping on validation: the evaluated policy is the best val checkpoint, the starting
  # (distilled) policy included as step 0.
  best = json.loads((tmp_path / "rl" / "best.json").read_text())
  logged = [m["val_regret"] for m in metrics if m.get("val_regret") is not None]
  assert logged and best["val_regret"] <= min(logged) + 1e-9
  picked = rl.load_policy(c, str(tmp_path))
  ref = sft.load_policy(c, str(tmp_path)) if best["step"] == 0 else rl.load_policy(
      ml_collections.ConfigDict(dict(c.to_dict(), rl=dict(c.rl.to_dict(), select_on_val=False))),
      str(tmp_path))  # step > 0: the last checkpoint, equal only when the best is the last
  same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.allclose(a, b)),
                                      nnx.state(picked, nnx.Param), nnx.state(ref, nnx.Param)))
  assert all(same) == (best["step"] in (0, c.rl.steps))
  res = tmp_path / "results"  # the eval stage's transcripts (of the final agent) and plots
  md = sorted((res / "transcripts").glob("*.md"))
  assert len(md) == c.eval.transcripts * len(pipeline.csv_list(c.tasks.families))
  assert all("__rl_agent__" in p.name for p in md) and "saliency" in md[0].read_text()
  for f in ("learning_curves.png", "landscape_grpo.png"):
    assert (res / f).stat().st_size > 0, f
