"""SMAC peers (the optional [peers] extra): random-forest BO at the target, and multi-fidelity
SMAC online. SMAC is imported where used, so the package works without it.
"""
from __future__ import annotations

import math
import tempfile

import numpy as np

from autollmr.gym import env as env_lib
from autollmr.peers import base as peer_base
from autollmr.peers import online
from autollmr.peers.base import PeerContext
from autollmr.peers.online import Online

# SMAC compares each challenger with every trial in its runhistory (Configuration equality in
# Python), so its prior is smaller than TPE's: 64 nearest cheap results keep an ask under ~0.5 s.
SMAC_PRIOR_CAP = 64

SMAC_SEARCH = dict(challengers=1000, local_search_iterations=2, n_steps_plateau_walk=2)


def _smac_space(ctx, view, seed):
  from ConfigSpace import ConfigurationSpace  # optional: [peers]
  from ConfigSpace import Constant  # optional: [peers]
  from ConfigSpace import Float  # optional: [peers]
  lo, hi = peer_base.target_box(view)
  cs = ConfigurationSpace(seed=seed)
  cs.add([Float(n, (float(l), float(h))) if h > l else Constant(n, float(l))
          for n, l, h in zip(ctx.table.config_feature_names, lo, hi)])
  return cs


def _smac_config(cs, names, x_D):
  """A Configuration at x_D, clipped to the bounds ConfigSpace actually stored (it rounds them,
  so a float32 feature at the box edge can fall just outside)."""
  from ConfigSpace import Configuration  # optional: [peers]
  vals = {}
  for n, v in zip(names, x_D.tolist()):
    hp = cs[n]
    vals[n] = hp.value if not hasattr(hp, "lower") else min(max(v, hp.lower), hp.upper)
  return Configuration(cs, values=vals)


class _SmacBase:
  """Shared SMAC plumbing: ask/tell with cost = -normalized value (SMAC minimizes), output under a
  private tempdir, deterministic=True, seeded; ConfigurationSpaceExhaustedException -> random."""

  def __init__(self, ctx: PeerContext, seed: int):
    import smac  # noqa: F401  optional: [peers]; fails here, clearly, when it is missing
    self.ctx, self.seed, self.rng = ctx, seed, np.random.default_rng(seed)
    self.smac, self.info, self.pending = None, None, None
    self.tmp = tempfile.TemporaryDirectory(prefix="autollmr-smac-")

  def _x(self, config) -> np.ndarray:
    return np.array([float(config[n]) for n in self.ctx.table.config_feature_names])

  def _ask(self):
    from smac.main.exceptions import ConfigurationSpaceExhaustedException  # optional: [peers]
    try:
      return self.smac.ask()
    except ConfigurationSpaceExhaustedException:
      return None

  def _tell(self, info, value):
    from smac.runhistory.dataclasses import TrialValue  # optional: [peers]
    from smac.runner.abstract_runner import StatusType  # optional: [peers]
    # save=False: SMAC re-dumps the whole runhistory as JSON on every tell (O(n^2) with priors)
    if value is None:  # the worst normalized value: an inf cost turns into NaN in the RF targets
      self.smac.tell(
          info, TrialValue(cost=env_lib.NORM_CLIP, status=StatusType.CRASHED), save=False)
    else:
      self.smac.tell(info, TrialValue(cost=-float(value)), save=False)

  def _model(self, sc):
    """The facades' default random forest, made fast: single-threaded (joblib threads on every
    small local-search predict cost more than the trees) and max_leaf_nodes=None (SMAC's 2**20
    makes sklearn preallocate 2M nodes per tree, ~0.2 s a tree; the limit never binds anyway)."""
    from smac.model.random_forest import RandomForest  # optional: [peers]
    return RandomForest(sc.configspace, log_y=True, n_trees=10, ratio_features=1.0,
                        min_samples_split=2, min_samples_leaf=1, max_leaf_nodes=None,
                        seed=sc.seed, n_jobs=1)


  def _maximizer(self, sc):
    """SMAC's own local-and-random search with a smaller effort (SMAC_SEARCH): the default (10,000
    random challengers, 10 plateau walks) spends 1-10 s an ask here, mostly walking one-exchange
    neighbourhoods of 20-D mixture spaces, while our answer is snapped to one of <= 512 target
    candidates anyway."""
    from smac.acquisition.maximizer import LocalAndSortedRandomSearch  # optional: [peers]
    return LocalAndSortedRandomSearch(sc.configspace, seed=sc.seed, **SMAC_SEARCH)


