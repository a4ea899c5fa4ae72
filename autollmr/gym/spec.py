"""JSON table specs: turn any CSV of runs into a `Table`.

A spec is how a lab plugs in its own sweep history (a W&B export, a CSV of runs), and how the
built-in tables are declared too (data_tables/specs/*.json). Keys (see data_tables/README.md):

  name, family, provenance ("real" by default), notes
  csv            path (relative to the spec's `base_dir`), or a list of paths (concatenated)
  loader         optional built-in reshaping step for a source ("hwgpt", "regmix"): sources.py
  config         list of {column, name?, transform? (none|log2|log10|ln), scale?, snap?}
                 snap = grid step in transformed units (0.5 on log2 = a x sqrt2 grid)
  config_key     optional list of columns that identify a config (default: the config features)
  key_decimals   rounding of features when they are the config key (default 6)
  fidelity       {columns: [...], values?: [...] (order and the only allowed values),
                  name_format?: text with {column} / {column:si} fields, features: [{column, name?,
                  transform?, scale?}], order?: "cost" (default) | "values"}
  objective      {column, direction: "min" | "max"}
  cost           {column} (mean per fidelity) | {formula: "6*N*D", scale?} ; plus unit
                 (a formula is arithmetic over columns, checked by expr.py: nothing in a spec
                 is ever run as code)
  validity       {flag_above?, flag_below?, flag_reason?, exclude_above?, exclude_below?}
  aux            list of {column, name?}: side metrics (latency, memory) kept per cell
  duplicates     "mean" (default) | "first" | "error": rows that land in one (fidelity, config)
  candidates     optional CSV path(s) of PLANNED runs (same columns, objective empty): configs one
                 could launch, e.g. at a target without runs yet; read by advise.py, not compiled

Every rule that drops a row counts it in `Table.excluded` (nothing is dropped silently); every
bad input raises `SpecError` naming the file, column and row, or the spec key.
"""
from __future__ import annotations

import difflib
import json
import os
from typing import Any

import numpy as np
import pandas as pd

from autollmr import errors
from autollmr.gym import expr
from autollmr.gym.table import Table

TRANSFORMS = {
    "none": lambda x: x, "log2": np.log2, "log10": np.log10, "ln": np.log,
}
SPEC_KEYS = {"name", "family", "provenance", "notes", "csv", "loader", "config", "config_key",
             "key_decimals", "fidelity", "objective", "cost", "validity", "aux", "duplicates",
             "description", "candidates"}


class SpecError(errors.UserError):
  """Bad spec or bad CSV; the message names the file, column, row or spec key."""


def load_spec(path: str) -> dict:
  if not os.path.exists(path):
    raise SpecError(f"spec file not found: {path}")
  try:
    with open(path) as f:
      spec = json.load(f)
  except json.JSONDecodeError as e:
    raise SpecError(f"{path}: not valid JSON: {e}") from e
  spec.setdefault("_path", path)
  return spec


def read_csvs(spec: dict, base_dir: str) -> tuple[pd.DataFrame, list[str]]:
  """Reads the spec's CSV(s); returns the frame (with `_file`, `_line` columns) and the paths."""
  csvs = spec.get("csv")
  if csvs is None:
    raise SpecError(f"{_where(spec)}: spec key 'csv' is missing")
  csvs = [csvs] if isinstance(csvs, str) else list(csvs)
  frames, paths = [], []
  for rel in csvs:
    path = rel if os.path.isabs(rel) else os.path.join(base_dir, rel)
    if not os.path.exists(path):
      raise SpecError(f"{_where(spec)}: CSV file not found: {path} (spec key 'csv'; data "
                      f"directory {base_dir!r}; set --data_dir or AUTOLLMR_DATA)")
    try:
      df = pd.read_csv(path)
    except Exception as e:  # pandas raises several types for unreadable files
      raise SpecError(f"{path}: cannot be read as CSV: {e}") from e
    df["_file"] = path
    df["_line"] = np.arange(len(df)) + 2  # 1-based line in the file, after the header
    frames.append(df)
    paths.append(path)
  return pd.concat(frames, ignore_index=True), paths


