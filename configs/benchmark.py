"""The benchmark: every protocol x regime, the distilled agent and every peer.

  python -m autollmr.benchmark --workdir=DIR                                # full preset
  python -m autollmr.benchmark --config=configs/benchmark.py:quick --workdir=DIR  # smoke

Full preset: every table available (the real ones beside the data), protocols standard + lofo
(one distilled agent per held-out family), regimes full, sparse and online, every default peer.
Runtime and results: docs/measurements.md "The benchmark". The quick preset plays two tiny
synthetic tables with a tiny model in about a minute on the 2-core CPU.
"""
from configs import common
from configs import sft


def get_config(arg: str = ""):
  c = sft.get_config("tiny" if arg == "quick" else "")
  c.stages = "curate,simulate,sft,eval"  # distillation only (RL adds nothing on validation yet)
  if arg == "quick":
    c.eval.designs = 1  # the tiny tables of configs/sft.py:tiny (synthetic_admire, grpo)
    c.eval.transcripts = 0
    c.benchmark.n_boot = 200
  elif arg:
    raise ValueError(f"configs/benchmark.py takes '' or 'quick', got {arg!r}")
  else:
    c.eval.methods = common.base().eval.methods
    c.model.members = 1  # one policy per fold: eight trainings fit the 90-minute budget
    c.eval.seeds = 2  # x 2 sparse designs; deterministic peers repeat across seeds at rho = 1
    c.eval.designs = 2
    c.eval.transcripts = 0
  return c
