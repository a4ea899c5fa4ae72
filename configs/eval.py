"""Evaluation of every peer (and any trained agent in the workdir) on the held-out test tasks.

  python -m autollmr.main --config=configs/eval.py --workdir=/tmp/autollmr_eval

Writes WORKDIR/results/{leaderboard.json,leaderboard.md,regret_vs_budget.png,cost_to_target.md},
landscape_<table>.png, transcripts/*.md (config.eval.transcripts per family and agent; a classical
peer's when no agent was trained) and learning_curves.png after the sft / rl stages.
Runtime: see README (all peers, all test tasks, K = 1..5, 10 seeds, 2-core CPU).
"""
from configs import common


def get_config():
  c = common.base()
  c.stages = "curate,eval"
  return c
