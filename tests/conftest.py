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
