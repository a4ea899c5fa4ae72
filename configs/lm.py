"""The text policy end to end: curate -> simulate -> tokenizer + LM distillation -> LM RL -> eval.

  python -m autollmr.main --config=configs/lm.py --workdir=DIR
  python -m autollmr.main --config=configs/lm.py:tiny --workdir=DIR   # a smoke run

The same as configs/rl.py with `policy=lm` (so `--config=configs/rl.py --config.policy=lm` is the
same run with every peer); the sft and rl stages train the decoder-only LM (text/train.py) on the
same teacher records, and the eval stage adds lm_sft_agent / lm_rl_agent rows to the leaderboard
(and the pointer policy's rows when its checkpoints are in the same workdir).
"""
from configs import rl


def get_config(arg: str = ""):
  c = rl.get_config(arg)
  c.policy = "lm"
  # The text shows known results pre-rendered from the table, dropped configs included, so the
  # text policy distills the training tasks as they are (no sub-study copies, bank.train_bank).
  c.sim.draws = 1
  c.sim.member_draws = False  # one text policy: one teacher dataset
  c.eval.methods = "random,topk_transfer,trend,steplaw_formula"
  if arg == "tiny":
    c.lm.known_rows, c.lm.header_tokens = 4, 32
    c.lm.width, c.lm.heads, c.lm.layers, c.lm.mlp = 32, 2, 1, 64
    c.lm.sft_steps, c.lm.batch_size, c.lm.warmup_steps, c.lm.log_every = 4, 4, 1, 2
    c.lm.rl_steps, c.lm.tasks_per_update, c.lm.group_size = 2, 2, 2
    c.eval.methods = "random,topk_transfer"
  return c
