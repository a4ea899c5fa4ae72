"""The advisor's policy as jax.export programs kept on disk: a repeated question skips restoring
the checkpoint and tracing the model (with the default 3-member ensemble ~2.5 s of a 5 s answer;
JAX's persistent cache skips only XLA's compile).

An entry is keyed by the agent's files (config.json, rl/best.json and every file of the SFT and RL
checkpoints: path, size, modification time) and the policy asked for (--policy), so a retrained
or resumed workdir gets a new entry. <root>/<key>/ holds meta.json (the policy loaded and its
input sizes), params.npz (its parameters, flat) and one exported program per input shape
(logp_<shapes>.bin: the log-probabilities of choosers.log_probs). A miss restores the model
(agent/checkpoints.py), exports the program and writes it; files are written whole, then renamed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os

import jax
import ml_collections
import numpy as np

from autollmr import errors
from autollmr.evaluation import choosers
from autollmr.lazy import lazy

# a cached policy needs neither the checkpoint (orbax) nor the model (flax.nnx): ~0.5 s of a start
checkpoints = lazy("autollmr.agent.checkpoints")
nnx = lazy("flax.nnx")


class Refusal(errors.UserError):
  """The advisor cannot answer this question; the message says what is missing."""


def cache_root() -> str:
  """$AUTOLLMR_CACHE, else ~/.cache/autollmr."""
  root = os.environ.get("AUTOLLMR_CACHE")
  return root or os.path.join(os.path.expanduser("~"), ".cache", "autollmr")


def agent_key(agent_dir: str, policy: str) -> str:
  """A hash of the agent's files that decide the policy (see the module docstring)."""
  h = hashlib.sha256(f"{os.path.realpath(agent_dir)}\n{policy}\n".encode())
  paths = [os.path.join(agent_dir, "config.json"), os.path.join(agent_dir, "rl", "best.json")]
  for sub in ("sft", "rl"):
    for top, dirs, files in os.walk(os.path.join(agent_dir, sub)):
      dirs.sort()
      paths += [os.path.join(top, f) for f in sorted(files)]
  for p in paths:
    if os.path.exists(p):
      st = os.stat(p)
      h.update(f"{os.path.relpath(p, agent_dir)} {st.st_size} {st.st_mtime_ns}\n".encode())
  return h.hexdigest()[:24]


def write_whole(path: str, data: bytes) -> None:
  tmp = f"{path}.{os.getpid()}.tmp"
  with open(tmp, "wb") as f:
    f.write(data)
  os.replace(tmp, path)


def load_agent(agent_dir: str, policy: str = "auto"):
  """(model, config, which, played) from a workdir of `python -m autollmr.main` (its config.json
  and its RL or SFT checkpoint; auto: RL when there is one, the final stage). played: dict(played,
  note) naming the policy actually loaded (the RL stage may have kept the distilled one)."""
  config = read_config(agent_dir)
  order = {"auto": ("rl", "sft"), "rl": ("rl",), "sft": ("sft",)}[policy]
  for which in order:
    model = (checkpoints.load_rl_policy if which == "rl"
             else checkpoints.load_sft_policy)(config, agent_dir)
    if model is not None:
      played = (checkpoints.rl_policy_played(config, agent_dir) if which == "rl" else
                dict(played="sft", step=None, note="the distilled (SFT) policy"))
      return model, config, which, played
  raise Refusal(f"--agent {agent_dir}: no {' or '.join(order)} checkpoint under it "
                f"({agent_dir}/sft/ckpt, {agent_dir}/rl/ckpt)")


def read_config(agent_dir: str):
  path = os.path.join(agent_dir, "config.json")
  if not os.path.exists(path):
    raise Refusal(f"--agent {agent_dir}: no config.json there (not a workdir of "
                  "`python -m autollmr.main`)")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


class ExportedPolicy:
  """The agent's policy for the advisor: d_max, g_max, max_keys, which, played (as load_agent
  says), and log_probs(v, bump_BxA) equal to choosers.log_probs(model, v, bump_BxA)."""

  def __init__(self, agent_dir: str, policy: str = "auto", root: str | None = None):
    self.agent_dir, self.policy = agent_dir, policy
    self.dir = os.path.join(root or os.path.join(cache_root(), "policies"),
                            agent_key(agent_dir, policy))
    self.model, self.leaves, self.programs = None, None, {}
    meta_path = os.path.join(self.dir, "meta.json")
    if os.path.exists(meta_path):
      with open(meta_path) as f:
        meta = json.load(f)
      self.config = read_config(agent_dir)
    else:
      self.restore()
      meta = dict(which=self.which, played=self.played, d_max=int(self.model.d_max),
                  g_max=int(self.model.g_max), max_keys=int(self.model.max_keys))
      os.makedirs(self.dir, exist_ok=True)
      write_whole(meta_path, json.dumps(meta).encode())
    self.which, self.played = meta["which"], meta["played"]
    self.d_max, self.g_max, self.max_keys = meta["d_max"], meta["g_max"], meta["max_keys"]

  def restore(self):
    self.model, self.config, self.which, self.played = load_agent(self.agent_dir, self.policy)
    self.graphdef, state = nnx.split(self.model)
    self.treedef = jax.tree.structure(state)
    self.leaves = [np.asarray(x) for x in jax.tree.leaves(state)]
    os.makedirs(self.dir, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, *self.leaves)
    write_whole(os.path.join(self.dir, "params.npz"), buf.getvalue())

  def params(self) -> list:
    if self.leaves is None:
      with np.load(os.path.join(self.dir, "params.npz")) as z:
        self.leaves = [z[f"arr_{i}"] for i in range(len(z.files))]
    return self.leaves

  def program(self, v: dict, bump_BxA):
    """The exported log-probabilities for these input shapes: in memory, on disk, or made."""
    shapes = [(k, tuple(x.shape), str(x.dtype)) for k, x in sorted(v.items())]
    shapes.append(("bump", tuple(bump_BxA.shape), str(bump_BxA.dtype)))
    name = "logp_" + hashlib.sha256(repr(shapes).encode()).hexdigest()[:16] + ".bin"
    if name in self.programs:
      return self.programs[name]
    path = os.path.join(self.dir, name)
    if os.path.exists(path):
      with open(path, "rb") as f:
        exp = jax.export.deserialize(bytearray(f.read()))
    else:
      exp = self.export(v, bump_BxA)
      write_whole(path, bytes(exp.serialize()))
    self.programs[name] = jax.jit(exp.call)  # jitted: a repeated call skips re-tracing the call
    return self.programs[name]

  def export(self, v: dict, bump_BxA):
    if self.model is None:
      self.restore()
    graphdef, treedef = self.graphdef, self.treedef

    def f(leaves, v, bump):
      model = nnx.merge(graphdef, jax.tree.unflatten(treedef, leaves))
      return choosers.bumped_log_probs(model, v, bump)
    return jax.export.export(jax.jit(f))(self.leaves, v, bump_BxA)

  def log_probs(self, v: dict, bump_BxA) -> np.ndarray:
    bump_BxA = np.asarray(bump_BxA, np.float32)
    return np.asarray(self.program(v, bump_BxA)(self.params(), v, bump_BxA))
