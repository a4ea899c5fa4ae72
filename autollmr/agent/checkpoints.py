"""Checkpoints of the agent: orbax managers, which policy to load, and which RL checkpoint to keep.

SFT saves (model, optimizer) state and the grain iterator in WORKDIR/sft/ckpt; RL its state in
WORKDIR/rl/ckpt and the gate's choice in rl/best (rl/best.json names its step; step 0 = the
starting policy). Restores go onto the shardings of the current run, so a run may resume on
another mesh.
"""
from __future__ import annotations

import json
import os

from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from autollmr import errors
from autollmr import sharding
from autollmr.agent import model as model_lib
from autollmr.agent import optim


def abstract(state):
  """The restore target: shapes, dtypes and the shardings `state` has now (so a checkpoint
  written on one mesh restores onto another, each host reading only its shards)."""
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
                      nnx.to_pure_dict(state))


def sft_manager(workdir, every: int):
  return ocp.CheckpointManager(
      os.path.abspath(os.path.join(workdir, "sft", "ckpt")),
      options=ocp.CheckpointManagerOptions(max_to_keep=2, save_interval_steps=every, create=True))


def uncommitted(tree):
  """Restored arrays come back committed to a device; fresh ones are not, and jit caches the
  two apart (a resumed run would compile its step twice)."""
  return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), tree)


def has_sft_checkpoint(workdir) -> bool:
  return os.path.isdir(os.path.join(workdir, "sft", "ckpt"))


def load_sft_policy(config, workdir):
  """The policy of the latest SFT checkpoint in workdir (None if there is none)."""
  path = os.path.join(workdir, "sft", "ckpt")
  if not os.path.isdir(path):
    return None
  mngr = sft_manager(workdir, int(config.sft.checkpoint_every))
  step = mngr.latest_step()
  if step is None:
    return None
  return restore_model(mngr, step, *shapes(config, optim.sft_optimizer(config)[0]))


def shapes(config, tx):
  """(graphdef, abstract state) of a fresh (policy, optimizer): the restore target of a policy
  that is loaded, never initialized (initializing costs a compile per parameter)."""
  def make():
    model = model_lib.make_policy(config.model, seed=int(config.seed))
    return model, nnx.Optimizer(model, tx, wrt=nnx.Param)
  return nnx.split(nnx.eval_shape(make))


def restore_model(mngr, step, graphdef, state):
  """The model of checkpoint `step` of a (model, optimizer) state (arrays or their shapes: the
  restored arrays go to this process's first device, where a fresh policy lives); closes the
  manager."""
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=device),
                        nnx.to_pure_dict(state))
  restored = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  mngr.close()
  nnx.replace_by_pure_dict(state, uncommitted(restored["state"]))
  model, _ = nnx.merge(graphdef, state)
  return model


def sft_done(config, workdir) -> bool:
  path = os.path.join(workdir, "sft", "ckpt")
  if not os.path.isdir(path):
    return False
  mngr = sft_manager(workdir, int(config.sft.checkpoint_every))
  step = mngr.latest_step()
  mngr.close()
  return step is not None and step >= int(config.sft.steps)


def rl_manager(workdir, sub="ckpt"):
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "rl", sub)),
                               options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def start_policy(config, workdir):
  """The policy RL starts from (rl.init): the distilled one, or a fresh one (config.seed)."""
  if config.rl.init == "sft":
    model = load_sft_policy(config, workdir)
    if model is None:
      raise errors.UserError(f"rl.init=sft but no SFT checkpoint in {workdir}/sft/ckpt: run the "
                             "simulate and sft stages first, or use configs/rl_scratch.py")
    return model
  if config.rl.init == "scratch":
    return model_lib.make_policy(config.model, seed=int(config.seed))
  raise errors.UserError(f"--config.rl.init must be 'sft' or 'scratch', got {config.rl.init!r}")


def read_best(workdir):
  path = os.path.join(workdir, "rl", "best.json")
  if not os.path.exists(path):
    return None
  best = json.load(open(path))
  best.setdefault("val_select", best.get("val_regret"))  # written before val_select existed
  return best


def write_best(workdir, step, val, state):
  """Records the policy with the lowest val_select so far (step 0: the starting policy, not
  copied)."""
  if state is not None:
    mngr = rl_manager(workdir, "best")
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(nnx.to_pure_dict(state))), force=True)
    mngr.wait_until_finished()
    mngr.close()
  best = dict(step=int(step), val_select=float(val))
  if sharding.is_main():  # every host saved the checkpoint above; one writes the record
    with open(os.path.join(workdir, "rl", "best.json"), "w") as f:
      json.dump(best, f)
  return best


def load_rl_policy(config, workdir):
  """The RL policy to evaluate: with `rl.select_on_val` (and val tasks) the checkpoint with the
  lowest validation regret, the starting policy included (early stopping: if RL never beats it
  on validation, the starting policy is returned); else the last checkpoint."""
  path = os.path.join(workdir, "rl", "ckpt")
  if not os.path.isdir(path):
    return None
  sub, best = "ckpt", read_best(workdir) if config.rl.select_on_val else None
  if best is not None:
    if best["step"] == 0:
      return start_policy(config, workdir)
    sub = "best"
  mngr = rl_manager(workdir, sub)
  step = mngr.latest_step()
  mngr.close()
  return None if step is None else restore_rl_policy(config, workdir, sub, step)


def rl_policy_played(config, workdir) -> dict | None:
  """Which policy `load_rl_policy` returns, without loading it: dict(played, step, note), played
  'rl' (an RL checkpoint), 'sft' (the gate kept step 0 of rl.init=sft: the distilled policy) or
  'scratch' (kept step 0 of rl.init=scratch: the untrained starting policy); None when there is
  no RL checkpoint. The note says so in words for reports and the advisor."""
  if not os.path.isdir(os.path.join(workdir, "rl", "ckpt")):
    return None
  best = read_best(workdir) if config.rl.select_on_val else None
  if best is None:
    return dict(played="rl", step=None, note="the last RL checkpoint")
  if best["step"] != 0:
    return dict(played="rl", step=int(best["step"]),
                note=f"RL checkpoint step {best['step']}, the one the validation gate kept")
  if config.rl.init == "scratch":
    return dict(played="scratch", step=0,
                note="the RL stage (rl.init=scratch) kept its untrained starting policy: no RL "
                     "checkpoint passed the validation gate, rl/best.json step 0")
  return dict(played="sft", step=0,
              note="the RL stage kept the distilled policy: no RL checkpoint passed the "
                   "validation gate, rl/best.json step 0")


def restore_rl_policy(config, workdir, sub: str, step: int):
  """The policy of RL checkpoint `step` in WORKDIR/rl/<sub> (ckpt or best)."""
  return restore_model(rl_manager(workdir, sub), step, *shapes(config,
                                                               optim.rl_optimizer(config)[0]))


def rl_done(config, workdir) -> bool:
  path = os.path.join(workdir, "rl", "ckpt")
  if not os.path.isdir(path):
    return False
  mngr = rl_manager(workdir)
  step = mngr.latest_step()
  mngr.close()
  return step is not None and step >= int(config.rl.steps)
