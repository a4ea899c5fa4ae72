"""Generated tables: the semi-synthetic GRPO table and synthetic stand-ins for the real tables.

`grpo_table` has no public grid behind it, so it is generated from a model calibrated to
published facts. `synthetic_tables` mimics the shapes of the four real tables (steplaw_dense,
hwgpt, admire, regmix) and is the embedded default when no data directory exists. Every constant
below is a published number (cited) or a stated assumption. numpy only; deterministic per seed.
"""
from __future__ import annotations

import itertools

import numpy as np

from autollmr.gym.table import Table

# 6ND FLOPs -> GPU-hours at 40% MFU of a 989 TFLOP/s bf16 H100/H800 (the real specs' constant).
GPU_HOURS_PER_FLOP = 1.0 / (0.4 * 989e12 * 3600.0)  # = 7.0217e-19

# Chinchilla fit, approach 3 (Hoffmann et al. 2022, arXiv:2203.15556): L = E + A/N^a + B/D^b.
CHIN_E, CHIN_A, CHIN_B, CHIN_ALPHA, CHIN_BETA = 1.69, 406.4, 410.7, 0.34, 0.28


def _chinchilla(n, d):
  return CHIN_E + CHIN_A / n**CHIN_ALPHA + CHIN_B / d**CHIN_BETA


def _rng(seed: int, stream: int) -> np.random.Generator:
  # One stream per table, so a table does not change when another one is added or edited.
  return np.random.default_rng([seed, stream])


def _f32(x):
  return np.asarray(x, dtype=np.float32)


# --- GRPO (semi-synthetic) -----------------------------------------------------------------------


# Tan et al. 2025 (arXiv:2509.25300), repo tanzelin430/Mathematical-Reasoning-RL-Scaling-Law,
# analysis/scripts/outputs/fits_exp1_postopenai.json (Qwen2.5-Instruct, GRPO via veRL, r2=0.995):
# error L(N, E) = [(N0/N)^beta + B0(N)/(E + C0(N))]^alpha, E = data seen (steps x batch).
TAN_N0, TAN_BETA, TAN_ALPHA = 5.0e8, 1.089, 0.198
# Per-size lookups (B0, C0) from the same file. 0.5B is not fitted (N = N0 makes L >= 1, i.e.
# accuracy <= 0), so the cheapest fidelity is 1.5B and the fifth is 32B.
TAN_B0_C0 = {1.5e9: (134654.5, 412176.1), 3e9: (41373.3, 142838.4), 7e9: (4783.0, 27170.3),
             14e9: (1634.7, 19153.5), 32e9: (338.0, 4333.0)}
GRPO_SIZES = ("1.5B", "3B", "7B", "14B", "32B")

# Assumed run shape (same at every size): 400 steps x 8192 rollouts = a fixed rollout budget;
# at the reference group size 16 that is 512 prompts/step, so E = 400 * 512 prompts seen.
GRPO_STEPS, GRPO_ROLLOUTS_PER_STEP, GRPO_REF_GROUP = 400, 8192, 16
GRPO_E = GRPO_STEPS * GRPO_ROLLOUTS_PER_STEP / GRPO_REF_GROUP  # 204,800
GRPO_TOKENS_PER_ROLLOUT = 1024  # assumed mean prompt + response length
# FLOPs ~ 12 N T: 2NT generate + 2NT old-policy + 2NT reference log-probs + 6NT update; at an
# assumed 20% MFU (decoding is memory-bound) of 989 TFLOP/s -> 1.685e-17 GPU-h per param-token.
GRPO_GPU_HOURS_PER_PARAM_TOKEN = 12.0 / (0.2 * 989e12 * 3600.0)

