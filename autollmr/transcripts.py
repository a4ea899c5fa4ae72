"""One test episode as Markdown: `python -m autollmr.transcripts --workdir=DIR --table=NAME`.

  [--method=sft_agent|rl_agent|PEER] [--target=FIDELITY] [--budget=K] [--seed=S]

The workdir's agent (default: its RL agent, else SFT, else topk_transfer) on one test task of the
table (default: the first target at the largest budget), replayed decision by decision: the task,
the known results, every query with predicted vs observed outcome, the evidence, the regret.
"""
from __future__ import annotations

from absl import flags

from autollmr import cli
from autollmr import errors
from autollmr import pipeline
from autollmr.agent import checkpoints
from autollmr.evaluation import agents
from autollmr.evaluation import choosers
from autollmr.evaluation import runs
from autollmr.evaluation import transcripts
from autollmr.peers import registry

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir of `python -m autollmr.main`.",
                               required=True)
_TABLE = flags.DEFINE_string("table", None, "The table.", required=True)
_METHOD = flags.DEFINE_string("method", "", "sft_agent, rl_agent or a peer (default: the "
                              "workdir's RL agent, else SFT, else topk_transfer).")
_TARGET = flags.DEFINE_string("target", "", "A test target (default: the first).")
_BUDGET = flags.DEFINE_float("budget", 0, "The budget K (default: the largest).")
_SEED = flags.DEFINE_integer("seed", 0, "The reveal seed.")


def main(argv):
  del argv
  config = cli.workdir_config(_WORKDIR.value)
  tables = {_TABLE.value: pipeline.load_table(config, _TABLE.value)}  # spec tables too
  test = pipeline.curate_all(config, tables)[_TABLE.value]["test"]
  pick = [i for i, t in enumerate(test) if (not _TARGET.value or t.target == _TARGET.value)
          and (not _BUDGET.value or t.budget == _BUDGET.value)]
  if not pick:
    raise errors.UserError(f"no test task of {_TABLE.value} with target {_TARGET.value!r} and "
                           f"budget {_BUDGET.value:g}; targets: {sorted({t.target for t in test})}")
  i = max(pick, key=lambda j: (test[j].budget, -j))
  loaders = {agents.RL_METHOD: checkpoints.load_rl_policy,
             agents.METHOD: checkpoints.load_sft_policy}
  if _METHOD.value in loaders:
    model = loaders[_METHOD.value](config, _WORKDIR.value)
    if model is None:
      raise errors.UserError(f"no {_METHOD.value} checkpoint in {_WORKDIR.value}")
    method, factory = _METHOD.value, transcripts.agent_factory(model)
  elif _METHOD.value:
    if _METHOD.value not in registry.PEERS:
      raise errors.UserError(f"--method={_METHOD.value!r}: agents {sorted(loaders)}, peers "
                             f"{sorted(registry.PEERS)}")
    method = _METHOD.value
    factory = lambda ctx, table, task, seed: choosers.PeerChooser(
        registry.PEERS[method](ctx, seed), ctx.cand_exists_A)
  else:
    method, factory = transcripts.eval_choosers(config, _WORKDIR.value, ["topk_transfer"])[0]
  table = tables[_TABLE.value]
  params, sizes = runs.build_eval_params(table, test, config)
  ep = transcripts.record_episode(table, test[i], params, sizes, i, _SEED.value, method,
                                  lambda ctx: factory(ctx, table, test[i], _SEED.value))
  print(transcripts.render(ep, table))


if __name__ == "__main__":
  cli.run(main)
