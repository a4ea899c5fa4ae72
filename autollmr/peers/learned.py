"""Learned peers: surrogates meta-trained on the TRAINING tasks, the paper's strongest baselines.

- `meta_regressor`: a gradient-boosted regressor from cross-fidelity features to a candidate's
  normalized outcome at the target, corrected within the task by a GP on its residuals.
- `fsbo` (fsbo.py): few-shot BO (Wistuba & Grabocka 2021): a deep-kernel GP in JAX, meta-trained on
the
  training tasks' marginal likelihood, fine-tuned on the test task's visible results, EI at the
  target.

Data: a table trains only on `tasks.training_table(table, train + val tasks)` (`training_views`
is the one place a table's values are read; a test target is never a fidelity of that view,
tests/peers/test_learned_peers.py checks it). `set_training_sources` swaps the sources (leave one
family out: the other families' train + val tasks). A table with no training tasks of its own
(regmix: two fidelities) borrows same-family tables from the pool given to `set_training_sources`
if any; else the peer fits on the test task's own visible results (see each peer). So these two
peers, unlike the classical ones, read the context table's values, the training fidelities only.

Fitted models are cached per process, keyed by a hash of exactly what training reads (the
training views and tasks), so an evaluation fits once per table, not once per episode.
"""
from __future__ import annotations

import functools
import hashlib
import math

import numpy as np
import threadpoolctl

from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import tasks as tasks_lib
from autollmr.lazy import lazy
from autollmr.peers import base as peer_base
from autollmr.peers import classical

sklearn = lazy("sklearn")  # ~2 s of every command's start; only the fits below use it

MAX_CHEAP = 256  # cheap rows a training example sees (the eval's env.max_cheap_rows)

MAX_TARGETS = 1024  # target configs (labels) per training task, chosen as the env does

NEAR = 3  # visible fidelities described per candidate, nearest to the target first

CACHE: dict = {}

_SOURCES = {"sources": None, "pool": (), "stand_in": {}}


def set_training_sources(sources=None, pool=(), stand_in=None):
  """sources: None = each table trains on its own curate(table)["train"] + ["val"] tasks (the
  default); else a list of (table, tasks) every table trains on (LOFO: the other families').
  pool: tables a table without training tasks may borrow same-family training tasks from.
  stand_in: {name: table} trained on in place of the played table of that name (an evaluation
  sub-study trains on its whole table, as the agent did, and trains once, not per sub-study)."""
  _SOURCES["sources"] = None if sources is None else [(t, list(ts)) for t, ts in sources]
  _SOURCES["pool"] = tuple(pool)
  _SOURCES["stand_in"] = dict(stand_in or {})


def _own_tasks(table):
  s = tasks_lib.curate(table)
  return s["train"] + s["val"]


def training_views(table, target: int) -> list:
  """[(training view, deduplicated tasks)] the peer for `table` trains on. Only training_table()
  views leave this function; tasks touching `target` are dropped (so even a peer played on a
  train task never trains on its own target)."""
  srcs = _SOURCES["sources"]
  table = _SOURCES["stand_in"].get(table.name, table)
  if srcs is None:
    srcs = [(table, _own_tasks(table))]
    if not srcs[0][1]:
      srcs = [(t, _own_tasks(t)) for t in _SOURCES["pool"]
              if t.family == table.family and t.name != table.name]
  tname = table.fidelity_names[target]
  out = []
  for t, ts in srcs:
    uniq = {}
    for x in ts:
      if t.name == table.name and (x.target == tname or tname in x.visible):
        continue
      uniq.setdefault((x.target, tuple(x.visible)), x)
    ts = [uniq[k] for k in sorted(uniq)]
    if ts:
      out.append((tasks_lib.training_table(t, ts), ts))
  return out


def cache_key(kind, views, extra=()) -> str:
  h = hashlib.sha1(repr((kind, extra)).encode())
  for view, ts in views:
    h.update(repr((view.name, view.fidelity_names, view.config_feature_names,
                   view.fidelity_feature_names, [(x.target, x.visible) for x in ts])).encode())
    for a in (view.values_FxC, view.valid_FxC, view.config_features_CxD,
              view.fidelity_features_FxG, view.cost_F):
      h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()


