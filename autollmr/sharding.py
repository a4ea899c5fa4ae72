"""Device mesh, logical axis rules and shardings: the one place that knows about devices.

Mesh axes `data` and `model` (sizes from config.mesh; data=-1 = every device left over). The
policy's parameters carry logical names (model.py: embed, mlp, heads, kv, vocab); the rules of
`config.mesh.params` map them onto mesh axes:
  replicated  every device holds every parameter (plain data parallelism)
  fsdp        `embed` over `data`: parameters and optimizer state sharded across the data axis,
              gathered by XLA where used (ZeRO-3 / FSDP)
  tp          `mlp` and `heads` over `model` (Megatron-style tensor parallelism)
Batches (SFT examples, RL episodes, the env batch) always split their leading axis over `data`.
A dimension a mesh axis does not divide, or a second use of an axis within one parameter, stays
replicated (e.g. heads=4 on model=8). The mesh's axes are Auto (jax.make_mesh defaults to
Explicit, under which a vmapped gather on sharded data fails): XLA propagates the rest.

Multi-host: jax.devices() and the mesh are global; each host feeds its share of a batch
(`put_batch`: host-local rows -> one global array), `is_main()` guards writes, `sync` is a barrier.
"""
from __future__ import annotations

import math

from flax import nnx
import jax
from jax.experimental import multihost_utils
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from autollmr import errors

AXES = ("data", "model")
RULES = {  # logical name -> mesh axis; names not listed are replicated
    "replicated": (("batch", "data"),),
    "fsdp": (("batch", "data"), ("embed", "data")),
    "tp": (("batch", "data"), ("mlp", "model"), ("heads", "model")),
}


def mesh_shape(mcfg, n_devices: int | None = None) -> tuple[int, int]:
  """(data, model) from config.mesh; data=-1 takes every device left after `model`."""
  n = jax.device_count() if n_devices is None else n_devices
  data, model = int(mcfg.data), int(mcfg.model)
  if data == -1:
    if model < 1 or n % model:
      raise errors.UserError(f"--config.mesh.model={model} does not divide the {n} devices")
    data = n // model
  if data < 1 or model < 1 or data * model > n:
    raise errors.UserError(
        f"--config.mesh.data={mcfg.data} x --config.mesh.model={mcfg.model} needs "
        f"more than the {n} devices here (data=-1: all that model leaves)")
  return data, model


def make_mesh(config) -> jax.sharding.Mesh:
  """The (data, model) mesh over the first data x model devices (all of them by default)."""
  if config.mesh.params not in RULES:
    raise errors.UserError(f"--config.mesh.params must be one of {sorted(RULES)}, got "
                           f"{config.mesh.params!r}")
  shape = mesh_shape(config.mesh)
  return jax.make_mesh(shape, AXES, axis_types=(AxisType.Auto,) * 2,
                       devices=jax.devices()[:shape[0] * shape[1]])


def spec(names, shape, mesh, mode: str) -> P:
  """PartitionSpec of one array from its logical axis names under the rules of `mode`."""
  rules, used, out = dict(RULES[mode]), set(), []
  for name, size in zip(names or (), shape):
    axis = rules.get(name)
    if axis is None or axis in used or size % mesh.shape[axis]:
      out.append(None)
    else:
      out.append(axis)
      used.add(axis)
  return P(*out)


def state_shardings(state, mesh, mode: str):
  """NamedShardings for an NNX state (model and optimizer: both keep the parameters' names)."""
  def one(v):
    names = v.get_metadata().get("out_sharding")
    return v.replace(NamedSharding(mesh, spec(names, v.shape, mesh, mode)))
  return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def batch(mesh) -> NamedSharding:
  """Leading axis over `data` (SFT examples, RL episodes, env batches)."""
  return NamedSharding(mesh, P("data"))


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def put(tree, shardings):
  """Host values (the same on every host: deterministic init, the env bank) -> global arrays
  with `shardings` (one sharding or a matching tree); each device takes its slice. (Not
  jax.device_put: across hosts it checks the values are equal, which NaN padding fails.)"""
  def one(x, s):
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, s, lambda idx: x[idx])
  if isinstance(shardings, jax.sharding.Sharding):
    return jax.tree.map(lambda x: one(x, shardings), tree)
  return jax.tree.map(one, tree, shardings)


def check_divisible(n: int, mesh, flag: str):
  d = math.lcm(mesh.shape["data"], jax.process_count())
  if n % d:
    raise errors.UserError(f"{flag}={n} must be a multiple of {d} (the mesh's data axis, "
                           f"{mesh.shape['data']}, and the {jax.process_count()} host(s)): change "
                           f"{flag} or --config.mesh.data")


def put_batch(tree, mesh):
  """Host-local rows (numpy, this host's share) -> global arrays split over `data`."""
  s = batch(mesh)
  return jax.tree.map(lambda x: jax.make_array_from_process_local_data(s, np.asarray(x)), tree)


def constrain_batch(tree, mesh):
  """Inside jit: the leading axis of every array over `data`."""
  return jax.tree.map(lambda x: jax.lax.with_sharding_constraint(x, batch(mesh)), tree)


def host_local(tree):
  """Every array as a plain host-local copy (uncommitted, whole on every host), e.g. to play
  evaluation episodes locally with a model trained on the global mesh."""

  def one(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      x = multihost_utils.process_allgather(x, tiled=True)
    return jax.numpy.asarray(np.asarray(x))
  return jax.tree.map(one, tree)


def is_main() -> bool:
  """Only process 0 writes logs and results."""
  return jax.process_index() == 0


def agree(x):
  """Process 0's x (a bool, number or array) on every host. Every decision that could differ
  between hosts is taken through it: whether a file exists that another host may be writing at
  that moment, which checkpoint to keep; hosts that decide apart meet different collectives."""
  if jax.process_count() == 1:
    return x
  out = np.asarray(multihost_utils.broadcast_one_to_all(np.asarray(x, np.float64)))
  return type(x)(out.item()) if isinstance(x, (bool, int, float)) else out


def sync(name: str):
  """A barrier across hosts (no-op on one): e.g. after process 0 wrote a stage's files."""
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)
