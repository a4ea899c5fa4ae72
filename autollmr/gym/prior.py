"""A procedural landscape prior: whole multi-fidelity tables drawn in pure JAX (jit + vmap).

Why: 13 real landscapes are learned by heart; a policy that must extrapolate needs as many
landscapes as training asks for (PFNs4BO, ifBO's FT-PFN prior: ../shared/notes). One draw is a
table of the real tables' form: F fidelities (model size N, tokens D growing), C configs with
features in [0, 1], the objective (a loss, minimized) at every (fidelity, config), flagged
(diverged) runs and missing ones. Every effect has a random strength that can be zero:
- level shift across fidelities: L(N, D) = E + A / N^alpha + B / D^beta (Chinchilla's form,
  Hoffmann et al. 2022; ranges around their fit E 1.69, A 406, B 411, alpha 0.34, beta 0.28);
- an optimum that drifts with the fidelity features: x*(f) = x*0 + a log10 N + b log10 D (power
  laws in the config's log units, as Step Law's lr* ~ N^-0.71 D^0.31, B* ~ D^0.57: Li et al.
  2025), any sign, so rankings can reverse;
- an anisotropic valley (a random rotation, axis ratios up to 100) whose curvature changes with
  scale, plus smooth random bumps shared by every fidelity and bumps of each fidelity's own
  (rank changes);
- divergence cliffs: a learning-rate-like coordinate above a threshold that falls with N is a
  flagged run with a far worse loss;
- noise from negligible to the spread among the best configs;
- configuration-space shift (each fidelity runs a subset of the configs) and missing runs;
- compute allocation (Porian et al. 2024 IsoFLOP form): the config is the model size, each
  budget runs sizes around its own optimum, N* ~ C^(beta / (alpha + beta)).
Kinds set the config space: pretraining and RL hyperparameters (2-4 continuous), optimizer
choice (a one-hot optimizer + 2-3 hyperparameters, each optimizer with its own offset and
scaling), architecture (3-6), data mixture (weights on a simplex), compute allocation (1).

`draw(key, kind, sizes)` is one table as arrays (jit/vmap it); `sample_tables` turns draws into
`Table`s for everything host-side (curation, banks, calibration: autollmr/prior.py).
"""
from __future__ import annotations

import dataclasses
import functools

from flax import struct
import jax
import jax.numpy as jnp
import numpy as np

from autollmr import errors
from autollmr.gym import table as table_lib
from autollmr.gym import tasks as tasks_lib

KINDS = ("pretraining_hparams", "optimizer_choice", "architecture", "data_mixture_pretrain",
         "rl_hparams", "compute_allocation")


def kind_of(family: str) -> str:
  """The prior kind a real table's family is drawn as."""
  if family in KINDS:
    return family
  return "data_mixture_pretrain" if family == "data_mixture_ift" else "pretraining_hparams"


@dataclasses.dataclass(frozen=True)
class PriorSizes:
  fidelities: int = 4  # F at most (a draw uses 2..F)
  configs: int = 24  # C
  dims: int = 6  # config features


@struct.dataclass
class Draw:
  values_FxC: jax.Array  # loss, NaN where no run
  valid_FxC: jax.Array
  flagged_FxC: jax.Array
  config_features_CxD: jax.Array
  fidelity_features_FxG: jax.Array  # log10 N, log10 D
  cost_F: jax.Array  # 6 N D, relative to the cheapest
  n_fid: jax.Array  # fidelities used (the rest hold no runs)


# Per kind: the config dims a draw uses (min, max); the mean drift of dims 0 and 1 per decade
# of N and of D (every dim also gets a random drift, sd 0.5 / 0.4, any sign).
# Step Law (Li et al. 2025) on a 2-decade lr grid: -0.71 / 2 per decade of N, +0.31 / 2 of D;
# the batch size +0.57 / 2 per decade of D.
_DIMS = dict(pretraining_hparams=(2, 3), optimizer_choice=(5, 6), architecture=(2, 6),
             data_mixture_pretrain=(3, 6), rl_hparams=(2, 4), compute_allocation=(1, 1))
_DRIFT_N = dict(pretraining_hparams=(-0.35, 0.0), rl_hparams=(0.0, 0.0))
_DRIFT_D = dict(pretraining_hparams=(0.15, 0.28))
# Per kind: (probability, largest amplitude) of each fidelity's own bumps (rank changes); data
# mixtures change ranks most (admire's 0.5B best config has regret 0.65 at 3B: the default put it
# at percentile 99.5 of the draws).
_OWN = dict(data_mixture_pretrain=(0.8, 2.5))


