"""What every peer shares: its context (index arrays of one task) and helpers over the view.

Every peer is driven through the same `ReferenceEnv` as the agent, one decision at a time, so
cost, budget and recommendation (the env's: best observed target config) are the agent's exactly.
A peer sees only the env's per-candidate view (`ReferenceEnv.expand()`: features, known
normalized values, costs, action mask) and the `PeerContext` index arrays; the context's table is
for feature and fidelity NAMES only, never its values (tests/peers/test_peers.py checks this).

Interface: `Peer(ctx, seed)`, `act(view) -> candidate index`, `tell(action, value)` with the
normalized outcome (higher is better; None if the query was invalid). episode.run_episode plays
one. A peer never returns an action the view marks unaffordable/absent while a valid one exists.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from autollmr.gym.table import Table
from autollmr.gym.tasks import Task

PRIOR_CAP = 200  # cheap results given to TPE / SMAC as prior trials: enough, and ask stays fast


@dataclasses.dataclass
class PeerContext:
  table: Table
  task: Task
  # int config index of each candidate (from EnvParams.cand_config_NxA[i])
  cand_config_A: np.ndarray
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


def open_actions(view) -> np.ndarray:
  """Affordable, existing and not yet known: a query that is neither invalid nor a repeat."""
  return view["action_mask_A"] & ~view["known_A"]


def fallback(view, rng) -> int:
  """Random open target, else open cheap row, else any affordable (a repeat), else anything."""
  mask, tgt = view["action_mask_A"], view["is_target_A"]
  for ok in (open_actions(view) & tgt, open_actions(view), mask & tgt, mask):
    if ok.any():
      return int(rng.choice(np.flatnonzero(ok)))
  return 0  # nothing affordable: the env has ended the episode or will


def scaler(ctx, view):
  """Mean / std of the config features over existing candidates (std 0 -> 1)."""
  x = view["config_features_AxD"][ctx.cand_exists_A].astype(np.float64)
  sd = x.std(0)
  return x.mean(0), np.where(sd > 1e-12, sd, 1.0)


def nearest(x_D, view, ok_A, sd_D) -> int:
  """The candidate in `ok_A` nearest to `x_D` in standardized feature space (-1 if none)."""
  idx = np.flatnonzero(ok_A)
  if idx.size == 0:
    return -1
  d = (((view["config_features_AxD"][idx] - x_D) / sd_D) ** 2).sum(1)
  return int(idx[np.argmin(d)])


def fid_cost(ctx, view) -> dict:
  """Cost (target units) of each fidelity that has candidates, read off the view."""
  out = {}
  for f in np.unique(ctx.cand_fid_A[ctx.cand_exists_A]):
    out[int(f)] = float(view["cost_A"][np.flatnonzero(ctx.cand_exists_A
                                                      & (ctx.cand_fid_A == f))[0]])
  return out


def fid_distance(ctx, view) -> dict:
  """Standardized fidelity-feature distance of each candidate fidelity to the target.

  Nearness by features, not cost: on steplaw the iso-FLOP cells cost the same as the target but
  differ 4x in N, and the lr optimum follows N.
  """
  fids = sorted(fid_cost(ctx, view))
  g = np.stack([view["fidelity_features_AxG"][np.flatnonzero(
      ctx.cand_exists_A & (ctx.cand_fid_A == f))[0]] for f in fids]).astype(np.float64)
  sd = g.std(0)
  g = g / np.where(sd > 1e-12, sd, 1.0)
  gt = g[fids.index(ctx.target)] if ctx.target in fids else g.mean(0)
  return {f: float(np.linalg.norm(g[k] - gt)) for k, f in enumerate(fids)}


def known_cheap_by_nearness(ctx, view, cap: int) -> np.ndarray:
  """Up to `cap` known cheap rows, whole fidelities nearest first; a fidelity cut by the cap
  keeps a spread of its results by value rank (its best alone would make TPE's 'bad' set good)."""
  dist, cost = fid_distance(ctx, view), fid_cost(ctx, view)
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


def target_box(view):
  x = view["config_features_AxD"][view["is_target_A"]].astype(np.float64)
  return x.min(0), x.max(0)