def compile_table(spec: dict, df: pd.DataFrame) -> Table:
  """Turns a frame of runs (one row per run) into a Table, following the spec."""
  where = _where(spec)
  unknown = set(spec) - SPEC_KEYS - {"_path"}
  if unknown:
    raise SpecError(f"{where}: unknown spec key(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
  for key in ("name", "config", "fidelity", "objective"):
    if key not in spec:
      raise SpecError(f"{where}: spec key {key!r} is missing")
  excluded: dict[str, int] = {}

  def exclude(mask: np.ndarray, reason: str):
    n = int(mask.sum())
    if n:
      excluded[reason] = excluded.get(reason, 0) + n
    return ~mask

  obj = spec["objective"]
  if obj.get("direction") not in ("min", "max"):
    raise SpecError(f"{where}: spec key 'objective.direction' must be 'min' or 'max', "
                    f"got {obj.get('direction')!r}")
  obj_col = need_column(df, obj.get("column"), where, "objective.column")
  y = numeric(df, obj_col, where, allow_missing=True)
  if np.all(np.isnan(y)):
    raise SpecError(f"{_files(df)}: objective column {obj_col!r} is empty (all NaN)")

  # Config features (transformed, snapped) and fidelity columns.
  feat_names, feats = [], []
  for i, c in enumerate(spec["config"]):
    col = need_column(df, c.get("column"), where, f"config[{i}].column")
    feats.append(_feature(df, c, col, where, f"config[{i}]"))
    feat_names.append(c.get("name", col))
  X_NxD = np.stack(feats, axis=1) if feats else np.zeros((len(df), 0))

  fid = spec["fidelity"]
  fcols = fid.get("columns")
  if not fcols:
    raise SpecError(f"{where}: spec key 'fidelity.columns' is missing or empty")
  for j, col in enumerate(fcols):
    need_column(df, col, where, f"fidelity.columns[{j}]")
  fmt = fid.get("name_format") or ",".join("{%s}" % c for c in fcols)
  try:
    name_format = expr.NameFormat(fmt, list(fcols))
    fnames = np.array([name_format.format(r) for r in df[fcols].to_dict("records")],
                      dtype=object)
  except (expr.ExprError, ValueError) as e:
    raise SpecError(f"{where}: spec key 'fidelity.name_format' {fmt!r} {e}") from None
  if "values" in fid:
    want = [str(v) for v in fid["values"]]
    names_s = np.array([str(v) for v in fnames], dtype=object)
    for v in want:
      if not np.any(names_s == v):
        raise SpecError(f"{where}: spec key 'fidelity.values' names fidelity {v!r} but "
                        f"{_files(df)} has no rows for it (fidelities present: "
                        f"{sorted(set(names_s))[:20]})")
    keep = exclude(~np.isin(names_s, want), "fidelity not listed in spec")
    fnames = names_s
  else:
    keep = np.ones(len(df), bool)

  # Row-level exclusions, each counted.
  keep &= exclude(np.isnan(y) & keep, f"objective {obj_col!r} missing")
  keep &= exclude(np.any(~np.isfinite(X_NxD), axis=1) & keep, "config feature missing/invalid")
  val = spec.get("validity", {})
  for key, op in (("exclude_above", np.greater), ("exclude_below", np.less)):
    if key in val:
      keep &= exclude(op(y, val[key]) & keep, f"objective {key.split('_')[1]} {val[key]}")
  flag = np.zeros(len(df), bool)
  if "flag_above" in val:
    flag |= y > val["flag_above"]
  if "flag_below" in val:
    flag |= y < val["flag_below"]

  # Config identity: explicit key columns, else the rounded features.
  dec = int(spec.get("key_decimals", 6))
  if spec.get("config_key"):
    kcols = [need_column(df, c, where, f"config_key[{i}]")
             for i, c in enumerate(spec["config_key"])]
    keys = df[kcols].astype(str).agg("|".join, axis=1).to_numpy()
  else:
    keys = np.array(["|".join(f"{v:.{dec}f}" for v in row) for row in np.round(X_NxD, dec)],
                    dtype=object)

  rows = np.flatnonzero(keep)
  if rows.size == 0:
    raise SpecError(f"{where}: no row of {_files(df)} survives the spec's rules; "
                    f"excluded: {excluded}")
  ukeys, first = np.unique(keys[rows], return_index=True)
  key_to_c = {k: i for i, k in enumerate(ukeys)}
  configs_CxD = X_NxD[rows[first]].astype(np.float32)

  # Fidelities: names, features, costs.
  ufid = sorted(set(fnames[rows]), key=str)
  ffeat_specs = fid.get("features", [])
  ffeat_names = [g.get("name", g.get("column")) for g in ffeat_specs]
  ffeats = [_feature(df, g, need_column(df, g.get("column"), where, f"fidelity.features[{i}]"),
                     where, f"fidelity.features[{i}]") for i, g in enumerate(ffeat_specs)]
  cost_row = _cost(spec, df, where)
  per_fid = {}
  for name in ufid:
    r = rows[fnames[rows] == name]
    per_fid[name] = dict(
        feats=[float(np.nanmean(g[r])) for g in ffeats],
        cost=float(np.nanmean(cost_row[r])) if cost_row is not None else float("nan"))
  if fid.get("order", "cost") == "values" and "values" in fid:
    order = [str(v) for v in fid["values"] if str(v) in per_fid]
  elif cost_row is not None:
    order = sorted(ufid, key=lambda n: (per_fid[n]["cost"], str(n)))
  else:
    order = list(ufid)
  f_index = {n: i for i, n in enumerate(order)}
  F, C = len(order), len(ukeys)

  values = np.full((F, C), np.nan, np.float64)
  counts = np.zeros((F, C), np.int64)
  flagged = np.zeros((F, C), bool)
  aux_specs = spec.get("aux", [])
  aux_cols = [need_column(df, a.get("column"), where, f"aux[{i}].column")
              for i, a in enumerate(aux_specs)]
  aux_vals = [numeric(df, c, where, allow_missing=True) for c in aux_cols]
  aux = {a.get("name", c): np.full((F, C), np.nan, np.float64) for a, c in zip(aux_specs, aux_cols)}
  dup = spec.get("duplicates", "mean")
  if dup not in ("mean", "first", "error"):
    raise SpecError(f"{where}: spec key 'duplicates' must be mean|first|error, got {dup!r}")
  fi = np.array([f_index[n] for n in fnames[rows]])
  ci = np.array([key_to_c[k] for k in keys[rows]])
  for r, f, c in zip(rows, fi, ci):
    if counts[f, c] and dup == "error":
      raise SpecError(f"{df['_file'][r]}: line {df['_line'][r]} repeats config {keys[r]!r} at "
                      f"fidelity {order[f]!r} (spec key 'duplicates' is 'error')")
    if counts[f, c] and dup == "first":
      excluded["duplicate (fidelity, config) row"] = excluded.get(
          "duplicate (fidelity, config) row", 0) + 1
      continue
    values[f, c] = y[r] if not counts[f, c] else values[f, c] + y[r]
    for name, v in zip(aux, aux_vals):
      aux[name][f, c] = v[r] if not counts[f, c] else aux[name][f, c] + v[r]
    flagged[f, c] |= flag[r]
    counts[f, c] += 1
  merged = int((counts > 1).sum())
  if merged:
    excluded["duplicate rows merged by mean"] = int((counts[counts > 1] - 1).sum())
    values = np.where(counts > 1, values / np.maximum(counts, 1), values)
    for name in aux:
      aux[name] = np.where(counts > 1, aux[name] / np.maximum(counts, 1), aux[name])
    if "flag_above" in val:
      flagged = np.where(counts > 1, values > val["flag_above"], flagged)
  valid = counts > 0

  cost_spec = spec.get("cost", {})
  return Table(
      name=spec["name"], family=spec.get("family", spec["name"]),
      provenance=spec.get("provenance", "real"),
      objective=obj_col, direction=obj["direction"],
      fidelity_names=tuple(order), config_feature_names=tuple(feat_names),
      fidelity_feature_names=tuple(ffeat_names),
      config_features_CxD=configs_CxD,
      fidelity_features_FxG=np.array([per_fid[n]["feats"] for n in order],
                                     np.float32).reshape(F, len(ffeat_names)),
      values_FxC=values.astype(np.float32), valid_FxC=valid, flagged_FxC=flagged & valid,
      cost_F=np.array([per_fid[n]["cost"] if cost_row is not None else 1.0 for n in order]),
      cost_unit=cost_spec.get("unit", "source units" if cost_row is not None else "runs"),
      config_labels=tuple(str(k) for k in ukeys),
      aux_FxC={k: v.astype(np.float32) for k, v in aux.items()},
      excluded=excluded, notes=spec.get("notes", ""))


# --- helpers -------------------------------------------------------------------------------------


def _where(spec: dict) -> str:
  return f"spec {spec.get('_path', spec.get('name', '<inline>'))}"


def _files(df: pd.DataFrame) -> str:
  files = sorted(set(df["_file"])) if "_file" in df else ["<frame>"]
  return files[0] if len(files) == 1 else "{" + ", ".join(files) + "}"


def need_column(df: pd.DataFrame, col: Any, where: str, key: str) -> str:
  if not col:
    raise SpecError(f"{where}: spec key {key!r} is missing")
  if col not in df.columns:
    close = difflib.get_close_matches(str(col), [str(c) for c in df.columns], n=3)
    hint = f"; did you mean {close}?" if close else ""
    raise SpecError(f"{_files(df)}: no column {col!r} (named by spec key {key!r} in "
                    f"{where}){hint}")
  return col


def numeric(df: pd.DataFrame, col: str, where: str, allow_missing: bool) -> np.ndarray:
  """Numbers of a column; empty cells are NaN, anything else non-numeric is an error."""
  s = df[col]
  if s.dtype == bool:
    return s.to_numpy(np.float64)
  num = pd.to_numeric(s, errors="coerce")
  bad = num.isna() & s.notna() & (s.astype(str).str.strip() != "")
  if bad.any():
    r = int(np.flatnonzero(bad.to_numpy())[0])
    line = df["_line"].iloc[r] if "_line" in df else r + 2
    f = df["_file"].iloc[r] if "_file" in df else "<frame>"
    raise SpecError(f"{f}: column {col!r}, line {line}: value {s.iloc[r]!r} is not a number "
                    f"({int(bad.sum())} such cells; {where})")
  out = num.to_numpy(np.float64)
  if not allow_missing and np.isnan(out).any():
    r = int(np.flatnonzero(np.isnan(out))[0])
    raise SpecError(f"{df['_file'].iloc[r]}: column {col!r}, line {df['_line'].iloc[r]} is empty")
  return out


def _feature(df, c: dict, col: str, where: str, key: str) -> np.ndarray:
  x = numeric(df, col, where, allow_missing=True) * float(c.get("scale", 1.0))
  t = c.get("transform", "none")
  if t not in TRANSFORMS:
    raise SpecError(f"{where}: spec key '{key}.transform' must be one of {sorted(TRANSFORMS)}, "
                    f"got {t!r}")
  if t != "none" and np.any(x[np.isfinite(x)] <= 0):
    r = int(np.flatnonzero(np.isfinite(x) & (x <= 0))[0])
    raise SpecError(f"{df['_file'].iloc[r]}: column {col!r}, line {df['_line'].iloc[r]}: "
                    f"{t} of a non-positive value {x[r]} (spec key '{key}.transform')")
  with np.errstate(divide="ignore", invalid="ignore"):
    x = TRANSFORMS[t](x)
  if c.get("snap"):
    step = float(c["snap"])
    x = np.round(x / step) * step
  return x


def evaluate(df: pd.DataFrame, text: str, where: str, key: str) -> np.ndarray:
  """A spec expression over the frame's columns (float64, so 6*N*D cannot overflow int64)."""
  try:
    e = expr.Expression(text)
  except expr.ExprError as err:
    raise SpecError(f"{where}: spec key {key!r} {text!r} {err}") from None
  cols = {c: numeric(df, need_column(df, c, where, key), where, allow_missing=True)
          for c in e.columns}
  return e.evaluate(cols)


def _cost(spec: dict, df: pd.DataFrame, where: str) -> np.ndarray | None:
  cost = spec.get("cost")
  if not cost:
    return None
  if "column" in cost:
    col = need_column(df, cost["column"], where, "cost.column")
    out = numeric(df, col, where, allow_missing=True)
  elif "formula" in cost:
    out = evaluate(df, cost["formula"], where, "cost.formula")
  else:
    raise SpecError(f"{where}: spec key 'cost' needs 'column' or 'formula'")
  return out * float(cost.get("scale", 1.0))
