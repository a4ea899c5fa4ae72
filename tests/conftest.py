"""Test-session settings, read before any test imports jax.

One persistent XLA compilation cache per test session (a fresh directory, so nothing carries over
between runs): the tests and their subprocesses compile the same tiny programs many times, and on
2 CPU cores compiling is most of a tiny test's time.
"""
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="autollmr-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


import pytest  # noqa: E402  (after the environment above, which jax must see first)

from autollmr import pipeline


@pytest.fixture
def tiny_setup():
  """configs/sft.py:tiny on the synthetic tables: (config, tables, splits)."""
  from configs import sft as sft_config
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


@pytest.fixture
def one_error_line():
  """one_error_line(completed): the single `error:` line a command ends a user's mistake with
  (asserts exit status 2 and nothing else on stderr)."""
  return _one_error_line