class SmacHPOPeer(_SmacBase):
  """SMAC's HyperparameterOptimizationFacade (random-forest BO) at the target. Warm start via tell:
  the SMAC_PRIOR_CAP nearest cheap results (optuna_tpe's rule, fewer of them), told as trials
  before the first ask
  (then no initial design; without them a 5-config Sobol design). Retrains after every result."""

  def act(self, view) -> int:
    from smac import HyperparameterOptimizationFacade as HPO  # optional: [peers]
    from smac import Scenario  # optional: [peers]
    from smac.runhistory.dataclasses import TrialInfo  # optional: [peers]
    ctx = self.ctx
    if self.smac is None:
      cs = _smac_space(ctx, view, self.seed)
      sc = Scenario(cs, deterministic=True, n_trials=100000, seed=self.seed,
                    output_directory=self.tmp.name)
      prior = peer_base.known_cheap_by_nearness(ctx, view, SMAC_PRIOR_CAP)
      self.smac = HPO(sc, lambda config, seed=0: 0.0, overwrite=True, logging_level=40,
                      model=self._model(sc),
                      initial_design=HPO.get_initial_design(sc, n_configs=0 if len(prior) else 5),
                      acquisition_maximizer=self._maximizer(sc),
                      config_selector=HPO.get_config_selector(sc, retrain_after=1))
      _, self.sd = peer_base.scaler(ctx, view)
      for a in prior:
        cfg = _smac_config(cs, ctx.table.config_feature_names,
                           view["config_features_AxD"][a].astype(np.float64))
        self._tell(TrialInfo(config=cfg, seed=self.seed), float(view["value_A"][a]))
      self.n_prior = len(prior)
    ok = peer_base.open_actions(view) & view["is_target_A"]
    info = self._ask() if ok.any() else None
    if info is None:
      self.pending = None
      return peer_base.fallback(view, self.rng)
    self.pending = info
    return peer_base.nearest(self._x(info.config), view, ok, self.sd)

  def tell(self, action, value):
    if self.pending is not None:
      self._tell(self.pending, value)
    self.pending = None


class SmacMFPeer(_SmacBase, Online):
  """SMAC's MultiFidelityFacade (RF + Hyperband) in the ONLINE mode. Budgets are the rungs:
  budget ETA**r for rung r (min 1, max ETA**(R-1)), snapped to the nearest rung in log space;
  each is an independent run at that rung's fidelity (see `Online`), the target rung a target
  query. Initial design: 10 configs."""

  def act(self, view) -> int:
    from smac import MultiFidelityFacade as MF  # optional: [peers]
    from smac import Scenario  # optional: [peers]
    ctx = self.ctx
    if self.smac is None:
      self.online_setup(ctx, view)
      cs = _smac_space(ctx, view, self.seed)
      top = max(online.HB_ETA ** (len(self.rungs) - 1), online.HB_ETA)
      sc = Scenario(cs, deterministic=True, n_trials=100000, seed=self.seed,
                    output_directory=self.tmp.name, min_budget=1, max_budget=top)
      self.smac = MF(sc, lambda config, seed=0, budget=None: 0.0, overwrite=True,
                     logging_level=40, model=self._model(sc),
                     initial_design=MF.get_initial_design(sc, n_configs=10),
                     intensifier=MF.get_intensifier(sc, eta=online.HB_ETA),
                     config_selector=MF.get_config_selector(sc, retrain_after=1))
    self.pending = None
    if self.done(view):
      return self.ran(view, peer_base.fallback(view, self.rng))
    for _ in range(8):  # a rung with nothing left: tell SMAC it crashed, ask again
      info = self._ask()
      if info is None:
        break
      x = self._x(info.config)
      r = min(len(self.rungs) - 1, max(0, round(math.log(info.budget or 1, online.HB_ETA))))
      a = self.rung_action(view, x, r)
      if a < 0:
        self._tell(info, None)
        continue
      if self.eats_reserve(view, a):
        return self.promote(view, x)
      self.info, self.r, self.pending = info, r, a
      return self.ran(view, a)
    return self.ran(view, peer_base.fallback(view, self.rng))

  def tell(self, action, value):
    if value is not None:
      rung = self.r if self.pending == action else self.rung_of(action)
      self.seen.append((rung, float(value), self.x_ran))
    if self.pending == action:
      self._tell(self.info, value)
    self.pending = None
