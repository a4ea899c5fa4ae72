"""Worker processes that play the peers (eval.workers), one single-threaded worker per core."""
from __future__ import annotations

import concurrent.futures
import contextlib
import multiprocessing
import os

import jax
import threadpoolctl

from autollmr import errors


def eval_workers(cfg) -> int:
  """--config.eval.workers: processes that play the peers; 0 = this process, -1 = one per CPU
  core (at most 8)."""
  w = int(cfg.eval.workers)
  if w < -1:
    raise errors.UserError(
        f"--config.eval.workers must be -1 (one per core), 0 (this process) or a "
        f"count, got {w}")
  return min(os.cpu_count() or 1, 8) if w == -1 else w


# One thread per worker: the workers fill the cores, not each worker's numerical libraries. The
# CPU backend: an accelerator belongs to the main process.
WORKER_ENV = dict(JAX_PLATFORMS="cpu", AUTOLLMR_NO_PROGRESS="1", OMP_NUM_THREADS="1",
                  OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")

WORKER_XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false"  # XLA:CPU on one thread


def worker_init():
  """Runs in each worker before its first job. NumPy may be loaded already (a spawned worker
  imports the main module), so its thread pools are capped at run time; JAX reads its platform
  and XLA flags when its backend starts, after this."""
  os.environ.update(WORKER_ENV)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + WORKER_XLA_FLAGS).strip()
  jax.config.update("jax_platforms", "cpu")
  threadpoolctl.threadpool_limits(1)


@contextlib.contextmanager
def peer_pool(workers: int):
  """Worker processes for the peers (yields None for workers = 0): the peers are Python ask/tell
  loops, so one single-threaded worker per core halves the peers' time on two cores. Spawned,
  not forked (JAX holds threads). PYTHONHASHSEED is fixed (0 unless set) for the workers, so
  SMAC's choices, which depend on string hashing, repeat from run to run; this process's own
  environment is otherwise left alone."""
  if workers <= 0:
    yield None
    return
  old = os.environ.get("PYTHONHASHSEED")
  os.environ["PYTHONHASHSEED"] = old or "0"  # read at interpreter start: set before spawning
  try:
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=worker_init) as pool:
      yield pool
  finally:
    if old is None:
      os.environ.pop("PYTHONHASHSEED", None)
