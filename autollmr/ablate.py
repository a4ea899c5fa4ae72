"""Distillation only vs RL from scratch vs distillation + RL, in one command and one table.

  python -m autollmr.ablate --workdir=DIR [--config.rl.steps=...]  (overrides apply to all three)
  python -m autollmr.ablate --workdir=DIR --train_seeds=0,1,2  (training variance too)
  python -m autollmr.ablate --workdir=DIR --config=configs/rl.py:tiny --train_seeds=0,1  (smoke)
  python -m autollmr.ablate --workdir=DIR --config.eval.sub_studies=10  (then:
  DIR/ablation_sub_studies.md)

Runs configs/sft.py, configs/rl_scratch.py and configs/rl.py in DIR/{sft,rl_scratch,rl} (each
resumes as usual; distillation + RL starts from the distillation run's curation, teacher data
and checkpoint when the configs agree on them) and writes DIR/ablation.md: the three agents and
the peers on the same test tasks, budgets and seeds. With --train_seeds each run is repeated per
training seed (config.seed: teacher draws, init, batches, RL rollouts) in DIR/<run>_seed<s> (seed
0 keeps DIR/<run>); an agent's cells then pool its episodes over training x eval seeds, and a
second table gives each training seed's overall regret. Why: at rho = 1 a greedy agent plays
every eval seed alike, so the eval seeds alone say nothing about how much a retrained agent would
differ. The peers do not depend on config.seed and are played once.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys

from absl import flags
from absl import logging
from ml_collections import config_flags

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.evaluation import report
from autollmr.peers import registry

_WORKDIR = flags.DEFINE_string("workdir", "ablation", "Parent directory of the three runs.")
# Defined so that absl accepts --config.* overrides; they are re-applied to each of the three.
_TRAIN_SEEDS = flags.DEFINE_string("train_seeds", "0", "Training seeds (config.seed), comma list.")
# Only its ":arg" (e.g. configs/rl.py:tiny, a smoke run) is used: each run loads its own file.
_CONFIG = config_flags.DEFINE_config_file("config", "configs/rl.py", "Overrides apply to all.")

RUNS = (("sft", "configs/sft.py"), ("rl_scratch", "configs/rl_scratch.py"), ("rl", "configs/rl.py"))


def load_config(path, arg: str = ""):
  spec = importlib.util.spec_from_file_location("config", path)
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod.get_config(arg)


def set_flat(config, key: str, val: str):
  """--config.a.b=v on a loaded config, parsed with the field's own type."""
  *parents, leaf = key.split(".")
  node = config
  for p in parents:
    node = node[p]
  old = node[leaf]
  node[leaf] = (val.lower() in ("1", "true", "yes")) if isinstance(old, bool) else type(old)(val)


def reuse_distillation(distilled, config, workdir: str):
  """Copies the distillation run's curation, teacher data and SFT checkpoints into the
  distillation + RL run when both configs agree on everything those stages read: the same
  distilled start, trained once (the main job's simulate + SFT are ~5 of its ~15 minutes)."""
  sft_config, sft_dir = distilled
  def strip(c):  # what curate, simulate and sft read: all but the stages, RL and the peers
    d = {k: v for k, v in c.to_dict().items() if k not in ("stages", "rl")}
    d["eval"] = {k: v for k, v in d["eval"].items() if k != "methods"}
    return d
  if strip(sft_config) != strip(config):
    return
  for sub in ("curation", "sim", "sft"):
    src, dst = os.path.join(sft_dir, sub), os.path.join(workdir, sub)
    if os.path.isdir(src) and not os.path.exists(dst):
      shutil.copytree(src, dst)
      print(f"[ablate] {sub}/ copied from {sft_dir}")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  overrides = [a for a in sys.argv[1:] if a.startswith("--config.")]
  given = [a.split("=", 1)[1] for a in sys.argv[1:] if a.startswith("--config=")]
  arg = given[-1].split(":", 1)[1] if given and ":" in given[-1] else ""
  try:
    train_seeds = [int(x) for x in _TRAIN_SEEDS.value.split(",") if x.strip()]
  except ValueError:
    raise errors.UserError(f"--train_seeds={_TRAIN_SEEDS.value!r}: expected integers like 0,1,2")
  if not train_seeds or len(set(train_seeds)) != len(train_seeds):
    raise errors.UserError(f"--train_seeds={_TRAIN_SEEDS.value!r}: give distinct seeds, e.g. 0,1,2")
  if any(o.startswith("--config.seed=") for o in overrides) and _TRAIN_SEEDS.present:
    raise errors.UserError("give training seeds with --train_seeds, not --config.seed")
  records, peers_taken = [], set()
  agents = {"sft": "sft_agent", "rl_scratch": "rl_agent", "rl": "rl_agent"}
  labels = {"sft": "distill_only", "rl_scratch": "rl_only", "rl": "distill+rl"}
  for seed in train_seeds:
    for name, path in RUNS:
      config = load_config(path, arg)
      for o in overrides:
        key, val = o[len("--config."):].split("=", 1)
        set_flat(config, key, val)
      if _TRAIN_SEEDS.present:
        config.seed = seed
      # Each peer is played once (they do not depend on config.seed): a run plays only the peers
      # no earlier run played ("random" when none is left: the eval needs one).
      config.eval.methods = ",".join(
          [m for m in pipeline.csv_list(config.eval.methods) if m not in peers_taken]
          or ["random"])
      workdir = os.path.join(_WORKDIR.value,
                             name if config.seed == 0 else f"{name}_seed{config.seed}")
      print(f"\n=== {name} (training seed {config.seed}): {path} -> {workdir}")
      if name == "rl":
        reuse_distillation(distilled, config, workdir)
      pipeline.run(config, workdir)
      if name == "sft":
        distilled = (config, workdir)
      with open(os.path.join(workdir, pipeline.results_dir(config), "episodes.jsonl")) as f:
        recs = [json.loads(line) for line in f]
      new_peers = {r["method"] for r in recs if r["method"] in registry.PEERS} - peers_taken
      for r in recs:
        if r["method"] == agents[name]:
          r["method"], r["train_seed"] = labels[name], int(config.seed)
          records.append(r)
        elif r["method"] in new_peers:
          records.append(r)
      peers_taken |= new_peers
  sub = "_sub_studies" if int(config.eval.sub_studies) else ""  # --config.eval.sub_studies=N
  out = os.path.join(_WORKDIR.value, "ablation" + sub)
  report.write_results(
      records,
      out,
      "python -m autollmr.ablate " + " ".join(sys.argv[1:]),
      extra_md=report.per_training_seed_md(records, labels.values()))
  md = os.path.join(_WORKDIR.value, f"ablation{sub}.md")
  os.replace(os.path.join(out, "leaderboard.md"), md)
  print(report.summary_text(records))
  print(f"\nwrote {md}")


if __name__ == "__main__":
  cli.run(main)
