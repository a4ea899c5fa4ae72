"""A lab's sweep as the advisor reads it: the runs and the planned runs of a spec merged into one
table, and a built-in table written out as such a sweep (a demo).
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd

from autollmr.gym import loaders
from autollmr.gym import spec as spec_lib
from autollmr.gym.table import Table

PLACEHOLDER = "_planned_objective"  # the objective column of planned rows (no result)

INVERSE = {"none": lambda x: x, "log2": lambda x: 2.0 ** x, "log10": lambda x: 10.0 ** x,
           "ln": np.exp}


def compile_rows(spec: dict, base_dir: str, csvs, planned: bool = False) -> Table:
  """A Table from some CSVs read with the spec's rules. A fidelity listed in `fidelity.values` may
  have no rows here (`load` checks runs and planned runs together). planned: rows without an
  objective (runs one could launch) get a placeholder, so they still declare configs, fidelities
  and costs; the spec's `derive` and `where` apply to them (a filter on a column the planned CSV
  lacks, such as the training step, is skipped), its objective, `run` and `validity` do not."""
  s = {k: v for k, v in spec.items() if k != "candidates"}
  s["csv"] = csvs
  df, _ = spec_lib.read_csvs(s, base_dir)
  if s.get("loader"):
    df = loaders.LOADERS[s["loader"]](df, base_dir)
  if planned:
    have = set(df.columns) | derived_columns(s)
    s["where"] = [w for w in s.get("where", []) if not isinstance(w, dict)
                  or w.get("column") in have]
    df[PLACEHOLDER] = 0.0  # never read as a result
    s["objective"] = {"column": PLACEHOLDER, "direction": spec["objective"].get("direction")}
    for key in ("validity", "run"):
      s.pop(key, None)
    s["duplicates"] = "first"
  return spec_lib.compile_table(s, df, listed_may_be_empty=True)


def derived_columns(spec: dict) -> set:
  """The columns the spec's `derive` entries add."""
  out = set()
  for d in spec.get("derive", []) if isinstance(spec.get("derive"), list) else []:
    if isinstance(d, dict):
      names = d.get("names", []) if "split" in d else [d.get("name")]
      out |= {n for n in names if isinstance(n, str)}
  return out


def merge(runs: Table, planned: Table | None) -> tuple[Table, np.ndarray]:
  """The runs' table extended by the planned rows' fidelities and configs (matched by config
  label); returns it and planned_FxC (where a planned run sits)."""
  if planned is None:
    return runs, np.zeros(runs.values_FxC.shape, bool)
  fids = list(runs.fidelity_names) + [f for f in planned.fidelity_names
                                      if f not in runs.fidelity_names]
  labels = list(runs.config_labels) + [c for c in planned.config_labels
                                       if c not in set(runs.config_labels)]
  src = lambda f: (runs, runs.fidelity_index(f)) if f in runs.fidelity_names else (
      planned, planned.fidelity_index(f))
  cost = np.array([src(f)[0].cost_F[src(f)[1]] for f in fids], np.float64)
  order = sorted(range(len(fids)), key=lambda i: (cost[i], fids[i]))
  fids = [fids[i] for i in order]
  F, C = len(fids), len(labels)
  col = {c: i for i, c in enumerate(labels)}
  feats = np.zeros((C, runs.config_features_CxD.shape[1]), np.float32)
  for t in (planned, runs):  # runs last: their features win where both have the config
    feats[[col[c] for c in t.config_labels]] = t.config_features_CxD
  values = np.full((F, C), np.nan, np.float32)
  valid = np.zeros((F, C), bool)
  flagged = np.zeros((F, C), bool)
  plan = np.zeros((F, C), bool)
  cidx = [col[c] for c in runs.config_labels]
  pidx = [col[c] for c in planned.config_labels]
  for f, name in enumerate(fids):
    if name in runs.fidelity_names:
      g = runs.fidelity_index(name)
      values[f, cidx], valid[f, cidx] = runs.values_FxC[g], runs.valid_FxC[g]
      flagged[f, cidx] = runs.flagged_FxC[g]
    if name in planned.fidelity_names:
      plan[f, pidx] = planned.valid_FxC[planned.fidelity_index(name)]
  return runs.with_changes(
      fidelity_names=tuple(fids), config_labels=tuple(labels), config_features_CxD=feats,
      fidelity_features_FxG=np.stack([src(f)[0].fidelity_features_FxG[src(f)[1]] for f in fids]),
      cost_F=np.array([src(f)[0].cost_F[src(f)[1]] for f in fids]), values_FxC=values,
      valid_FxC=valid, flagged_FxC=flagged, aux_FxC={}), plan


