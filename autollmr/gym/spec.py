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
  derive         list of new columns, in order: {name, expr} (arithmetic, expr.py) or
                 {split: column, sep, names: [...]} (a delimited text column into named parts)
  where          list of row filters {column, equals | in | range: [lo, hi]} (all must hold)
  run            {id: [columns], by: column, pick: "last" | "first" | value}: one row per run
  (config entries may be {column, categorical: onehot | ordinal, levels: [...]}, or carry fill)
  (objective may be {columns: [...] | "glob*", ...} or {column, mean_over: column, values?})

Rows flow: CSV -> loader -> derive -> where -> run -> objective -> config / fidelity / validity.

Every rule that drops a row counts it in `Table.excluded` (nothing is dropped silently); every
bad input raises `SpecError` naming the file, column and row, or the spec key.
"""
from __future__ import annotations

import difflib
import fnmatch
import json
import os
from typing import Any

import numpy as np
import pandas as pd

from autollmr import errors
from autollmr.gym import expr
from autollmr.gym.table import FAMILIES
from autollmr.gym.table import Table

TRANSFORMS = {
    "none": lambda x: x, "log2": np.log2, "log10": np.log10, "ln": np.log,
}
SPEC_KEYS = {"name", "family", "provenance", "notes", "csv", "loader", "config", "config_key",
             "key_decimals", "fidelity", "objective", "cost", "validity", "aux", "duplicates",
             "description", "candidates", "derive", "where", "run"}
# The JSON type of each key (a wrong type is one error line, never a traceback).
_KEY_TYPES = {"name": str, "family": str, "provenance": str, "notes": str, "description": str,
              "csv": (str, list), "loader": str, "config": list, "config_key": list,
              "key_decimals": int, "fidelity": dict, "objective": dict, "cost": dict,
              "validity": dict, "aux": list, "duplicates": str, "candidates": (str, list),
              "derive": list, "where": list, "run": dict}


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


def compile_table(spec: dict, df: pd.DataFrame, listed_may_be_empty: bool = False) -> Table:
  """Turns a frame of runs (one row per run) into a Table, following the spec.

  listed_may_be_empty: a fidelity in `fidelity.values` may have no rows here (the advisor's runs,
  whose target has planned runs only); the caller checks the union.
  """
  where = _where(spec)
  check_keys(spec)
  excluded: dict[str, int] = {}

  def exclude(mask: np.ndarray, reason: str):
    count_excluded(excluded, reason, mask.sum())
    return ~mask

  df = derive(spec, df, where)
  df = filter_rows(spec, df, where, excluded)
  df = pick_runs(spec, df, where, excluded)
  df, y, obj_col = objective_values(spec, df, where, excluded)
  obj = spec["objective"]
  if np.all(np.isnan(y)):
    raise SpecError(f"{_files(df)}: objective {obj_col!r} is empty (all NaN)")

  # Config features (transformed, snapped; a categorical column gives one or L features).
  feat_names, feats = [], []
  for i, c in enumerate(spec["config"]):
    if not isinstance(c, dict):
      raise SpecError(f"{where}: spec key 'config[{i}]' must be an object, got {c!r}")
    col = need_column(df, c.get("column"), where, f"config[{i}].column")
    if "categorical" in c:
      names_i, feats_i = _categorical(df, c, col, where, f"config[{i}]")
      feat_names += names_i
      feats += feats_i
    else:
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
      if not listed_may_be_empty and not np.any(names_s == v):
        raise SpecError(f"{where}: spec key 'fidelity.values' names fidelity {v!r} but "
                        f"{_files(df)} has no rows for it (fidelities present: "
                        f"{sorted(set(names_s))[:20]})")
    keep = exclude(~np.isin(names_s, want), "fidelity not listed in spec")
    fnames = names_s
  else:
    keep = np.ones(len(df), bool)

  # Row-level exclusions, each counted.
  val = spec.get("validity", {})
  flag = np.zeros(len(df), bool)
  if "flag_column" in val:
    fcol = need_column(df, val["flag_column"], where, "validity.flag_column")
    flag |= np.nan_to_num(numeric(df, fcol, where, allow_missing=True)) != 0
  if "missing_flagged_as" in val:  # a diverged run without a loss is still a (bad) result
    y = np.where(flag & np.isnan(y), float(val["missing_flagged_as"]), y)
  keep &= exclude(np.isnan(y) & keep, f"objective {obj_col!r} missing")
  keep &= exclude(np.any(~np.isfinite(X_NxD), axis=1) & keep, "config feature missing/invalid")
  for key, op in (("exclude_above", np.greater), ("exclude_below", np.less)):
    if key in val:
      keep &= exclude(op(y, val[key]) & keep, f"objective {key.split('_')[1]} {val[key]}")
  if "flag_above" in val:
    flag |= y > val["flag_above"]
  if "flag_below" in val:
    flag |= y < val["flag_below"]
  # A cap keeps one blown-up run (a loss of 1e14) from setting the scale of every regret.
  if "cap_above" in val:
    flag |= y > val["cap_above"]
    y = np.minimum(y, float(val["cap_above"]))
  if "cap_below" in val:
    flag |= y < val["cap_below"]
    y = np.maximum(y, float(val["cap_below"]))

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
      count_excluded(excluded, "duplicate (fidelity, config) row", 1)
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
      name=spec["name"], family=spec.get("family", "other"),
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


# --- the row steps before the table: keys, derive, where, run, objective -------------------------


def count_excluded(excluded: dict, reason: str, n) -> None:
  """Adds n dropped source rows under `reason` (nothing when n is 0)."""
  if int(n):
    excluded[reason] = excluded.get(reason, 0) + int(n)


def check_keys(spec: dict) -> None:
  """Unknown keys, missing keys, wrong JSON types and an unknown family: one line each."""
  where = _where(spec)
  unknown = set(spec) - SPEC_KEYS - {"_path"}
  if unknown:
    raise SpecError(f"{where}: unknown spec key(s) {sorted(unknown)}; known: {sorted(SPEC_KEYS)}")
  for key in ("name", "config", "fidelity", "objective"):
    if key not in spec:
      raise SpecError(f"{where}: spec key {key!r} is missing")
  for key, want in _KEY_TYPES.items():
    if key in spec and not isinstance(spec[key], want):
      names = " or ".join(_JSON_NAMES[t] for t in (want if isinstance(want, tuple) else (want,)))
      raise SpecError(f"{where}: spec key {key!r} must be {names}, got {spec[key]!r:.60}")
  family = spec.get("family", "other")
  if family not in FAMILIES:
    raise SpecError(f"{where}: spec key 'family' is {family!r}; one of {list(FAMILIES)} "
                    "(data_tables/README.md says what each means)")


_JSON_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def derive(spec: dict, df: pd.DataFrame, where: str) -> pd.DataFrame:
  """New columns: {name, expr} through the safe evaluator, or {split, sep, names}."""
  steps = spec.get("derive", [])
  if steps:
    df = df.copy()
  for i, d in enumerate(steps):
    key = f"derive[{i}]"
    if not isinstance(d, dict):
      raise SpecError(f"{where}: spec key {key!r} must be an object, got {d!r:.60}")
    if "expr" in d:
      name = d.get("name")
      if not isinstance(name, str) or not name or name in df.columns:
        raise SpecError(f"{where}: spec key '{key}.name' must be a new column name, got "
                        f"{name!r}" + (" (the CSV has that column)" if name in df.columns else ""))
      df[name] = evaluate(df, d["expr"], where, f"{key}.expr")
    elif "split" in d:
      col = need_column(df, d["split"], where, f"{key}.split")
      sep, names = d.get("sep", "-"), d.get("names")
      if not isinstance(sep, str) or not sep:
        raise SpecError(f"{where}: spec key '{key}.sep' must be a non-empty string")
      if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise SpecError(f"{where}: spec key '{key}.names' must list the parts' column names")
      clash = [n for n in names if n in df.columns]
      if clash:
        raise SpecError(f"{where}: spec key '{key}.names' {clash} already name CSV columns")
      parts = df[col].astype(str).str.split(sep, regex=False)
      bad = (parts.str.len() != len(names)) | df[col].isna()
      if bad.any():
        r = int(np.flatnonzero(bad.to_numpy())[0])
        raise SpecError(f"{df['_file'].iloc[r]}: column {col!r}, line {df['_line'].iloc[r]}: "
                        f"{df[col].iloc[r]!r} does not split by {sep!r} into {len(names)} parts "
                        f"{names} (spec key {key!r})")
      for j, n in enumerate(names):
        part = parts.str[j].str.strip()
        num = pd.to_numeric(part, errors="coerce")
        df[n] = num if num.notna().all() else part
    else:
      raise SpecError(f"{where}: spec key {key!r} needs 'expr' (with 'name') or 'split'")
  return df


def filter_rows(spec: dict, df: pd.DataFrame, where: str, excluded: dict) -> pd.DataFrame:
  """Keeps the rows every `where` filter accepts; the others are counted per filter."""
  keep = np.ones(len(df), bool)
  for i, w in enumerate(spec.get("where", [])):
    key = f"where[{i}]"
    if not isinstance(w, dict):
      raise SpecError(f"{where}: spec key {key!r} must be an object, got {w!r:.60}")
    col = need_column(df, w.get("column"), where, f"{key}.column")
    ops = [k for k in ("equals", "in", "range") if k in w]
    if len(ops) != 1:
      raise SpecError(f"{where}: spec key {key!r} needs exactly one of 'equals', 'in', 'range'")
    op = ops[0]
    if op == "range":
      rng = w["range"]
      if not (isinstance(rng, list) and len(rng) == 2 and all(
          v is None or isinstance(v, (int, float)) for v in rng)):
        raise SpecError(f"{where}: spec key '{key}.range' must be [low, high] (numbers or null)")
      x = numeric(df, col, where, allow_missing=True)
      ok = np.isfinite(x)
      if rng[0] is not None:
        ok &= x >= rng[0]
      if rng[1] is not None:
        ok &= x <= rng[1]
      text = f"{col} in [{rng[0]}, {rng[1]}]"
    else:
      want = [w["equals"]] if op == "equals" else w["in"]
      if not isinstance(want, list) or not all(isinstance(v, (str, int, float)) for v in want):
        raise SpecError(f"{where}: spec key '{key}.{op}' must be a string or number (a list "
                        "of them for 'in')")
      ok = _matches(df[col], want)
      text = f"{col} {'=' if op == 'equals' else 'in'} {want[0] if op == 'equals' else want}"
    count_excluded(excluded, f"where: not {text}", (keep & ~ok).sum())
    keep &= ok
  return df[keep].reset_index(drop=True) if not keep.all() else df


def _matches(s: pd.Series, want: list) -> np.ndarray:
  """Cells equal to any of `want`: as numbers where both are numbers, else as text."""
  num = pd.to_numeric(s, errors="coerce").to_numpy(np.float64)
  text = s.astype(str).str.strip().to_numpy()
  ok = np.zeros(len(s), bool)
  for v in want:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
      ok |= np.isclose(num, float(v), rtol=1e-9, atol=0) & np.isfinite(num)
    else:
      ok |= text == str(v)
  return ok


def pick_runs(spec: dict, df: pd.DataFrame, where: str, excluded: dict) -> pd.DataFrame:
  """Spec key `run`: one row per run (per run and `objective.mean_over` value)."""
  run = spec.get("run")
  if not run:
    return df
  ids = run.get("id")
  if isinstance(ids, str):
    ids = [ids]
  if not isinstance(ids, list) or not ids:
    raise SpecError(f"{where}: spec key 'run.id' must list the columns that identify a run")
  group = [need_column(df, c, where, f"run.id[{j}]") for j, c in enumerate(ids)]
  over = spec["objective"].get("mean_over")
  if over:
    group.append(need_column(df, over, where, "objective.mean_over"))
  by = need_column(df, run.get("by"), where, "run.by")
  x = numeric(df, by, where, allow_missing=True)
  pick = run.get("pick", "last")
  key = df[group].astype(str).agg("|".join, axis=1).to_numpy()
  if pick in ("last", "first"):
    frame = pd.DataFrame({"key": key, "x": x, "row": np.arange(len(df))}).dropna()
    g = frame.sort_values("x", kind="stable").groupby("key", sort=False)["row"]
    chosen = (g.last() if pick == "last" else g.first()).to_numpy()
    count_excluded(excluded, f"{by} missing", len(df) - len(frame))
    n = len(frame) - len(chosen)
    reason = f"not the {pick} {by} of its run (spec key 'run')"
  elif isinstance(pick, (int, float)) and not isinstance(pick, bool):
    at = np.isclose(x, float(pick)) & np.isfinite(x)
    lacking = ~np.isin(key, key[at])
    count_excluded(excluded, f"run without {by} = {pick:g}", lacking.sum())
    chosen = np.flatnonzero(at)
    _, uniq = np.unique(key[chosen], return_index=True)
    if len(uniq) != len(chosen):
      r = chosen[np.setdiff1d(np.arange(len(chosen)), uniq)[0]]
      raise SpecError(f"{df['_file'].iloc[r]}: line {df['_line'].iloc[r]}: run {key[r]!r} has "
                      f"two rows with {by} = {pick:g} (spec key 'run.id' must identify a run)")
    n = len(df) - len(chosen) - int(lacking.sum())
    reason = f"{by} other than {pick:g} (spec key 'run')"
  else:
    raise SpecError(f"{where}: spec key 'run.pick' must be 'last', 'first' or a number, "
                    f"got {pick!r}")
  count_excluded(excluded, reason, n)
  return df.iloc[np.sort(chosen)].reset_index(drop=True)


def objective_values(spec: dict, df: pd.DataFrame, where: str,
                     excluded: dict) -> tuple[pd.DataFrame, np.ndarray, str]:
  """(rows, objective per row, its name): one column, the row-wise mean of several columns, or
  (long format) the mean over the rows of a run that differ in `mean_over`."""
  obj = spec["objective"]
  if obj.get("direction") not in ("min", "max"):
    raise SpecError(f"{where}: spec key 'objective.direction' must be 'min' or 'max', "
                    f"got {obj.get('direction')!r}")
  if ("column" in obj) == ("columns" in obj):
    raise SpecError(f"{where}: spec key 'objective' needs exactly one of 'column' or 'columns'")
  if "columns" in obj:
    cols = obj["columns"]
    if isinstance(cols, str):
      cols = [c for c in df.columns if c not in ("_file", "_line") and fnmatch.fnmatchcase(c, cols)]
      if not cols:
        raise SpecError(f"{_files(df)}: no column matches {obj['columns']!r} (spec key "
                        "'objective.columns')")
    elif not isinstance(cols, list) or not cols:
      raise SpecError(f"{where}: spec key 'objective.columns' must be a list or a glob pattern")
    ys = [numeric(df, need_column(df, c, where, f"objective.columns[{j}]"), where, True)
          for j, c in enumerate(cols)]
    name = obj.get("name", f"mean of {len(cols)} columns")
    return df, np.mean(np.stack(ys), axis=0), name  # NaN where any column is missing
  col = need_column(df, obj["column"], where, "objective.column")
  y = numeric(df, col, where, allow_missing=True)
  over = obj.get("mean_over")
  if not over:
    return df, y, obj.get("name", col)
  over = need_column(df, over, where, "objective.mean_over")
  values = obj.get("values")
  levels = df[over].astype(str).str.strip()
  want = sorted(set(levels)) if values is None else [str(v) for v in values]
  run = spec.get("run")
  if run:
    ids = [run["id"]] if isinstance(run["id"], str) else list(run["id"])
  else:  # a run = its fidelity and config columns
    ids = list(spec["fidelity"].get("columns", [])) + [
        c.get("column") for c in spec["config"] if isinstance(c, dict)] + list(
            spec.get("config_key") or [])
  ids = [need_column(df, c, where, "objective.mean_over (run identity)") for c in ids]
  key = df[ids].astype(str).agg("|".join, axis=1).to_numpy()
  frame = pd.DataFrame({"key": key, "level": levels.to_numpy(), "y": y,
                        "row": np.arange(len(df))})
  frame = frame[frame["level"].isin(want)]
  dup = frame.duplicated(["key", "level"])
  if dup.any():
    r = int(frame["row"][dup].iloc[0])
    raise SpecError(f"{df['_file'].iloc[r]}: line {df['_line'].iloc[r]}: run {key[r]!r} has two "
                    f"rows for {over} = {levels.iloc[r]!r}; pick one row per run with spec key "
                    "'run' or filter with 'where'")
  g = frame.groupby("key", sort=False)
  n_levels, mean, first, size = g["level"].nunique(), g["y"].mean(), g["row"].min(), g.size()
  complete = n_levels.index[n_levels.to_numpy() == len(want)]
  count_excluded(excluded, f"{over} not among {want}", len(df) - len(frame))
  count_excluded(excluded, f"run lacks some {over} of {want}", size.drop(complete).sum())
  count_excluded(excluded, f"rows merged into one per run (mean over {over})",
                 size[complete].sum() - len(complete))
  rows = first[complete].to_numpy()
  order = np.argsort(rows)
  out = df.iloc[rows[order]].reset_index(drop=True)
  name = obj.get("name", f"mean {col} over {over}")
  return out, mean[complete].to_numpy()[order], name


def order_conflicts(table: Table) -> list[tuple[str, str]]:
  """Pairs (a, b) where a is no larger than b in every fidelity feature, smaller in one, and
  costs more: the cost order then hides a from b's tasks (curation sees cheaper fidelities)."""
  g, cost = table.fidelity_features_FxG, np.asarray(table.cost_F)
  out = []
  for a in range(table.num_fidelities):
    for b in range(table.num_fidelities):
      if (g.shape[1] and np.all(g[a] <= g[b]) and np.any(g[a] < g[b])
          and cost[a] > cost[b]):
        out.append((table.fidelity_names[a], table.fidelity_names[b]))
  return out


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


