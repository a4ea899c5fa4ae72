"""The classical peers: random, top-k transfer, a trend surface across fidelities, the Step Law
formula. Each decides from the view alone (peers/base.py).
"""
from __future__ import annotations

import math

import numpy as np

from autollmr import errors
from autollmr.gym import env as env_lib
from autollmr.gym.table import Table
from autollmr.peers import base as peer_base
from autollmr.peers.base import PeerContext


class RandomPeer:
  """Uniform over affordable, unqueried target candidates."""

  def __init__(self, ctx: PeerContext, seed: int):
    self.rng = np.random.default_rng(seed)

  def act(self, view) -> int:
    return peer_base.fallback(view, self.rng)

  def tell(self, action, value):
    pass


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
    dist, cost = peer_base.fid_distance(ctx, view), peer_base.fid_cost(ctx, view)
    have = {int(f) for f in np.unique(ctx.cand_fid_A[known])}
    near = min(have, key=lambda f: (dist[f], -cost[f]))
    rows = np.flatnonzero(known & (ctx.cand_fid_A == near))
    rows = rows[np.argsort(-view["value_A"][rows], kind="stable")]
    tgt = view["is_target_A"]
    tgt_of_cfg = {int(ctx.cand_config_A[a]): int(a) for a in np.flatnonzero(tgt)}
    _, sd = peer_base.scaler(ctx, view)
    plan = []
    for a in rows:
      b = tgt_of_cfg.get(int(ctx.cand_config_A[a]))
      if b is None:
        b = peer_base.nearest(view["config_features_AxD"][a], view, tgt, sd)
      if b not in plan:
        plan.append(b)
    return plan

  def act(self, view) -> int:
    if self.order is None:
      self.order = self._plan(view)
    ok = peer_base.open_actions(view)
    for a in self.order:
      if ok[a]:
        return a
    return peer_base.fallback(view, self.rng)

  def tell(self, action, value):
    pass


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
    known = view["known_A"] & ctx.cand_exists_A & (view["value_A"] > -env_lib.NORM_CLIP + 1e-4)
    if not known.any():
      return None
    mu, sd = peer_base.scaler(ctx, view)
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
    dist = peer_base.fid_distance(ctx, view)
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
    ok = peer_base.open_actions(view) & view["is_target_A"]
    if self.pred_A is None or not ok.any():
      return peer_base.fallback(view, self.rng)
    return int(np.flatnonzero(ok)[np.argmax(self.pred_A[ok])])

  def tell(self, action, value):
    if value is not None and self.ctx.cand_fid_A[action] == self.ctx.target:
      self.stale = True


def steplaw_optimum(log10_n: float, log10_d: float) -> tuple[float, float]:
  """(log2 lr*, log2 bs*_tokens) of Step Law (Li et al. 2025, arXiv:2503.04715):
  lr* = 1.79 N^-0.713 D^0.307, bs* = 0.58 D^0.571 tokens."""
  ln10 = math.log(10.0)
  log_lr = math.log(1.79) + (-0.713 * log10_n + 0.307 * log10_d) * ln10
  log_bs = math.log(0.58) + 0.571 * log10_d * ln10
  return log_lr / math.log(2.0), log_bs / math.log(2.0)


def steplaw_ok(table: Table) -> bool:
  return (tuple(table.config_feature_names) == ("log2_lr", "log2_bs_tokens")
          and {"log10_N", "log10_D"} <= set(table.fidelity_feature_names))


class StepLawPeer:
  """The published Step Law optimum at the target's (N, D), snapped to the nearest target
  candidate in (log2 lr, log2 bs) space (octaves on both axes); then the next-nearest ones.
  Uses no observed value at all, so it runs the same with or without revealed cheap results."""

  def __init__(self, ctx: PeerContext, seed: int):
    if not steplaw_ok(ctx.table):
      raise errors.UserError(
          f"steplaw_formula needs config features (log2_lr, log2_bs_tokens) and "
          f"fidelity features log10_N, log10_D; table {ctx.table.name!r} has "
          f"{ctx.table.config_feature_names} / {ctx.table.fidelity_feature_names}")
    names = ctx.table.fidelity_feature_names
    self.gi = names.index("log10_N"), names.index("log10_D")
    self.rng, self.x = np.random.default_rng(seed), None

  def act(self, view) -> int:
    if self.x is None:
      g = view["fidelity_features_AxG"][np.flatnonzero(view["is_target_A"])[0]]
      self.x = np.array(steplaw_optimum(float(g[self.gi[0]]), float(g[self.gi[1]])))
    a = peer_base.nearest(self.x, view,
                          peer_base.open_actions(view) & view["is_target_A"], np.ones(2))
    return a if a >= 0 else peer_base.fallback(view, self.rng)

  def tell(self, action, value):
    pass
