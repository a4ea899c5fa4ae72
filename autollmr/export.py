"""Export the teacher trajectories as chat-format JSONL, to fine-tune an external LLM.

  python -m autollmr.export sft --format=jsonl --workdir=DIR [--config=configs/lm.py] [--out=PATH]

Reads DIR/sim (the simulate stage's kept teacher episodes, training tasks only) and writes one
JSON object per episode: {"messages": [system, user, assistant, user, assistant, ...], "task",
"seed", "teacher_regret"}. The user turns are the text env's lines (text.py): the header and the
known results at reset (the same top config.lm.known_rows the text policy reads), then after each
assistant action line its result line. Default output: DIR/export/sft.jsonl.
"""
from __future__ import annotations

import json
import os

import jax
import jax.numpy as jnp
import numpy as np

SYSTEM = ("You choose which expensive experiment to run, from results of cheap ones. A result "
          "line reads '<fidelity> <config> : <score>'; the score is the outcome normalized per "
          "fidelity (higher is better, about -5..5). Each turn, answer with exactly one line "
          "'<fidelity> <config>' naming a run not yet known that the budget affords. The best run "
          "at the target fidelity is your recommendation.")


def episodes(config, workdir, tables, splits) -> list[dict]:
  from autollmr import env as env_lib
  from autollmr import lm_agent
  from autollmr import lm_train
  from autollmr import simulate
  bank = simulate.train_bank(config, tables, splits)
  with open(os.path.join(workdir, "sim", "summary.json")) as f:
    if json.load(f)["names"] != bank["names"]:
      raise RuntimeError("[export] the training bank differs from the simulated one: rerun "
                         "simulate with this config")
  lines = lm_train.bank_lines(config, tables, splits, "train", bank)
  sizes, params = bank["sizes"], bank["params"]
  task_E, seed_E, act_ExT = lm_train.load_episodes(workdir, sizes.max_turns)
  regret = _regrets(workdir)
  state = jax.vmap(lambda t, s: env_lib._fresh_state(params, sizes, t, s, 0))(
      jnp.asarray(task_E), jnp.asarray(seed_E))
  obs = jax.vmap(lambda s: env_lib.observe(params, s))(state)
  idx, ok = (np.asarray(x) for x in lm_agent.known_rows(params, obs, sizes,
                                                       int(config.lm.known_rows)))
  out = []
  for e in range(len(task_E)):
    x = lines[task_E[e]]
    known = [x["action"][a] + x["result"][a] for a, o in zip(idx[e], ok[e]) if o]
    msgs = [dict(role="system", content=SYSTEM),
            dict(role="user", content=x["header"] + "\nknown results:\n" + "\n".join(known))]
    for a in act_ExT[e]:
      if a < 0:
        break
      msgs.append(dict(role="assistant", content=x["action"][a]))
      msgs.append(dict(role="user", content=x["action"][a] + x["result"][a]))
    if msgs[-1]["role"] == "user" and len(msgs) > 2:
      msgs.pop()  # the episode ends on the agent's last action
    out.append(dict(messages=msgs, task=bank["names"][task_E[e]], seed=int(seed_E[e]),
                    teacher_regret=regret.get((int(task_E[e]), int(seed_E[e])))))
  return out


def _regrets(workdir) -> dict:
  import grain
  from autollmr import simulate
  src = grain.sources.ArrayRecordDataSource([os.path.join(workdir, "sim", simulate.RECORDS)])
  out = {}
  for i in range(len(src)):
    r = simulate.decode_step(src[i])
    out[(int(r["task"]), int(r["seed"]))] = float(r["regret"])
  return out


def main(argv):
  from absl import flags
  from autollmr import pipeline
  FLAGS = flags.FLAGS
  if len(argv) != 2 or argv[1] != "sft":
    raise SystemExit("usage: python -m autollmr.export sft --format=jsonl --workdir=DIR")
  if FLAGS.format != "jsonl":
    raise SystemExit(f"--format={FLAGS.format!r}: only jsonl is supported")
  config = FLAGS.config
  tables, splits = pipeline.build_tables(config)
  eps = episodes(config, FLAGS.workdir, tables, splits)
  path = FLAGS.out or os.path.join(FLAGS.workdir, "export", "sft.jsonl")
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    for ep in eps:
      f.write(json.dumps(ep) + "\n")
  print(f"[export] {len(eps)} episodes, {sum(len(e['messages']) for e in eps)} messages: {path}")


if __name__ == "__main__":
  from absl import app
  from absl import flags
  from ml_collections import config_flags
  config_flags.DEFINE_config_file("config", "configs/lm.py", "config file")
  flags.DEFINE_string("workdir", "workdir", "working directory (holds sim/)")
  flags.DEFINE_string("format", "jsonl", "output format (jsonl)")
  flags.DEFINE_string("out", "", "output path (default WORKDIR/export/sft.jsonl)")
  app.run(main)