# Axes. DeepSeekMath GRPO (arXiv:2402.03300): lr 1e-6, KL 0.04, group 64; DAPO / veRL defaults:
# lr 1e-6, group 8-16, KL 0.001. lr is a x sqrt2 grid through 1e-6, 1.25e-7 .. 3.2e-5.
GRPO_LRS = 1e-6 * 2.0 ** (np.arange(-6, 11) / 2.0)
GRPO_GROUPS = (4, 8, 16, 32, 64)
GRPO_KLS = (0.0, 0.001, 0.01, 0.04, 0.1)

# Assumed response model (no public grid exists; each line is an assumption):
GRPO_LR_REF, GRPO_LR_REF_N, GRPO_LR_EXP = 1e-6, 7e9, -0.5  # lr* = 1e-6 at 7B, lr* ∝ N^-0.5
GRPO_LR_CURV = 0.25  # E_eff *= exp(-0.25 * log2(lr/lr*)^2): 2x off -> 0.78, 4x off -> 0.37
GRPO_GROUP_EXP = 0.15  # fixed rollout budget: bigger groups see fewer prompts, net (G/16)^-0.15
GRPO_KL_SCALE = 0.1  # E_eff *= 1 / (1 + kl / 0.1): KL 0.04 slows learning by ~30%
GRPO_NOISE = 0.005  # seed noise, 0.5 accuracy points


def _tan_accuracy(n: float, e) -> np.ndarray:
  b0, c0 = TAN_B0_C0[n]
  return 1.0 - ((TAN_N0 / n) ** TAN_BETA + b0 / (np.asarray(e) + c0)) ** TAN_ALPHA


def _collapse_margin(d_lr, kl, n):
  """> 0 inside the collapse region: lr far above lr*, little KL anchoring, small model."""
  # Assumed boundary: 2^1.5 x lr* at KL 0 and 1.5B; KL adds log2(1 + kl/0.004) octaves of
  # headroom (0.04 -> +3.5); each doubling of N adds 0.8 octave, more than lr* falls (0.5), so
  # small models collapse at a lower absolute lr and in more cells of the grid.
  return d_lr - (1.5 + np.log2(1.0 + kl / 0.004) + 0.8 * np.log2(n / 1.5e9))


def _group_signal(g, p):
  return (1 - p**g - (1 - p) ** g) * (g / GRPO_REF_GROUP) ** -GRPO_GROUP_EXP