def load(spec_path: str) -> tuple[dict, Table, np.ndarray]:
  """(spec, table of runs + planned runs, planned_FxC). Every fidelity the spec lists in
  `fidelity.values` must have runs or planned runs (a target may have planned runs only)."""
  spec = spec_lib.load_spec(spec_path)
  base = os.path.dirname(os.path.abspath(spec_path))
  runs = compile_rows(spec, base, spec.get("csv"))
  planned = compile_rows(spec, base, spec["candidates"], planned=True) if spec.get(
      "candidates") else None
  if planned is not None and planned.config_feature_names != runs.config_feature_names:
    raise spec_lib.SpecError(f"{spec_path}: planned runs and runs disagree on config features")
  have = set(runs.fidelity_names) | set(planned.fidelity_names if planned is not None else ())
  fid = spec.get("fidelity") if isinstance(spec.get("fidelity"), dict) else {}
  for v in fid.get("values", []) if isinstance(fid.get("values"), list) else []:
    if str(v) not in have:
      files = [_paths(base, spec.get("csv"))] + (
          [_paths(base, spec["candidates"])] if spec.get("candidates") else [])
      raise spec_lib.SpecError(
          f"spec {spec_path}: spec key 'fidelity.values' names fidelity {str(v)!r} but neither "
          f"the runs ({files[0]}) nor the planned runs ("
          + (files[1] if len(files) > 1 else "none: spec key 'candidates' is not set")
          + f") have rows for it (fidelities present: {sorted(have)[:20]})")
  table, plan = merge(runs, planned)
  return spec, table, plan


def _paths(base: str, csvs) -> str:
  csvs = [csvs] if isinstance(csvs, str) else list(csvs or [])
  return ", ".join(c if os.path.isabs(c) else os.path.join(base, c) for c in csvs)


def columns(spec: dict, table: Table, c: int) -> dict:
  """A config in the CSV's own columns: each feature's transform and scale inverted; a
  categorical column gives its level back (the one-hot feature set, or the ordinal index)."""
  out, j = {}, 0
  x_D = table.config_features_CxD[c]
  for cs in spec["config"]:
    if "categorical" in cs:
      levels = cs["levels"]
      if cs["categorical"] == "onehot":
        out[cs["column"]] = levels[int(np.argmax(x_D[j:j + len(levels)]))]
        j += len(levels)
      else:
        out[cs["column"]] = levels[int(np.clip(round(float(x_D[j])), 0, len(levels) - 1))]
        j += 1
      continue
    x = float(x_D[j])
    v = INVERSE.get(cs.get("transform", "none"), lambda x: x)(x) / float(cs.get("scale", 1.0))
    out[cs["column"]] = float(f"{v:.6g}")
    j += 1
  return out


def export_table(table: Table, out_dir: str, withhold: str | None = None) -> dict:
  """Writes `table` as a CSV of runs + a spec the advisor reads (runs.csv, spec.json); with
  `withhold`, that fidelity's rows go to withheld.csv (for --reveal) and, objective removed, to
  planned.csv (the spec's 'candidates'). Returns the paths."""
  os.makedirs(out_dir, exist_ok=True)
  rows = []
  for f, c in zip(*np.nonzero(table.valid_FxC)):
    r = {n: float(x) for n, x in zip(table.config_feature_names, table.config_features_CxD[c])}
    r["fidelity"] = table.fidelity_names[f]
    r.update({
        g: float(x) for g, x in zip(table.fidelity_feature_names, table.fidelity_features_FxG[f])
    })
    r[table.objective] = float(table.values_FxC[f, c])
    r["cost"] = float(table.cost_F[f])
    rows.append(r)
  df = pd.DataFrame(rows)
  spec = {"name": table.name, "family": table.family, "csv": "runs.csv",
          "config": [{"column": n} for n in table.config_feature_names],
          "fidelity": {"columns": ["fidelity"],
                       "features": [{"column": g} for g in table.fidelity_feature_names]},
          "objective": {"column": table.objective, "direction": table.direction},
          "cost": {"column": "cost", "unit": table.cost_unit},
          "notes": f"exported from table {table.name} ({table.provenance})"}
  paths = dict(spec=os.path.join(out_dir, "spec.json"), runs=os.path.join(out_dir, "runs.csv"))
  if withhold is not None:
    table.fidelity_index(withhold)  # a clear error for a wrong name
    held = df["fidelity"] == withhold
    paths["withheld"] = os.path.join(out_dir, "withheld.csv")
    paths["planned"] = os.path.join(out_dir, "planned.csv")
    df[held].to_csv(paths["withheld"], index=False)
    df[held].drop(columns=[table.objective]).to_csv(paths["planned"], index=False)
    df = df[~held]
    spec["candidates"] = "planned.csv"
  df.to_csv(paths["runs"], index=False)
  with open(paths["spec"], "w") as f:
    json.dump(spec, f, indent=1)
  return paths