def obs_from_table(view, task, max_targets=MAX_TARGETS):
  """A training task's observation and its labels, from its training view.

  Known rows: `build.cheap_rows` of the visible fidelities (the env's cap and rule), normalized as
  the env does (median / IQR of their fidelity, clipped). Labels: the target values on the env's
  scale (the nearest visible fidelity's IQR) but centred at the target's own median before the
  clip: the env's target offset is unknowable at test and carries no ranking information, and
  uncentred it can clip every label (admire: each 7B score is > 5 IQRs above the 3B median, so
  the env shows 5.0 for all of them).
  """
  t = view.fidelity_index(task.target)
  vis = [view.fidelity_index(v) for v in task.visible]
  rows = build.cheap_rows(view, vis, MAX_CHEAP)
  sign, clip = view.sign(), env_lib.NORM_CLIP
  loc, scale = {}, {}
  for f in vis:  # the env's normalization (make_params)
    lo, med, hi = np.percentile(view.values_FxC[f][view.valid_FxC[f]], [25, 50, 75])
    loc[f], scale[f] = med, max(hi - lo, 1e-6)
  near = max(vis, key=lambda f: view.cost_F[f])
  tgt = np.flatnonzero(view.valid_FxC[t])
  if len(tgt) > max_targets:  # the env's rule: chosen by the visible results, not the labels
    tgt = build.target_candidates(view, t, vis, max_targets)
  lab = -sign * (view.values_FxC[t, tgt] - np.median(view.values_FxC[t][view.valid_FxC[t]]))
  x = view.config_features_CxD.astype(np.float64)
  cfg = np.array([c for _, c in rows], np.int64)
  obs = dict(fid_N=np.array([f for f, _ in rows], np.int64), cfg_N=cfg, x_NxD=x[cfg],
             y_N=np.array([np.clip(-sign * (view.values_FxC[f, c] - loc[f]) / scale[f], -clip,
                                   clip) for f, c in rows], np.float64),
             g_F={f: view.fidelity_features_FxG[f].astype(np.float64) for f in vis + [t]},
             cost_F={f: float(view.cost_F[f] / view.cost_F[t]) for f in vis + [t]},
             target=t, xt_AxD=x[tgt], cfgt_A=tgt,
             names=(view.config_feature_names, view.fidelity_feature_names))
  return obs, np.clip(lab / scale[near], -clip, clip).astype(np.float64)


def obs_from_view(ctx, view):
  """The test task's observation, from what the env shows (known values, features, costs)."""
  ex, tgt = ctx.cand_exists_A, view["is_target_A"]
  known = view["known_A"] & ex & ~tgt
  fids = np.unique(ctx.cand_fid_A[ex])
  first = {int(f): int(np.flatnonzero(ex & (ctx.cand_fid_A == f))[0]) for f in fids}
  x = view["config_features_AxD"].astype(np.float64)
  return dict(fid_N=ctx.cand_fid_A[known], cfg_N=ctx.cand_config_A[known], x_NxD=x[known],
              y_N=view["value_A"][known].astype(np.float64),
              g_F={f: view["fidelity_features_AxG"][a].astype(np.float64)
                   for f, a in first.items()},
              cost_F={f: float(view["cost_A"][a]) for f, a in first.items()},
              target=int(ctx.target), xt_AxD=x[tgt], cfgt_A=ctx.cand_config_A[tgt],
              names=(ctx.table.config_feature_names, ctx.table.fidelity_feature_names))


def pseudo_tasks(obs):
  """Self-fallback training data from a test observation alone: each visible fidelity with
  cheaper ones is a pseudo-target predicted from those (visible_k from visible_<k)."""
  out = []
  fids = sorted(set(obs["fid_N"].tolist()), key=lambda f: obs["cost_F"][f])
  for k in range(1, len(fids)):
    low, f = np.isin(obs["fid_N"], fids[:k]), obs["fid_N"] == fids[k]
    c = obs["cost_F"][fids[k]]
    o = dict(obs, fid_N=obs["fid_N"][low], cfg_N=obs["cfg_N"][low], x_NxD=obs["x_NxD"][low],
             y_N=obs["y_N"][low], target=fids[k], xt_AxD=obs["x_NxD"][f], cfgt_A=obs["cfg_N"][f],
             cost_F={g: v / c for g, v in obs["cost_F"].items()})
    out.append((o, obs["y_N"][f]))
  return out


def near_fids(obs) -> list[int]:
  """Visible fidelities by fidelity-feature distance to the target (ties: the costlier first)."""
  gt = obs["g_F"][obs["target"]]
  fids = sorted(set(obs["fid_N"].tolist()))
  return sorted(fids, key=lambda f: (float(np.linalg.norm(obs["g_F"][f] - gt)),
                                     -obs["cost_F"][f]))


def obs_stats(obs):
  x = obs["x_NxD"] if len(obs["x_NxD"]) else obs["xt_AxD"]
  sd = x.std(0)
  return x.mean(0), np.where(sd > 1e-9, sd, 1.0)


