"""The benchmark runs end to end at tiny sizes and reports what it promises."""

from autollmr import bench

KEYS = {"jax_steps_per_s", "reference_steps_per_s", "ratio", "batch", "per_batch",
        "bare_gather_steps_per_s", "overhead_vs_bare", "compile_s", "device", "table",
        "num_candidates", "max_turns", "jax_version"}


def test_env_bench_tiny():
  out = bench.bench_env(batches=(64,), steps=8, repeats=1, ref_steps=50)
  assert KEYS <= set(out)
  assert out["batch"] == 64 and set(out["per_batch"]) == {64}
  for k in ("jax_steps_per_s", "reference_steps_per_s", "ratio", "bare_gather_steps_per_s",
            "overhead_vs_bare", "compile_s"):
    assert out[k] > 0, k
  assert out["num_candidates"] > 0 and out["max_turns"] == 8
  assert "env" in bench.BENCHMARKS


def test_draw_in_range():
  import jax.numpy as jnp
  a = bench.draw(jnp.arange(10_000, dtype=jnp.uint32), 559)
  assert int(a.min()) == 0 and int(a.max()) == 558
