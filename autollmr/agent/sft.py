"""Policy distillation: cross-entropy on the teacher's actions (the simulate stage's records).

Data: grain MapDataset over the ArrayRecord steps, sliced per host, shuffle(seed) -> repeat ->
decode -> batch. A record holds the Obs fields, not the A-sized view: the view is rebuilt inside
the jitted step from the training bank (bank.train_bank), so records stay O(T).
Optimizer: AdamW, linear warmup + cosine decay, global-norm clipping. The train step is one
jax.jit over the NNX (model, optimizer) state (nnx.split / nnx.merge), with the state sharded by
config.mesh (sharding.py), the batch split over the mesh's `data` axis, the state donated.
sft.batch_size is the global batch: each host reads batch_size / hosts rows of its share.
Checkpoints (orbax CheckpointManager): the state AND the grain iterator, so a run killed mid-way
and restarted from its workdir ends with the parameters of a straight run
(tests/agent/test_sft.py checks it). Logs: WORKDIR/sft/metrics.jsonl, TensorBoard events in
WORKDIR/sft/tb, a tqdm bar. Model selection: greedy val-task regret at every checkpoint.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

from absl import logging
from flax import nnx
import grain
import jax
import jax.numpy as jnp
import optax
import orbax.checkpoint as ocp
from tensorboardX import SummaryWriter
from tqdm import tqdm

from autollmr import errors
from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import gate
from autollmr.agent import optim
from autollmr.agent import play as play_lib
from autollmr.agent import simulate
from autollmr.agent import train_log
from autollmr.gym import env as env_lib


def make_dataset(path: str, batch_size: int, seed: int):
  """batch_size: rows per batch on this host."""
  src = grain.sources.ArrayRecordDataSource([path])
  ds = grain.MapDataset.source(src)
  ds = ds[jax.process_index()::jax.process_count()]  # this host's share
  ds = ds.shuffle(seed=seed).repeat().map(simulate.decode_step).batch(batch_size)
  # A small read-ahead: grain's default (16 threads, 500 batches) decodes thousands of records a
  # short run never uses, on the same few cores as the train step.
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))


def obs_of(batch) -> env_lib.Obs:
  return env_lib.Obs(task=batch["task"], seed=batch["seed"], queried_T=batch["queried_T"],
                     norm_T=batch["norm_T"], budget_left=batch["budget_left"], turn=batch["turn"])


_TRAIN_STEPS = {}  # one compile per process for a given model, bank shape and mesh


def make_train_step(graphdef, state, sizes, max_keys: int, value_coef: float, mesh, mode: str,
                    streams: int = 1):
  """The jitted step; `state` gives the shardings (the same for the same graphdef and mode).
  streams > 1: each ensemble member fits its own teacher data (sim.member_draws): one batch of
  every stream's records, member i weighing only the rows of stream i."""
  key = (graphdef, sizes, max_keys, value_coef, mesh, mode, streams)
  if key not in _TRAIN_STEPS:
    _TRAIN_STEPS[key] = _train_step(graphdef, sizes, max_keys, value_coef, mesh,
                                    sharding.state_shardings(state, mesh, mode), streams)
  return _TRAIN_STEPS[key]


def _train_step(graphdef, sizes, max_keys, value_coef, mesh, state_sh, streams=1):

  def mean(x_B, w_B):
    return x_B.mean() if w_B is None else (w_B * x_B).sum() / jnp.maximum(w_B.sum(), 1.0)

  def loss_fn(model, v, action_B, return_B, stream_B):
    # an Ensemble's members each fit the teacher on their own (averaging their losses), so they
    # stay separate policies rather than one product distribution
    outs = model.member_outputs(v, max_keys)
    ce, v_loss, acc = 0.0, 0.0, 0.0
    for i, (logits_BxA, value_B) in enumerate(outs):
      w_B = None if streams == 1 else (stream_B == i).astype(jnp.float32)
      lp = jax.nn.log_softmax(logits_BxA)
      ce += -mean(jnp.take_along_axis(lp, action_B[:, None], axis=1)[:, 0], w_B) / len(outs)
      v_loss += mean((value_B - return_B) ** 2, w_B) / len(outs)
      if streams > 1:  # rows differ per member: each member's own accuracy, averaged
        acc += mean((jnp.argmax(lp, -1) == action_B).astype(jnp.float32), w_B) / len(outs)
    if streams == 1:  # the ensemble's accuracy (averaged log-probs)
      logp_BxA = sum(jax.nn.log_softmax(o[0]) for o in outs) / len(outs)
      acc = (jnp.argmax(logp_BxA, -1) == action_B).astype(jnp.float32).mean()
    return ce + value_coef * v_loss, dict(ce=ce, v_loss=v_loss, acc=acc)

  rep = sharding.replicated(mesh)

  @functools.partial(jax.jit, in_shardings=(state_sh, rep, rep, sharding.batch(mesh)),
                     out_shardings=(state_sh, rep), donate_argnums=0)
  def train_step(state, params, family_N, batch):
    model, opt = nnx.merge(graphdef, state)
    v = play_lib.view(params, family_N, obs_of(batch), sizes)
    (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
        model, v, batch["action"], 1.0 - batch["regret"], batch["stream"])
    aux = dict(aux, loss=loss, grad_norm=optax.tree.norm(grads))
    opt.update(model, grads)
    return nnx.state((model, opt)), aux

  return train_step


