"""The prior-only agent: distilled on drawn tables, then RL on landscapes drawn anew every update.

  python -m autollmr.main --config=configs/rl_prior.py --workdir=DIR          # 2-core CPU
  python -m autollmr.main --config=configs/rl_prior.py:gpu --workdir=DIR      # one GPU / a pod

Nothing real is trained or validated on (`prior.only`): the drawn validation tables choose the
checkpoint, every real table is a test table at every level above its lowest (`tasks.held_out`,
as the benchmark's lofo protocol). The CPU default, 2026-12-06 on 2 cores: docs/experiments.md
"RL on the prior" (command, runtime, result). The gpu variant is the same recipe with ~100x the
RL episodes; not yet run (no accelerator was lent to the session that wrote it).
"""
from configs import common
from configs import rl


def get_config(arg: str = ""):
  c = rl.get_config()
  c.model.members = 1  # one policy: the prior's draws, not an ensemble, give the variety
  c.eval.transcripts = 0
  c.prior.only = True
  c.prior.tables, c.prior.val_tables = 10, 2  # per kind: 60 training and 12 validation tables
  c.rl.prior_share = 1.0  # every RL group a new drawn landscape
  c.tasks.held_out = ("steplaw_dense,hwgpt,hwgpt_lat,admire,regmix,marin_opt,porian_isoflop,"
                      "grpo")
  c.eval.methods, c.eval.seeds = "random,topk_transfer,trend", 2
  if arg == "gpu":
    c.prior.tables = 100
    c.sft.steps, c.sft.batch_size = 20_000, 256
    c.rl.steps, c.rl.updates_per_call = 2_000, 20
    c.rl.tasks_per_update, c.rl.group_size = 256, 16  # 4,096 episodes per update
    c.rl.checkpoint_every = 200
    c.eval.methods = common.base().eval.methods
    c.eval.seeds = 10
  elif arg:
    raise ValueError(f"configs/rl_prior.py takes '' or 'gpu', got {arg!r}")
  return c
