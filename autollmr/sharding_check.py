"""Same numbers on every mesh: `python -m autollmr.sharding_check OUT_DIR`
(tests/agent/test_sharding.py).

Run it with 8 devices (fake CPU ones: XLA_FLAGS=--xla_force_host_platform_device_count=8, set
before jax starts, hence a subprocess in the tests). On the tiny configs and synthetic tables it
  - steps the jitted env on one device and with the episode batch split over (8,1) and (4,2);
  - trains SFT and RL (from scratch) for 3 steps on meshes (1,1) replicated, (8,1) fsdp and
    (4,2) tp;
  - writes an SFT checkpoint on (8,1) fsdp at step 2, resumes it on (4,2) tp to step 3, and
    restores it directly onto (4,2) tp (the arrays must come back with the new sharding).
Writes OUT_DIR/results.json (metrics per step, env equality, shardings) and params_*.npz.
"""
from __future__ import annotations

import json
import os
import shutil
import time

from flax import nnx
import jax
import numpy as np
import orbax.checkpoint as ocp

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import optim
from autollmr.agent import play as play_lib
from autollmr.agent import rl
from autollmr.agent import sft
from autollmr.agent import simulate
from autollmr.gym import env as env_lib
from configs import rl as rl_config

MESHES = {"1x1_replicated": (1, 1, "replicated"), "8x1_fsdp": (8, 1, "fsdp"),
          "4x2_tp": (4, 2, "tp")}


def tiny_config(mesh=(1, 1, "replicated")):
  c = rl_config.get_config("tiny")
  c.data_dir = "none"
  c.sft.steps, c.sft.checkpoint_every, c.sft.log_every, c.sft.val_seeds = 3, 3, 1, 0
  c.rl.init, c.rl.steps, c.rl.updates_per_call = "scratch", 3, 1
  c.rl.checkpoint_every, c.rl.log_every = 3, 1
  c.rl.tasks_per_update, c.rl.group_size = 2, 4  # 8 episodes: one per device on (8,1)
  c.mesh.data, c.mesh.model, c.mesh.params = mesh
  return c


def params_of(model) -> dict:
  flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(nnx.state(model, nnx.Param)))[0]
  return {jax.tree_util.keystr(k): np.asarray(v) for k, v in flat}


def metrics(path) -> list[dict]:
  with open(path) as f:
    return [json.loads(line) for line in f]


def env_outputs(bank, mesh):
  """Reset + every turn of B episodes with fixed actions, and the policy's view of the last
  observation; on one device (mesh None) or with the episodes split over `data`."""
  params, sizes = bank["params"], bank["sizes"]
  B, T = 32, sizes.max_turns
  rng = np.random.default_rng(0)
  task_B = rng.integers(0, len(bank["tasks"]), B).astype(np.int32)
  seed_B = rng.integers(0, 2**32, B, dtype=np.uint32)
  act_TxB = rng.integers(0, sizes.num_candidates, (T, B)).astype(np.int32)

  def run(params, family_N, task_B, seed_B, act_TxB):
    state = jax.vmap(lambda t, s: env_lib.fresh_state(params, sizes, t, s, 0))(task_B, seed_B)

    def body(state, a_B):
      obs, state, r, term, trunc, info = jax.vmap(
          lambda s, a: env_lib.step(s, a, params, sizes))(state, a_B)
      return state, (obs, r, term, trunc, info)
    state, out = jax.lax.scan(body, state, act_TxB)
    last = jax.vmap(lambda s: env_lib.observe(params, s))(state)
    return out, play_lib.view(params, family_N, last, sizes)

  args = (params, bank["family_N"], task_B, seed_B, act_TxB)
  if mesh is None:
    dev = jax.devices()[0]
    return jax.jit(run)(*jax.device_put(args, dev))
  rep, b = sharding.replicated(mesh), sharding.batch(mesh)
  tb = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec(None, "data"))
  out = jax.jit(run, in_shardings=(rep, rep, b, b, tb))(*args)
  return out


