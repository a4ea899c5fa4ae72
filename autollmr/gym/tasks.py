"""Tasks: what an episode is asked to do, and the train/test curation of them."""
from __future__ import annotations

import dataclasses

import numpy as np


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
# the top level; train targets are those at the levels strictly between the lowest and the top.
# A task sees V = the fidelities of lower levels that also cost less than its target. So training
# teaches "how results move as scale grows" and the truly expensive targets are never trained on.
# Validation: where a table has >= 2 train levels, its highest train level is held out as `val`
# (model selection happens there, never on test).


def levels(table) -> list[float]:
  names = list(table.fidelity_feature_names)
  if "log10_N" in names:
    return [round(float(v), 3) for v in table.fidelity_features_FxG[:, names.index("log10_N")]]
  return [float(f) for f in range(table.num_fidelities)]


def curate(table, budgets=(1, 2, 3, 4, 5), test_rho: float = 1.0,
           train_rhos=(1.0,), extra_turns: int = 2, online_extra_turns: int = 8) -> dict:
  """Train / val / test tasks of one table: {"train": [...], "val": [...], "test": [...]}."""
  lv = levels(table)
  ulv = sorted(set(lv))
  out = {"train": [], "val": [], "test": []}
  if len(ulv) < 2:
    return out
  names = table.fidelity_names

  def tasks_at(level, split, rhos):
    res = []
    for f in range(table.num_fidelities):
      if lv[f] != level or not table.valid_FxC[f].any():
        continue
      vis = tuple(names[g] for g in range(table.num_fidelities)  # V: lower level AND cheaper
                  if lv[g] < level and table.cost_F[g] < table.cost_F[f]
                  and table.valid_FxC[g].any())
      for rho in rhos:
        for k in budgets:
          extra = extra_turns if rho >= 1.0 else online_extra_turns
          res.append(Task(table.name, names[f], vis, rho=float(rho), budget=float(k),
                          max_turns=int(k) + extra, split=split))
    return res

  out["test"] = tasks_at(ulv[-1], "test", (test_rho,))
  train_levels = ulv[1:-1]
  for i, level in enumerate(train_levels):
    split = "val" if len(train_levels) >= 2 and i == len(train_levels) - 1 else "train"
    out[split] += tasks_at(level, split, train_rhos)
  return out


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


def lofo_splits(tables: dict, **kw) -> dict:
  """Leave-one-family-out: for each family, train on the others' train tasks, test on its own."""
  per = {name: curate(t, **kw) for name, t in tables.items()}
  out = {}
  for fam in sorted({t.family for t in tables.values()}):
    out[fam] = {
        "train": [x for n, s in per.items() if tables[n].family != fam for x in s["train"]],
        "val": [x for n, s in per.items() if tables[n].family != fam for x in s["val"]],
        "test": [x for n, s in per.items() if tables[n].family == fam for x in s["test"]],
    }
  return out


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
