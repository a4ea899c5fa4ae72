"""Peers: the classical baselines a researcher would otherwise use, as step-by-step policies.

Every peer is driven through the same `ReferenceEnv` as the agent, one decision at a time, so
cost, budget and recommendation (the env's: best observed target config) are the agent's exactly.
A peer sees only the env's per-candidate view (`ReferenceEnv.expand()`: features, known
normalized values, costs, action mask) and the `PeerContext` index arrays; the context's table is
for feature and fidelity NAMES only, never its values (tests/test_peers.py checks this).

Interface: `Peer(ctx, seed)`, `act(view) -> candidate index`, `tell(action, value)` with the
normalized outcome (higher is better; None if the query was invalid). `run_episode` plays one.
A peer never returns an action the view marks unaffordable/absent while a valid one exists.

SMAC peers are optional: listed in PEERS only when `smac` is importable; imported lazily.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import tempfile
import time

import numpy as np

from autollmr.env import NORM_CLIP
from autollmr.table import Table
from autollmr.tasks import Task

PRIOR_CAP = 200  # cheap results given to TPE / SMAC as prior trials: enough, and ask stays fast
HB_ETA = 3  # Hyperband reduction factor; rung r is reported as resource ETA**r


@dataclasses.dataclass
class PeerContext:
  table: Table
  task: Task
  cand_config_A: np.ndarray  # int config index of each candidate (from EnvParams.cand_config_NxA[i])
  cand_fid_A: np.ndarray  # int fidelity index of each candidate
  cand_exists_A: np.ndarray  # bool
  target: int  # target fidelity index
  visible: tuple[int, ...]  # visible fidelity indices


def make_context(table: Table, task: Task, params, task_index: int) -> PeerContext:
  i = int(task_index)
  return PeerContext(
      table=table, task=task,
      cand_config_A=np.asarray(params.cand_config_NxA[i]).astype(np.int64),
      cand_fid_A=np.asarray(params.cand_fid_NxA[i]).astype(np.int64),
      cand_exists_A=np.asarray(params.cand_exists_NxA[i]).astype(bool),
      target=table.fidelity_index(task.target),
      visible=tuple(table.fidelity_index(v) for v in task.visible))


# --- shared helpers (views only) -------------------------------------------------------------------

def _open(view) -> np.ndarray:
  """Affordable, existing and not yet known: a query that is neither invalid nor a repeat."""
  return view["action_mask_A"] & ~view["known_A"]


def _fallback(view, rng) -> int:
  """Random open target, else open cheap row, else any affordable (a repeat), else anything."""
  mask, tgt = view["action_mask_A"], view["is_target_A"]
  for ok in (_open(view) & tgt, _open(view), mask & tgt, mask):
    if ok.any():
      return int(rng.choice(np.flatnonzero(ok)))
  return 0  # nothing affordable: the env has ended the episode or will


def _scaler(ctx, view):
  """Mean / std of the config features over existing candidates (std 0 -> 1)."""
  x = view["config_features_AxD"][ctx.cand_exists_A].astype(np.float64)
  sd = x.std(0)
  return x.mean(0), np.where(sd > 1e-12, sd, 1.0)


def _nearest(x_D, view, ok_A, sd_D) -> int:
  """The candidate in `ok_A` nearest to `x_D` in standardized feature space (-1 if none)."""
  idx = np.flatnonzero(ok_A)
  if idx.size == 0:
    return -1
  d = (((view["config_features_AxD"][idx] - x_D) / sd_D) ** 2).sum(1)
  return int(idx[np.argmin(d)])


def _fid_cost(ctx, view) -> dict:
  """Cost (target units) of each fidelity that has candidates, read off the view."""
  out = {}
  for f in np.unique(ctx.cand_fid_A[ctx.cand_exists_A]):
    out[int(f)] = float(view["cost_A"][np.flatnonzero(ctx.cand_exists_A & (ctx.cand_fid_A == f))[0]])
  return out


def _fid_distance(ctx, view) -> dict:
  """Standardized fidelity-feature distance of each candidate fidelity to the target.

  Nearness by features, not cost: on steplaw the iso-FLOP cells cost the same as the target but
  differ 4x in N, and the lr optimum follows N.
  """
  fids = sorted(_fid_cost(ctx, view))
  g = np.stack([view["fidelity_features_AxG"][np.flatnonzero(
      ctx.cand_exists_A & (ctx.cand_fid_A == f))[0]] for f in fids]).astype(np.float64)
  sd = g.std(0)
  g = g / np.where(sd > 1e-12, sd, 1.0)
  gt = g[fids.index(ctx.target)] if ctx.target in fids else g.mean(0)
  return {f: float(np.linalg.norm(g[k] - gt)) for k, f in enumerate(fids)}


def _known_cheap_by_nearness(ctx, view, cap: int) -> np.ndarray:
  """Up to `cap` known cheap rows, whole fidelities nearest first; a fidelity cut by the cap
  keeps a spread of its results by value rank (its best alone would make TPE's 'bad' set good)."""
  dist, cost = _fid_distance(ctx, view), _fid_cost(ctx, view)
  known = view["known_A"] & ~view["is_target_A"]
  out = []
  for f in sorted((f for f in dist if f != ctx.target), key=lambda f: (dist[f], -cost[f])):
    rows = np.flatnonzero(known & (ctx.cand_fid_A == f))
    room = cap - sum(len(r) for r in out)
    if room <= 0:
      break
    if len(rows) > room:
      rows = rows[np.argsort(-view["value_A"][rows], kind="stable")]
      rows = rows[np.linspace(0, len(rows) - 1, room).round().astype(int)]
    out.append(rows)
  return np.concatenate(out) if out else np.zeros(0, np.int64)


def _target_box(view):
  x = view["config_features_AxD"][view["is_target_A"]].astype(np.float64)
  return x.min(0), x.max(0)


# --- 1. random -------------------------------------------------------------------------------------

class RandomPeer:
  """Uniform over affordable, unqueried target candidates."""

  def __init__(self, ctx: PeerContext, seed: int):
    self.rng = np.random.default_rng(seed)

  def act(self, view) -> int:
    return _fallback(view, self.rng)

  def tell(self, action, value):
    pass


# --- 2. top-k transfer ------------------------------------------------------------------------------

class TopKTransferPeer:
  """The best known configs at the nearest visible fidelity, in order, each mapped to the target:
  the same config if it is a target candidate, else the nearest target candidate in standardized
  config-feature space (spaces may be disjoint). Nearest = closest in standardized fidelity
  features (ties: the costlier), as a researcher takes the largest model run: on steplaw the
  costliest visible cell (N=215M, D=100B) has an lr optimum that diverges at 1.07B."""

  def __init__(self, ctx: PeerContext, seed: int):
    self.ctx, self.rng, self.order = ctx, np.random.default_rng(seed), None

  def _plan(self, view) -> list[int]:
    ctx = self.ctx
    known = view["known_A"] & ~view["is_target_A"]
    if not known.any():
      return []
    dist, cost = _fid_distance(ctx, view), _fid_cost(ctx, view)
    have = {int(f) for f in np.unique(ctx.cand_fid_A[known])}
    near = min(have, key=lambda f: (dist[f], -cost[f]))
    rows = np.flatnonzero(known & (ctx.cand_fid_A == near))
    rows = rows[np.argsort(-view["value_A"][rows], kind="stable")]
    tgt = view["is_target_A"]
    tgt_of_cfg = {int(ctx.cand_config_A[a]): int(a) for a in np.flatnonzero(tgt)}
    _, sd = _scaler(ctx, view)
    plan = []
    for a in rows:
      b = tgt_of_cfg.get(int(ctx.cand_config_A[a]))
      if b is None:
        b = _nearest(view["config_features_AxD"][a], view, tgt, sd)
      if b not in plan:
        plan.append(b)
    return plan

  def act(self, view) -> int:
    if self.order is None:
      self.order = self._plan(view)
    ok = _open(view)
    for a in self.order:
      if ok[a]:
        return a
    return _fallback(view, self.rng)

  def tell(self, action, value):
    pass


# --- 3. trend: weighted ridge response surface ----------------------------------------------------

def _quad(z_NxD):
  iu, ju = np.triu_indices(z_NxD.shape[1])
  return np.concatenate([z_NxD, z_NxD[:, iu] * z_NxD[:, ju]], 1)


class TrendPeer:
  """Weighted ridge regression on a second-order response surface across fidelities.

  Model: y = b_f + q(z) w + sum_k g_k q(z) v_k, z the standardized config features, q(z) their
  linear + quadratic terms, g the standardized fidelity features centred at the target, b_f a
  free offset per fidelity (offsets never change an argmax; only the shape, and how it moves with
  g, matters). A second-order surface is the classic model of an lr x batch-size bowl, and the
  g x q(z) interactions let the bowl move with N and D; ridge keeps it stable for 19-dim mixtures
  where the quadratic terms outnumber the rows. Fit on every known result except those at the
  normalization's clip floor (diverged runs: censored, they would flatten the bowl). Weights: a
  cheap row at fidelity f counts exp(-d_f^2 / 2h^2), d_f the standardized fidelity-feature
  distance of f to the target and h the median of those distances, so nearer fidelities count
  more; a target result counts TARGET_WEIGHT. Queries the best predicted unqueried target
  candidate; refits after each target result. RIDGE and TARGET_WEIGHT were set on the synthetic
  tables, never on a real one.
  """
  TARGET_WEIGHT = 10.0
  RIDGE = 1e-3  # times the total weight, so the penalty scales with the data

  def __init__(self, ctx: PeerContext, seed: int):
    self.ctx, self.rng, self.pred_A, self.stale = ctx, np.random.default_rng(seed), None, True

  def _fit(self, view):
    ctx = self.ctx
    known = view["known_A"] & ctx.cand_exists_A & (view["value_A"] > -NORM_CLIP + 1e-4)
    if not known.any():
      return None
    mu, sd = _scaler(ctx, view)
    z_AxD = (view["config_features_AxD"] - mu) / sd
    # g is centred AT THE TARGET: there the interactions vanish and the prediction is the plain
    # surface q(z) w. Centred elsewhere, one visible fidelity (g constant over the data) lets
    # ridge split the shape evenly between w and v, and the target prediction cancels to ~0.
    g_AxG = view["fidelity_features_AxG"].astype(np.float64)
    gsd = g_AxG[ctx.cand_exists_A].std(0)
    g_t = g_AxG[np.flatnonzero(view["is_target_A"])[0]]
    g_AxG = (g_AxG - g_t) / np.where(gsd > 1e-12, gsd, 1.0)
    q = _quad(z_AxD)
    fids = sorted(set(ctx.cand_fid_A[ctx.cand_exists_A].tolist()))
    onehot = (ctx.cand_fid_A[:, None] == np.array(fids)[None, :]).astype(np.float64)
    phi = np.concatenate([onehot, q, (g_AxG[:, :, None] * q[:, None, :]).reshape(len(q), -1)], 1)
    dist = _fid_distance(ctx, view)
    h = np.median([d for f, d in dist.items() if f != ctx.target] or [1.0])
    w_F = {f: math.exp(-0.5 * (d / max(h, 1e-6)) ** 2) for f, d in dist.items()}
    w_F[ctx.target] = self.TARGET_WEIGHT
    rows = np.flatnonzero(known)
    w = np.array([w_F[int(ctx.cand_fid_A[a])] for a in rows])
    X, y = phi[rows], view["value_A"][rows].astype(np.float64)
    pen = np.full(phi.shape[1], self.RIDGE * w.sum())
    pen[:len(fids)] = 1e-6  # offsets (nearly) free
    beta = np.linalg.solve(X.T @ (X * w[:, None]) + np.diag(pen), X.T @ (w * y))
    return phi @ beta

  def act(self, view) -> int:
    if self.stale:
      self.pred_A, self.stale = self._fit(view), False
    ok = _open(view) & view["is_target_A"]
    if self.pred_A is None or not ok.any():
      return _fallback(view, self.rng)
    return int(np.flatnonzero(ok)[np.argmax(self.pred_A[ok])])

  def tell(self, action, value):
    if value is not None and self.ctx.cand_fid_A[action] == self.ctx.target:
      self.stale = True


# --- 4. Step Law formula -------------------------------------------------------------------------

def steplaw_optimum(log10_n: float, log10_d: float) -> tuple[float, float]:
  """(log2 lr*, log2 bs*_tokens) of Step Law (Li et al. 2025, arXiv:2503.04715):
  lr* = 1.79 N^-0.713 D^0.307, bs* = 0.58 D^0.571 tokens."""
  ln10 = math.log(10.0)
  log_lr = math.log(1.79) + (-0.713 * log10_n + 0.307 * log10_d) * ln10
  log_bs = math.log(0.58) + 0.571 * log10_d * ln10
  return log_lr / math.log(2.0), log_bs / math.log(2.0)


def _steplaw_ok(table: Table) -> bool:
  return (tuple(table.config_feature_names) == ("log2_lr", "log2_bs_tokens")
          and {"log10_N", "log10_D"} <= set(table.fidelity_feature_names))


class StepLawPeer:
  """The published Step Law optimum at the target's (N, D), snapped to the nearest target
  candidate in (log2 lr, log2 bs) space (octaves on both axes); then the next-nearest ones.
  Uses no observed value at all, so it runs the same with or without revealed cheap results."""

  def __init__(self, ctx: PeerContext, seed: int):
    if not _steplaw_ok(ctx.table):
      raise ValueError(f"steplaw_formula needs config features (log2_lr, log2_bs_tokens) and "
                       f"fidelity features log10_N, log10_D; table {ctx.table.name!r} has "
                       f"{ctx.table.config_feature_names} / {ctx.table.fidelity_feature_names}")
    names = ctx.table.fidelity_feature_names
    self.gi = names.index("log10_N"), names.index("log10_D")
    self.rng, self.x = np.random.default_rng(seed), None

  def act(self, view) -> int:
    if self.x is None:
      g = view["fidelity_features_AxG"][np.flatnonzero(view["is_target_A"])[0]]
      self.x = np.array(steplaw_optimum(float(g[self.gi[0]]), float(g[self.gi[1]])))
    a = _nearest(self.x, view, _open(view) & view["is_target_A"], np.ones(2))
    return a if a >= 0 else _fallback(view, self.rng)

  def tell(self, action, value):
    pass


# --- 5. Optuna TPE at the target, warm-started with prior trials -----------------------------------

def _optuna():
  import optuna
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna


def _target_dists(optuna, ctx, view) -> dict:
  lo, hi = _target_box(view)
  return {n: optuna.distributions.FloatDistribution(float(l), float(h))
          for n, l, h in zip(ctx.table.config_feature_names, lo, hi)}


class OptunaTPEPeer:
  """Optuna's TPESampler at the target through ask/tell: one FloatDistribution per config feature
  over the target candidates' range; each suggestion is snapped to the nearest unqueried target
  candidate (standardized features) and the trial is told that candidate's normalized value
  (maximize). Warm start: the known cheap results, up to PRIOR_CAP from the nearest visible
  fidelities (by fidelity features), are added as PRIOR TRIALS (create_trial + add_trials) with
  their normalized values, their configs clipped into the target box: TPE treats them as if they
  were target results, which is exactly the transfer assumption a researcher makes."""

  def __init__(self, ctx: PeerContext, seed: int):
    self.optuna = _optuna()
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.study, self.pending = None, None

  def _start(self, view):
    optuna, ctx = self.optuna, self.ctx
    self.study = optuna.create_study(
        direction="maximize", study_name=f"tpe-{self.seed}",
        sampler=optuna.samplers.TPESampler(seed=self.seed))
    self.dists = _target_dists(optuna, ctx, view)
    self.names = list(self.dists)
    _, self.sd = _scaler(ctx, view)
    lo, hi = _target_box(view)
    prior = _known_cheap_by_nearness(ctx, view, PRIOR_CAP)
    x = np.clip(view["config_features_AxD"][prior].astype(np.float64), lo, hi)
    self.study.add_trials([optuna.trial.create_trial(
        params={n: float(v) for n, v in zip(self.names, xi)}, distributions=self.dists,
        value=float(view["value_A"][a])) for xi, a in zip(x, prior)])
    self.n_prior = len(prior)

  def act(self, view) -> int:
    if self.study is None:
      self._start(view)
    ok = _open(view) & view["is_target_A"]
    if not ok.any():
      return _fallback(view, self.rng)
    trial = self.study.ask(self.dists)
    x = np.array([trial.params[n] for n in self.names])
    a = _nearest(x, view, ok, self.sd)
    self.pending = trial
    return a

  def tell(self, action, value):
    if self.pending is None:
      return
    if value is None:
      self.study.tell(self.pending, state=self.optuna.trial.TrialState.FAIL)
    else:
      self.study.tell(self.pending, float(value))
    self.pending = None


# --- 6. online multi-fidelity: Optuna TPE + Hyperband --------------------------------------------

def _rungs(ctx, view, n: int = 3) -> list[int]:
  """Up to n visible fidelities spread evenly in log cost from the cheapest up, plus the target."""
  cost = _fid_cost(ctx, view)
  vis = [f for f in ctx.visible if f in cost and f != ctx.target]
  if not vis:
    return [ctx.target]
  lo, hi = math.log(min(cost[f] for f in vis)), math.log(cost[ctx.target])
  picked = []
  for k in range(n):
    level = lo + (hi - lo) * k / n
    f = min(vis, key=lambda f: (abs(math.log(cost[f]) - level), cost[f]))
    if f not in picked:
      picked.append(f)
  return sorted(picked, key=lambda f: cost[f]) + [ctx.target]


class _Online:
  """Shared online bookkeeping: rungs, the reserved target run and the final promotion.

  Cost model: independent runs. A cheap run cannot be resumed to a bigger scale (a different N or
  D is a new run), so climbing a rung buys a fresh run at that fidelity for its full cost. One
  target run is always held in reserve: when the next cheap run would eat into it, the reserve is
  spent on the most promising config: the best result at the highest rung reached, snapped to
  the nearest target candidate not yet run.
  """

  def _online_setup(self, ctx, view):
    self.rungs = _rungs(ctx, view)
    _, self.sd = _scaler(ctx, view)
    self.seen = []  # (rung, value, x) of every cheap or target result
    self.x_ran = None

  def _ran(self, view, a: int) -> int:
    """Returns `a`, remembering the features of the config actually run (for `seen`)."""
    self.x_ran = np.asarray(view["config_features_AxD"][a], np.float64)
    return a

  def _rung_of(self, action) -> int:
    return len(self.rungs) - 1 if self.ctx.cand_fid_A[action] == self.ctx.target else 0

  def _rung_action(self, view, x, r) -> int:
    f = self.rungs[r]
    return _nearest(x, view, _open(view) & (self.ctx.cand_fid_A == f), self.sd)

  def _done(self, view) -> bool:
    """No target run is affordable any more: the recommendation cannot change, so the remaining
    budget goes on cheap fallback runs without asking the optimizer (saves decision time)."""
    return not (_open(view) & view["is_target_A"]).any()

  def _eats_reserve(self, view, a) -> bool:
    """A cheap run `a` would leave no budget, or no turn, for the reserved target run."""
    if view["is_target_A"][a]:
      return False
    return (float(view["budget_left"]) - float(view["cost_A"][a]) < 1.0 - 1e-6
            or int(view["turn"]) + 1 >= self.ctx.task.max_turns)

  def _promote(self, view, x_default) -> int:
    ok = _open(view) & view["is_target_A"]
    order = sorted(self.seen, key=lambda s: (-s[0], -s[1]))
    x = order[0][2] if order else x_default
    a = _nearest(x, view, ok, self.sd)
    return self._ran(view, a if a >= 0 else _fallback(view, self.rng))


class OptunaHyperbandPeer(_Online):
  """Optuna TPE + HyperbandPruner in the ONLINE mode (rho = 0: every cheap run is bought).

  Rungs: up to 3 visible fidelities spread by cost, then the target. A trial asks a config over
  the target box, runs it at the cheapest rung (snapped to the nearest candidate there), reports
  each rung's normalized value as step ETA**r (so every rung is a successive-halving rung of the
  pruner; the value identifies the rung) and climbs while should_prune() says no; reaching the
  target is a target query and completes the trial. Budget accounting is the env's (a cheap run
  costs cost[f] / cost[t]). See `_Online` for the cost model and the reserved target run.
  """

  def __init__(self, ctx: PeerContext, seed: int):
    self.optuna = _optuna()
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.study, self.trial, self.pending = None, None, None

  def act(self, view) -> int:
    optuna, ctx = self.optuna, self.ctx
    if self.study is None:
      self._online_setup(ctx, view)
      self.dists = _target_dists(optuna, ctx, view)
      self.study = optuna.create_study(
          direction="maximize", study_name=f"hb-{self.seed}",  # the name seeds the bracket hash
          sampler=optuna.samplers.TPESampler(seed=self.seed),
          pruner=optuna.pruners.HyperbandPruner(
              min_resource=1, max_resource=HB_ETA ** (len(self.rungs) - 1),
              reduction_factor=HB_ETA))
    self.pending = None
    if self._done(view):
      return self._ran(view, _fallback(view, self.rng))
    for _ in range(4 * len(self.rungs) + 4):  # a rung with nothing left is skipped
      if self.trial is None:
        self.trial = self.study.ask(self.dists)
        self.x = np.array([self.trial.params[n] for n in self.dists])
        self.r = 0
      a = self._rung_action(view, self.x, self.r)
      if a < 0:
        if self.r == len(self.rungs) - 1:
          break
        self.r += 1
        continue
      if self._eats_reserve(view, a):
        self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        self.trial = None
        return self._promote(view, self.x)
      self.pending = a
      return self._ran(view, a)
    return self._ran(view, _fallback(view, self.rng))

  def tell(self, action, value):
    if self.pending != action or self.trial is None:
      if value is not None:  # a promotion or fallback: remember it, the study needs nothing
        self.seen.append((self._rung_of(action), float(value), self.x_ran))
      return
    T = self.optuna.trial.TrialState
    if value is None:
      self.study.tell(self.trial, state=T.FAIL)
      self.trial = None
      return
    self.seen.append((self.r, float(value), self.x_ran))
    if self.r == len(self.rungs) - 1:
      self.study.tell(self.trial, float(value))
      self.trial = None
      return
    self.trial.report(float(value), step=HB_ETA ** self.r)
    if self.trial.should_prune():
      self.study.tell(self.trial, state=T.PRUNED)
      self.trial = None
    else:
      self.r += 1


# --- 7. SMAC (optional) ------------------------------------------------------------------------

# SMAC compares each challenger with every trial in its runhistory (Configuration equality in
# Python), so its prior is smaller than TPE's: 64 nearest cheap results keep an ask under ~0.5 s.
SMAC_PRIOR_CAP = 64
SMAC_SEARCH = dict(challengers=1000, local_search_iterations=2, n_steps_plateau_walk=2)


def smac_available() -> bool:
  return importlib.util.find_spec("smac") is not None


def _smac_space(ctx, view, seed):
  from ConfigSpace import ConfigurationSpace, Constant, Float
  lo, hi = _target_box(view)
  cs = ConfigurationSpace(seed=seed)
  cs.add([Float(n, (float(l), float(h))) if h > l else Constant(n, float(l))
          for n, l, h in zip(ctx.table.config_feature_names, lo, hi)])
  return cs


def _smac_config(cs, names, x_D):
  """A Configuration at x_D, clipped to the bounds ConfigSpace actually stored (it rounds them,
  so a float32 feature at the box edge can fall just outside)."""
  from ConfigSpace import Configuration
  vals = {}
  for n, v in zip(names, x_D.tolist()):
    hp = cs[n]
    vals[n] = hp.value if not hasattr(hp, "lower") else min(max(v, hp.lower), hp.upper)
  return Configuration(cs, values=vals)


class _SmacBase:
  """Shared SMAC plumbing: ask/tell with cost = -normalized value (SMAC minimizes), output under a
  private tempdir, deterministic=True, seeded; ConfigurationSpaceExhaustedException -> random."""

  def __init__(self, ctx: PeerContext, seed: int):
    import smac  # noqa: F401  (fails here, clearly, when the optional dependency is missing)
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.smac, self.info, self.pending = None, None, None
    self.tmp = tempfile.TemporaryDirectory(prefix="autollmr-smac-")

  def _x(self, config) -> np.ndarray:
    return np.array([float(config[n]) for n in self.ctx.table.config_feature_names])

  def _ask(self):
    from smac.main.exceptions import ConfigurationSpaceExhaustedException
    try:
      return self.smac.ask()
    except ConfigurationSpaceExhaustedException:
      return None

  def _tell(self, info, value):
    from smac.runhistory.dataclasses import TrialValue
    from smac.runner.abstract_runner import StatusType
    # save=False: SMAC re-dumps the whole runhistory as JSON on every tell (O(n^2) with priors)
    if value is None:  # the worst normalized value: an inf cost turns into NaN in the RF targets
      self.smac.tell(info, TrialValue(cost=NORM_CLIP, status=StatusType.CRASHED), save=False)
    else:
      self.smac.tell(info, TrialValue(cost=-float(value)), save=False)

  def _model(self, sc):
    """The facades' default random forest, made fast: single-threaded (joblib threads on every
    small local-search predict cost more than the trees) and max_leaf_nodes=None (SMAC's 2**20
    makes sklearn preallocate 2M nodes per tree, ~0.2 s a tree; the limit never binds anyway)."""
    from smac.model.random_forest import RandomForest
    return RandomForest(sc.configspace, log_y=True, n_trees=10, ratio_features=1.0,
                        min_samples_split=2, min_samples_leaf=1, max_leaf_nodes=None,
                        seed=sc.seed, n_jobs=1)


  def _maximizer(self, sc):
    """SMAC's own local-and-random search with a smaller effort (SMAC_SEARCH): the default (10,000
    random challengers, 10 plateau walks) spends 1-10 s an ask here, mostly walking one-exchange
    neighbourhoods of 20-D mixture spaces, while our answer is snapped to one of <= 512 target
    candidates anyway."""
    from smac.acquisition.maximizer import LocalAndSortedRandomSearch
    return LocalAndSortedRandomSearch(sc.configspace, seed=sc.seed, **SMAC_SEARCH)


class SmacHPOPeer(_SmacBase):
  """SMAC's HyperparameterOptimizationFacade (random-forest BO) at the target. Warm start via tell:
  the SMAC_PRIOR_CAP nearest cheap results (optuna_tpe's rule, fewer of them), told as trials before the first ask
  (then no initial design; without them a 5-config Sobol design). Retrains after every result."""

  def act(self, view) -> int:
    from smac import HyperparameterOptimizationFacade as HPO, Scenario
    from smac.runhistory.dataclasses import TrialInfo
    ctx = self.ctx
    if self.smac is None:
      cs = _smac_space(ctx, view, self.seed)
      sc = Scenario(cs, deterministic=True, n_trials=100000, seed=self.seed,
                    output_directory=self.tmp.name)
      prior = _known_cheap_by_nearness(ctx, view, SMAC_PRIOR_CAP)
      self.smac = HPO(sc, lambda config, seed=0: 0.0, overwrite=True, logging_level=40,
                      model=self._model(sc),
                      initial_design=HPO.get_initial_design(sc, n_configs=0 if len(prior) else 5),
                      acquisition_maximizer=self._maximizer(sc),
                      config_selector=HPO.get_config_selector(sc, retrain_after=1))
      _, self.sd = _scaler(ctx, view)
      for a in prior:
        cfg = _smac_config(cs, ctx.table.config_feature_names,
                           view["config_features_AxD"][a].astype(np.float64))
        self._tell(TrialInfo(config=cfg, seed=self.seed), float(view["value_A"][a]))
      self.n_prior = len(prior)
    ok = _open(view) & view["is_target_A"]
    info = self._ask() if ok.any() else None
    if info is None:
      self.pending = None
      return _fallback(view, self.rng)
    self.pending = info
    return _nearest(self._x(info.config), view, ok, self.sd)

  def tell(self, action, value):
    if self.pending is not None:
      self._tell(self.pending, value)
    self.pending = None


class SmacMFPeer(_SmacBase, _Online):
  """SMAC's MultiFidelityFacade (RF + Hyperband) in the ONLINE mode. Budgets are the rungs:
  budget ETA**r for rung r (min 1, max ETA**(R-1)), snapped to the nearest rung in log space;
  each is an independent run at that rung's fidelity (see `_Online`), the target rung a target
  query. Initial design: 10 configs."""

  def act(self, view) -> int:
    from smac import MultiFidelityFacade as MF, Scenario
    ctx = self.ctx
    if self.smac is None:
      self._online_setup(ctx, view)
      cs = _smac_space(ctx, view, self.seed)
      top = max(HB_ETA ** (len(self.rungs) - 1), HB_ETA)
      sc = Scenario(cs, deterministic=True, n_trials=100000, seed=self.seed,
                    output_directory=self.tmp.name, min_budget=1, max_budget=top)
      self.smac = MF(sc, lambda config, seed=0, budget=None: 0.0, overwrite=True,
                     logging_level=40, model=self._model(sc),
                     initial_design=MF.get_initial_design(sc, n_configs=10),
                     intensifier=MF.get_intensifier(sc, eta=HB_ETA),
                     config_selector=MF.get_config_selector(sc, retrain_after=1))
    self.pending = None
    if self._done(view):
      return self._ran(view, _fallback(view, self.rng))
    for _ in range(8):  # a rung with nothing left: tell SMAC it crashed, ask again
      info = self._ask()
      if info is None:
        break
      x = self._x(info.config)
      r = min(len(self.rungs) - 1, max(0, round(math.log(info.budget or 1, HB_ETA))))
      a = self._rung_action(view, x, r)
      if a < 0:
        self._tell(info, None)
        continue
      if self._eats_reserve(view, a):
        return self._promote(view, x)
      self.info, self.r, self.pending = info, r, a
      return self._ran(view, a)
    return self._ran(view, _fallback(view, self.rng))

  def tell(self, action, value):
    if value is not None:
      rung = self.r if self.pending == action else self._rung_of(action)
      self.seen.append((rung, float(value), self.x_ran))
    if self.pending == action:
      self._tell(self.info, value)
    self.pending = None


# --- registry and the episode loop --------------------------------------------------------------

PEERS: dict[str, type] = {
    "random": RandomPeer,
    "topk_transfer": TopKTransferPeer,
    "trend": TrendPeer,
    "steplaw_formula": StepLawPeer,
    "optuna_tpe": OptunaTPEPeer,
    "optuna_tpe_hyperband": OptunaHyperbandPeer,
}
if smac_available():
  PEERS.update(smac_hpo=SmacHPOPeer, smac_mf=SmacMFPeer)

# Run on rho = 0 tasks (nothing revealed). random's picks never depend on reveals, so it serves
# both modes; the others read revealed cheap results and run on rho > 0 tasks.
ONLINE_PEERS = {"random", "optuna_tpe_hyperband", "smac_mf"} & set(PEERS)

# Peers whose decisions read only what is known, never the budget left or the turn: on a rho > 0
# task their first k target runs under budget K >= k are the ones they make under budget k. So
# evaluate.py plays them once at the largest budget and reads each smaller budget off that
# episode's prefix (`prefix_result`, only where the prefix is itself a complete, legal episode of
# budget k); tests/test_evaluate.py checks this against direct runs. It cuts their time ~3x.
BUDGET_FREE = {"topk_transfer", "trend", "steplaw_formula", "optuna_tpe", "smac_hpo",
               "meta_regressor", "fsbo"}


def applicable(name: str, table: Table) -> bool:
  """Whether peer `name` can run on `table` (steplaw_formula needs Step Law's features)."""
  if name == "steplaw_formula":
    return _steplaw_ok(table)
  return name in PEERS


def run_episode(peer_cls, ref, ctx: PeerContext, task_index: int, seed: int) -> dict:
  """One episode of `peer_cls` on `ref` (a ReferenceEnv built from the same params as `ctx`)."""
  auto = ref.auto_reset
  ref.auto_reset = False  # the final step's info must describe this episode, not a fresh one
  try:
    ref.reset(task_index, seed)
    peer = peer_cls(ctx, seed)
    actions, ms, anytime, anytime_cost, snaps = [], [], [], [], []
    while True:
      view = ref.expand()
      t0 = time.perf_counter()
      a = int(peer.act(view))
      ms.append(1e3 * (time.perf_counter() - t0))
      _, _, terminated, truncated, info = ref.step(a)
      actions.append(a)
      peer.tell(a, None if info["invalid"] else float(ref.norm(a, info["value"])))
      if info["is_target"]:
        anytime.append(float(info["regret"]))
        anytime_cost.append(float(info["cost_spent"]))
        snaps.append(_result(info, actions, ms, anytime, anytime_cost))
      if terminated or truncated:
        break
  finally:
    ref.auto_reset = auto
  return dict(_result(info, actions, ms, anytime, anytime_cost), snapshots=snaps)


def _result(info, actions, ms, anytime, anytime_cost) -> dict:
  return dict(regret=float(info["regret"]), percentile=float(info["percentile"]),
              recommendation=int(info["recommendation"]), cost_spent=float(info["cost_spent"]),
              n_invalid=int(info["n_invalid"]), n_repeat=int(info["n_repeat"]),
              n_turns=len(actions), decision_ms_mean=float(np.mean(ms)), decision_ms=list(ms),
              anytime_regret=list(anytime), anytime_cost=list(anytime_cost), actions=list(actions))


def prefix_result(out: dict, budget: int, max_turns: int) -> dict | None:
  """The episode a BUDGET_FREE peer plays under budget `budget`, read off `out` (the same task and
  seed under a larger budget), or None where the prefix is not such an episode: fewer than
  `budget` target runs, a cheap run among them (the smaller budget would end elsewhere), or more
  turns than `max_turns`."""
  snaps = out["snapshots"]
  if len(snaps) < budget:
    return None
  s = snaps[budget - 1]
  if abs(s["cost_spent"] - budget) > 1e-5 or s["n_turns"] > max_turns:
    return None
  return dict(s, snapshots=snaps[:budget])


# Learned peers (learned_peers.py: meta-trained on the training tasks); registered last, they use
# the helpers above.
from autollmr import learned_peers as _learned  # noqa: E402
PEERS.update(meta_regressor=_learned.MetaRegressorPeer, fsbo=_learned.FSBOPeer)