def main(out_dir: str):
  os.makedirs(out_dir, exist_ok=True)
  os.environ["AUTOLLMR_NO_PROGRESS"] = "1"
  t0 = time.time()
  res = {"devices": jax.device_count(), "seconds": {}}
  c = tiny_config()
  tables = pipeline.load_tables(c)
  splits = pipeline.curate_all(c, tables)
  work = os.path.join(out_dir, "work")
  shutil.rmtree(work, ignore_errors=True)
  base = os.path.join(work, "base")
  simulate.run(c, base, tables, splits)
  res["seconds"]["setup"] = time.time() - t0

  # The env: identical outputs, one device vs the episode batch split over `data`.
  t = time.time()
  bank = bank_lib.train_bank(c, tables, splits)
  ref = jax.tree.map(np.asarray, env_outputs(bank, None))
  res["env"] = {}
  for name, shape in (("8x1", (8, 1)), ("4x2", (4, 2))):
    mesh = jax.make_mesh(shape, sharding.AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2)
    out = env_outputs(bank, mesh)
    split = str(jax.tree.leaves(out)[0].sharding.spec)
    out = jax.tree.map(np.asarray, out)
    same = all(np.array_equal(a, b, equal_nan=True)
               for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(out)))
    res["env"][name] = dict(identical=bool(same), n_arrays=len(jax.tree.leaves(out)),
                            spec=split)
  res["seconds"]["env"] = time.time() - t

  # SFT and RL, 3 steps on each mesh.
  res["sft"], res["rl"] = {}, {}
  for name, mesh in MESHES.items():
    t = time.time()
    cm = tiny_config(mesh)
    wd = os.path.join(work, name)
    shutil.copytree(os.path.join(base, "sim"), os.path.join(wd, "sim"))
    out = sft.train(cm, wd, tables, splits)
    res["sft"][name] = metrics(os.path.join(wd, "sft", "metrics.jsonl"))
    np.savez(os.path.join(out_dir, f"params_sft_{name}.npz"), **params_of(out["model"]))
    res["seconds"][f"sft_{name}"] = time.time() - t
    t = time.time()
    rl.train(cm, wd, tables, splits)
    res["rl"][name] = metrics(os.path.join(wd, "rl", "metrics.jsonl"))
    np.savez(os.path.join(out_dir, f"params_rl_{name}.npz"),
             **params_of(checkpoints.load_rl_policy(cm, wd)))
    res["seconds"][f"rl_{name}"] = time.time() - t

  # A checkpoint written on (8,1) fsdp, resumed and restored on (4,2) tp.
  t = time.time()
  wd = os.path.join(work, "moved")
  shutil.copytree(os.path.join(base, "sim"), os.path.join(wd, "sim"))
  a = tiny_config(MESHES["8x1_fsdp"])
  a.sft.checkpoint_every = 2
  sft.train(a, wd, tables, splits, stop_after=2)  # saved at step 2, then "killed"
  b = tiny_config(MESHES["4x2_tp"])
  b.sft.checkpoint_every = 2
  graphdef, state, _ = optim.sft_state(b)
  mesh = sharding.make_mesh(b)
  want = sharding.state_shardings(state, mesh, b.mesh.params)
  state = sharding.put(state, want)
  mngr = checkpoints.sft_manager(wd, 2)
  restored = mngr.restore(2, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(checkpoints.abstract(state))))["state"]
  mngr.close()
  got = jax.tree.leaves(restored)
  want = [x.sharding for x in jax.tree.leaves(nnx.to_pure_dict(state))]
  res["restore"] = dict(
      same_sharding=all(g.sharding.is_equivalent_to(w, g.ndim) for g, w in zip(got, want)),
      tp_specs=sorted({str(g.sharding.spec) for g in got if "model" in str(g.sharding.spec)}),
      n_arrays=len(got))
  out = sft.train(b, wd, tables, splits)  # resumes at 2 on the new mesh, ends at 3
  res["resumed"] = dict(step=out["step"], metrics=metrics(os.path.join(wd, "sft",
                                                                       "metrics.jsonl")))
  np.savez(os.path.join(out_dir, "params_sft_resumed.npz"), **params_of(out["model"]))
  res["seconds"]["checkpoint"] = time.time() - t
  res["seconds"]["total"] = time.time() - t0
  shutil.rmtree(work, ignore_errors=True)
  with open(os.path.join(out_dir, "results.json"), "w") as f:
    json.dump(res, f, indent=1)
  print(json.dumps(res["seconds"]))


def _main(argv):
  if len(argv) != 2:
    raise errors.UserError(f"expected one argument, the output directory; got {argv[1:]}")
  main(argv[1])


if __name__ == "__main__":
  cli.run(_main)
