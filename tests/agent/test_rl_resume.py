"""RL: a killed and resumed run ends with the same (policy, optimizer) state as a straight run
(SFT's own is tests/agent/test_sft.py)."""
import json
import os

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp

from autollmr.agent import checkpoints
from autollmr.agent import optim
from autollmr.agent import rl


def _rl_state(config, workdir, sub="ckpt"):
  """The whole (model, optimizer) state of the latest checkpoint in WORKDIR/rl/<sub>, as NumPy:
  (step, pure dict)."""
  mngr = checkpoints.rl_manager(workdir, sub)
  step = mngr.latest_step()
  _, state = checkpoints.shapes(config, optim.rl_optimizer(config)[0])
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        nnx.to_pure_dict(state))
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  mngr.close()
  return step, jax.tree.map(np.asarray, restored["state"])


def _rows(workdir):
  with open(os.path.join(workdir, "rl", "metrics.jsonl")) as f:
    return [json.loads(line) for line in f]


def test_killed_and_resumed_rl_matches_a_straight_run(tmp_path, tiny_setup):
  """Killed after a checkpoint it has gone past, resumed: the same policy, optimizer state
  (Adam moments, the lr schedule's count), gate decisions and metrics rows as a straight run."""
  c, tables, splits = tiny_setup
  # rl.init = scratch: no simulate / sft stages (~15 s on 2 cores); the resume path is the same.
  # No held bank: on this config the gate adopts a checkpoint (rl/best is compared too).
  c.rl.init, c.rl.holdout_configs = "scratch", 0.0
  c.rl.steps, c.rl.updates_per_call, c.rl.checkpoint_every, c.rl.log_every = 10, 2, 4, 2
  c.rl.tasks_per_update, c.rl.group_size = 2, 4
  straight, killed = str(tmp_path / "straight"), str(tmp_path / "killed")
  a = rl.train(c, straight, tables, splits)
  rl.train(c, killed, tables, splits, stop_after=6)  # dies after update 6; last save at 4
  assert _rl_state(c, killed)[0] == 4 and not checkpoints.rl_done(c, killed)
  b = rl.train(c, killed, tables, splits)
  assert a["step"] == b["step"] == 10
  (step_a, state_a), (step_b, state_b) = _rl_state(c, straight), _rl_state(c, killed)
  assert step_a == step_b == 10
  # every leaf bit for bit: the policy and the optimizer (moments, step count of the lr schedule)
  assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
  jax.tree.map(np.testing.assert_array_equal, state_a, state_b)
  best_a, best_b = checkpoints.read_best(straight), checkpoints.read_best(killed)
  assert best_a is not None and best_a == best_b  # the gate kept the same checkpoint
  if best_a is not None and best_a["step"] > 0:
    jax.tree.map(np.testing.assert_array_equal, _rl_state(c, straight, "best")[1],
                 _rl_state(c, killed, "best")[1])
  rows_a, rows_b = _rows(straight), _rows(killed)
  # the resumed run rewrote what came after its checkpoint: the same rows, the same values
  assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b]
  for ra, rb in zip(rows_a, rows_b):
    for k in ("regret", "loss", "kl", "val_select"):
      assert ra.get(k) == rb.get(k), (ra["step"], k)
