"""Ablation: multi-turn RL from scratch (no distillation) -> evaluation.

  python -m autollmr.main --config=configs/rl_scratch.py --workdir=DIR

The KL reference is the policy's own initial weights, so the KL term is off.
"""
from configs import rl


def get_config(arg: str = ""):
  c = rl.get_config(arg)
  c.stages = "curate,rl,eval"
  c.rl.init = "scratch"
  c.rl.kl_coef = 0.0
  c.rl.entropy_coef = 0.01
  c.rl.lr = 3e-4
  return c