def grpo_table(seed: int = 0) -> Table:
  """Semi-synthetic GRPO hyperparameter grid on Qwen2.5 1.5B..32B (heldout accuracy, max)."""
  rng = _rng(seed, 100)
  grid = np.array(list(itertools.product(GRPO_LRS, GRPO_GROUPS, GRPO_KLS)))  # C x 3
  lr_C, g_C, kl_C = grid[:, 0], grid[:, 1], grid[:, 2]
  sizes_F = np.array(list(TAN_B0_C0))
  F, C = len(sizes_F), len(grid)
  values_FxC = np.zeros((F, C))
  collapsed_FxC = np.zeros((F, C), bool)
  for f, n in enumerate(sizes_F):
    base_acc = float(_tan_accuracy(n, 0.0))  # E = 0: the model before RL
    lr_star = GRPO_LR_REF * (n / GRPO_LR_REF_N) ** GRPO_LR_EXP
    d_lr_C = np.log2(lr_C / lr_star)
    eff_lr = np.exp(-GRPO_LR_CURV * d_lr_C**2)
    # Groups where all G answers agree carry no advantage signal (cf. DAPO's dynamic sampling,
    # arXiv:2503.14476): useful fraction 1 - p^G - (1-p)^G with p = base accuracy, so weaker
    # (smaller) models want bigger groups. Normalised so the best group size on the grid is 1.
    eff_g = _group_signal(g_C, base_acc) / max(_group_signal(g, base_acc) for g in GRPO_GROUPS)
    eff_kl = 1.0 / (1.0 + kl_C / GRPO_KL_SCALE)
    # The fitted law is read as the tuned optimum: hyperparameters only shrink the data seen.
    acc = _tan_accuracy(n, GRPO_E * eff_lr * eff_g * eff_kl)
    p_collapse = 1.0 / (1.0 + np.exp(-3.0 * _collapse_margin(d_lr_C, kl_C, n)))
    collapsed = rng.random(C) < p_collapse
    # A collapsed run ends near the base model or below it (entropy collapse / reward hacking).
    acc = np.where(collapsed, base_acc * rng.uniform(0.3, 1.0, C), acc)
    values_FxC[f] = np.clip(acc + GRPO_NOISE * rng.standard_normal(C), 0.0, 1.0)
    collapsed_FxC[f] = collapsed
  rollout_tokens = GRPO_STEPS * GRPO_ROLLOUTS_PER_STEP * GRPO_TOKENS_PER_ROLLOUT
  labels = tuple(f"lr={lr:.3g},G={int(g)},kl={kl:g}" for lr, g, kl in grid)
  notes = (
      "Semi-synthetic: no public GRPO hyperparameter grid exists. Accuracy = 1 - L(N, E_eff) with "
      "the RL post-training law of Tan et al. 2025 (arXiv:2509.25300; fits_exp1_postopenai.json: "
      "N0=5e8, beta=1.089, alpha=0.198, per-size B0/C0 for Qwen2.5-Instruct 1.5B-32B; 0.5B is not "
      "fitted). Assumed: a fixed rollout budget of 400 steps x 8192 rollouts (E = 204,800 prompts "
      "at group 16), read as the tuned optimum; hyperparameters shrink the effective data seen: "
      "a quadratic in log2(lr / lr*) with lr* = 1e-6 (7B / N)^0.5 (the N^-0.5 move is an "
      "assumption; 1e-6 is the DeepSeekMath/DAPO default), a group-size factor (fraction of groups "
      "with mixed answers at the base pass rate, times (G/16)^-0.15), and 1/(1 + kl/0.1). Runs "
      "with high lr and little KL collapse to 0.3-1x the base accuracy with a logistic "
      "probability (worse at small N); they are flagged, still valid. Seed noise N(0, 0.5 "
      "points). Cost: "
      "12 N T FLOPs at 20% MFU of 989 TFLOP/s, T = 3.4e9 rollout tokens.")
  return Table(
      name="grpo", family="rl_hparams", provenance="semi-synthetic",
      objective="heldout_accuracy", direction="max",
      fidelity_names=tuple(f"Qwen2.5-{s}" for s in GRPO_SIZES),
      config_feature_names=("log2_lr", "log2_group_size", "log10_kl"),
      fidelity_feature_names=("log10_params", "log10_E"),
      config_features_CxD=_f32(np.stack([np.log2(lr_C), np.log2(g_C), np.log10(kl_C + 1e-4)], 1)),
      fidelity_features_FxG=_f32(np.stack([np.log10(sizes_F), np.full(F, np.log10(GRPO_E))], 1)),
      values_FxC=_f32(values_FxC), valid_FxC=np.ones((F, C), bool), flagged_FxC=collapsed_FxC,
      cost_F=sizes_F * rollout_tokens * GRPO_GPU_HOURS_PER_PARAM_TOKEN,
      cost_unit="GPU-hours (12 N T FLOPs at 20% MFU of 989 TFLOP/s; T = 3.4e9 rollout tokens)",
      config_labels=labels, excluded={}, notes=notes)


# --- synthetic stand-ins -------------------------------------------------------------------------


def synthetic_tables(seed: int = 0) -> list[Table]:
  """Synthetic stand-ins with the shapes of the real tables (the default with no data dir)."""
  return [_steplaw(_rng(seed, 1)), hwgpt(_rng(seed, 2)), admire(_rng(seed, 3)),
          regmix(_rng(seed, 4))]