def features(obs, specific: bool):
  """Per target candidate: for each of the NEAR nearest visible fidelities, its value there (same
  config, else nearest known config), distance to that config, mean of the 5 nearest, gap to that
  fidelity's best, distance to its best config, fidelity gap and log cost ratio. `specific` adds
  the family's own coordinates (config features, target fidelity features, Step Law prior), used
  only when every training source shares the test table's feature names."""
  mu, sd = obs_stats(obs)
  zt = (obs["xt_AxD"] - mu) / sd
  A = len(zt)
  gt = obs["g_F"][obs["target"]]
  cols = []
  near = near_fids(obs)
  for k in range(NEAR):
    if k >= len(near):
      cols += [np.full(A, np.nan)] * 7
      continue
    f = near[k]
    m = obs["fid_N"] == f
    z, y, cfg = (obs["x_NxD"][m] - mu) / sd, obs["y_N"][m], obs["cfg_N"][m]
    d_AxM = np.sqrt(((zt[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d_AxM, axis=1, kind="stable")
    nn = order[:, 0]
    pos = {int(c): i for i, c in enumerate(cfg)}
    same = np.array([y[pos[c]] if c in pos else np.nan for c in obs["cfgt_A"].tolist()])
    v = np.where(np.isnan(same), y[nn], same)
    best = int(np.argmax(y))
    cols += [same, v, d_AxM[np.arange(A), nn], y[order[:, :5]].mean(1), v - y[best],
             d_AxM[:, best],
             np.full(A, math.log10(max(obs["cost_F"][f], 1e-12)))]
  cols.append(np.full(A, float(np.linalg.norm(gt - obs["g_F"][near[0]])) if near else np.nan))
  if specific:
    cols += list(obs["xt_AxD"].T) + [np.full(A, g) for g in gt]
    cols += [np.full(A, g) for g in (gt - obs["g_F"][near[0]] if near else gt * np.nan)]
    cfg_names, fid_names = obs["names"]
    if tuple(cfg_names) == ("log2_lr", "log2_bs_tokens") and {"log10_N", "log10_D"} <= set(
        fid_names):
      lr, bs = classical.steplaw_optimum(gt[list(fid_names).index("log10_N")],
                                         gt[list(fid_names).index("log10_D")])
      dlr, dbs = obs["xt_AxD"][:, 0] - lr, obs["xt_AxD"][:, 1] - bs
      cols += [dlr, dbs, np.hypot(dlr, dbs)]
  return np.stack(cols, 1).astype(np.float32)


def _fit_hgb(X, y, w=None):
  """(model, kept columns): all-NaN columns (a fidelity slot no training task fills) are dropped,
  scikit-learn's binning cannot take them."""
  keep = ~np.all(np.isnan(X), 0)
  m = sklearn.ensemble.HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                    min_samples_leaf=20, l2_regularization=1.0,
                                    early_stopping=False, random_state=0)
  with _one_thread():
    return m.fit(X[:, keep], y, sample_weight=w), keep


@functools.cache
def _controller():
  return threadpoolctl.ThreadpoolController()


def _one_thread():
  """scikit-learn's trees predict under OpenMP; on small batches and shared cores its threads
  spin and wait (0.03 s a call became 1.7 s at times), one thread is faster and steady."""
  return _controller().limit(limits=1, user_api="openmp")


def fit_regressor(table, target):
  """(model, specific) trained on the training views of `table` (None model: no training data).
  Each task weighs the same (its rows weigh 1/rows), so a big table does not drown the rest."""
  views = training_views(table, target)
  names = (table.config_feature_names, table.fidelity_feature_names)
  specific = all((v.config_feature_names, v.fidelity_feature_names) == names for v, _ in views)
  key = cache_key("hgb", views, (specific,))
  if key not in CACHE:
    X, y, w = [], [], []
    for view, ts in views:
      for task in ts:
        obs, lab = obs_from_table(view, task)
        if len(obs["y_N"]) == 0:
          continue
        X.append(features(obs, specific))
        y.append(lab)
        w.append(np.full(len(lab), 1.0 / len(lab)))
    CACHE[key] = _fit_hgb(np.concatenate(X), np.concatenate(y), np.concatenate(w)) if X else None
  return CACHE[key], specific


def residual_gp(z_NxD, r_N, zq_AxD, h, prior=(100.0, 0.5), noise=0.05):
  """Posterior mean of a GP on residuals: constant (variance prior[0]) + RBF (prior[1], length h)
  kernel. The broad constant absorbs the unknown offset between the env's target scale and the
  labels' (so one observation alone moves nothing); what is left, the residuals' differences,
  shifts each observation's neighbourhood: a bad surprise steers away, a good one pulls closer."""
  k = lambda a, b: prior[0] + prior[1] * np.exp(
      -0.5 * ((a[:, None] - b[None]) ** 2).sum(-1) / h ** 2)
  K = k(z_NxD, z_NxD) + noise * np.eye(len(z_NxD))
  return k(zq_AxD, z_NxD) @ np.linalg.solve(K, r_N)


class ScoredTargetPeer:
  """Shared by both learned peers: query the best-scored open target (`self.scores(view)`) and
  remember every observed target result (obs_a, obs_y) for the next scoring."""

  def act(self, view) -> int:
    return best_open_target(view, self.scores, self.rng)

  def tell(self, action, value):
    if observed_target(self.ctx, action, value):
      self.obs_a.append(int(action))
      self.obs_y.append(float(value))


class MetaRegressorPeer(ScoredTargetPeer):
  """Gradient-boosted trees (scikit-learn's HistGradientBoostingRegressor: fast on thousands of
  rows, native NaN handling for missing cross-fidelity values, robust to unscaled, mixed features)
  from `features` to the normalized target value, trained once per training-source set on every
  training task's target configs (features computed exactly as at test, from that task's visible
  results). Query the best prediction; each observed target result conditions the rest through
  `residual_gp` on (observed - predicted) over standardized target-config features (length =
  median nearest-neighbour spacing x 2). No training data: fit on the test task's own visible
  fidelities (`pseudo_tasks`); with a single visible fidelity, the prediction is its value
  (nearest known config), i.e. top-1 transfer plus the residual GP."""

  def __init__(self, ctx, seed: int):
    self.ctx, self.rng = ctx, np.random.default_rng(seed)
    self.model, self.specific = fit_regressor(ctx.table, ctx.target)
    self.base_A, self.obs_a, self.obs_y = None, [], []

  def _predict(self, view):
    ctx = self.ctx
    obs = obs_from_view(ctx, view)
    model, specific = self.model, self.specific
    if model is None:
      pseudo = pseudo_tasks(obs)
      if pseudo:
        model, specific = _fit_hgb(
            np.concatenate([features(o, False) for o, _ in pseudo]),
            np.concatenate([y for _, y in pseudo]),
            np.concatenate([np.full(len(y), 1.0 / len(y)) for _, y in pseudo])), False
    X = features(obs, specific)
    if model is not None:
      with _one_thread():
        pred = model[0].predict(X[:, model[1]])
    else:
      pred = np.nan_to_num(X[:, 1], nan=0.0)
    base = np.full(len(view["is_target_A"]), -np.inf)
    base[view["is_target_A"]] = pred
    mu, sd = obs["xt_AxD"].mean(0), obs["xt_AxD"].std(0)
    self.z_AxD = (view["config_features_AxD"] - mu) / np.where(sd > 1e-9, sd, 1.0)
    zt = self.z_AxD[view["is_target_A"]]
    d = np.sqrt(((zt[:, None] - zt[None]) ** 2).sum(-1)) + np.diag(np.full(len(zt), np.inf))
    self.h = 2.0 * float(np.median(d.min(1))) if len(zt) > 1 else 1.0
    return base

  def scores(self, view):
    """Current predicted normalized target value of every candidate (-inf off target)."""
    if self.base_A is None:
      self.base_A = self._predict(view)
    s = self.base_A.copy()
    if self.obs_a:
      a = np.array(self.obs_a)
      r = np.array(self.obs_y) - self.base_A[a]
      tgt = np.isfinite(s)
      s[tgt] += residual_gp(self.z_AxD[a], r, self.z_AxD[tgt], self.h)
    return s


def best_open_target(view, scores, rng) -> int:
  """The open (affordable, unqueried) target candidate with the highest score; when there is
  none, the classical peers' fallback. Never an action the view marks absent or unaffordable."""
  ok = peer_base.open_actions(view) & view["is_target_A"]
  if not ok.any():
    return peer_base.fallback(view, rng)
  s = scores(view)
  return int(np.flatnonzero(ok)[np.argmax(s[ok])])


def observed_target(ctx, action, value) -> bool:
  """A target result that carries information: a clipped one (|value| = NORM_CLIP) is censored,
  its true value unknown (every admire target result is clipped), so it conditions nothing."""
  return (value is not None and ctx.cand_fid_A[action] == ctx.target
          and abs(value) < env_lib.NORM_CLIP - 1e-6)
