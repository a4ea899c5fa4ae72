"""Where tables come from: the data directory, the built-in specs, a few reshaping loaders, and
the compiled-table cache (tensorstore zarr arrays + a JSON metadata file).

Data directory: --data_dir / config.data_dir, else $AUTOLLMR_DATA, else ../shared/datasets beside
the repo, else ~/.cache/autollmr/datasets. With none of them present, the real tables are
unavailable and the synthetic stand-ins (synthetic.py) are used instead.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil

from absl import logging
import numpy as np
import pandas as pd

from autollmr import spec as spec_lib
from autollmr.table import Table

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC_DIR = os.path.join(REPO_DIR, "data_tables", "specs")
REAL_TABLES = ("steplaw_dense", "hwgpt", "admire", "regmix")
GENERATED_TABLES = ("grpo",)  # semi-synthetic: needs no data directory
CACHE_VERSION = "1"  # bump when the compile logic changes, so stale caches are not reused


def find_data_dir(data_dir: str | None = None) -> str | None:
  """The data directory, in the documented order; None when there is none.

  "none" (flag or $AUTOLLMR_DATA) forces the synthetic tables; an explicit directory that does
  not exist is an error, so a typo cannot silently fall through to another directory.
  """
  for explicit, origin in ((data_dir, "--data_dir"), (os.environ.get("AUTOLLMR_DATA"),
                                                      "$AUTOLLMR_DATA")):
    if explicit:
      if explicit.lower() == "none":
        return None
      if not os.path.isdir(explicit):
        raise FileNotFoundError(f"{origin} {explicit!r} is not a directory")
      return explicit
  for c in (os.path.join(os.path.dirname(REPO_DIR), "shared", "datasets"),
            os.path.join(os.path.expanduser("~"), ".cache", "autollmr", "datasets")):
    if os.path.isdir(c):
      return c
  return None


def cache_dir() -> str:
  return os.environ.get("AUTOLLMR_CACHE",
                        os.path.join(os.path.expanduser("~"), ".cache", "autollmr", "tables"))


def builtin_spec(name: str) -> dict:
  path = os.path.join(SPEC_DIR, f"{name}.json")
  return spec_lib.load_spec(path)


def available_tables(data_dir: str | None = None) -> list[str]:
  """Names of the tables loadable here: the real ones when their data exists, plus generated."""
  d = find_data_dir(data_dir)
  names = []
  for name in REAL_TABLES:
    if d is not None and all(os.path.exists(os.path.join(d, p))
                             for p in _as_list(builtin_spec(name)["csv"])):
      names.append(name)
  if not names:
    from autollmr import synthetic  # the embedded default
    names = [t.name for t in synthetic.synthetic_tables()]
  names += [n + "_lat" for n in names if n.endswith("hwgpt")]
  return names + list(GENERATED_TABLES)


# Constrained variants: "<base>_lat" = best objective under a latency cap. Perplexity alone is
# nearly "pick the largest model"; under a cap (the median H100 latency of each space) the best
# model is a real trade-off between width, depth and heads.
CONSTRAINED = {"_lat": ("lat_ms_h100", 0.5)}


def constrain(table: Table, aux: str, quantile: float) -> Table:
  """Valid only where aux <= its `quantile` over the valid configs of each fidelity."""
  if aux not in table.aux_FxC:
    raise KeyError(f"table {table.name!r} has no side metric {aux!r}: {sorted(table.aux_FxC)}")
  a = table.aux_FxC[aux]
  valid = table.valid_FxC.copy()
  caps = []
  for f in range(table.num_fidelities):
    ok = valid[f] & np.isfinite(a[f])
    cap = float(np.quantile(a[f][ok], quantile)) if ok.any() else np.inf
    caps.append(cap)
    valid[f] = ok & (a[f] <= cap)
  excluded = dict(table.excluded)
  excluded[f"{aux} over the per-fidelity cap"] = int((table.valid_FxC & ~valid).sum())
  caps_txt = ", ".join(f"{n}: {c:.4g}" for n, c in zip(table.fidelity_names, caps))
  return table.with_changes(
      name=table.name + "_lat", valid_FxC=valid, flagged_FxC=table.flagged_FxC & valid,
      values_FxC=np.where(valid, table.values_FxC, np.nan).astype(np.float32),
      excluded=excluded,
      notes=table.notes + f" Constrained variant: {aux} <= its {quantile:.0%} quantile per "
      f"fidelity ({caps_txt}).")


def load_table(name: str, data_dir: str | None = None, use_cache: bool = True) -> Table:
  """One table by name: built-in real (from the data dir), generated, or synthetic."""
  for suffix, (aux, q) in CONSTRAINED.items():
    if name.endswith(suffix):
      return constrain(load_table(name[:-len(suffix)], data_dir, use_cache), aux, q)
  if name == "grpo":
    from autollmr import synthetic
    return synthetic.grpo_table()
  if name.startswith("synthetic_"):
    from autollmr import synthetic
    for t in synthetic.synthetic_tables():
      if t.name == name:
        return t
    raise KeyError(f"no synthetic table {name!r}")
  if name not in REAL_TABLES:
    raise KeyError(f"unknown table {name!r}; built-in: {list(REAL_TABLES + GENERATED_TABLES)} "
                   f"or synthetic_*; for your own CSV use --spec PATH")
  d = find_data_dir(data_dir)
  if d is None:
    raise FileNotFoundError(
        f"table {name!r} needs the data directory (none found: set --data_dir or AUTOLLMR_DATA)")
  return load_spec_table(builtin_spec(name), base_dir=d, use_cache=use_cache)


def load_tables(names, data_dir: str | None = None) -> dict[str, Table]:
  return {n: load_table(n, data_dir) for n in names}


def load_spec_table(spec: dict | str, base_dir: str | None = None,
                    use_cache: bool = True) -> Table:
  """Compiles a spec (dict or path) into a Table, through the cache."""
  if isinstance(spec, str):
    spec = spec_lib.load_spec(spec)
  if base_dir is None:
    base_dir = os.path.dirname(os.path.abspath(spec.get("_path", ".")))
  paths = [p if os.path.isabs(p) else os.path.join(base_dir, p) for p in _as_list(spec.get("csv"))]
  for p in paths:
    if not os.path.exists(p):
      raise spec_lib.SpecError(f"spec {spec.get('_path', spec.get('name'))}: CSV file not found: "
                               f"{p} (spec key 'csv')")
  key = _cache_key(spec, paths)
  where = os.path.join(cache_dir(), f"{spec['name']}-{key}")
  if use_cache and os.path.exists(os.path.join(where, "meta.json")):
    try:
      return read_cached(where)
    except Exception as e:  # a broken cache is rebuilt, not fatal
      logging.warning("table cache %s unreadable (%s); rebuilding", where, e)
  df, _ = spec_lib.read_csvs(spec, base_dir)
  loader = spec.get("loader")
  if loader:
    if loader not in LOADERS:
      raise spec_lib.SpecError(f"spec {spec.get('_path', spec['name'])}: unknown loader "
                               f"{loader!r}; built-in loaders: {sorted(LOADERS)}")
    df = LOADERS[loader](df, base_dir)
  table = spec_lib.compile_table(spec, df)
  if use_cache:
    try:
      write_cached(table, where)
    except OSError as e:
      logging.warning("could not write table cache %s: %s", where, e)
  return table


# --- cache ---------------------------------------------------------------------------------------

def _cache_key(spec: dict, paths: list[str]) -> str:
  h = hashlib.sha256()
  h.update(CACHE_VERSION.encode())
  h.update(json.dumps({k: v for k, v in spec.items() if k != "_path"}, sort_keys=True).encode())
  for p in paths:
    with open(p, "rb") as f:
      h.update(hashlib.sha256(f.read()).digest())
  return h.hexdigest()[:16]


def write_cached(table: Table, where: str) -> None:
  import tensorstore as ts
  tmp = where + ".tmp"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(tmp)
  arrays = {k: getattr(table, k) for k in Table.ARRAYS}
  arrays.update({"aux/" + k: v for k, v in table.aux_FxC.items()})
  for k, arr in arrays.items():
    arr = np.ascontiguousarray(arr)
    store = ts.open({"driver": "zarr", "kvstore": {"driver": "file",
                                                   "path": os.path.join(tmp, k.replace("/", "__"))}},
                    create=True, dtype=arr.dtype.name, shape=arr.shape).result()
    store.write(arr).result()
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump(table.metadata(), f, indent=1)
  shutil.rmtree(where, ignore_errors=True)
  os.replace(tmp, where)  # atomic: a reader never sees half a cache


def read_cached(where: str) -> Table:
  import tensorstore as ts
  with open(os.path.join(where, "meta.json")) as f:
    meta = json.load(f)
  arrays = {}
  for k in list(Table.ARRAYS) + ["aux/" + a for a in meta.get("aux_names", [])]:
    store = ts.open({"driver": "zarr", "kvstore": {
        "driver": "file", "path": os.path.join(where, k.replace("/", "__"))}}).result()
    arrays[k] = store.read().result()
  return Table.from_parts(meta, arrays)


# --- loaders: small reshaping steps for sources a flat spec cannot express ------------------------

# Qwen2.5 parameter counts from the model cards (total params, billions).
QWEN25_PARAMS = {"Qwen2.5-0.5B": 0.49e9, "Qwen2.5-3B": 3.09e9, "Qwen2.5-7B": 7.61e9}
# HW-GPT-Bench choices per space (automl/HW-GPT-Bench configs/config_train/owt_{s,m,l}.yaml).
HWGPT_SPACES = {
    "S": dict(embed=(192, 384, 768), layers=(10, 11, 12), heads=12),
    "M": dict(embed=(256, 512, 1024), layers=(22, 23, 24), heads=16),
    "L": dict(embed=(320, 640, 1280), layers=(34, 35, 36), heads=20),
}


def _admire(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  unknown = sorted(set(df["model"]) - set(QWEN25_PARAMS))
  if unknown:
    raise spec_lib.SpecError(f"{df['_file'].iloc[0]}: column 'model' has unknown model(s) "
                             f"{unknown}; known: {sorted(QWEN25_PARAMS)}")
  df = df.copy()
  df["model_params"] = df["model"].map(QWEN25_PARAMS)
  return df


def _hwgpt(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  df = df.copy()
  space = df["_file"].str.extract(r"hwgpt_([sml])_archs", expand=False).str.upper()
  if space.isna().any():
    raise spec_lib.SpecError(f"{df['_file'][space.isna()].iloc[0]}: file name must look like "
                             "hwgpt_{s,m,l}_archs.csv (the space is read from it)")
  df["space"] = space
  for col in ("embed_dim", "n_layer", "mean_n_head", "params"):
    spec_lib._numeric(df, col, "loader hwgpt", allow_missing=False)
  tiers = []
  for s, cfg in HWGPT_SPACES.items():
    m = (space == s).to_numpy()
    e = df.loc[m, "embed_dim"].map({v: i for i, v in enumerate(cfg["embed"])})
    d = df.loc[m, "n_layer"].map({v: i for i, v in enumerate(cfg["layers"])})
    if e.isna().any() or d.isna().any():
      r = np.flatnonzero(m)[int(np.flatnonzero((e.isna() | d.isna()).to_numpy())[0])]
      raise spec_lib.SpecError(f"{df['_file'].iloc[r]}: line {df['_line'].iloc[r]}: embed_dim/"
                               f"n_layer outside space {s}'s choices {cfg['embed']}/{cfg['layers']}")
    df.loc[m, "embed_tier"] = e.to_numpy(float)
    df.loc[m, "depth_tier"] = d.to_numpy(float)
    df.loc[m, "heads_frac"] = df.loc[m, "mean_n_head"] / cfg["heads"]
    tiers.append(s)
  df["bias"] = df["bias"].astype(str).str.lower().map({"true": 1.0, "false": 0.0})
  # The space's largest model: the fidelity feature (one number per space, known a priori).
  df["space_max_params"] = df.groupby("space")["params"].transform("max")
  return df


def _regmix(df: pd.DataFrame, base_dir: str) -> pd.DataFrame:
  """Joins each mixture file with its loss file on `index`; the size comes from the file name."""
  out = []
  for path, part in df.groupby("_file", sort=False):
    size = os.path.basename(path).split("_")[-1].split(".")[0]  # test_mixture_60m.csv -> 60m
    loss_path = os.path.join(os.path.dirname(path), f"test_pile_loss_{size}.csv")
    if not os.path.exists(loss_path):
      raise spec_lib.SpecError(f"{path}: its loss file {loss_path} is missing (loader regmix)")
    loss = pd.read_csv(loss_path)
    if "index" not in loss.columns or "index" not in part.columns:
      raise spec_lib.SpecError(f"{loss_path}: no column 'index' to join on (loader regmix)")
    merged = part.merge(loss, on="index", how="left", validate="one_to_one")
    merged["size"] = size.upper()
    out.append(merged)
  df = pd.concat(out, ignore_index=True)
  df["params"] = df["size"].map({"1M": 1e6, "60M": 60e6, "1B": 1e9})
  df["tokens"] = 1e9
  return df


LOADERS = {"admire": _admire, "hwgpt": _hwgpt, "regmix": _regmix}


def _as_list(x):
  return [] if x is None else [x] if isinstance(x, str) else list(x)