def _categorical(df, c: dict, col: str, where: str, key: str):
  """A text (or number) column with declared levels: L one-hot features or one ordinal index."""
  kind, levels = c["categorical"], c.get("levels")
  if kind not in ("onehot", "ordinal"):
    raise SpecError(f"{where}: spec key '{key}.categorical' must be 'onehot' or 'ordinal', "
                    f"got {kind!r}")
  if not isinstance(levels, list) or not levels or len(set(map(str, levels))) != len(levels):
    raise SpecError(f"{where}: spec key '{key}.levels' must list the column's distinct values")
  text = df[col].astype(str).str.strip().to_numpy()
  missing = df[col].isna().to_numpy()
  idx = np.full(len(df), np.nan)
  for j, v in enumerate(levels):
    idx[(text == str(v)) & ~missing] = j
  bad = np.isnan(idx) & ~missing
  if bad.any():
    r = int(np.flatnonzero(bad)[0])
    raise SpecError(f"{df['_file'].iloc[r]}: column {col!r}, line {df['_line'].iloc[r]}: value "
                    f"{df[col].iloc[r]!r} is not among the levels {levels} (spec key "
                    f"'{key}.levels'; {int(bad.sum())} such cells)")
  name = c.get("name", col)
  if kind == "ordinal":
    return [name], [idx]
  return ([f"{name}={v}" for v in levels],
          [np.where(np.isnan(idx), np.nan, (idx == j).astype(np.float64))
           for j in range(len(levels))])


def _feature(df, c: dict, col: str, where: str, key: str) -> np.ndarray:
  x = numeric(df, col, where, allow_missing=True)
  if "fill" in c:  # e.g. an optimizer without this hyperparameter
    x = np.where(np.isnan(x), float(c["fill"]), x)
  x = x * float(c.get("scale", 1.0))
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
