"""The trained pointer agent's evaluation records: every test task x every eval seed, greedy."""
from __future__ import annotations

import numpy as np

from autollmr.agent import checkpoints
from autollmr.agent import play as play_lib
from autollmr.evaluation import runs
from autollmr.gym import table as table_lib

METHOD = "sft_agent"  # the distilled policy
RL_METHOD = "rl_agent"  # the policy the RL stage kept (the distilled one when no checkpoint passed)


def test_batches(config, tables, splits):
  """Per table with test tasks: (table, tasks, eval params, sizes, family_N, task_E, seed_E), every
  test task x every eval seed (the pointer and the text policy are evaluated alike)."""
  seeds = np.asarray(list(range(config.eval.seeds)))
  for name, split in splits.items():
    test = split["test"]
    if not test:
      continue
    table = tables[name]
    params, sizes = runs.build_eval_params(table, test, config)
    family_N = np.full(len(test), table_lib.family_id(table.family), np.int32)
    yield (table, test, params, sizes, family_N, np.repeat(np.arange(len(test)), len(seeds)),
           np.tile(seeds, len(test)))


def episode_records(method, table, test, task_E, seed_E, out) -> list[dict]:
  """evaluate-style records of a played batch (`out` from play_lib.play / text/agent.play)."""
  recs = []
  for e, (i, s) in enumerate(zip(task_E, seed_E)):
    ep = dict(regret=out["regret"][e], percentile=out["percentile"][e],
              cost_spent=out["cost_spent"][e], n_invalid=out["n_invalid"][e],
              n_repeat=out["n_repeat"][e], n_turns=out["n_turns"][e],
              decision_ms_mean=out["decision_ms"][e],
              anytime_regret=out["anytime_regret"][e][:out["n_target"][e]].tolist())
    recs.append(runs.record(method, table, test[i], s, ep))
  return recs


def played(config, workdir, method: str) -> dict | None:
  """What RL_METHOD's records say about the policy they played (the RL stage may have kept the
  distilled one): dict(policy_played, policy_note), or None for another method."""
  info = checkpoints.rl_policy_played(config, workdir) if method == RL_METHOD else None
  return None if info is None else dict(policy_played=info["played"], policy_note=info["note"])


def eval_records(config, workdir, tables, splits, method: str = METHOD,
                 model=None) -> list[dict]:
  """evaluate-style records of a policy (default: the SFT checkpoint in `workdir`) on every test
  task; [] if there is none. RL_METHOD's records name the policy played (`played`)."""
  if model is None:
    model = checkpoints.load_sft_policy(config, workdir)
  if model is None:
    return []
  records, note = [], played(config, workdir, method) or {}
  for table, test, params, sizes, family_N, task_E, seed_E in test_batches(config, tables, splits):
    out = play_lib.play(model, params, sizes, task_E, seed_E, family_N, greedy=True)
    records += [dict(r, **note)
                for r in episode_records(method, table, test, task_E, seed_E, out)]
  return records
