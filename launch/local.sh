#!/usr/bin/env bash
# Local run: one machine, all its devices (the mesh is config.mesh: data=-1 takes them all).
#   bash launch/local.sh [--dry-run] [--config=configs/rl.py] [--workdir=workdir] [--config.x=y ...]
# Later flags win, so --config=configs/sft.py or --workdir=DIR replace the defaults below.
# --dry-run prints the command and exits.
set -euo pipefail
cd "$(dirname "$0")/.."
dry=0
args=()
for a in "$@"; do
  if [ "$a" = --dry-run ]; then dry=1; else args+=("$a"); fi
done
cmd=(.venv/bin/python -m autollmr.main --config=configs/rl.py --workdir=workdir "${args[@]}")
if [ "$dry" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
