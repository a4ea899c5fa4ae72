"""Optuna peers: TPE at the target warm-started with the cheap results, and TPE + Hyperband online.
"""
from __future__ import annotations

import numpy as np
import optuna

from autollmr.peers import base as peer_base
from autollmr.peers import online
from autollmr.peers.base import PeerContext
from autollmr.peers.online import Online


def load_optuna():
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  return optuna


def _target_dists(optuna, ctx, view) -> dict:
  lo, hi = peer_base.target_box(view)
  return {n: optuna.distributions.FloatDistribution(float(l), float(h))
          for n, l, h in zip(ctx.table.config_feature_names, lo, hi)}


class OptunaTPEPeer:
  """Optuna's TPESampler at the target through ask/tell: one FloatDistribution per config feature
  over the target candidates' range; each suggestion is snapped to the nearest unqueried target
  candidate (standardized features) and the trial is told that candidate's normalized value
  (maximize). Warm start: the known cheap results, up to peer_base.PRIOR_CAP from the nearest
  visible
  fidelities (by fidelity features), are added as PRIOR TRIALS (create_trial + add_trials) with
  their normalized values, their configs clipped into the target box: TPE treats them as if they
  were target results, which is exactly the transfer assumption a researcher makes."""

  def __init__(self, ctx: PeerContext, seed: int):
    self.optuna = load_optuna()
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.study, self.pending = None, None

  def _start(self, view):
    optuna, ctx = self.optuna, self.ctx
    self.study = optuna.create_study(
        direction="maximize", study_name=f"tpe-{self.seed}",
        sampler=optuna.samplers.TPESampler(seed=self.seed))
    self.dists = _target_dists(optuna, ctx, view)
    self.names = list(self.dists)
    _, self.sd = peer_base.scaler(ctx, view)
    lo, hi = peer_base.target_box(view)
    prior = peer_base.known_cheap_by_nearness(ctx, view, peer_base.PRIOR_CAP)
    x = np.clip(view["config_features_AxD"][prior].astype(np.float64), lo, hi)
    self.study.add_trials([optuna.trial.create_trial(
        params={n: float(v) for n, v in zip(self.names, xi)}, distributions=self.dists,
        value=float(view["value_A"][a])) for xi, a in zip(x, prior)])
    self.n_prior = len(prior)

  def act(self, view) -> int:
    if self.study is None:
      self._start(view)
    ok = peer_base.open_actions(view) & view["is_target_A"]
    if not ok.any():
      return peer_base.fallback(view, self.rng)
    trial = self.study.ask(self.dists)
    x = np.array([trial.params[n] for n in self.names])
    a = peer_base.nearest(x, view, ok, self.sd)
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


class OptunaHyperbandPeer(Online):
  """Optuna TPE + HyperbandPruner in the ONLINE mode (rho = 0: every cheap run is bought).

  Rungs: up to 3 visible fidelities spread by cost, then the target. A trial asks a config over
  the target box, runs it at the cheapest rung (snapped to the nearest candidate there), reports
  each rung's normalized value as step ETA**r (so every rung is a successive-halving rung of the
  pruner; the value identifies the rung) and climbs while should_prune() says no; reaching the
  target is a target query and completes the trial. Budget accounting is the env's (a cheap run
  costs cost[f] / cost[t]). See `Online` for the cost model and the reserved target run.
  """

  def __init__(self, ctx: PeerContext, seed: int):
    self.optuna = load_optuna()
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.study, self.trial, self.pending = None, None, None

  def act(self, view) -> int:
    optuna, ctx = self.optuna, self.ctx
    if self.study is None:
      self.online_setup(ctx, view)
      self.dists = _target_dists(optuna, ctx, view)
      self.study = optuna.create_study(
          direction="maximize", study_name=f"hb-{self.seed}",  # the name seeds the bracket hash
          sampler=optuna.samplers.TPESampler(seed=self.seed),
          pruner=optuna.pruners.HyperbandPruner(
              min_resource=1, max_resource=online.HB_ETA ** (len(self.rungs) - 1),
              reduction_factor=online.HB_ETA))
    self.pending = None
    if self.done(view):
      return self.ran(view, peer_base.fallback(view, self.rng))
    for _ in range(4 * len(self.rungs) + 4):  # a rung with nothing left is skipped
      if self.trial is None:
        self.trial = self.study.ask(self.dists)
        self.x = np.array([self.trial.params[n] for n in self.dists])
        self.r = 0
      a = self.rung_action(view, self.x, self.r)
      if a < 0:
        if self.r == len(self.rungs) - 1:
          break
        self.r += 1
        continue
      if self.eats_reserve(view, a):
        self.study.tell(self.trial, state=optuna.trial.TrialState.PRUNED)
        self.trial = None
        return self.promote(view, self.x)
      self.pending = a
      return self.ran(view, a)
    return self.ran(view, peer_base.fallback(view, self.rng))

  def tell(self, action, value):
    if self.pending != action or self.trial is None:
      if value is not None:  # a promotion or fallback: remember it, the study needs nothing
        self.seen.append((self.rung_of(action), float(value), self.x_ran))
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
    self.trial.report(float(value), step=online.HB_ETA ** self.r)
    if self.trial.should_prune():
      self.study.tell(self.trial, state=T.PRUNED)
      self.trial = None
    else:
      self.r += 1
