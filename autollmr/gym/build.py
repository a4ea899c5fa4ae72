"""EnvParams from a table and tasks (host side, NumPy): each task's candidates and normalisation.

cheap_rows: the known results a task shows (capped); target_candidates: the target configs it
offers (capped by the visible results, never the target's own); make_params: the index arrays.
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from autollmr.gym.env import EnvParams
from autollmr.gym.env import EnvSizes
from autollmr.gym.table import Table
from autollmr.gym.tasks import Task


def cheap_rows(table: Table, visible: list[int], cap: int) -> list[tuple[int, int]]:
  """The (fidelity, config) results at the visible fidelities an episode can see, at most `cap`.

  Rule when over the cap: the cap is split evenly over the visible fidelities (unused share goes
  to the others, nearest-to-target first); within a fidelity, half the quota is its best results
  and half is spread evenly over the rest by rank, so the landscape's shape survives.
  """
  per = {f: np.flatnonzero(table.valid_FxC[f]) for f in visible}
  total = sum(len(v) for v in per.values())
  if total <= cap:
    return [(f, int(c)) for f in visible for c in per[f]]
  quota = {f: 0 for f in visible}
  left = cap
  order = sorted(visible, key=lambda f: -table.cost_F[f])  # nearest to the target first
  while left > 0:
    open_ = [f for f in order if quota[f] < len(per[f])]
    if not open_:
      break
    share = max(1, left // len(open_))
    for f in open_:
      give = min(share, len(per[f]) - quota[f], left)
      quota[f] += give
      left -= give
      if left == 0:
        break
  rows = []
  for f in visible:
    cs = per[f]
    ranked = cs[np.argsort(table.sign() * table.values_FxC[f, cs], kind="stable")]
    k = quota[f]
    top = ranked[: (k + 1) // 2]
    rest = ranked[(k + 1) // 2:]
    m = k - len(top)
    spread = rest[np.linspace(0, len(rest) - 1, m).round().astype(int)] if m > 0 else rest[:0]
    rows += [(f, int(c)) for c in sorted(np.concatenate([top, spread]).tolist())]
  return rows


def target_candidates(table: Table, target: int, visible: list[int], cap: int) -> np.ndarray:
  """The target configs an episode may query, at most `cap`, chosen without the target's values.

  Over the cap, configs are ranked by what the episode can see: first those with a result at the
  nearest visible fidelity (by that value), then those whose nearest result is one fidelity
  cheaper, ..., then those with none; half the cap is the top of that ranking and half is spread
  evenly over the rest, as in `cheap_rows`. (Before 2026-11-25 the ranking used the target's own
  values: every capped candidate set then held the true top configs, so in training a policy
  could learn that being a candidate means being good, which no evaluation offers, and a table
  over the eval cap would have leaked its target.)
  """
  cfgs = np.flatnonzero(table.valid_FxC[target])
  if len(cfgs) <= cap:
    return cfgs
  tier = np.full(len(cfgs), len(visible), np.int64)
  val = np.zeros(len(cfgs))
  for i, f in enumerate(sorted(visible, key=lambda f: -table.cost_F[f])):
    v = table.valid_FxC[f, cfgs] & (tier == len(visible))
    tier[v], val[v] = i, table.sign() * table.values_FxC[f, cfgs[v]]
  ranked = cfgs[np.lexsort((val, tier))]  # last key is primary: tier, then value
  top = ranked[: (cap + 1) // 2]
  rest = ranked[(cap + 1) // 2:]
  m = cap - len(top)
  spread = rest[np.linspace(0, len(rest) - 1, m).round().astype(int)]
  return np.sort(np.concatenate([top, spread]))


def make_params(table: Table, tasks: list[Task], max_cheap_rows: int = 512,
                max_target_configs: int = 512, invalid_penalty: float = 0.1,
                repeat_penalty: float = 0.0, pad_to: int | None = None,
                pad_turns_to: int | None = None,
                pad_multiple: int = 1) -> tuple[EnvParams, EnvSizes]:
  """Builds EnvParams for `tasks` on `table` (all tasks must name this table). The candidate axis
  is padded to at least `pad_to` and to a multiple of `pad_multiple`."""
  sign = table.sign()
  per_task = []
  for task in tasks:
    if task.table != table.name:
      raise ValueError(f"task {task.name!r} is on table {task.table!r}, not {table.name!r}")
    t = table.fidelity_index(task.target)
    vis = [table.fidelity_index(v) for v in task.visible]
    for v in vis:
      if table.cost_F[v] > table.cost_F[t]:
        raise ValueError(f"task {task.name!r}: visible fidelity {table.fidelity_names[v]!r} "
                         f"costs more than the target {task.target!r}")
    cheap = cheap_rows(table, vis, max_cheap_rows)
    tgt_cfgs = np.flatnonzero(table.valid_FxC[t])
    if tgt_cfgs.size == 0:
      raise ValueError(f"task {task.name!r}: target {task.target!r} has no valid config")
    cand = target_candidates(table, t, vis, max_target_configs)
    tvals = table.values_FxC[t, tgt_cfgs]  # y* over every valid config, candidates or not
    y_star = tvals[np.argmin(sign * tvals)]
    y_worst = tvals[np.argmax(sign * tvals)]
    tgt_cfgs = cand
    loc = np.zeros(table.num_fidelities, np.float32)
    scale = np.ones(table.num_fidelities, np.float32)
    for f in vis:
      v = table.values_FxC[f][table.valid_FxC[f]]
      lo, med, hi = np.percentile(v, [25, 50, 75])
      loc[f], scale[f] = med, max(hi - lo, 1e-6)
    if vis:  # the target is normalised like its nearest visible fidelity: no target stats leak
      near = max(vis, key=lambda f: table.cost_F[f])
      loc[t], scale[t] = loc[near], scale[near]
    else:
      scale[t] = 1.0
      loc[t] = 0.0
    allowed = vis + [t]
    per_task.append(dict(
        cfg=[c for _, c in cheap] + tgt_cfgs.tolist(),
        fid=[f for f, _ in cheap] + [t] * len(tgt_cfgs), n_cheap=len(cheap), target=t,
        y_star=y_star, y_worst=y_worst, loc=loc, scale=scale,
        min_cost=min(table.cost_F[f] for f in allowed) / table.cost_F[t],
        rho=task.rho, budget=task.budget, max_turns=task.max_turns))
  A = max(len(p["cfg"]) for p in per_task)
  A = max(A, pad_to or 0)
  A = -(-A // pad_multiple) * pad_multiple
  T = max(max(p["max_turns"] for p in per_task), pad_turns_to or 0)
  N = len(tasks)
  cfg = np.zeros((N, A), np.int32)
  fid = np.zeros((N, A), np.int32)
  exists = np.zeros((N, A), bool)
  cheap_m = np.zeros((N, A), bool)
  for i, p in enumerate(per_task):
    n = len(p["cfg"])
    cfg[i, :n], fid[i, :n], exists[i, :n] = p["cfg"], p["fid"], True
    cheap_m[i, :p["n_cheap"]] = True
    fid[i, n:] = p["target"]  # padding points at the target: its cost is well defined
  vals = table.values_FxC.astype(np.float32)
  signed = np.where(table.valid_FxC, sign * vals, np.nan)
  pct = np.zeros_like(vals)
  for f in range(table.num_fidelities):
    v = signed[f][table.valid_FxC[f]]
    if v.size:
      pct[f] = np.searchsorted(np.sort(v), signed[f], side="left") / v.size
  values = np.where(table.valid_FxC, vals, np.nan).astype(np.float32)
  f32 = lambda k: np.array([p[k] for p in per_task], np.float32)
  params = EnvParams(
      values_FxC=jnp.asarray(values), pct_better_FxC=jnp.asarray(pct),
      config_features_CxD=jnp.asarray(table.config_features_CxD, jnp.float32),
      fidelity_features_FxG=jnp.asarray(table.fidelity_features_FxG, jnp.float32),
      cost_F=jnp.asarray(table.cost_F, jnp.float32), sign=jnp.float32(sign),
      cand_config_NxA=jnp.asarray(cfg), cand_fid_NxA=jnp.asarray(fid),
      cand_exists_NxA=jnp.asarray(exists), cand_cheap_NxA=jnp.asarray(cheap_m),
      target_N=jnp.asarray([p["target"] for p in per_task], jnp.int32),
      y_star_N=jnp.asarray(f32("y_star")), y_worst_N=jnp.asarray(f32("y_worst")),
      loc_NxF=jnp.asarray(np.stack([p["loc"] for p in per_task])),
      scale_NxF=jnp.asarray(np.stack([p["scale"] for p in per_task])),
      min_cost_N=jnp.asarray(f32("min_cost")), rho_N=jnp.asarray(f32("rho")),
      budget_N=jnp.asarray(f32("budget")),
      max_turns_N=jnp.asarray([p["max_turns"] for p in per_task], jnp.int32),
      invalid_penalty=jnp.float32(invalid_penalty), repeat_penalty=jnp.float32(repeat_penalty))
  return params, EnvSizes(num_candidates=A, max_turns=T)