# Step Law grid (Li et al. 2025, arXiv:2503.04715; step-law/steplaw data/dense_lr_bs_loss.csv):
# non-embedding N crossed with the released D values, 17 (N, D) cells.
STEPLAW_CELLS = {2.147e8: (4e9, 11.4e9, 20e9, 100e9), 2.683e8: (5e9, 14.2e9, 25e9, 80e9),
                 4.293e8: (8e9, 22.7e9, 40e9, 50e9), 5.369e8: (10e9, 28.4e9, 50e9),
                 1.074e9: (20e9, 56.9e9)}
STEPLAW_LRS = 2.44e-4 * 2.0 ** (np.arange(14) / 2.0)  # x sqrt2, 2.44e-4 .. 2.21e-2
STEPLAW_BS = 2.0 ** np.arange(15, 23)  # tokens, x2, 32K .. 4M
# Assumed bowl: loss += 0.012 per squared octave of lr off lr*, 0.006 per squared octave of bs.
STEPLAW_CURV_LR, STEPLAW_CURV_BS, STEPLAW_NOISE = 0.012, 0.006, 0.004


def _short(x: float) -> str:
  return f"{x / 1e9:.3g}B" if x >= 1e9 else f"{x / 1e6:.3g}M"


def _steplaw(rng) -> Table:
  cells = sorted(((n, d) for n, ds in STEPLAW_CELLS.items() for d in ds),
                 key=lambda nd: nd[0] * nd[1])  # cheapest (6ND) first
  grid = np.array(list(itertools.product(STEPLAW_LRS, STEPLAW_BS)))
  lr_C, bs_C = grid[:, 0], grid[:, 1]
  F, C = len(cells), len(grid)
  values_FxC = np.full((F, C), np.nan)
  for f, (n, d) in enumerate(cells):
    lr_star = 1.79 * n**-0.713 * d**0.307  # Step Law optimum
    bs_star = 0.58 * d**0.571  # tokens
    d_lr, d_bs = np.log2(lr_C / lr_star), np.log2(bs_C / bs_star)
    loss = (_chinchilla(n, d) + STEPLAW_CURV_LR * d_lr**2 + STEPLAW_CURV_BS * d_bs**2
            + STEPLAW_NOISE * rng.standard_normal(C))
    # Assumed divergence: above ~2^3 x lr* a run diverges with logistic probability and ends
    # 0.5-4 nats worse; the release likewise holds ~9% runs with smooth loss > 3.5.
    diverged = rng.random(C) < 1.0 / (1.0 + np.exp(-3.0 * (d_lr - 3.0)))
    loss = loss + diverged * rng.uniform(0.5, 4.0, C)
    ran = np.zeros(C, bool)  # like the release, each cell ran a different ~100-112 subset
    ran[rng.choice(C, size=int(rng.integers(100, C + 1)), replace=False)] = True
    values_FxC[f, ran] = loss[ran]
  valid_FxC = ~np.isnan(values_FxC)
  n_F, d_F = np.array(cells).T
  notes = (
      "Synthetic stand-in for steplaw_dense. Loss = Chinchilla L(N, D) (Hoffmann et al. 2022, "
      "E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28) + a bowl 0.012 d_lr^2 + 0.006 d_bs^2 "
      "(octaves from the Step Law optimum lr* = 1.79 N^-0.713 D^0.307, bs* = 0.58 D^0.571 tokens; "
      "Li et al. 2025, arXiv:2503.04715; curvatures assumed) + N(0, 0.004) noise. Runs above "
      "~8x lr* diverge with logistic probability (+0.5-4 nats); loss > 3.5 is flagged "
      "(diverged), still valid. Each (N, D) cell ran a random 100-112 of the 112 grid configs.")
  return Table(
      name="synthetic_steplaw_dense", family="pretraining_hparams", provenance="synthetic",
      objective="smooth loss", direction="min",
      fidelity_names=tuple(f"N={_short(n)},D={_short(d)}" for n, d in cells),
      config_feature_names=("log2_lr", "log2_bs_tokens"),
      fidelity_feature_names=("log10_N", "log10_D"),
      config_features_CxD=_f32(np.stack([np.log2(lr_C), np.log2(bs_C)], 1)),
      fidelity_features_FxG=_f32(np.stack([np.log10(n_F), np.log10(d_F)], 1)),
      values_FxC=_f32(values_FxC), valid_FxC=valid_FxC,
      flagged_FxC=valid_FxC & (np.nan_to_num(values_FxC) > 3.5),
      cost_F=6.0 * n_F * d_F * GPU_HOURS_PER_FLOP,
      cost_unit="GPU-hours (6ND FLOPs at 395.6 TFLOP/s = 40% MFU of a 989 TFLOP/s bf16 H800)",
      config_labels=tuple(f"lr={lr:.3g},bs={int(bs)}" for lr, bs in grid),
      excluded={}, notes=notes)


