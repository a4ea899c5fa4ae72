"""Multi-host on one machine: `python -m autollmr.multihost_check [--processes=2] [--devices=2]`.

Starts that many local processes, each with that many fake CPU devices, joined by
jax.distributed (coordinator on localhost, gloo collectives), and runs the tiny pipeline
(curate, simulate, SFT, RL, eval) on the global mesh in a shared workdir: every host reads its
grain slice and steps its share of the episodes, only process 0 writes logs and results, orbax
writes the checkpoints together. Then checks that every process finished, that each log row was
written once, and that the SFT checkpoint restores in a single process. A few minutes on 2
cores; a command, not a test.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time

from absl import flags
from absl import logging
import jax

from autollmr import cli
from autollmr import pipeline
from autollmr.agent import checkpoints
from configs import rl as rl_config

_PROCESSES = flags.DEFINE_integer("processes", 2, "Local processes (hosts).")
_DEVICES = flags.DEFINE_integer("devices", 2, "Fake CPU devices per process.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Shared workdir (default: a temporary one).")
_CHILD = flags.DEFINE_integer("child", None, "(internal) this process's id.")
_PORT = flags.DEFINE_integer("port", None, "(internal) the coordinator's port.")


def tiny_config():
  c = rl_config.get_config("tiny")
  c.data_dir = "none"
  c.sft.steps, c.sft.checkpoint_every = 4, 2
  c.eval.methods = "random"
  return c


def child(pid: int, port: int, workdir: str):
  jax.config.update("jax_num_cpu_devices", _DEVICES.value)
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(coordinator_address=f"localhost:{port}",
                             num_processes=_PROCESSES.value, process_id=pid)
  print(f"process {jax.process_index()} of {jax.process_count()}: {jax.local_device_count()} of "
        f"{jax.device_count()} devices", flush=True)
  pipeline.run(tiny_config(), workdir)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax is loud at INFO
  if _CHILD.value is not None:
    return child(_CHILD.value, _PORT.value, _WORKDIR.value)
  workdir = _WORKDIR.value or tempfile.mkdtemp(prefix="autollmr_multihost_")
  with socket.socket() as s:
    s.bind(("localhost", 0))
    port = s.getsockname()[1]
  env = dict(os.environ, JAX_PLATFORMS="cpu", AUTOLLMR_NO_PROGRESS="1")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  t0 = time.time()
  procs = [subprocess.Popen(
      [sys.executable, "-m", "autollmr.multihost_check", f"--child={i}", f"--port={port}",
       f"--workdir={workdir}", f"--processes={_PROCESSES.value}", f"--devices={_DEVICES.value}"],
      cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(_PROCESSES.value)]
  logs = [p.communicate(timeout=1800)[0] for p in procs]
  codes = [p.returncode for p in procs]
  for i, log in enumerate(logs):
    print(f"--- process {i} (exit {codes[i]}), last lines:\n" + "\n".join(log.splitlines()[-6:]))
  if any(codes):
    sys.exit(f"a process failed: exit codes {codes}")
  checks = {}
  for stage in ("sft", "rl"):
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
      steps = [json.loads(line)["step"] for line in f]
    checks[f"{stage}_log_rows_once"] = steps == sorted(set(steps))
  checks["leaderboard"] = os.path.exists(os.path.join(workdir, "results", "leaderboard.json"))
  checks["sft_ckpt_restores_in_one_process"] = checkpoints.load_sft_policy(tiny_config(),
                                                                           workdir) is not None
  out = dict(processes=_PROCESSES.value, devices_per_process=_DEVICES.value, workdir=workdir,
             seconds=round(time.time() - t0, 1), **checks)
  print(json.dumps(out, indent=1))
  if not all(checks.values()):
    sys.exit("a check failed")


if __name__ == "__main__":
  cli.run(main)
