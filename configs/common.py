"""Defaults shared by every config; each config file starts from `base()` and changes a few keys.

Overrides from the command line: `--config.tasks.families=steplaw_dense,admire`,
`--config.tasks.budgets=1,3,5`, `--config.eval.seeds=20`, ...
"""
import ml_collections


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data_dir = ""  # "" = $AUTOLLMR_DATA, else ../shared/datasets, else ~/.cache; "none" = synthetic
  c.stages = "curate,eval"  # in order; each is skipped when its output already exists in workdir

  c.tasks = ml_collections.ConfigDict()
  c.tasks.families = ""  # comma list of table names; "" = every table available here
  c.tasks.budgets = "1,2,3,4,5"  # K: expensive runs per test task
  c.tasks.test_rho = 1.0  # fraction of cheap results revealed at test (1 = the paper's setting)
  c.tasks.train_rhos = "1.0"  # curriculum of reveal fractions for training tasks
  c.tasks.extra_turns = 2  # turns beyond K (rho = 1): room for a mistake, not for free queries

  c.env = ml_collections.ConfigDict()
  c.env.max_cheap_rows = 256  # cap on cheap results per task (rule: env.cheap_rows)
  c.env.max_target_configs = 512
  c.env.invalid_penalty = 0.1
  c.env.repeat_penalty = 0.0

  c.eval = ml_collections.ConfigDict()
  c.eval.methods = ("random,topk_transfer,trend,steplaw_formula,optuna_tpe,"
                    "optuna_tpe_hyperband,smac_hpo,smac_mf")  # absent extras are skipped
  c.eval.seeds = 10
  c.eval.split = "standard"  # standard | lofo (leave one family out)
  return c
