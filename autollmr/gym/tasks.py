"""Tasks: what an episode is asked to do, and the train/test curation of them."""
from __future__ import annotations

import dataclasses

import numpy as np

from autollmr import errors


@dataclasses.dataclass(frozen=True)
class Task:
  """(table, target fidelity t, visible fidelities V, reveal fraction rho, budget B, turns T).

  B is in expensive-run units: B = K buys K runs at the target fidelity.
  """
  table: str
  target: str
  visible: tuple[str, ...]
  rho: float = 1.0
  budget: float = 1.0
  max_turns: int = 8
  split: str = "train"  # train | val | test

  @property
  def name(self) -> str:
    return f"{self.table}:{self.target}:K={self.budget:g}:rho={self.rho:g}"


# --- curation ------------------------------------------------------------------------------------
#
# Levels: a fidelity's scale level is its model size where the table has one (log10_N: Step Law's
# 17 (N, D) cells sit at 5 sizes), else the fidelity itself. Test targets are the fidelities at
# the top level (or the chosen `targets`); train targets are those at the levels strictly between
# the lowest and the lowest test target's level, so no fidelity at or above a test target's level
# reaches training. A task sees V = the fidelities of lower levels that also cost less than its
# target. So training teaches "how results move as scale grows" and the truly expensive targets
# are never trained on. Validation: where a table has >= 2 train levels, its highest train level
# is held out as `val` (model selection happens there, never on test). A test-only table
# (`test_only`: --config.tasks.test_specs) has test tasks only.


def levels(table) -> list[float]:
  names = list(table.fidelity_feature_names)
  if "log10_N" in names:
    return [round(float(v), 3) for v in table.fidelity_features_FxG[:, names.index("log10_N")]]
  return [float(f) for f in range(table.num_fidelities)]


ONLINE_EXTRA_TURNS = 8  # turns beyond K below rho = 1 (cheap runs must be bought first)


def curate(table, budgets=(1, 2, 3, 4, 5), test_rho: float = 1.0,
           train_rhos=(1.0,), extra_turns: int = 2,
           online_extra_turns: int = ONLINE_EXTRA_TURNS,
           targets=(), test_only: bool = False, every_level: bool = False) -> dict:
  """Train / val / test tasks of one table: {"train": [...], "val": [...], "test": [...]}.

  targets: fidelity names to test in place of the top level (training stays below the lowest
  one's level); test_only: no train / val tasks; every_level: every fidelity above the lowest
  level is a test target (a held-out family: tasks.held_out), and no train / val tasks."""
  lv = levels(table)
  ulv = sorted(set(lv))
  out = {"train": [], "val": [], "test": []}
  names = table.fidelity_names

  def tasks_for(f, split, rhos):
    vis = tuple(names[g] for g in range(table.num_fidelities)  # V: lower level AND cheaper
                if lv[g] < lv[f] and table.cost_F[g] < table.cost_F[f]
                and table.valid_FxC[g].any())
    res = []
    for rho in rhos:
      for k in budgets:
        extra = extra_turns if rho >= 1.0 else online_extra_turns
        res.append(Task(table.name, names[f], vis, rho=float(rho), budget=float(k),
                        max_turns=int(k) + extra, split=split))
    return res

  def tasks_at(level, split, rhos):
    return [t for f in range(table.num_fidelities)
            if lv[f] == level and table.valid_FxC[f].any() for t in tasks_for(f, split, rhos)]

  if every_level:
    targets = [names[f] for f in range(table.num_fidelities)
               if len(ulv) > 1 and lv[f] > ulv[0] and table.valid_FxC[f].any()]
    test_only = True
    if not targets:
      return out
  if targets:
    chosen = sorted({target_index(table, t) for t in targets})
    for f in chosen:
      out["test"] += tasks_for(f, "test", (test_rho,))
      if not out["test"][-1].visible:
        raise errors.UserError(
            f"target {names[f]!r} of table {table.name!r} has no lower-level, cheaper fidelity "
            "with results to learn from; choose a higher one")
    top = min(lv[f] for f in chosen)
  elif len(ulv) < 2:
    return out
  else:
    top = ulv[-1]
    out["test"] = tasks_at(top, "test", (test_rho,))
  if test_only:
    return out
  train_levels = [level for level in ulv[1:] if level < top]
  for i, level in enumerate(train_levels):
    split = "val" if len(train_levels) >= 2 and i == len(train_levels) - 1 else "train"
    out[split] += tasks_at(level, split, train_rhos)
  return out


def target_index(table, name: str) -> int:
  """The index of a chosen target fidelity (a user's mistake: one line listing what exists)."""
  if name not in table.fidelity_names:
    raise errors.UserError(f"target {name!r}: table {table.name!r} has no such fidelity; its "
                           f"fidelities: {list(table.fidelity_names)}")
  f = table.fidelity_names.index(name)
  if not table.valid_FxC[f].any():
    raise errors.UserError(f"target {name!r} of table {table.name!r} has no valid results to "
                           "score a choice against")
  return f


def training_table(table, tasks):
  """The table restricted to the fidelities the given (train/val) tasks use.

  Training and simulation build their env from this, so a test target's values cannot reach
  training even by accident (tests/gym/test_tasks.py checks it).
  """
  used = set()
  for t in tasks:
    used.add(t.target)
    used.update(t.visible)
  keep = [f for f, n in enumerate(table.fidelity_names) if n in used]
  return restrict(table, keep)


def restrict(table, keep: list[int]):
  keep = list(keep)
  return table.with_changes(
      fidelity_names=tuple(table.fidelity_names[f] for f in keep),
      fidelity_features_FxG=table.fidelity_features_FxG[keep],
      values_FxC=table.values_FxC[keep], valid_FxC=table.valid_FxC[keep],
      flagged_FxC=table.flagged_FxC[keep], cost_F=np.asarray(table.cost_F)[keep],
      aux_FxC={k: v[keep] for k, v in table.aux_FxC.items()})


def check_no_leak(table, split: dict) -> list[str]:
  """Problems if any test target's values could reach training (empty list: none can)."""
  problems = []
  train = split["train"] + split["val"]
  if not train:
    return problems
  view = training_table(table, train)
  for t in split["test"]:
    if t.target in view.fidelity_names:
      problems.append(f"test target {t.target!r} is a fidelity of the training view")
    if any(t.target == x.target or t.target in x.visible for x in train):
      problems.append(f"test target {t.target!r} is used by a training task")
  return sorted(set(problems))
