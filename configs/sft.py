"""Simulation -> distillation -> evaluation of the distilled agent next to the peers.

  python -m autollmr.main --config=configs/sft.py --workdir=DIR
  python -m autollmr.main --config=configs/sft.py:tiny --workdir=DIR   # a smoke run (~1 min)

Stages curate,simulate,sft,eval; each is skipped when its output exists in DIR, so a killed run
resumes (sft from its last checkpoint). Teacher trajectories come from the train tasks only, model
selection reads the val tasks, and the eval stage adds the "sft_agent" rows to the leaderboard.
Runtime on the 2-core CPU with one policy (model.members=1; others' jobs running, load ~4-5):
6m41s end to end (simulate 31 s, sft 800 steps 194 s, eval 171 s of which the agent 61 s); three
members (the default) train in 205 s alone; the tiny variant (one policy) ~50 s.
"""
from configs import common


def get_config(arg: str = ""):
  c = common.base()
  c.stages = "curate,simulate,sft,eval"
  # The fast peers only, so the whole run fits in 10 minutes on 2 cores; the slow ones (TPE,
  # SMAC) are in configs/eval.py and the rows merge by method name.
  c.eval.methods = "random,topk_transfer,trend,steplaw_formula"
  if arg == "tiny":  # tests and smoke runs: two small tables, tiny model, a few steps
    c.data_dir = "none"  # the synthetic tables, whether or not a data directory is there
    c.tasks.families = "synthetic_admire,grpo"
    c.tasks.budgets = "1,2"
    c.env.max_cheap_rows = 32
    c.env.max_target_configs = 32
    c.model.width, c.model.heads, c.model.layers, c.model.mlp = 16, 2, 1, 32
    c.model.max_keys = 40
    # one policy: fast tests (the ensemble has its own, tests/agent/test_sft.py)
    c.model.members = 1
    c.sim.seeds, c.sim.rollouts, c.sim.chunk = 2, 4, 8
    c.sim.max_cheap_rows, c.sim.max_target_configs = 16, 16
    c.sft.steps, c.sft.batch_size, c.sft.warmup_steps = 6, 8, 2
    c.sft.checkpoint_every, c.sft.log_every, c.sft.val_seeds = 2, 2, 1
    c.eval.methods, c.eval.seeds, c.eval.transcripts = "random,topk_transfer", 1, 1
    c.eval.workers = 0  # two fast peers: spawning worker processes would cost more (~7 s)
  elif arg:
    raise ValueError(f"configs/sft.py takes '' or 'tiny', got {arg!r}")
  return c
