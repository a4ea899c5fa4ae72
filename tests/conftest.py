"""Test-session settings, read before any test imports jax.

One persistent XLA compilation cache per test session (a fresh directory, so nothing carries over
between runs): the tests and their subprocesses compile the same tiny programs many times, and on
2 CPU cores compiling is most of a tiny test's time.
"""
import os
import tempfile

os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="autollmr-xla-"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


import pytest  # noqa: E402  (after the environment above, which jax must see first)


@pytest.fixture
def tiny_setup():
  """configs/sft.py:tiny on the synthetic tables: (config, tables, splits)."""
  from autollmr import pipeline
  from configs import sft as sft_config
  c = sft_config.get_config("tiny")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AUTOLLMR_DATA", "none")  # the synthetic tables
    tables = pipeline.load_tables(c)
  return c, tables, pipeline.curate_all(c, tables)
