"""The advisor's policy kept as jax.export programs (advisor/policy_cache.py): the same
log-probabilities as the nnx model, read back from disk without the checkpoint, a new entry when
the checkpoint changes, and a repeated answer that imports neither orbax nor flax.nnx."""
import json
import os
import subprocess
import sys

import numpy as np

from autollmr.advisor import answer
from autollmr.advisor import policy_cache
from autollmr.evaluation import choosers

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = "N=1.07B,D=20B"  # the target of the `sweep` fixture (conftest.py)


def _inputs(sweep, agent_dir):
  q = answer.prepare(sweep["spec"], TARGET, 2, agent_dir=agent_dir)
  c = q.chooser
  v = choosers.policy_inputs(q.ref.expand(), c.exists, c.family, c.max_turns, d_max=c.model.d_max,
                             g_max=c.model.g_max)
  rng = np.random.default_rng(0)
  bump = rng.normal(0, 0.1, (1 + choosers.POOL, v["value_A"].shape[1])).astype(np.float32)
  return v, bump


def test_exported_programs_equal_the_model_and_come_back_from_disk(sweep, agent_dir, tmp_path):
  v, bump = _inputs(sweep, agent_dir)
  first = policy_cache.ExportedPolicy(agent_dir, "auto", root=str(tmp_path))
  model = first.model  # a miss restores the checkpoint
  assert model is not None and first.which == "sft" and first.played["played"] == "sft"
  want = choosers.log_probs(model, v, bump)
  np.testing.assert_allclose(first.log_probs(v, bump), want, rtol=1e-5, atol=1e-5)
  again = policy_cache.ExportedPolicy(agent_dir, "auto", root=str(tmp_path))
  np.testing.assert_array_equal(again.log_probs(v, bump), first.log_probs(v, bump))
  assert again.model is None  # read from disk: no checkpoint restored, no model traced
  assert (again.d_max, again.g_max, again.max_keys) == (model.d_max, model.g_max, model.max_keys)
  assert len([f for f in os.listdir(first.dir) if f.startswith("logp_")]) == 1
  first.log_probs(v, bump[:1])  # another input shape: its own program
  assert len([f for f in os.listdir(first.dir) if f.startswith("logp_")]) == 2


def test_a_changed_checkpoint_gets_a_new_entry(agent_dir, tmp_path):
  key = policy_cache.agent_key(agent_dir, "auto")
  assert key == policy_cache.agent_key(agent_dir, "auto") != policy_cache.agent_key(agent_dir,
                                                                                    "sft")
  files = [os.path.join(t, f) for t, _, fs in os.walk(os.path.join(agent_dir, "sft")) for f in fs]
  st = os.stat(files[0])
  try:
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    assert policy_cache.agent_key(agent_dir, "auto") != key
  finally:
    os.utime(files[0], ns=(st.st_atime_ns, st.st_mtime_ns))
  assert policy_cache.agent_key(agent_dir, "auto") == key


def test_a_repeated_answer_skips_the_checkpoint(sweep, agent_dir, tmp_path):
  """The second `advise` in a fresh process reads the programs on disk: same answer, and neither
  orbax (the checkpoint) nor flax.nnx (the model) is imported."""
  code = ("import json, sys; from autollmr.advisor import answer; "
          f"out = answer.advise({sweep['spec']!r}, {TARGET!r}, k=2, agent_dir={agent_dir!r}); "
          "print(json.dumps([[s['label'], s['policy_prob']] for s in out['suggestions']])); "
          "print(sorted(m for m in ('orbax.checkpoint.checkpoint_manager', 'flax.nnx.module') "
          "if m in sys.modules))")  # submodules: a lazy module is in sys.modules unexecuted
  env = dict(os.environ, AUTOLLMR_CACHE=str(tmp_path), AUTOLLMR_DATA="none")
  runs = [subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300) for _ in range(2)]
  for r in runs:
    assert r.returncode == 0, r.stderr[-3000:]
  (answer_a, mods_a), (answer_b, mods_b) = (r.stdout.split("\n")[:2] for r in runs)
  assert json.loads(answer_a) == json.loads(answer_b)
  assert "orbax.checkpoint.checkpoint_manager" in mods_a and mods_b == "[]"
