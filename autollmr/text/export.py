"""Teacher trajectories as chat-format JSONL, to fine-tune an external LLM (the command is
autollmr/export.py).

One JSON object per episode: {"messages": [system, user, assistant, user, assistant, ...], "task",
"seed", "teacher_regret"}. The user turns are the text env's lines (words.py): the header and the
known results at reset (the same top config.lm.known_rows the text policy reads), then after each
assistant action line its result line.
"""
from __future__ import annotations

import json
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np

from autollmr import errors
from autollmr.agent import bank as bank_lib
from autollmr.agent import simulate
from autollmr.gym import env as env_lib
from autollmr.text import agent as lm_agent
from autollmr.text import train as lm_train

SYSTEM = ("You choose which expensive experiment to run, from results of cheap ones. A result "
          "line reads '<fidelity> <config> : <score>'; the score is the outcome normalized per "
          "fidelity (higher is better, about -5..5). Each turn, answer with exactly one line "
          "'<fidelity> <config>' naming a run not yet known that the budget affords. The best run "
          "at the target fidelity is your recommendation.")


def episodes(config, workdir, tables, splits) -> list[dict]:
  bank = bank_lib.train_bank(config, tables, splits)
  with open(os.path.join(workdir, "sim", "summary.json")) as f:
    if json.load(f)["names"] != bank["names"]:
      raise errors.UserError("[export] the training bank differs from the simulated one: rerun "
                             "simulate with this config")
  lines = lm_train.bank_lines(config, tables, splits, "train", bank)
  sizes, params = bank["sizes"], bank["params"]
  task_E, seed_E, act_ExT = lm_train.load_episodes(workdir, sizes.max_turns)
  regret = _regrets(workdir)
  state = jax.vmap(lambda t, s: env_lib.fresh_state(params, sizes, t, s, 0))(
      jnp.asarray(task_E), jnp.asarray(seed_E))
  obs = jax.vmap(lambda s: env_lib.observe(params, s))(state)
  idx, ok = (
      np.asarray(x) for x in lm_agent.known_rows(params, obs, sizes, int(config.lm.known_rows)))
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
  src = grain.sources.ArrayRecordDataSource([os.path.join(workdir, "sim", simulate.RECORDS)])
  out = {}
  for i in range(len(src)):
    r = simulate.decode_step(src[i])
    out[(int(r["task"]), int(r["seed"]))] = float(r["regret"])
  return out