# HW-GPT-Bench spaces (Sukthanker et al. 2024, arXiv:2405.10299): embed, layers, heads, mlp ratio.
HWGPT_SPACES = {
    "S": ((192, 384, 768), (10, 11, 12), (4, 8, 12)),
    "M": ((256, 512, 1024), (22, 23, 24), (8, 12, 16)),
    "L": ((320, 640, 1280), (34, 35, 36), (8, 16, 20)),
}
HWGPT_MLP = (2, 3, 4)
HWGPT_ARCHS_PER_SPACE = 300
HWGPT_VOCAB, HWGPT_BLOCK = 50257, 1024  # GPT-2 tokenizer and context, as in HW-GPT-Bench
# Assumed perplexity law: ppl = 30 (P / 1e8)^-0.25, the ~-0.2..-0.3 log-log slope the benchmark
# shows; plus small arch terms (fewer heads, no bias, shallower: slightly worse) and 1% noise.
HWGPT_PPL_AT_1E8, HWGPT_PPL_EXP = 30.0, -0.25
# Assumed latency (batch 1, 1024 tokens, H100): 1 ms fixed + 0.15 ms per layer (kernel launches)
# + FLOPs at an effective 60 TFLOP/s; 3% noise.
HWGPT_MS_FIXED, HWGPT_MS_PER_LAYER, HWGPT_FLOPS_PER_S = 1.0, 0.15, 60e12


def _hwgpt_params(e, heads_L, mlp_L, h_max, bias):
  # GPT-2 style: untied token + output embeddings, learned positions; head dim = e / h_max, so
  # attention width scales with the number of heads; biases add ~ (qkv + proj + mlp) widths.
  attn = 4 * e * heads_L * (e / h_max)
  mlp = 2 * e * mlp_L * e
  blocks = attn + mlp + bias * (4 * heads_L * (e / h_max) + mlp_L * e + 2 * e)
  return 2 * HWGPT_VOCAB * e + HWGPT_BLOCK * e + blocks.sum(), blocks.sum()


