"""The one table format every part of autollmr reads.

A `Table` is one experiment family at several fidelities. Configs are the union over all
fidelities (a config may exist at some fidelities only: "configuration-space shift"); each
(fidelity, config) cell holds the objective value or NaN where no run exists.

Shapes in names: F fidelities, C configs (union), D config features, G fidelity features.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np

from autollmr import errors

PROVENANCES = ("real", "semi-synthetic", "synthetic")
# The kinds of experiment a table can be (spec key `family`, data_tables/README.md); the policy
# embeds the family.
FAMILIES = ("pretraining_hparams", "architecture", "data_mixture_ift", "data_mixture_pretrain",
            "rl_hparams", "optimizer_choice", "compute_allocation", "other")


def family_id(family: str) -> int:
  return FAMILIES.index(family) if family in FAMILIES else FAMILIES.index("other")


@dataclasses.dataclass(frozen=True, eq=False)
class Table:
  name: str
  family: str
  provenance: str  # one of PROVENANCES
  objective: str  # name of the objective column, e.g. "smooth loss"
  direction: str  # "min" or "max"
  fidelity_names: tuple[str, ...]  # ordered from cheapest to most expensive
  config_feature_names: tuple[str, ...]
  fidelity_feature_names: tuple[str, ...]
  config_features_CxD: np.ndarray  # float32; same meaning at every fidelity
  fidelity_features_FxG: np.ndarray  # float32, e.g. log10 params, log10 tokens
  values_FxC: np.ndarray  # float32 objective, NaN where no run exists
  valid_FxC: np.ndarray  # bool: a run exists and it is a candidate (e.g. has a perplexity)
  flagged_FxC: np.ndarray  # bool: valid but flagged (e.g. diverged); still a candidate
  cost_F: np.ndarray  # float64 cost of one run at each fidelity, in `cost_unit`
  cost_unit: str
  config_labels: tuple[str, ...] = ()  # human-readable id of each config (may be empty)
  aux_FxC: dict = dataclasses.field(default_factory=dict)  # name -> float32 FxC side metric
  excluded: dict = dataclasses.field(default_factory=dict)  # reason -> number of source rows
  notes: str = ""  # provenance, caveats, license in one paragraph

  def __post_init__(self):
    F, C = self.values_FxC.shape
    problems = []
    if self.direction not in ("min", "max"):
      problems.append(f"direction must be 'min' or 'max', got {self.direction!r}")
    if self.provenance not in PROVENANCES:
      problems.append(f"provenance must be one of {PROVENANCES}, got {self.provenance!r}")
    if len(self.fidelity_names) != F:
      problems.append(f"{len(self.fidelity_names)} fidelity names for {F} fidelity rows")
    if self.config_features_CxD.shape != (C, len(self.config_feature_names)):
      problems.append(f"config_features_CxD {self.config_features_CxD.shape} != "
                      f"({C}, {len(self.config_feature_names)})")
    if self.fidelity_features_FxG.shape != (F, len(self.fidelity_feature_names)):
      problems.append(f"fidelity_features_FxG {self.fidelity_features_FxG.shape} != "
                      f"({F}, {len(self.fidelity_feature_names)})")
    for name in ("valid_FxC", "flagged_FxC"):
      if getattr(self, name).shape != (F, C):
        problems.append(f"{name} shape {getattr(self, name).shape} != {(F, C)}")
    if self.cost_F.shape != (F,):
      problems.append(f"cost_F shape {self.cost_F.shape} != ({F},)")
    for k, v in self.aux_FxC.items():
      if v.shape != (F, C):
        problems.append(f"aux metric {k!r} shape {v.shape} != {(F, C)}")
    if self.config_labels and len(self.config_labels) != C:
      problems.append(f"{len(self.config_labels)} config labels for {C} configs")
    if not problems and np.any(self.valid_FxC & np.isnan(self.values_FxC)):
      problems.append("a valid cell has a NaN value")
    if problems:
      raise ValueError(f"table {self.name!r}: " + "; ".join(problems))

  @property
  def num_fidelities(self) -> int:
    return self.values_FxC.shape[0]

  @property
  def num_configs(self) -> int:
    return self.values_FxC.shape[1]

  def fidelity_index(self, name: str) -> int:
    if name not in self.fidelity_names:
      raise errors.UserError(f"table {self.name!r} has no fidelity {name!r}; "
                             f"it has {list(self.fidelity_names)}")
    return self.fidelity_names.index(name)

  def sign(self) -> float:
    """+1 when lower is better, -1 when higher is better: `sign * value` is always a loss."""
    return 1.0 if self.direction == "min" else -1.0

  def best_value(self, f: int) -> float:
    vals = self.values_FxC[f][self.valid_FxC[f]]
    if vals.size == 0:
      return float("nan")
    return float(vals.min() if self.direction == "min" else vals.max())

  def spearman(self, f1: int, f2: int) -> tuple[float | None, int]:
    """Spearman rank correlation over configs valid at both fidelities (None if < 3)."""
    both = self.valid_FxC[f1] & self.valid_FxC[f2]
    n = int(both.sum())
    if n < 3:
      return None, n
    r1 = _ranks(self.values_FxC[f1, both])
    r2 = _ranks(self.values_FxC[f2, both])
    if r1.std() == 0 or r2.std() == 0:
      return None, n
    return float(np.corrcoef(r1, r2)[0, 1]), n

  def describe(self) -> dict:
    """The JSON-able summary printed by `python -m autollmr.gym describe --json`."""
    fids = []
    for f, name in enumerate(self.fidelity_names):
      fids.append({
          "name": name,
          "n_configs": int((~np.isnan(self.values_FxC[f])).sum()),
          "n_valid": int(self.valid_FxC[f].sum()),
          "n_flagged": int(self.flagged_FxC[f].sum()),
          "cost": float(self.cost_F[f]),
          "best_value": _none_if_nan(self.best_value(f)),
          "features": {g: float(v) for g, v in
                       zip(self.fidelity_feature_names, self.fidelity_features_FxG[f])},
      })
    pairs = []
    for f in range(self.num_fidelities - 1):
      rho, n = self.spearman(f, f + 1)
      pairs.append({"from": self.fidelity_names[f], "to": self.fidelity_names[f + 1],
                    "spearman": rho, "n_shared": n})
    return {
        "name": self.name, "family": self.family, "provenance": self.provenance,
        "objective": self.objective, "direction": self.direction,
        "cost_unit": self.cost_unit,
        "config_features": list(self.config_feature_names),
        "fidelity_features": list(self.fidelity_feature_names),
        "n_configs_union": self.num_configs,
        "fidelities": fids, "adjacent_spearman": pairs,
        "aux_metrics": sorted(self.aux_FxC),
        "excluded_rows": dict(self.excluded), "notes": self.notes,
    }

  # --- (de)serialisation helpers used by the cache -------------------------------------------
  ARRAYS = ("config_features_CxD", "fidelity_features_FxG", "values_FxC", "valid_FxC",
            "flagged_FxC", "cost_F")

  def metadata(self) -> dict:
    meta = {k.name: getattr(self, k.name) for k in dataclasses.fields(self)
            if k.name not in self.ARRAYS and k.name != "aux_FxC"}
    meta["aux_names"] = sorted(self.aux_FxC)
    return json.loads(json.dumps(meta))  # tuples -> lists, checks it is JSON-able

  @classmethod
  def from_parts(cls, meta: dict, arrays: dict) -> "Table":
    kw = dict(meta)
    aux_names = kw.pop("aux_names", [])
    kw["aux_FxC"] = {k: arrays.pop("aux/" + k) for k in aux_names}
    for k in ("fidelity_names", "config_feature_names", "fidelity_feature_names",
              "config_labels"):
      kw[k] = tuple(kw.get(k, ()))
    kw.update(arrays)
    return cls(**kw)

  def with_changes(self, **kw) -> "Table":
    return dataclasses.replace(self, **kw)


def _ranks(x: np.ndarray) -> np.ndarray:
  """Average ranks (ties share the mean rank), as Spearman needs."""
  order = np.argsort(x, kind="stable")
  ranks = np.empty(len(x), np.float64)
  ranks[order] = np.arange(len(x), dtype=np.float64)
  sorted_x = x[order]
  i = 0
  while i < len(x):
    j = i
    while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
      j += 1
    if j > i:
      ranks[order[i:j + 1]] = (i + j) / 2.0
    i = j + 1
  return ranks


def _none_if_nan(x: float):
  return None if x != x else x
