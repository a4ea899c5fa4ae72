#!/usr/bin/env bash
# Cloud TPU pod slice (several TPU VM workers): the same main command on every worker with
# --distributed (jax.distributed.initialize() needs no arguments on Cloud TPU).
#
#   TPU=my-v5e-32 ZONE=us-central2-b bash launch/tpu_pod.sh --setup      # once: code + venvs
#   TPU=my-v5e-32 ZONE=us-central2-b bash launch/tpu_pod.sh [--config.x=y ...]
#   ... bash launch/tpu_pod.sh --dry-run [--setup] [...]   # print the gcloud commands only
#
# --setup copies this checkout (git archive HEAD) to ~/autollmr on every worker and makes one
# venv per worker there (pip install -e . 'jax[tpu]'). WORKDIR (default
# /mnt/shared/autollmr-workdir) must be a filesystem every worker mounts at that path (Filestore,
# NFS, or a gcsfuse bucket): process 0 writes logs and results, every process reads the stage
# outputs and checkpoints. PROJECT (optional) picks the gcloud project.
set -euo pipefail
cd "$(dirname "$0")/.."
workdir="${WORKDIR:-/mnt/shared/autollmr-workdir}"
dry=0
setup=0
args=()
for a in "$@"; do
  case "$a" in
    --dry-run) dry=1 ;;
    --setup) setup=1 ;;
    *) args+=("$a") ;;
  esac
done
if [ "$dry" = 1 ]; then  # placeholders in the printed commands
  TPU="${TPU:-<TPU>}"
  ZONE="${ZONE:-<ZONE>}"
fi
: "${TPU:?set TPU to the TPU VM name}"
: "${ZONE:?set ZONE to its zone}"
gc=(gcloud compute tpus tpu-vm)
where=("$TPU" "--zone=$ZONE" --worker=all)
if [ -n "${PROJECT:-}" ]; then where+=("--project=$PROJECT"); fi

quote() {  # the arguments as one shell line, quoting only where needed
  local out=() a
  for a in "$@"; do
    if [[ "$a" =~ ^[][A-Za-z0-9_./:=,@%+~-]+$ ]]; then out+=("$a"); else out+=("${a@Q}"); fi
  done
  echo "${out[*]}"
}

run() {  # print (dry run) or run one command
  if [ "$dry" = 1 ]; then quote "$@"; else "$@"; fi
}

if [ "$setup" = 1 ]; then
  run git archive --format=tar.gz -o /tmp/autollmr.tar.gz HEAD
  run "${gc[@]}" scp /tmp/autollmr.tar.gz "$TPU:/tmp/autollmr.tar.gz" "--zone=$ZONE" --worker=all
  run "${gc[@]}" ssh "${where[@]}" --command="mkdir -p ~/autollmr && tar xzf /tmp/autollmr.tar.gz -C ~/autollmr && cd ~/autollmr && python3.12 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]'"
fi
main=(.venv/bin/python -m autollmr.main --distributed --config=configs/rl.py "--workdir=$workdir"
      "${args[@]}")
run "${gc[@]}" ssh "${where[@]}" --command="cd ~/autollmr && $(quote "${main[@]}")"