def _bumps(key, x_CxD, mask_D, n: int = 8, freq: float = 4.0):
  """A smooth random function of the config (random Fourier features), unit scale."""
  k1, k2, k3 = jax.random.split(key, 3)
  w_DxK = jax.random.normal(k1, (x_CxD.shape[1], n)) * freq * mask_D[:, None]
  phase = jax.random.uniform(k2, (n,), maxval=2 * jnp.pi)
  amp = jax.random.normal(k3, (n,)) / jnp.sqrt(n)
  return jnp.cos(x_CxD @ w_DxK + phase) @ amp


@functools.partial(jax.jit, static_argnames=("kind", "sizes"))
def draw(key, kind: str, sizes: PriorSizes = PriorSizes()) -> Draw:
  """One multi-fidelity table of the given kind (see the module docstring)."""
  F, C, D = sizes.fidelities, sizes.configs, sizes.dims
  keys = iter(jax.random.split(key, 64))
  u = lambda lo=0.0, hi=1.0, shape=(): jax.random.uniform(next(keys), shape, minval=lo, maxval=hi)
  on = lambda p: jax.random.bernoulli(next(keys), p).astype(jnp.float32)  # an effect's switch
  logu = lambda lo, hi, shape=(): 10.0 ** u(np.log10(lo), np.log10(hi), shape)

  n_fid = jax.random.randint(next(keys), (), 2, F + 1)
  f_F = jnp.arange(F)
  # fidelity ladder: N grows 1.4-4x per level, tokens per parameter drift
  logN = u(7.0, 9.0) + jnp.cumsum(u(0.15, 0.6, (F,)).at[0].set(0.0))
  logD = logN + u(0.7, 2.3) + jnp.cumsum(u(-0.1, 0.4, (F,)).at[0].set(0.0)) * on(0.7)
  sN_F, sD_F = logN - logN[0], logD - logD[0]  # decades above the cheapest fidelity
  cost_F = 10.0 ** (sN_F + sD_F)

  # level: Chinchilla's form with random coefficients, strength 0 with p 0.2
  lvl = on(0.8) * u(0.3, 1.5)
  alpha, beta = u(0.25, 0.45), u(0.2, 0.4)
  level_F = (u(1.5, 3.5) + lvl * u(100, 800) * 10.0 ** (-alpha * logN)
             + lvl * u(100, 1000) * 10.0 ** (-beta * logD))

  lo_d, hi_d = _DIMS[kind]
  d = jax.random.randint(next(keys), (), lo_d, hi_d + 1)
  mask_D = (jnp.arange(D) < d).astype(jnp.float32)
  x_CxD = u(shape=(C, D))
  levels = jax.random.randint(next(keys), (), 3, 9).astype(jnp.float32)  # a grid, half the time
  x_CxD = jnp.where(on(0.5) > 0, jnp.round(x_CxD * (levels - 1)) / (levels - 1), x_CxD)
  if kind == "data_mixture_pretrain":  # weights on a simplex
    e_CxD = -jnp.log(u(1e-6, 1.0, (C, D))) * mask_D
    x_CxD = e_CxD / jnp.maximum(e_CxD.sum(1, keepdims=True), 1e-9)
  if kind == "optimizer_choice":  # dims 0..2: one-hot optimizer (2-3 of them)
    n_opt = jax.random.randint(next(keys), (), 2, 4)
    opt_C = jax.random.randint(next(keys), (C,), 0, n_opt)
    x_CxD = x_CxD.at[:, :3].set(jax.nn.one_hot(opt_C, 3))
  x_CxD = x_CxD * mask_D

  if kind == "compute_allocation":
    # IsoFLOP: loss(N; C) = E + A / N^alpha + B / (C / 6N)^beta; a config is one model size
    logC_F = logN + logD + np.log10(6.0)
    A, B = u(100, 800), u(100, 1000)
    a_opt = beta / (alpha + beta)
    logNopt_F = a_opt * logC_F + u(-0.5, 0.5) - a_opt * logC_F[0] + logN[0]
    span = u(0.8, 1.6)  # decades of N one budget runs
    grid_C = jnp.linspace(logNopt_F[0] - span / 2, logNopt_F[F - 1] + span / 2, C)
    logDc_FxC = logC_F[:, None] - np.log10(6.0) - grid_C[None]
    clean_FxC = (u(1.5, 3.5) + A * 10.0 ** (-alpha * grid_C[None])
                 + B * 10.0 ** (-beta * logDc_FxC))
    present_FxC = jnp.abs(grid_C[None] - logNopt_F[:, None]) <= span / 2
    x_CxD = jnp.zeros((C, D)).at[:, 0].set((grid_C - grid_C[0]) / (grid_C[-1] - grid_C[0]))
    flag_FxC = jnp.zeros((F, C), bool)
    logN_F = logNopt_F
  else:
    # the optimum drifts along log N and log D (power laws in the config's log units)
    mean_N = jnp.zeros(D).at[:2].set(jnp.asarray(_DRIFT_N.get(kind, (0.0, 0.0))))
    mean_D = jnp.zeros(D).at[:2].set(jnp.asarray(_DRIFT_D.get(kind, (0.0, 0.0))))
    drift = on(0.75)
    aN_D = drift * (jax.random.normal(next(keys), (D,)) * 0.5 + mean_N)
    aD_D = drift * (jax.random.normal(next(keys), (D,)) * 0.4 + mean_D)
    xopt_FxD = (u(0.2, 0.8, (D,))[None] + aN_D[None] * sN_F[:, None]
                + aD_D[None] * sD_F[:, None]) * mask_D
    # anisotropic valley, curvature changing with scale
    R_DxD, _ = jnp.linalg.qr(jax.random.normal(next(keys), (D, D)))
    lam_D = logu(1.0, 100.0, (D,))
    lam_D = lam_D / lam_D.max()
    curv_F = jnp.exp(on(0.5) * u(-0.7, 0.7) * (sN_F + sD_F))
    r_FxCxD = ((x_CxD[None] - xopt_FxD[:, None]) * mask_D) @ R_DxD
    quad_FxC = curv_F[:, None] * jnp.sum(lam_D * r_FxCxD ** 2, -1) * 4.0
    shared_C = _bumps(next(keys), x_CxD, mask_D) * on(0.6) * u(0.0, 0.6)
    own_FxC = jax.vmap(lambda k: _bumps(k, x_CxD, mask_D))(jax.random.split(next(keys), F))
    p_own, hi_own = _OWN.get(kind, (0.5, 0.6))
    own_FxC = own_FxC * on(p_own) * logu(0.02, hi_own)
    shape_FxC = quad_FxC + shared_C[None] + own_FxC
    if kind == "optimizer_choice":  # each optimizer: its own offset and scaling with N
      off_O = jax.random.normal(next(keys), (3,)) * 0.3
      slope_O = jax.random.normal(next(keys), (3,)) * 0.3 * on(0.6)
      shape_FxC = shape_FxC + (off_O[None] + slope_O[None] * sN_F[:, None]) @ x_CxD[:, :3].T
    amp_F = logu(0.01, 0.3) * jnp.exp(u(-0.3, 0.3) * sN_F)
    clean_FxC = level_F[:, None] + amp_F[:, None] * shape_FxC
    # divergence cliff on dim 0 (a learning rate): the threshold falls as N grows
    cliff_F = u(0.6, 1.05) - u(0.0, 0.3) * sN_F
    flag_FxC = (on(0.4) > 0) & (x_CxD[None, :, 0] > cliff_F[:, None])
    present_FxC = u(shape=(F, C)) < jnp.where(on(0.4) > 0, u(0.5, 1.0), 1.0)
    logN_F = logN

  # noise: a share of the spread among the best quarter of configs at each fidelity
  best_FxC = jnp.sort(clean_FxC, 1)[:, : max(2, C // 4)]
  noise_F = on(0.8) * logu(1e-3, 3.0) * jnp.std(best_FxC, 1)
  y_FxC = clean_FxC + noise_F[:, None] * jax.random.normal(next(keys), (F, C))
  worst_F = jnp.max(y_FxC, 1)
  y_FxC = jnp.where(flag_FxC, worst_F[:, None] + jnp.abs(worst_F - level_F)[:, None]
                    * u(0.5, 3.0, (F, C)) + 0.1, y_FxC)
  missing_FxC = u(shape=(F, C)) < on(0.3) * u(0.0, 0.15)
  # at least 3 runs at every used fidelity, whatever the presence draw
  forced_FxC = jnp.argsort(jnp.argsort(u(shape=(F, C)), 1), 1) < 3
  if kind == "compute_allocation":  # the 3 sizes nearest the budget's optimum
    x0_C = x_CxD[:, 0]
    dist_FxC = jnp.abs(x0_C[None] - x0_C[jnp.argmin(clean_FxC, 1)][:, None])
    forced_FxC = jnp.argsort(jnp.argsort(dist_FxC, 1), 1) < 3
  valid_FxC = ((present_FxC & ~missing_FxC) | forced_FxC) & (f_F < n_fid)[:, None]
  return Draw(values_FxC=jnp.where(valid_FxC, y_FxC, jnp.nan), valid_FxC=valid_FxC,
              flagged_FxC=flag_FxC & valid_FxC, config_features_CxD=x_CxD,
              fidelity_features_FxG=jnp.stack([logN_F, logD], -1), cost_F=cost_F, n_fid=n_fid)


def draws(key, kind: str, n: int, sizes: PriorSizes = PriorSizes()) -> Draw:
  """n draws of one kind at once (leading axis n)."""
  return jax.vmap(lambda k: draw(k, kind, sizes))(jax.random.split(key, n))


def to_tables(d: Draw, kind: str, prefix: str) -> list[table_lib.Table]:
  """Host-side `Table`s of a batch of draws (fidelities beyond a draw's n_fid dropped)."""
  d = jax.tree.map(np.asarray, d)
  out = []
  for i in range(d.n_fid.shape[0]):
    F = int(d.n_fid[i])
    D = d.config_features_CxD.shape[-1]
    out.append(table_lib.Table(
        name=f"{prefix}{i}", family=kind, provenance="synthetic", objective="loss",
        direction="min", fidelity_names=tuple(f"f{j}" for j in range(F)),
        config_feature_names=tuple(f"x{j}" for j in range(D)),
        fidelity_feature_names=("log10_N", "log10_D"),
        config_features_CxD=d.config_features_CxD[i].astype(np.float32),
        fidelity_features_FxG=d.fidelity_features_FxG[i, :F].astype(np.float32),
        values_FxC=d.values_FxC[i, :F].astype(np.float32), valid_FxC=d.valid_FxC[i, :F],
        flagged_FxC=d.flagged_FxC[i, :F], cost_F=d.cost_F[i, :F].astype(np.float64),
        cost_unit="relative FLOPs", notes="drawn from the landscape prior (gym/prior.py)"))
  return out


def sample_tables(seed: int, kind: str, n: int,
                  sizes: PriorSizes = PriorSizes()) -> list[table_lib.Table]:
  """n drawn tables of one kind, named prior_<kind>_<seed>_<i>."""
  d = draws(jax.random.key(seed), kind, n, sizes)
  return to_tables(d, kind, f"prior_{kind}_{seed}_")


PREFIX = "prior_"


def is_drawn(name: str) -> bool:
  """A table of the prior (never tested on, never shown to the peers)."""
  return name.startswith(PREFIX)


def curate(table, split: str, budgets, rhos, extra_turns: int) -> dict:
  """A drawn table's tasks: every fidelity above the lowest is a target (each rho, each budget),
  all in `split` (train, or val for held-out draws); never a test task."""
  out = {"train": [], "val": [], "test": []}
  for rho in rhos:
    got = tasks_lib.curate(table, budgets=budgets, test_rho=rho, extra_turns=extra_turns,
                           every_level=True)["test"]
    out[split] += [dataclasses.replace(t, split=split) for t in got]
  return out


def kinds_of(pc) -> tuple[str, ...]:
  """The kinds `prior.kinds` names ("" = every kind); a bad name is the user's one-line error."""
  kinds = [k.strip() for k in str(pc.kinds).split(",") if k.strip()] or list(KINDS)
  bad = [k for k in kinds if k not in KINDS]
  if bad:
    raise errors.UserError(f"--config.prior.kinds names {bad}; the prior draws {list(KINDS)}")
  return tuple(kinds)


def rhos_of(pc) -> tuple[float, ...]:
  return tuple(float(r) for r in str(pc.rhos).split(",") if r.strip())


def tables_and_splits(pc, budgets, extra_turns: int) -> tuple[dict, dict]:
  """The drawn tables the agent trains on (`prior.tables` per kind) and validates on
  (`prior.val_tables` per kind, other seeds), curated; pc: the config's `prior` block."""
  kinds, rhos = kinds_of(pc), rhos_of(pc)
  tables, splits = {}, {}
  for split, n, seed in (("train", int(pc.tables), int(pc.seed)),
                         ("val", int(pc.val_tables), int(pc.seed) + 10_000)):
    if n <= 0:
      continue
    for i, kind in enumerate(kinds):
      for t in sample_tables(seed + 100 * i, kind, n):
        t = t.with_changes(name=f"{PREFIX}{split}_{t.name[len(PREFIX):]}")
        tables[t.name] = t
        splits[t.name] = curate(t, split, budgets, rhos, extra_turns)
  return tables, splits
