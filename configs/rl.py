"""The main job: curation -> evaluation of every peer on the held-out test tasks.

  python -m autollmr.main --config=configs/rl.py --workdir=workdir

The learned agent's stages (simulation, distillation, RL) join this pipeline as they land
(issues 6 and 7); until then this config runs the stages that exist, end to end.
"""
from configs import common


def get_config():
  c = common.base()
  c.stages = "curate,eval"
  return c
