"""The main job: curation -> simulation -> distillation -> RL -> evaluation next to every peer.

  python -m autollmr.main --config=configs/rl.py --workdir=workdir
  python -m autollmr.main --config=configs/rl.py:tiny --workdir=DIR   # a smoke run (~1 min)

Each stage is skipped when its output exists in the workdir (resume after a crash or ^C).
Ablations: configs/sft.py (distillation only), configs/rl_scratch.py (RL from scratch);
`python -m autollmr.ablate --workdir=DIR` runs all three and writes one table.
Runtime on a 2-core CPU: see the README.
"""
from configs import common
from configs import sft


def get_config(arg: str = ""):
  c = sft.get_config(arg)  # "tiny": two small synthetic tables, a tiny model, a few steps
  c.stages = "curate,simulate,sft,rl,eval"
  if not arg:  # the main job compares against every default peer (configs/sft.py: 4 fast ones)
    c.eval.methods = common.base().eval.methods
  if arg == "tiny":
    c.rl.steps, c.rl.updates_per_call = 4, 2
    c.rl.tasks_per_update, c.rl.group_size = 2, 4
    c.rl.checkpoint_every, c.rl.log_every = 2, 2
  return c