def _ckpt_args(state, it, save: bool):
  """The state and the data iterator."""
  if save:
    return ocp.args.Composite(state=ocp.args.StandardSave(nnx.to_pure_dict(state)),
                              data=grain.checkpoint.CheckpointSave(it))
  return ocp.args.Composite(state=ocp.args.StandardRestore(checkpoints.abstract(state)),
                            data=grain.checkpoint.CheckpointRestore(it))


def train(config, workdir, tables, splits, stop_after: int | None = None) -> dict:
  """Distills the simulate stage's records; resumes from WORKDIR/sft/ckpt if present.

  stop_after: leave the loop after this many steps without a final save (a kill, for tests).
  """
  logging.set_verbosity(logging.WARNING)
  logging.get_absl_logger().setLevel("WARNING")
  c = config.sft
  out_dir = os.path.join(workdir, "sft")
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(workdir, "sim", "summary.json")) as f:
    sim = json.load(f)
  bank = bank_lib.train_bank(config, tables, splits)
  if bank["names"] != sim["names"]:
    raise errors.UserError(
        "[sft] the training bank differs from the one the records were simulated "
        "on (config or data changed): remove WORKDIR/sim and rerun simulate")
  if sim.get("seed", int(config.seed)) != int(config.seed):  # the bank's sub-study draws
    raise errors.UserError(
        f"[sft] the records were simulated with --config.seed={sim['seed']}, this run has "
        f"{int(config.seed)}: the teacher's actions index another bank (remove WORKDIR/sim and "
        "rerun simulate, or keep the seed)")
  val = bank_lib.val_bank(config, tables, splits)
  max_keys = int(config.sim.max_cheap_rows) + bank["sizes"].max_turns
  mesh = sharding.make_mesh(config)
  sharding.check_divisible(int(c.batch_size), mesh, "--config.sft.batch_size")
  graphdef, state, lr = optim.sft_state(config)
  # One data stream, or one per ensemble member (sim.member_draws: each member distils its own
  # teacher data, from its own rows of one shared batch).
  n_streams = len(sim["streams"])
  if n_streams != bank_lib.data_streams(config):
    raise errors.UserError(
        f"[sft] the records hold {n_streams} data stream(s), the config asks "
        f"for {bank_lib.data_streams(config)} (--config.sim.member_draws, "
        "--config.model.members changed?): remove WORKDIR/sim and rerun simulate")
  step_fn = make_train_step(graphdef, state, bank["sizes"], max_keys, float(c.value_coef), mesh,
                            config.mesh.params, streams=n_streams)
  state = sharding.put(state, sharding.state_shardings(state, mesh, config.mesh.params))
  it = iter(make_dataset(os.path.join(workdir, "sim", simulate.RECORDS),
                         int(c.batch_size) // jax.process_count(), int(config.seed)))
  mngr = checkpoints.sft_manager(workdir, int(c.checkpoint_every))
  step = 0
  if mngr.latest_step() is not None:
    step = mngr.latest_step()
    restored = mngr.restore(step, args=_ckpt_args(state, it, False))  # restores `it` in place
    nnx.replace_by_pure_dict(state, restored["state"])  # arrays on this run's mesh
  metrics_path = os.path.join(out_dir, "metrics.jsonl")
  train_log.truncate(metrics_path, step)  # a resumed run rewrites what came after its checkpoint
  tb = SummaryWriter(os.path.join(out_dir, "tb")) if sharding.is_main() else None
  bar = tqdm(total=int(c.steps), initial=step, desc="[sft]", file=sys.stderr, leave=False,
             disable=os.environ.get("AUTOLLMR_NO_PROGRESS") == "1" or not sharding.is_main())
  t0, n0, last = time.time(), step, {}
  rep = sharding.replicated(mesh)
  params, family_N = sharding.put((bank["params"], bank["family_N"]), rep)
  while step < int(c.steps):
    if stop_after is not None and step >= stop_after:
      break
    batch = sharding.put_batch(next(it), mesh)
    state, aux = step_fn(state, params, family_N, batch)
    step += 1
    bar.update(1)
    if step % int(c.log_every) == 0 or step == int(c.steps):
      aux = {k: float(v) for k, v in aux.items()}
      rate = (step - n0) * int(c.batch_size) / max(time.time() - t0, 1e-9)
      last = dict(step=step, lr=float(lr(step)), examples_per_s=rate, **aux)
      bar.set_postfix(loss=f"{aux['loss']:.3f}", acc=f"{aux['acc']:.2f}", ex_s=f"{rate:.0f}")
    every = int(c.val_every)
    if step == int(c.steps) or (every > 0 and step % every == 0):
      model, _ = nnx.merge(graphdef, state)
      per, per_task = {}, {}
      v = gate.val_regret(config, model, val, per, per_task)
      last = dict(last, step=step, val_regret=v, val_by_table=per)
      if step == int(c.steps) and v is not None:
        gate.save_final_val(config, workdir, val, step, v, per, per_task)
    if step % int(c.checkpoint_every) == 0 or step == int(c.steps):
      mngr.save(step, args=_ckpt_args(state, it, True), force=True)
    if last.get("step") == step:
      train_log.log_row(metrics_path, tb, last)
  mngr.wait_until_finished()
  mngr.close()
  bar.close()
  if tb is not None:
    tb.close()
  model, _ = nnx.merge(graphdef, state)
  return dict(step=step, model=model, last=last)