def hwgpt(rng) -> Table:
  rows, space_of, labels = [], [], []
  for space, (embeds, depths, heads) in HWGPT_SPACES.items():
    seen = set()
    while len(seen) < HWGPT_ARCHS_PER_SPACE:  # per-layer heads/mlp, as in the benchmark
      ei, di, bias = int(rng.integers(3)), int(rng.integers(3)), int(rng.integers(2))
      heads_L = rng.choice(heads, depths[di])
      mlp_L = rng.choice(HWGPT_MLP, depths[di])
      key = (ei, di, bias, tuple(heads_L), tuple(mlp_L))
      if key in seen:
        continue
      seen.add(key)
      e, h_max = embeds[ei], max(heads)
      params, block_params = _hwgpt_params(e, heads_L, mlp_L, h_max, bias)
      # forward FLOPs of one 1024-token sequence: matmuls (2 per weight) + attention scores
      flops = (2 * HWGPT_BLOCK * (block_params + HWGPT_VOCAB * e)
               + 4 * depths[di] * HWGPT_BLOCK**2 * e)
      rows.append((ei, di, heads_L.mean() / h_max, mlp_L.mean(), bias, np.log10(params), flops,
                   depths[di]))
      space_of.append(space)
      labels.append(f"{space}{len(seen) - 1:03d}:e={e},L={depths[di]},h={heads_L.mean():.1f},"
                    f"r={mlp_L.mean():.2f},bias={bias}")
  x = np.array(rows)
  C = len(x)
  heads_frac, bias, log_p, flops, layers = x[:, 2], x[:, 4], x[:, 5], x[:, 6], x[:, 7]
  log_ppl = (np.log(HWGPT_PPL_AT_1E8) + HWGPT_PPL_EXP * np.log(10.0**log_p / 1e8)
             + 0.03 * (1.0 - heads_frac) + 0.01 * (1 - bias) - 0.01 * x[:, 1]
             + 0.01 * rng.standard_normal(C))
  lat_ms = HWGPT_MS_FIXED + HWGPT_MS_PER_LAYER * layers + flops / HWGPT_FLOPS_PER_S * 1e3
  lat_ms = lat_ms * np.exp(0.03 * rng.standard_normal(C))
  names = tuple(HWGPT_SPACES)
  space_C = np.array([names.index(s) for s in space_of])
  valid_FxC = space_C[None, :] == np.arange(len(names))[:, None]  # spaces are disjoint
  values_FxC = np.where(valid_FxC, np.exp(log_ppl)[None, :], np.nan)
  lat_FxC = np.where(valid_FxC, lat_ms[None, :], np.nan)
  max_params_F = np.array([
      _hwgpt_params(max(e), np.full(max(d), max(h)), np.full(max(d), 4), max(h), 1)[0]
      for e, d, h in HWGPT_SPACES.values()])
  notes = (
      "Synthetic stand-in for hwgpt. The S/M/L spaces of HW-GPT-Bench (Sukthanker et al. 2024, "
      "arXiv:2405.10299), 300 sampled archs each with per-layer heads and mlp ratios. Params "
      "from a GPT-2 layout (untied embeddings, head dim = embed / max heads). Assumed: "
      "perplexity = 30 (params / 1e8)^-0.25 x exp(0.03 (1 - heads_frac) + 0.01 no-bias - 0.01 "
      "depth_tier + N(0, 0.01)); H100 latency = 1 ms + 0.15 ms/layer + FLOPs / 60 TFLOP/s, 3% "
      "noise. Cost is a proxy: 6 x space max params x 1e10 tokens (no training: supernet "
      "sub-networks inherit weights).")
  return Table(
      name="synthetic_hwgpt", family="architecture", provenance="synthetic",
      objective="perplexity", direction="min", fidelity_names=names,
      config_feature_names=("embed_tier", "depth_tier", "heads_frac", "mlp_ratio", "bias",
                            "log10_params"),
      fidelity_feature_names=("log10_max_params",),
      config_features_CxD=_f32(x[:, :6]),
      fidelity_features_FxG=_f32(np.log10(max_params_F)[:, None]),
      values_FxC=_f32(values_FxC), valid_FxC=valid_FxC, flagged_FxC=np.zeros_like(valid_FxC),
      cost_F=6.0 * max_params_F * 1e10 * GPU_HOURS_PER_FLOP,
      cost_unit="GPU-hours proxy (6ND FLOPs with D = 1e10 tokens at 395.6 TFLOP/s)",
      config_labels=tuple(labels), aux_FxC={"lat_ms_h100": _f32(lat_FxC)}, excluded={},
      notes=notes)


# ADMIRE IFT runs (Chen et al. 2025, arXiv:2508.11551; xo28/ADMIRE-BayesOpt): Tulu-3 SFT sources.
ADMIRE_SOURCES = (
    "coconot", "evol_codealpaca", "flan_v2", "no_robots", "numinamath_tir", "oasst1",
    "personahub_code", "personahub_ifdata", "personahub_math", "tulu_hard_coded", "aya",
    "open_math_2_gsm8k", "personahub_algebra", "sciriff", "wildguardmix", "table_gpt", "wildchat",
    "wildjailbreak", "personas_math_grade")
