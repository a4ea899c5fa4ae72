"""Online bookkeeping shared by the peers that buy their cheap runs (rho = 0): rungs, the
reserved target run, the final promotion.
"""
from __future__ import annotations

import math

import numpy as np

from autollmr.peers import base as peer_base

HB_ETA = 3  # Hyperband reduction factor; rung r is reported as resource ETA**r


def rungs(ctx, view, n: int = 3) -> list[int]:
  """Up to n visible fidelities spread evenly in log cost from the cheapest up, plus the target."""
  cost = peer_base.fid_cost(ctx, view)
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


class Online:
  """Shared online bookkeeping: rungs, the reserved target run and the final promotion.

  Cost model: independent runs. A cheap run cannot be resumed to a bigger scale (a different N or
  D is a new run), so climbing a rung buys a fresh run at that fidelity for its full cost. One
  target run is always held in reserve: when the next cheap run would eat into it, the reserve is
  spent on the most promising config: the best result at the highest rung reached, snapped to
  the nearest target candidate not yet run.
  """

  def online_setup(self, ctx, view):
    self.rungs = rungs(ctx, view)
    _, self.sd = peer_base.scaler(ctx, view)
    self.seen = []  # (rung, value, x) of every cheap or target result
    self.x_ran = None

  def ran(self, view, a: int) -> int:
    """Returns `a`, remembering the features of the config actually run (for `seen`)."""
    self.x_ran = np.asarray(view["config_features_AxD"][a], np.float64)
    return a

  def rung_of(self, action) -> int:
    return len(self.rungs) - 1 if self.ctx.cand_fid_A[action] == self.ctx.target else 0

  def rung_action(self, view, x, r) -> int:
    f = self.rungs[r]
    return peer_base.nearest(x, view,
                             peer_base.open_actions(view) & (self.ctx.cand_fid_A == f), self.sd)

  def done(self, view) -> bool:
    """No target run is affordable any more: the recommendation cannot change, so the remaining
    budget goes on cheap fallback runs without asking the optimizer (saves decision time)."""
    return not (peer_base.open_actions(view) & view["is_target_A"]).any()

  def eats_reserve(self, view, a) -> bool:
    """A cheap run `a` would leave no budget, or no turn, for the reserved target run."""
    if view["is_target_A"][a]:
      return False
    return (float(view["budget_left"]) - float(view["cost_A"][a]) < 1.0 - 1e-6
            or int(view["turn"]) + 1 >= self.ctx.task.max_turns)

  def promote(self, view, x_default) -> int:
    ok = peer_base.open_actions(view) & view["is_target_A"]
    order = sorted(self.seen, key=lambda s: (-s[0], -s[1]))
    x = order[0][2] if order else x_default
    a = peer_base.nearest(x, view, ok, self.sd)
    return self.ran(view, a if a >= 0 else peer_base.fallback(view, self.rng))
