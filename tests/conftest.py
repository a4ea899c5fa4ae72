"""Test-session settings, read before any test imports jax.

One persistent XLA compilation cache per test session (a fresh directory, removed at the end; so
is $AUTOLLMR_CACHE, where tables and the advisor's programs are kept): the
tests and their subprocesses compile the same tiny programs many times, and on 2 CPU cores
compiling is most of a tiny test's time. For the same reason XLA's backend runs without its
expensive optimizations (tiny programs run fast either way; results are compared within a run).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

CACHE_MADE_HERE = "JAX_COMPILATION_CACHE_DIR" not in os.environ  # the workers inherit it
if CACHE_MADE_HERE:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="autollmr-xla-")
USER_CACHE_MADE_HERE = "AUTOLLMR_CACHE" not in os.environ  # tables, the advisor's programs
if USER_CACHE_MADE_HERE:
  os.environ["AUTOLLMR_CACHE"] = tempfile.mkdtemp(prefix="autollmr-cache-")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
FAST_COMPILE = "--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true"
if FAST_COMPILE not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + FAST_COMPILE).strip()


import pytest  # noqa: E402  (after the environment above, which jax must see first)

from autollmr import pipeline
from configs import sft as sft_config


# Seconds on the 2-core CPU (fresh clone, 2026-12-06, `--durations`): the long tests, so the two
# workers each start with half of them (worksteal splits the queue in two halves by count)
# instead of one worker finishing alone with them. A module's tests stay together (shared setup).
SLOW = {"tests/agent/test_sharding.py": 100, "tests/e2e/test_benchmark.py": 120,
        "tests/e2e/test_multihost.py": 120, "tests/e2e/test_smoke_run.py": 110,
        "tests/agent/test_rl_prior.py": 55, "tests/e2e/test_ablate.py": 60,
        "tests/evaluation/test_evaluate.py": 70, "tests/agent/test_rl_resume.py": 40,
        "tests/e2e/test_cli.py": 70}


def pytest_collection_modifyitems(config, items):
  slow = {m: [i for i in items if i.nodeid.split("::")[0] == m] for m in SLOW}
  fast = [i for i in items if i.nodeid.split("::")[0] not in SLOW]
  halves, load = ([], []), [0, 0]
  for m in sorted(SLOW, key=lambda m: -SLOW[m]):  # longest first, to the lighter half
    h = int(load[1] < load[0])
    halves[h].extend(slow[m])
    load[h] += SLOW[m]
  cut = max(0, min(len(fast), (len(items) // 2) - len(halves[0])))
  items[:] = halves[0] + fast[:cut] + halves[1] + fast[cut:]


def pytest_unconfigure(config):
  if CACHE_MADE_HERE:  # the controller, after its workers
    shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
  if USER_CACHE_MADE_HERE:
    shutil.rmtree(os.environ["AUTOLLMR_CACHE"], ignore_errors=True)


@pytest.fixture
def tiny_setup():
  """configs/sft.py:tiny on the synthetic tables: (config, tables, splits)."""
  c = sft_config.get_config("tiny")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AUTOLLMR_DATA", "none")  # the synthetic tables
    tables = pipeline.load_tables(c)
  return c, tables, pipeline.curate_all(c, tables)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run_command(*args, env=None, timeout=600):
  return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                        timeout=timeout, env={**os.environ, "PYTHONPATH": REPO,
                                              "AUTOLLMR_DATA": "none", **(env or {})})


def _one_error_line(r) -> str:
  lines = r.stderr.strip().splitlines()
  assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), (
      r.returncode, r.stderr[-2000:])
  return lines[0]


@pytest.fixture
def run_command():
  """run_command("autollmr.X", *args): `python -m autollmr.X args` in a subprocess from the repo
  root, on the synthetic tables; returns the CompletedProcess."""
  return _run_command


def _run_forked(calls, env=None, timeout=600):
  """[CompletedProcess] of `python -m` calls, each forked from one process that imported the
  heavy libraries once (tests/fork_commands.py), on the synthetic tables."""
  r = subprocess.run([sys.executable, os.path.join(REPO, "tests", "fork_commands.py")],
                     input=json.dumps([list(c) for c in calls]), cwd=REPO, capture_output=True,
                     text=True, timeout=timeout,
                     env={**os.environ, "PYTHONPATH": REPO, "AUTOLLMR_DATA": "none", **(env or {})})
  assert r.returncode == 0, r.stderr[-3000:]
  return [subprocess.CompletedProcess(c, code, out, err)
          for c, (code, out, err) in zip(calls, json.loads(r.stdout))]


@pytest.fixture
def run_forked():
  """run_forked([("autollmr.X", *args), ...]): like run_command for each call, all forked from
  one process that imported jax, flax and the pipeline once (~3 s a command saved)."""
  return _run_forked


@pytest.fixture
def one_error_line():
  """one_error_line(completed): the single `error:` line a command ends a user's mistake with
  (asserts exit status 2 and nothing else on stderr)."""
  return _one_error_line