ADMIRE_PARAMS = (0.5e9, 3e9, 7e9)
ADMIRE_N_CONFIGS = (256, 128, 76)  # nested, as in the release
# Per-size mean metric_avg_id+ood and per-run train_time of the released ADMIRE runs.
ADMIRE_BASE = (0.328, 0.523, 0.588)
ADMIRE_TRAIN_TIME = (95.3, 258.9, 537.5)
# Assumed: the mixture utility has a std of 0.3 points across mixtures, noise 0.15 points.
ADMIRE_UTIL_STD, ADMIRE_NOISE = 0.003, 0.0015


def admire(rng) -> Table:
  K, C = len(ADMIRE_SOURCES), ADMIRE_N_CONFIGS[0]
  w_CxK = rng.dirichlet(np.ones(K), C)  # assumed uniform Dirichlet(1) mixtures
  # Utility sum_k a_k(N) log(w_k + 0.02): concave, optimum w ~ a(N). Each source's pull drifts
  # with log size (slope N(0, 0.5) per decade, assumed), so the best mixture shifts with size.
  a0_K = rng.dirichlet(np.full(K, 2.0))
  slope_K = 0.5 * rng.standard_normal(K)
  order = rng.permutation(C)  # nested subsets: random, not a prefix of the config index
  values_FxC = np.full((len(ADMIRE_PARAMS), C), np.nan)
  for f, (n, base, m) in enumerate(zip(ADMIRE_PARAMS, ADMIRE_BASE, ADMIRE_N_CONFIGS)):
    a_K = a0_K * np.exp(slope_K * np.log10(n / 3e9))
    u_C = np.log(w_CxK + 0.02) @ (a_K / a_K.sum())
    u_C = ADMIRE_UTIL_STD * (u_C - u_C.mean()) / u_C.std()
    score = base + u_C + ADMIRE_NOISE * rng.standard_normal(C)
    values_FxC[f, order[:m]] = score[order[:m]]
  valid_FxC = ~np.isnan(values_FxC)
  notes = (
      "Synthetic stand-in for admire. 256 Dirichlet(1) mixtures of the 19 Tulu-3 SFT sources, run "
      "at Qwen2.5 0.5B, nested 128 at 3B and 76 at 7B (as in ADMIRE, Chen et al. 2025, "
      "arXiv:2508.11551). Score = the release's per-size mean (0.328 / 0.523 / 0.588) + a concave "
      "utility sum_k a_k(N) log(w_k + 0.02) scaled to a 0.3-point std, its optimum drifting with "
      "log size (assumed) + N(0, 0.15 points) noise. Cost: ADMIRE's per-size train_time.")
  return Table(
      name="synthetic_admire", family="data_mixture_ift", provenance="synthetic",
      objective="metric_avg_id+ood", direction="max",
      fidelity_names=("Qwen2.5-0.5B", "Qwen2.5-3B", "Qwen2.5-7B"),
      config_feature_names=tuple(f"w_{s}" for s in ADMIRE_SOURCES),
      fidelity_feature_names=("log10_params",),
      config_features_CxD=_f32(w_CxK),
      fidelity_features_FxG=_f32(np.log10(ADMIRE_PARAMS)[:, None]),
      values_FxC=_f32(values_FxC), valid_FxC=valid_FxC, flagged_FxC=np.zeros_like(valid_FxC),
      cost_F=np.array(ADMIRE_TRAIN_TIME, np.float64),
      cost_unit="train_time (ADMIRE source units; read as minutes on an 8-GPU node, an inference)",
      config_labels=tuple(f"mix{i:03d}" for i in range(C)), excluded={}, notes=notes)


