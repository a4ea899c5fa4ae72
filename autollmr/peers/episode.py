"""One peer episode on the ReferenceEnv, and a smaller budget's episode read off a larger one."""
from __future__ import annotations

import time

import numpy as np

from autollmr.peers.base import PeerContext


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
