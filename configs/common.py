"""Every default of autollmr, in one place; each config file starts from `base()`.

Overrides from the command line: `--config.tasks.families=steplaw_dense,admire`,
`--config.tasks.budgets=1,3,5`, `--config.eval.seeds=20`, ... Code reads these keys without
fallbacks: a key missing here is an error. Why each default is what it is: docs/experiments.md.
"""
import importlib.util

import ml_collections


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0  # training seed: teacher draws, initialization, batch order, RL rollouts
  c.data_dir = ""  # "" = $AUTOLLMR_DATA, else ../shared/datasets, else ~/.cache; none = synthetic
  c.stages = "curate,eval"  # comma list, in order, of curate,simulate,sft,rl,eval
  c.policy = "pointer"  # pointer (agent/model.py) | lm (the text policy, text/)

  c.tasks = ml_collections.ConfigDict()
  c.tasks.families = ""  # comma list of table names; "" = every table available here
  c.tasks.specs = ""  # comma list of JSON spec paths: tables curated like built-in ones
  c.tasks.test_specs = ""  # comma list of JSON spec paths: tables only tested, never trained on
  c.tasks.targets = ""  # TABLE=FIDELITY,...: test targets in place of a table's top level
  c.tasks.held_out = ""  # tables tested at every level above their lowest, never trained on;
  # the other tables then only train (leave-one-family-out: autollmr/protocols.py)
  c.tasks.budgets = "1,2,3,4,5"  # K: expensive runs per test task
  c.tasks.val_families = ""  # tables whose training-level tasks become validation tasks
  c.tasks.test_rho = 1.0  # share of cheap results revealed at test (1 = every one: the paper)
  c.tasks.train_rhos = "1.0"  # comma list of reveal shares of the training tasks
  c.tasks.extra_turns = 2  # turns beyond K at rho = 1

  c.env = ml_collections.ConfigDict()
  c.env.max_cheap_rows = 256  # cheap results an evaluated task shows at most (gym/build.py)
  c.env.max_target_configs = 512  # target configs an evaluated task offers at most
  c.env.invalid_penalty = 0.1  # reward lost per invalid query
  c.env.repeat_penalty = 0.0  # reward lost per repeated query

  c.eval = ml_collections.ConfigDict()
  # peers played; SMAC's two join when the [peers] extra is installed
  c.eval.methods = ("random,topk_transfer,trend,steplaw_formula,optuna_tpe,"
                    "optuna_tpe_hyperband,meta_regressor,fsbo"
                    + (",smac_hpo,smac_mf" if importlib.util.find_spec("smac") else ""))
  c.eval.seeds = 10  # reveal / peer seeds per task
  c.eval.split = "standard"  # standard (test tasks) | val (the validation tasks play the test part)
  c.eval.sub_studies = 0  # > 0: play each target on this many random sub-studies instead
  c.eval.sub_drop = 0.5  # share of configs a sub-study drops
  c.eval.sparse_n = 0  # > 0: the sparse regime, at most this many known results per visible fidelity
  c.eval.designs = 3  # random sparse designs per target (each played with every seed)
  c.eval.workers = -1  # processes playing the peers: -1 = one per core (at most 8), 0 = this one
  c.eval.transcripts = 2  # Markdown episodes per family in results/transcripts/ (0: none)

  c.benchmark = ml_collections.ConfigDict()  # python -m autollmr.benchmark (protocols.py)
  c.benchmark.protocols = "standard,lofo"  # comma list: standard | lofo (one agent per family)
  c.benchmark.regimes = "full,sparse,online"  # comma list of evidence regimes
  c.benchmark.sparse_n = 8  # the sparse regime: known results per visible fidelity at most
  c.benchmark.n_boot = 2000  # bootstrap replicates of every CI

  c.prior = ml_collections.ConfigDict()  # the landscape prior (gym/prior.py)
  c.prior.tables = 0  # drawn tables per kind the agent trains on beside the real ones
  c.prior.val_tables = 0  # held-out drawn tables per kind among the validation tasks
  c.prior.kinds = ""  # comma list of the prior's kinds to draw ("" = every kind)
  c.prior.rhos = "1.0"  # comma list of reveal shares of the drawn tables' tasks
  c.prior.only = False  # train and validate on drawn tables alone (no real table trained on)
  c.prior.seed = 1  # the draws' seed (val draws use seed + 10000)
  c.prior.draws = 200  # calibrate: drawn tables per kind the real tables are ranked among
  c.prior.band = "2.5,97.5"  # calibrate: the percentiles a real table's statistic must fall between
  c.prior.calibration_seed = 0  # calibrate: the draws' seed

  c.model = ml_collections.ConfigDict()
  c.model.max_config_features = 24  # config features zero-padded to this (more: an error)
  c.model.max_fidelity_features = 4  # fidelity features zero-padded to this
  c.model.width = 64  # token width
  c.model.heads = 4  # attention heads
  c.model.layers = 1  # transformer blocks
  c.model.mlp = 128  # MLP hidden width
  c.model.max_keys = 272  # known tokens attended to (>= env.max_cheap_rows + turns)
  c.model.kernels = "0.03:0.5,0.1:2,0.3:2"  # h:lam kernel-regression input features
  c.model.ridges = "1:0"  # lam:fid_weight in-context quadratic ridge fits ("" = none)
  c.model.members = 3  # policies in the ensemble (log-probabilities averaged)

  c.sim = ml_collections.ConfigDict()
  c.sim.seeds = 64  # teacher episodes kept per training task and member
  c.sim.rollouts = 35  # N of best-of-N per (task, seed)
  c.sim.chunk = 64  # (task, seed) pairs per jitted call
  c.sim.draws = 4  # each training task + draws - 1 random sub-studies of it
  c.sim.member_draws = True  # each ensemble member distils its own draws (a bagged ensemble)
  c.sim.max_cheap_rows = 64  # cheap results a training task shows at most
  c.sim.max_target_configs = 128  # target configs a training task offers at most
  c.sim.bandwidths = "0.03,0.1,0.3"  # teacher kernel bandwidths (mean sq. standardized distance)
  c.sim.fid_weights = "0.5,2.0"  # teacher weights on the fidelity-feature distance
  c.sim.temperatures = "0.0,0.1"  # softmax temperatures of the adaptive teacher mode (0: argmax)
  c.sim.static_temperatures = "0.0,0.1,0.3"  # ... of the static mode (ranks by cheap results)

  c.sft = ml_collections.ConfigDict()
  c.sft.steps = 800  # optimizer steps
  c.sft.batch_size = 32  # global batch (a multiple of the mesh's data axis)
  c.sft.lr = 1e-3  # peak learning rate (linear warmup, cosine decay)
  c.sft.warmup_steps = 50
  c.sft.weight_decay = 1e-4
  c.sft.clip_norm = 1.0  # global gradient-norm clip
  c.sft.value_coef = 0.1  # weight of the value head's loss (1 - regret of the kept episode)
  c.sft.checkpoint_every = 200  # steps
  c.sft.val_every = 0  # greedy validation every this many steps (0: after the last step only)
  c.sft.log_every = 50  # steps
  c.sft.val_seeds = 2  # greedy episodes per val task
  c.sft.val_draws = 8  # random sub-studies of each val task in validation
  c.sft.val_drop_configs = 0.5  # share of configs each of those drops

  c.rl = ml_collections.ConfigDict()
  c.rl.init = "sft"  # sft: start from the distilled policy (the KL reference) | scratch
  c.rl.steps = 60  # updates
  c.rl.updates_per_call = 5  # updates per jitted call (lax.scan)
  c.rl.tasks_per_update = 8  # M tasks per update
  c.rl.group_size = 8  # G episodes per task (the GRPO group)
  c.rl.epochs = 1  # PPO passes over each batch of episodes
  c.rl.lr = 1e-3  # peak learning rate
  c.rl.warmup_steps = 10
  c.rl.clip_norm = 1.0
  c.rl.clip_eps = 0.2  # PPO ratio clip
  c.rl.kl_coef = 0.02  # weight of KL(policy || reference) per turn
  c.rl.entropy_coef = 0.003  # weight of the entropy bonus
  c.rl.drop_configs = 0.5  # share of configs each RL task draw drops (a random sub-study)
  c.rl.drop_fidelities = 0.3  # share of visible fidelities it drops
  c.rl.checkpoint_every = 20  # updates; each checkpoint is validated
  c.rl.select_on_val = True  # evaluate the checkpoint the gate chose (else the last one)
  c.rl.select_z = 2.0  # a checkpoint must beat the start by this many clustered s.e.
  c.rl.prior_share = 0.0  # share of each update's task groups drawn anew from the prior on device
  c.rl.holdout_configs = 0.5  # share of configs RL never sees a target result of (0: off)
  c.rl.log_every = 5  # updates

  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1  # devices on the data axis (-1: all that `model` leaves)
  c.mesh.model = 1  # devices on the model axis
  c.mesh.params = "replicated"  # replicated | fsdp | tp

  c.lm = ml_collections.ConfigDict()  # the text policy (policy=lm)
  c.lm.vocab_size = 384  # sentencepiece pieces (byte fallback takes 256)
  c.lm.header_tokens = 48  # token slot widths
  c.lm.action_tokens = 36
  c.lm.result_tokens = 6
  c.lm.known_rows = 8  # known cheap results rendered at reset
  c.lm.max_len = 1024  # positions
  c.lm.width = 64
  c.lm.heads = 4
  c.lm.layers = 2
  c.lm.mlp = 256
  c.lm.sft_steps = 300
  c.lm.batch_size = 8
  c.lm.lr = 1e-3
  c.lm.warmup_steps = 30
  c.lm.rl_steps = 10
  c.lm.tasks_per_update = 4
  c.lm.group_size = 4
  c.lm.rl_lr = 1e-4
  c.lm.log_every = 10
  return c
