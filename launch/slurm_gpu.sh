#!/usr/bin/env bash
#SBATCH --job-name=autollmr
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=8
#SBATCH --gpus-per-node=8
#SBATCH --cpus-per-task=8
#SBATCH --time=04:00:00
#SBATCH --output=autollmr-%j.out
# Multi-node GPU run under SLURM: one task (one JAX process) per GPU, the same main command on
# every task with --distributed. jax.distributed.initialize() reads SLURM_* (coordinator, process
# count and id) and gives task SLURM_LOCALID the node's GPU of that index, so every task must see
# all the node's GPUs: ask for --gpus-per-node, not --gpus-per-task=1.
#
#   sbatch launch/slurm_gpu.sh [--config=configs/rl.py] [--config.mesh.params=fsdp] [--config.x=y ...]
#   bash launch/slurm_gpu.sh --dry-run [...]          # print the srun command, run nothing
#   sbatch --nodes=4 launch/slurm_gpu.sh ...          # sbatch options override the header
#
# Needs: the repo and its .venv on a filesystem every node mounts (install once on a login node:
#   python3.12 -m venv .venv && .venv/bin/pip install -e . 'jax[cuda13]'   (or cuda12; keep the
#   jax version of setup.py)), and WORKDIR on that shared filesystem (default: ./workdir):
# process 0 writes logs and results, every process reads the stage outputs and checkpoints.
set -euo pipefail
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"  # sbatch runs a copy of this script elsewhere
dry=0
args=()
for a in "$@"; do
  if [ "$a" = --dry-run ]; then dry=1; else args+=("$a"); fi
done
cmd=(srun --kill-on-bad-exit=1 .venv/bin/python -m autollmr.main --distributed
     --config=configs/rl.py --workdir="${WORKDIR:-workdir}" "${args[@]}")
if [ "$dry" = 1 ]; then
  printf '%q ' "${cmd[@]}"
  echo
  exit 0
fi
exec "${cmd[@]}"
