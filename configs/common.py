"""Defaults shared by every config; each config file starts from `base()` and changes a few keys.

Overrides from the command line: `--config.tasks.families=steplaw_dense,admire`,
`--config.tasks.budgets=1,3,5`, `--config.eval.seeds=20`, ...
"""
import importlib.util

import ml_collections


def base() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data_dir = ""  # "" = $AUTOLLMR_DATA, else ../shared/datasets, else ~/.cache; "none" = synthetic
  c.stages = "curate,eval"  # in order; each is skipped when its output already exists in workdir

  c.tasks = ml_collections.ConfigDict()
  c.tasks.families = ""  # comma list of table names; "" = every table available here
  c.tasks.budgets = "1,2,3,4,5"  # K: expensive runs per test task
  # Tables whose training-level tasks become validation tasks (not trained on): model selection
  # under a configuration-space shift, e.g. hwgpt,hwgpt_lat (never the test targets).
  c.tasks.val_families = ""
  c.tasks.synthetic_train = 0  # extra training-only draws of the synthetic tables (pipeline.py)
  # Other objective columns as training-only landscapes, "TABLE=GLOB,..." (e.g. admire=metric_*;
  # pipeline.add_aux_objectives): only the base table's training fidelities are used.
  c.tasks.aux_objectives = ""
  c.tasks.test_rho = 1.0  # fraction of cheap results revealed at test (1 = the paper's setting)
  c.tasks.train_rhos = "1.0"  # curriculum of reveal fractions for training tasks
  c.tasks.extra_turns = 2  # turns beyond K (rho = 1): room for a mistake, not for free queries

  c.env = ml_collections.ConfigDict()
  c.env.max_cheap_rows = 256  # cap on cheap results per task (rule: env.cheap_rows)
  c.env.max_target_configs = 512
  c.env.invalid_penalty = 0.1
  c.env.repeat_penalty = 0.0

  c.eval = ml_collections.ConfigDict()
  # Peers to run. SMAC (smac_hpo, smac_mf) joins when the [peers] extra is installed.
  c.eval.methods = ("random,topk_transfer,trend,steplaw_formula,optuna_tpe,"
                    "optuna_tpe_hyperband,meta_regressor,fsbo"
                    + (",smac_hpo,smac_mf" if importlib.util.find_spec("smac") else ""))
  c.eval.seeds = 10
  # standard | lofo (leave one family out) | val (the validation tasks instead of the test tasks,
  # to compare the agent with the peers during model selection; writes results/val/)
  c.eval.split = "standard"
  # > 0: play every evaluated target on this many random sub-studies instead (eval.sub_drop of
  # the configs dropped at every fidelity; results/sub_studies/): a family has one or two
  # targets, so one pick decides a cell; sub-studies give a mean and a spread per family.
  c.eval.sub_studies = 0
  c.eval.sub_drop = 0.5
  # Processes that play the peers before this one plays the agents (evaluate.peer_pool): -1 = one
  # per CPU core (at most 8), 0 = all in this process. Same records either way.
  c.eval.workers = -1
  c.eval.transcripts = 2  # Markdown episodes per family and agent in results/transcripts/ (0: none)

  # The policy (model.py), teacher simulation (simulate.py) and distillation (sft.py).
  c.model = ml_collections.ConfigDict()
  c.model.max_config_features = 24  # D_max: config features zero-padded to this (error if more)
  c.model.max_fidelity_features = 4  # G_max
  c.model.width = 64
  c.model.heads = 4
  c.model.layers = 1  # val regret as with 2 layers, 1.5x the SFT throughput on 2 CPU cores
  c.model.mlp = 128
  c.model.max_keys = 272  # known tokens attended to (>= env.max_cheap_rows + max turns)
  c.model.kernels = "0.03:0.5,0.1:2,0.3:2"  # (h:lam) kernel-regression input features
  # Both chosen on validation with hwgpt held out (docs/experiments.md "Model selection", 3-9
  # seeds):
  # (lam:fid_weight) in-context quadratic ridge fits, each one more input feature and one more
  # teacher scorer (model.ridge_predict): lam the penalty, fid_weight > 0 down-weights results far
  # in fidelity from the target; "" = none. Chosen on validation sub-studies (docs/experiments.md
  # "Model selection"), mean of seeds 0-2, K = 1: 0.0643 vs 0.0818 without; K = 5: 0.0083 vs 0.0116
  # (a second fit, "1:0,1:1", was worse in both seeds tried).
  c.model.ridges = "1:0"
  # > 1: an ensemble of policies, log-probs averaged (model.Ensemble), each member distilled on
  # its own loss. Chosen on validation sub-studies (docs/experiments.md "Model selection", seeds
  # 0 / 1; seed 2 agreed afterwards): mean K = 1 / 5 0.0533 / 0.0077 with 3 members against
  # 0.0643 / 0.0083 with one (5 members over 5 seeds: K = 5 lower in every seed, K = 1 no
  # different; not adopted: the main job took 24 min with 5, README "Measured here").
  # Costs ~1.5x SFT and ~2x RL time on 2 CPU cores.
  c.model.members = 3
  # "DIR[:i],...": evaluate (and start RL from) the pooled members of these finished runs' SFT
  # checkpoints instead of this workdir's (sft.pooled_policy); "" = off.
  c.model.pool = ""
  c.model.global_to_candidates = False  # candidates also attend to the global token
  # A learned surrogate head (model.py): per-candidate scores fitted in SFT to the ranking of the
  # training tasks' true target values (sft.surrogate_coef, sft.surrogate_temp), added to the
  # target candidates' logits with a learned weight. Off: on validation sub-studies
  # (docs/experiments.md "Model selection", seeds 0 / 1) worse with surrogate_coef 1, level with
  # 0.1.
  c.model.surrogate = False
  c.model.raw_features = False  # absolute config features in the token; off: only relative
  # geometry (distances, kernel predictions), which carries over to shifted config spaces

  c.sim = ml_collections.ConfigDict()
  c.sim.seeds = 64  # episodes kept per training task (per member under sim.member_draws)
  c.sim.rollouts = 35  # N of best-of-N per (task, seed): 7 scorers (6 kernels + ridge) x 5 modes
  c.sim.chunk = 64  # (task, seed) pairs per jitted call
  c.sim.draws = 4  # each training task + draws-1 random sub-studies (simulate.train_bank)
  # True: a bagged ensemble, each member distils its own teacher data (its own draws - 1
  # sub-studies of every training task and its own rollouts, sim.seeds episodes per task: 3x the
  # teacher episodes with 3 members). Chosen on validation sub-studies (docs/experiments.md
  # "Model selection", seeds 0-3, with sft.member_batches = "shared"): K = 1 / 5 mean 0.0341 /
  # 0.0066 against 0.0619 / 0.0083 with one shared dataset (K = 5
  # lower in all four seeds; K = 1 far lower in the two seeds that lost admire 3B, level in the
  # other two). A fifth seed afterwards: K = 5 lower again, K = 1 worse (admire 3B lost), so over
  # 5 seeds K = 5 is lower in all, K = 1 not shown different (0.045 vs 0.058, s.e. 0.020).
  # With a third of the episodes per member (sim.seeds=21) it was worse (seeds 0 / 1).
  c.sim.member_draws = True
  # Smaller candidate sets in training (attention cost ~ A * keys); 128 was worse on validation
  # in both seeds tried, 32 level in one and worse in the other (docs/experiments.md "Training
  # candidate sets").
  c.sim.max_cheap_rows = 64
  c.sim.max_target_configs = 128  # 256 was worse on validation in both seeds (same section)
  # Which target configs a training task over that cap keeps (env.target_candidates): "visible"
  # (the best half by the nearest visible results + a spread of the rest) or "random" (a fixed
  # uniform draw, y* within it: a thinner copy of the landscape, as evaluation's sub-studies).
  c.sim.target_rule = "visible"
  c.sim.bandwidths = "0.03,0.1,0.3"  # teacher kernel bandwidths (mean sq. standardized distance)
  c.sim.fid_weights = "0.5,2.0"  # teacher weight on the fidelity-feature distance
  # Teacher modes: softmax temperatures (0: the argmax) of the adaptive mode (learns from each
  # target result) and of the static one (ranks by the cheap results only, spreading its queries).
  # Chosen on validation sub-studies (docs/experiments.md "Model selection"): static-heavy 0.0085 /
  # 0.0096 at K = 5 against 0.0260 / 0.0144 with adaptive 0.0,0.1,0.3 and static 0.0,0.1 (seeds
  # 0 / 1).
  c.sim.temperatures = "0.0,0.1"
  c.sim.static_temperatures = "0.0,0.1,0.3"
  # Best-of-N ties (same regret, cost and anytime curve) go to the rollout whose second-best query
  # was best (simulate.simulate_chunk); False: to the lowest rollout index (the first mode).
  c.sim.robust_ties = False
  # True: distil only the kept rollout's decisions up to its last improvement of the best-so-far
  # regret. The later ones changed nothing the best-of-N filter scored, so they are whatever the
  # winning mode happened to do after its hit (e.g. a line search around it), copied unfiltered.
  c.sim.cut_after_best = False

  c.sft = ml_collections.ConfigDict()
  c.sft.steps = 800
  c.sft.batch_size = 32
  c.sft.lr = 1e-3
  c.sft.warmup_steps = 50
  c.sft.weight_decay = 1e-4
  c.sft.clip_norm = 1.0
  c.sft.value_coef = 0.1  # value head regressed on the kept episode's 1 - regret (for RL later)
  c.sft.surrogate_coef = 1.0  # weight of the surrogate head's ListNet loss (model.surrogate)
  c.sft.surrogate_temp = 0.5  # softmax temperature on the z-scored true target values
  c.sft.checkpoint_every = 200
  # Greedy val episodes every this many steps (a learning curve; ~30 s each with 3 members on this
  # CPU, ~45% of the SFT stage at every checkpoint); 0 = only after the last step, which is all
  # that model selection and RL read.
  c.sft.val_every = 0
  # Under sim.member_draws: "shared" = one batch of all members' records, each member's loss on
  # its own rows only (one policy's cost: what was validated); "own" = each member its own
  # sft.batch_size rows per step (members x the input-feature cost: 2.5x the SFT time with 3).
  c.sft.member_batches = "shared"
  c.sft.log_every = 50
  c.sft.val_seeds = 2  # greedy val episodes per val task (model selection, never test)
  c.sft.val_draws = 8  # + this many random sub-studies of each val task (simulate.val_bank)
  c.sft.val_drop_configs = 0.5  # ... each dropping this share of the configs

  # Multi-turn RL (rl.py): GRPO-style, the whole update in one jax.jit.
  c.rl = ml_collections.ConfigDict()
  c.rl.init = "sft"  # sft: start from the distilled policy (KL reference); scratch: fresh policy
  c.rl.steps = 60  # updates (each: M x G episodes; ~4 s on this 2-core CPU)
  c.rl.updates_per_call = 5  # updates per jitted call (lax.scan)
  c.rl.tasks_per_update = 8  # M tasks sampled per update
  c.rl.group_size = 8  # G episodes per task: the GRPO group
  c.rl.epochs = 1  # PPO passes over each batch of episodes
  # with adv_std=False; chosen on val_select (docs/experiments.md "RL on validation")
  c.rl.lr = 1e-3
  c.rl.warmup_steps = 10
  c.rl.clip_norm = 1.0
  c.rl.clip_eps = 0.2
  c.rl.kl_coef = 0.02  # KL(policy || reference) per turn, full categorical over candidates
  c.rl.entropy_coef = 0.003
  # The acting policy during RL is softmax(logits / temperature) (PPO ratio, KL and entropy on the
  # same tempered distributions); evaluation is greedy, so < 1 keeps rollouts near what is scored.
  c.rl.temperature = 1.0
  c.rl.shaping = 0.0  # dense shaping: coef x drop in best-so-far regret per turn
  c.rl.turn_level = False  # per-turn advantages from returns-to-go instead of per episode
  # Advantage baseline: "group" (the group's mean return) or "greedy" (ReMax: one episode per
  # group acts greedily, as evaluation does, and the others are scored against its return).
  c.rl.baseline = "group"
  c.rl.adv_std = False  # divide group-centred returns by the group's std (GRPO); False: Dr. GRPO
  # Task randomization (env.sub_studies): each sampled task becomes a random sub-study, configs and
  # visible fidelities dropped with these probabilities, so the optimum moves between draws.
  c.rl.drop_configs = 0.5
  c.rl.drop_fidelities = 0.3
  c.rl.low_rho_weight = 0.3  # curriculum: final share of rho < 1 training tasks
  c.rl.curriculum_frac = 0.5  # ... reached linearly over this fraction of the updates
  # Share of task draws reweighted by the starting policy's return spread per task (rl.py
  # task_priorities: groups with equal returns teach nothing); 0 = the curriculum alone.
  c.rl.priority = 0.0
  # Parameters RL updates: "all", or "heads" (pointer, value and surrogate heads; rl.trainable).
  # "heads" passed no checkpoint on validation either (docs/experiments.md "RL on validation",
  # seeds 0 / 1).
  c.rl.train_params = "all"
  c.rl.checkpoint_every = 20
  # Evaluate the checkpoint with the lowest val regret, the starting policy included (early
  # stopping on validation; docs/experiments.md: RL lowers training regret, rarely val regret).
  c.rl.select_on_val = True
  # ... and a checkpoint replaces the starting policy only if its val_select gain over it exceeds
  # this many paired standard errors (rl.paired_gain; 0: any lower val_select wins).
  c.rl.select_z = 2.0
  # Share of every training task's target configs RL never sees a target result of; its
  # checkpoints are then also gated on these held configs (every family RL trains on, not only
  # the val tasks' two; env.config_holdout, simulate.held_bank). 0: off. Chosen on validation
  # (docs/experiments.md "A gate over every family").
  c.rl.holdout_configs = 0.5
  c.rl.log_every = 5

  # Devices (sharding.py): a (data, model) mesh; data=-1 = every device that `model` leaves.
  # params: replicated | fsdp (embed over data) | tp (mlp, heads over model). Batches and episode
  # batches split over data, so sft.batch_size and rl.tasks_per_update x rl.group_size must be
  # multiples of the data axis.
  c.mesh = ml_collections.ConfigDict()
  c.mesh.data = -1
  c.mesh.model = 1
  c.mesh.params = "replicated"

  # The agent: "pointer" (model.py) or "lm", the text policy (lm.py, lm_train.py): the sft and rl
  # stages train it instead, on the same teacher records; eval adds lm_sft_agent / lm_rl_agent.
  c.policy = "pointer"
  c.lm = ml_collections.ConfigDict()
  c.lm.vocab_size = 384  # sentencepiece pieces (byte fallback takes 256 of them)
  c.lm.header_tokens, c.lm.action_tokens, c.lm.result_tokens = 48, 36, 6  # slot widths
  c.lm.known_rows = 8  # known cheap results rendered at reset (the best; lm_agent.py)
  c.lm.max_len = 1024  # positions; header + (known_rows + turns) * (action + result) must fit
  c.lm.width, c.lm.heads, c.lm.layers, c.lm.mlp = 64, 4, 2, 256
  # Sized for the 2-core CPU (a 678-token episode; ~3 s a step of 8 episodes under load).
  c.lm.sft_steps, c.lm.batch_size, c.lm.lr, c.lm.warmup_steps = 300, 8, 1e-3, 30
  c.lm.rl_steps, c.lm.tasks_per_update, c.lm.group_size, c.lm.rl_lr = 10, 4, 4, 1e-4
  c.lm.log_every = 10
  return c
