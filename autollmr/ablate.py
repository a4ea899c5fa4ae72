"""Distillation only vs RL from scratch vs distillation + RL, in one command and one table.

  python -m autollmr.ablate --workdir=DIR [--config.rl.steps=...]  (overrides apply to all three)

Runs configs/sft.py, configs/rl_scratch.py and configs/rl.py in DIR/{sft,rl_scratch,rl} (each
resumes as usual) and writes DIR/ablation.md: the three agents and the peers on the same test
tasks, budgets and seeds.
"""
import os
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

_WORKDIR = flags.DEFINE_string("workdir", "ablation", "Parent directory of the three runs.")
# Defined so that absl accepts --config.* overrides; they are re-applied to each of the three.
_CONFIG = config_flags.DEFINE_config_file("config", "configs/rl.py", "Overrides apply to all.")

RUNS = (("sft", "configs/sft.py"), ("rl_scratch", "configs/rl_scratch.py"), ("rl", "configs/rl.py"))


def load_config(path):
  import importlib.util
  spec = importlib.util.spec_from_file_location("config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config()


def set_flat(config, key: str, val: str):
  """--config.a.b=v on a loaded config, parsed with the field's own type."""
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  old = node[leaf]
  node[leaf] = (val.lower() in ("1", "true", "yes")) if isinstance(old, bool) else type(old)(val)


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  import json
  from autollmr import evaluate
  from autollmr import pipeline
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  records, seen_peers = [], False
  for name, path in RUNS:
    config = load_config(path)
    for o in overrides:
      key, val = o[len("--config."):].split("=", 1)
      set_flat(config, key, val)
    if seen_peers:  # the peers ran once already, on the same tasks and seeds
      config.eval.methods = "random"
    workdir = os.path.join(_WORKDIR.value, name)
    print(f"\n=== {name}: {path} -> {workdir}")
    pipeline.run(config, workdir)
    with open(os.path.join(workdir, "results", "episodes.jsonl")) as f:
      recs = [json.loads(line) for line in f]
    agents = {"sft": "sft_agent", "rl_scratch": "rl_agent", "rl": "rl_agent"}
    for r in recs:
      if r["method"] == agents[name]:
        r["method"] = {"sft": "distill_only", "rl_scratch": "rl_only", "rl": "distill+rl"}[name]
        records.append(r)
      elif not seen_peers:
        records.append(r)
    seen_peers = True
  out = os.path.join(_WORKDIR.value, "ablation")
  evaluate.write_results(records, out, "python -m autollmr.ablate " + " ".join(sys.argv[1:]))
  os.replace(os.path.join(out, "leaderboard.md"), os.path.join(_WORKDIR.value, "ablation.md"))
  print(evaluate.summary_text(records))
  print(f"\nwrote {os.path.join(_WORKDIR.value, 'ablation.md')}")


if __name__ == "__main__":
  app.run(main)
