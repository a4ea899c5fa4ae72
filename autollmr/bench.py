"""Benchmarks, one per name: `python -m autollmr.bench NAME [--json]`.

  env: env steps/s of a jitted, vmapped lax.scan rollout (random policy drawn inside the scan,
       auto-reset on) against the NumPy twin stepped from Python, and against a bare table
       gather in the same harness (the floor the env's rules add overhead to).
  scale: RL update throughput (episodes/s) against the device count (1, 2, 4, 8): one
       subprocess per count, the episodes split over a (n, 1) mesh (sharding.py). Fake CPU
       devices on a CPU-only host (they share its cores: this measures the sharding overhead,
       not a speed-up), the first n real devices on a GPU/TPU host (counts above the host's
       are skipped).

Add a benchmark: a function of no arguments (it reads its own flags) that returns a JSON-able
dict, entered in BENCHMARKS under its name.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.agent import rl
from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import sources
from autollmr.gym import synthetic
from autollmr.gym.reference import ReferenceEnv
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task
from configs import rl as rl_config

_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of readable lines.")
_BATCHES = flags.DEFINE_list("batches", ["1024", "4096", "16384"], "Episode batch sizes.")
_STEPS = flags.DEFINE_integer("steps", 128, "Env steps per scan call.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed calls per batch (best is kept).")
_REF_STEPS = flags.DEFINE_integer("ref_steps", 3000, "Steps of the NumPy twin.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Data directory (else $AUTOLLMR_DATA, ...).")
_SCALE_DEVICES = flags.DEFINE_list("scale_devices", ["1", "2", "4", "8"], "Device counts.")
_SCALE_UPDATES = flags.DEFINE_integer("scale_updates", 3, "Timed RL updates per device count.")
_SCALE_SIZE = flags.DEFINE_enum("scale_size", "tiny", ["tiny", "default"],
                                "Policy and candidate sizes: configs/rl.py:tiny or the default.")
_SCALE_EPISODES = flags.DEFINE_string("scale_episodes", "8x8",
                                      "Episodes per update: tasks x group size.")
_SCALE_N = flags.DEFINE_integer("scale_n", 1, "(internal) the device count of one scale run.")
_CPU_DEVICES = flags.DEFINE_integer(
    "cpu_devices", os.cpu_count(), "CPU devices to split the batch over (one per core: one "
    "XLA:CPU program mostly keeps to one thread).")


# --- the workload: one table, one task ---------------------------------------------------------


def _tiny_table() -> Table:
  """Hand-built fallback: 3 fidelities x 64 configs."""
  rng = np.random.default_rng(0)
  F, C = 3, 64
  vals = (rng.normal(size=(F, C)) + np.arange(F)[:, None]).astype(np.float32)
  valid = rng.random((F, C)) > 0.1
  return Table(
      name="bench_tiny", family="bench", provenance="synthetic", objective="loss",
      direction="min", fidelity_names=("f0", "f1", "f2"), config_feature_names=("x",),
      fidelity_feature_names=("g",), config_features_CxD=rng.normal(size=(C, 1)).astype(np.float32),
      fidelity_features_FxG=np.arange(F, dtype=np.float32)[:, None],
      values_FxC=np.where(valid, vals, np.nan).astype(np.float32), valid_FxC=valid,
      flagged_FxC=np.zeros((F, C), bool), cost_F=np.array([1.0, 4.0, 16.0]), cost_unit="s")


def bench_table(data_dir: str | None = None) -> Table:
  """steplaw_dense when the data is here, else its synthetic stand-in, else a tiny table."""
  try:
    if "steplaw_dense" in sources.available_tables(data_dir):
      return sources.load_table("steplaw_dense", data_dir)
  except Exception:  # no data dir and no synthetic module yet: fall through
    pass
  try:
    return synthetic.synthetic_tables()[0]
  except Exception:
    return _tiny_table()


def bench_task(table: Table, max_turns: int = 8) -> Task:
  """Target: the most expensive fidelity; all cheaper ones visible; rho 0.5 so reveals hash."""
  t = int(np.argmax(table.cost_F))
  vis = tuple(n for f, n in enumerate(table.fidelity_names) if table.cost_F[f] < table.cost_F[t])
  return Task(table.name, table.fidelity_names[t], vis, rho=0.5, budget=5.0, max_turns=max_turns)


# --- the in-scan random index generator ---------------------------------------------------------


def draw(ctr, n: int):
  """A uniform-ish int in [0, n) from a uint32 counter (n < 2**16): hash, then multiply-shift.

  Not jax.random: a threefry draw per step costs more than the env step itself on CPU, so the
  benchmark would time the generator. One lowbias32 hash is a few integer ops.
  """
  h = env_lib.hash32(ctr)
  return (((h >> 16) * jnp.uint32(n)) >> 16).astype(jnp.int32)


def _timed(fn, args, repeats: int):
  """(compile seconds, best seconds per call) of jit(fn)(*args); the carry is fed back."""
  t0 = time.perf_counter()
  compiled = jax.jit(fn, donate_argnums=0).lower(*args).compile()
  compile_s = time.perf_counter() - t0
  carry, rest = args[0], args[1:]
  carry, acc = compiled(carry, *rest)  # warm-up
  jax.block_until_ready(acc)
  best = float("inf")
  for _ in range(repeats):
    t0 = time.perf_counter()
    carry, acc = compiled(carry, *rest)
    jax.block_until_ready((carry, acc))
    best = min(best, time.perf_counter() - t0)
  assert np.isfinite(np.asarray(acc)).all(), "a benchmark sum is not finite"
  return compile_s, best


def env_rollout(steps: int, sizes: env_lib.EnvSizes):
  """(state_B, ctr_B), params -> (same carry, acc_B); every output is summed into acc.

  The T-wide observation arrays go into a T-wide accumulator (elementwise, reduced once after the
  scan): a per-step reduction over T would cost more than the env step it consumes.
  """
  def one(state, ctr, params):
    def body(c, _):
      state, ctr, acc, acc_T = c
      obs, state, r, term, trunc, info = env_lib.step(state, draw(ctr, sizes.num_candidates),
                                                      params, sizes)
      acc_T = acc_T + obs.norm_T + obs.queried_T
      acc = (acc + r + obs.budget_left + obs.turn + obs.task + (obs.seed >> 24) + term + trunc
             + info["regret"] + info["percentile"] + info["recommendation"]
             + info["cost_spent"] + info["n_invalid"] + info["n_repeat"])
      return (state, ctr + jnp.uint32(1), acc, acc_T), None
    acc_T = jnp.zeros((sizes.max_turns,), jnp.float32)
    (state, ctr, acc, acc_T), _ = jax.lax.scan(body, (state, ctr, jnp.float32(0), acc_T), None,
                                               length=steps)
    return state, ctr, acc + acc_T.sum()

  def rollout(carry, params):
    state, ctr = carry
    state, ctr, acc = jax.vmap(one, in_axes=(0, 0, None))(state, ctr, params)
    return (state, ctr), acc
  return rollout


def gather_rollout(steps: int):
  """The same harness around a bare values_FxC[f, c] gather."""
  def one(ctr, values_FxC):
    F, C = values_FxC.shape
    def body(c, _):
      ctr, acc = c
      h = env_lib.hash32(ctr)
      f = (((h & jnp.uint32(0xFFFF)) * jnp.uint32(F)) >> 16).astype(jnp.int32)
      cc = (((h >> 16) * jnp.uint32(C)) >> 16).astype(jnp.int32)
      v = values_FxC[f, cc]
      return (ctr + jnp.uint32(1), acc + jnp.where(v == v, v, 0.0)), None
    (ctr, acc), _ = jax.lax.scan(body, (ctr, jnp.float32(0)), None, length=steps)
    return ctr, acc

  def rollout(ctr_B, values_FxC):
    return jax.vmap(one, in_axes=(0, None))(ctr_B, values_FxC)
  return rollout


def _spread(tree, batched: bool):
  """Splits the batch axis over all devices (or replicates), so every core steps its share."""
  devs = jax.devices()
  if batched and jax.tree.leaves(tree)[0].shape[0] % len(devs):
    raise ValueError(f"batch sizes must be multiples of the {len(devs)} devices")
  mesh = jax.sharding.Mesh(np.array(devs), ("b",), axis_types=(jax.sharding.AxisType.Auto,))
  spec = jax.sharding.PartitionSpec("b") if batched else jax.sharding.PartitionSpec()
  return jax.device_put(tree, jax.sharding.NamedSharding(mesh, spec))


def reference_steps_per_s(params, sizes, steps: int) -> float:
  ref = ReferenceEnv(params, sizes)
  ref.reset(0, 12345)
  actions = np.random.default_rng(0).integers(0, sizes.num_candidates, steps)
  t0 = time.perf_counter()
  for a in actions:  # auto-reset happens inside step
    ref.step(int(a))
  return steps / (time.perf_counter() - t0)


def bench_env(batches=(1024, 4096, 16384), steps: int = 128, repeats: int = 5,
              ref_steps: int = 3000, data_dir: str | None = None) -> dict:
  """Steps/s of the jitted env per batch size (compile time: of the best batch's program)."""
  table = bench_table(data_dir)
  task = bench_task(table)
  params, sizes = build.make_params(table, [task])
  per_batch, compile_per_batch, bare = {}, {}, {}
  params_d = _spread(params, batched=False)
  for B in batches:
    seeds = jnp.asarray(np.random.default_rng(B).integers(0, 2**32, B, dtype=np.uint32))
    state = jax.vmap(lambda s: env_lib.fresh_state(params, sizes, 0, s, 0))(seeds)
    # A counter stream per episode, far apart.
    ctr = lambda: _spread(jnp.arange(B, dtype=jnp.uint32) * jnp.uint32(1 << 20), batched=True)
    c_s, t_s = _timed(env_rollout(steps, sizes), ((_spread(state, True), ctr()), params_d),
                      repeats)
    per_batch[B], compile_per_batch[B] = B * steps / t_s, c_s
    _, t_s = _timed(gather_rollout(steps), (ctr(), params_d.values_FxC), repeats)
    bare[B] = B * steps / t_s
  best = max(per_batch, key=per_batch.get)
  ref = reference_steps_per_s(params, sizes, ref_steps)
  dev = jax.devices()[0]
  return dict(
      jax_steps_per_s=per_batch[best], reference_steps_per_s=ref, ratio=per_batch[best] / ref,
      batch=best, per_batch=per_batch, bare_gather_steps_per_s=max(bare.values()),
      bare_gather_per_batch=bare, overhead_vs_bare=max(bare.values()) / per_batch[best],
      compile_s=compile_per_batch[best], scan_steps=steps,
      device=f"{dev.platform}:{dev.device_kind} ({os.cpu_count()} cpus)",
      devices=jax.device_count(),
      table=table.name, num_candidates=sizes.num_candidates, max_turns=sizes.max_turns,
      jax_version=jax.__version__)


def _env_from_flags() -> dict:
  return bench_env(batches=[int(b) for b in _BATCHES.value], steps=_STEPS.value,
                   repeats=_REPEATS.value, ref_steps=_REF_STEPS.value, data_dir=_DATA_DIR.value)


# --- scale: RL updates against the device count ---------------------------------------------------


def scale_one(n: int, size: str = "tiny", episodes: str = "8x8", updates: int = 3) -> dict:
  """Episodes/s of jitted RL updates (rollout + loss + step) on a (n, 1) mesh, in this process."""
  c = rl_config.get_config("tiny" if size == "tiny" else "")
  c.data_dir, c.tasks.families = "none", "synthetic_admire,grpo"
  c.rl.init, c.rl.updates_per_call = "scratch", 1
  c.rl.tasks_per_update, c.rl.group_size = (int(x) for x in episodes.split("x"))
  c.mesh.data, c.mesh.model = n, 1
  tables = pipeline.load_tables(c)
  splits = pipeline.curate_all(c, tables)
  bank = bank_lib.build_bank(c, tables, splits, "train", c.sim.max_cheap_rows,
                             c.sim.max_target_configs)
  graphdef, state, ref_graphdef, ref_state, _ = rl.init_states(c, None)
  mesh = sharding.make_mesh(c)
  state_sh = sharding.state_shardings(state, mesh, c.mesh.params)
  ref_sh = sharding.state_shardings(ref_state, mesh, c.mesh.params)
  max_keys = int(c.sim.max_cheap_rows) + bank["sizes"].max_turns
  update = rl.make_update(graphdef, ref_graphdef, bank["sizes"], max_keys, c.rl, mesh, state_sh,
                          ref_sh)
  state, ref_state = sharding.put((state, ref_state), (state_sh, ref_sh))
  params, family_N = sharding.put((bank["params"], bank["family_N"]), sharding.replicated(mesh))
  key = jax.random.key(0)
  t0 = time.perf_counter()
  state, m = jax.block_until_ready(update(state, ref_state, params, family_N, key))
  compile_s = time.perf_counter() - t0
  t0, turns = time.perf_counter(), 0.0
  for i in range(updates):
    state, m = update(state, ref_state, params, family_N, jax.random.fold_in(key, i))
    turns += float(m["turns"])  # a host sync per update, as in rl.train
  dt = time.perf_counter() - t0
  eps = c.rl.tasks_per_update * c.rl.group_size
  dev = jax.devices()[0]
  return dict(devices=n, episodes_per_update=eps, episodes_per_s=eps * updates / dt,
              policy_env_steps_per_s=turns / dt, s_per_update=dt / updates,
              first_call_s=compile_s, device=f"{dev.platform}:{dev.device_kind}")


def bench_scale(counts=(1, 2, 4, 8), size: str = "tiny", episodes: str = "8x8",
                updates: int = 3) -> dict:
  """scale_one in a fresh subprocess per device count (fake CPU devices must be set before jax
  starts; real accelerators: the first n)."""
  accel = jax.default_backend() != "cpu"
  have = jax.device_count() if accel else None
  rows, skipped = {}, []
  for n in counts:
    if accel and n > have:
      skipped.append(n)
      continue
    cmd = [sys.executable, "-m", "autollmr.bench", "_scale_one", f"--scale_n={n}",
           f"--scale_size={size}", f"--scale_episodes={episodes}",
           f"--scale_updates={updates}", "--json"]
    env = dict(os.environ)
    if not accel:
      cmd.append(f"--cpu_devices={n}")
      env["JAX_PLATFORMS"] = "cpu"
    r = subprocess.run(cmd, env=env, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if r.returncode:
      raise RuntimeError(f"bench scale with {n} devices failed:\n{r.stderr[-3000:]}")
    rows[n] = json.loads(r.stdout[r.stdout.index("{"):])
  base = rows[min(rows)]["episodes_per_s"]
  dev = jax.devices()[0]
  return dict(
      episodes_per_s={n: r["episodes_per_s"] for n, r in rows.items()},
      speedup_vs_fewest={n: r["episodes_per_s"] / base for n, r in rows.items()},
      s_per_update={n: r["s_per_update"] for n, r in rows.items()},
      first_call_s={n: r["first_call_s"] for n, r in rows.items()},
      episodes_per_update=rows[min(rows)]["episodes_per_update"], size=size,
      devices_kind=("real " if accel else "fake CPU ") + f"{dev.platform}:{dev.device_kind}",
      host_cpus=os.cpu_count(), skipped_counts=skipped, jax_version=jax.__version__)


def _scale_from_flags() -> dict:
  return bench_scale(tuple(int(n) for n in _SCALE_DEVICES.value), _SCALE_SIZE.value,
                     _SCALE_EPISODES.value, _SCALE_UPDATES.value)


def _scale_one_from_flags() -> dict:
  return scale_one(_SCALE_N.value, _SCALE_SIZE.value, _SCALE_EPISODES.value,
                   _SCALE_UPDATES.value)


BENCHMARKS = {"env": _env_from_flags, "scale": _scale_from_flags,
              "_scale_one": _scale_one_from_flags}


def format_text(name: str, out: dict) -> str:
  lines = [f"benchmark {name}"]
  for k, v in out.items():
    if isinstance(v, dict):
      v = ", ".join(f"{kk}: {vv:.4g}" for kk, vv in v.items())
    elif isinstance(v, float):
      v = f"{v:.4g}"
    lines.append(f"  {k:<24} {v}")
  return "\n".join(lines)


def main(argv):
  if len(argv) < 2 or argv[1] not in BENCHMARKS:
    names = ",".join(b for b in BENCHMARKS if not b.startswith("_"))
    raise errors.UserError(f"expected one of {{{names}}}, got {argv[1:]}")
  if argv[1] != "scale":  # scale's own process only launches the runs
    jax.config.update("jax_num_cpu_devices", _CPU_DEVICES.value)  # before the backend starts
  out = BENCHMARKS[argv[1]]()
  print(json.dumps(out, indent=1) if _JSON.value else format_text(argv[1], out))


if __name__ == "__main__":
  cli.run(main)
