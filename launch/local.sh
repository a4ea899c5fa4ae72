#!/usr/bin/env bash
# Local run (one machine): the same command as the README's first, after the install.
#   bash launch/local.sh [--config=configs/rl.py] [--workdir=workdir] [--config.x=y ...]
# Multi-host launch scripts (TPU pods, SLURM) come with the sharding work (issue #8).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m autollmr.main --config=configs/rl.py --workdir=workdir "$@"