# RegMix (Liu et al. 2024, arXiv:2407.01492): the 17 Pile training domains; target Pile-CC loss.
REGMIX_DOMAINS = (
    "arxiv", "freelaw", "nih_exporter", "pubmed_central", "wikipedia_en", "dm_mathematics",
    "github", "philpapers", "stackexchange", "enron_emails", "gutenberg_pg_19", "pile_cc",
    "ubuntu_irc", "europarl", "hackernews", "pubmed_abstracts", "uspto_backgrounds")
REGMIX_PARAMS, REGMIX_TOKENS, REGMIX_N_CONFIGS = (1e6, 60e6), 1e9, 256
# Assumed: log loss = log Chinchilla(N, D) + sum_k theta_k(N) w_k - 0.05 log(w_pile_cc + 0.01)
# (the last term relative to a uniform mixture, so a uniform mixture sits near Chinchilla),
# theta ~ N(0, 0.08) with correlation 0.8 between sizes, noise 0.02 in log loss.
REGMIX_THETA_STD, REGMIX_THETA_CORR, REGMIX_CC_COEF, REGMIX_NOISE = 0.08, 0.8, 0.05, 0.02


def regmix(rng) -> Table:
  K, C = len(REGMIX_DOMAINS), REGMIX_N_CONFIGS
  w_CxK = rng.dirichlet(np.full(K, 0.5), C)  # assumed Dirichlet(0.5): some mixtures are peaked
  theta0_K = REGMIX_THETA_STD * rng.standard_normal(K)
  theta1_K = (REGMIX_THETA_CORR * theta0_K + np.sqrt(1 - REGMIX_THETA_CORR**2) * REGMIX_THETA_STD
              * rng.standard_normal(K))
  values_FxC = np.zeros((2, C))
  cc = REGMIX_DOMAINS.index("pile_cc")
  for f, (n, theta_K) in enumerate(zip(REGMIX_PARAMS, (theta0_K, theta1_K))):
    log_loss = (np.log(_chinchilla(n, REGMIX_TOKENS)) + w_CxK @ theta_K
                - REGMIX_CC_COEF * np.log((w_CxK[:, cc] + 0.01) / (1.0 / K + 0.01))
                + REGMIX_NOISE * rng.standard_normal(C))
    values_FxC[f] = np.exp(log_loss)
  params_F = np.array(REGMIX_PARAMS)
  notes = (
      "Synthetic stand-in for regmix. The same 256 Dirichlet(0.5) mixtures of the 17 Pile domains "
      "at 1M and 60M params (as in RegMix, Liu et al. 2024, arXiv:2407.01492). Pile-CC loss = "
      "Chinchilla L(N, D = 1e9) x exp(sum_k theta_k(N) w_k - 0.05 log(w_pile_cc + 0.01) + "
      "N(0, 0.02)), a log-linear regression form; theta ~ N(0, 0.08) correlated 0.8 across sizes "
      "(assumed). Cost: 6 N D with D = 1e9 tokens per proxy run (an assumption).")
  return Table(
      name="synthetic_regmix", family="data_mixture_pretrain", provenance="synthetic",
      objective="pile_cc_val_loss", direction="min", fidelity_names=("1M", "60M"),
      config_feature_names=tuple(f"w_{d}" for d in REGMIX_DOMAINS),
      fidelity_feature_names=("log10_params",),
      config_features_CxD=_f32(w_CxK),
      fidelity_features_FxG=_f32(np.log10(params_F)[:, None]),
      values_FxC=_f32(values_FxC), valid_FxC=np.ones((2, C), bool),
      flagged_FxC=np.zeros((2, C), bool),
      cost_F=6.0 * params_F * REGMIX_TOKENS * GPU_HOURS_PER_FLOP,
      cost_unit=("GPU-hours (6ND FLOPs at 395.6 TFLOP/s; D = 1e9 tokens per proxy run is an "
                 "assumption)"),
      config_labels=tuple(f"mix{i:03d}" for i in range(C)), excluded={}, notes=notes)
