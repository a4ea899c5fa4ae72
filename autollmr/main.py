"""The entry point: `python -m autollmr.main --config=configs/rl.py --workdir=DIR`.

Runs the stages the config names (see pipeline.py); re-running with the same workdir resumes.
"""
from __future__ import annotations

import os

from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from autollmr import cli
from autollmr import pipeline

_CONFIG = config_flags.DEFINE_config_file("config", "configs/rl.py", "Config file.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Where outputs and checkpoints go.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Call jax.distributed.initialize() first (multi-host runs).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # orbax and friends are loud at INFO
  if _DISTRIBUTED.value:
    jax.distributed.initialize()
  pipeline.run(_CONFIG.value, os.path.expanduser(_WORKDIR.value))


if __name__ == "__main__":
  cli.run(main)
