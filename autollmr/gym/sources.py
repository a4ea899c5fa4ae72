"""Where tables come from: the data directory, the built-in specs, the constrained variants and
the compiled-table cache (tensorstore zarr arrays + a JSON metadata file).

Data directory: --data_dir / config.data_dir, else $AUTOLLMR_DATA, else ../shared/datasets beside
the repo, else ~/.cache/autollmr/datasets. With none of them present, the real tables are
unavailable and the synthetic stand-ins (synthetic.py) are used instead.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import uuid

from absl import logging
import numpy as np
import tensorstore as ts

from autollmr import errors
from autollmr.gym import loaders
from autollmr.gym import spec as spec_lib
from autollmr.gym import synthetic
from autollmr.gym.table import Table

REPO_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SPEC_DIR = os.path.join(REPO_DIR, "data_tables", "specs")

REAL_TABLES = ("steplaw_dense", "hwgpt", "admire", "regmix", "marin_opt", "porian_isoflop")

GENERATED_TABLES = ("grpo",)  # semi-synthetic: needs no data directory

CACHE_VERSION = "2"  # bump when the compile logic changes, so stale caches are not reused


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
        raise errors.UserError(f"{origin} {explicit!r} is not a directory")
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
                             for p in as_list(builtin_spec(name)["csv"])):
      names.append(name)
  if not names:
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
    return synthetic.grpo_table()
  if name.startswith("synthetic_"):
    for t in synthetic.synthetic_tables():
      if t.name == name:
        return t
    raise errors.UserError(f"no synthetic table {name!r}")
  if name not in REAL_TABLES:
    raise errors.UserError(
        f"unknown table {name!r}; built-in: {list(REAL_TABLES + GENERATED_TABLES)} "
        f"or synthetic_*; for your own CSV use --spec PATH")
  d = find_data_dir(data_dir)
  if d is None:
    raise errors.UserError(
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
    spec_dir = os.path.dirname(os.path.abspath(spec.get("_path", ".")))
    # a built-in spec names its CSVs relative to the data directory, a user's to its own folder
    base_dir = (find_data_dir() or spec_dir) if spec_dir == os.path.abspath(SPEC_DIR) else spec_dir
  paths = [p if os.path.isabs(p) else os.path.join(base_dir, p) for p in as_list(spec.get("csv"))]
  for p in paths:
    if not os.path.exists(p):
      raise spec_lib.SpecError(f"spec {spec.get('_path', spec.get('name'))}: CSV file not found: "
                               f"{p} (spec key 'csv')")
  spec_lib.check_keys(spec)  # before the cache: a bad spec fails the same way every time
  key = _cache_key(spec, paths)
  where = os.path.join(cache_dir(), f"{spec['name']}-{key}")
  if use_cache and os.path.exists(os.path.join(where, "meta.json")):
    try:
      table = read_cached(where)
      warn_cost_order(spec, table)
      return table
    except Exception as e:  # a broken cache is rebuilt, not fatal
      logging.warning("table cache %s unreadable (%s); rebuilding", where, e)
  df, _ = spec_lib.read_csvs(spec, base_dir)
  loader = spec.get("loader")
  if loader:
    if loader not in loaders.LOADERS:
      raise spec_lib.SpecError(f"spec {spec.get('_path', spec['name'])}: unknown loader "
                               f"{loader!r}; built-in loaders: {sorted(loaders.LOADERS)}")
    df = loaders.LOADERS[loader](df, base_dir)
  # a listed fidelity may hold planned runs only (the advisor checks runs + planned together)
  table = spec_lib.compile_table(spec, df, listed_may_be_empty=bool(spec.get("candidates")))
  if use_cache:
    try:
      write_cached(table, where)
    except Exception as e:  # a cache that cannot be written is skipped, not fatal
      logging.warning("could not write table cache %s: %s", where, e)
  warn_cost_order(spec, table)
  return table


def warn_cost_order(spec: dict, table: Table) -> None:
  """Once per compile: fidelities whose cost contradicts their size (spec key cost.order_ok)."""
  bad = spec_lib.order_conflicts(table)
  if bad and not spec.get("cost", {}).get("order_ok"):
    pairs = "; ".join(f"{a} costs more than {b}" for a, b in bad[:8])
    logging.warning("spec %s: the cost order contradicts the fidelity features (%s%s): a "
                    "costlier fidelity is never visible to a cheaper target; fix spec key "
                    "'cost' or set cost.order_ok to true", spec.get("_path", table.name), pairs,
                    f"; {len(bad) - 8} more" if len(bad) > 8 else "")


def _cache_key(spec: dict, paths: list[str]) -> str:
  h = hashlib.sha256()
  h.update(CACHE_VERSION.encode())
  h.update(json.dumps({k: v for k, v in spec.items() if k != "_path"}, sort_keys=True).encode())
  if spec.get("loader") in loaders.LOADERS:  # a changed loader must not reuse a stale cache
    h.update(inspect.getsource(loaders.LOADERS[spec["loader"]]).encode())
  for p in paths:
    with open(p, "rb") as f:
      h.update(hashlib.sha256(f.read()).digest())
  return h.hexdigest()[:16]


def write_cached(table: Table, where: str) -> None:
  """Writes the cache in a folder of this writer's own, then renames it into place: processes
  that build the same table at once (test workers, hosts) never write into each other's files."""
  tmp = f"{where}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  os.makedirs(tmp)
  try:
    _write_arrays(table, tmp)
    try:
      os.replace(tmp, where)  # atomic: a reader never sees half a cache
    except OSError:  # `where` is there: another writer's same table, or a broken cache
      if os.path.exists(os.path.join(where, "meta.json")):
        return
      shutil.rmtree(where, ignore_errors=True)
      os.replace(tmp, where)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)


def _write_arrays(table: Table, tmp: str) -> None:
  arrays = {k: getattr(table, k) for k in Table.ARRAYS}
  arrays.update({"aux/" + k: v for k, v in table.aux_FxC.items()})
  for k, arr in arrays.items():
    arr = np.ascontiguousarray(arr)
    store = ts.open(
        {
            "driver": "zarr",
            "kvstore": {
                "driver": "file",
                "path": os.path.join(tmp, k.replace("/", "__"))
            }
        },
        create=True,
        dtype=arr.dtype.name,
        shape=arr.shape).result()
    store.write(arr).result()
  with open(os.path.join(tmp, "meta.json"), "w") as f:
    json.dump(table.metadata(), f, indent=1)


def read_cached(where: str) -> Table:
  with open(os.path.join(where, "meta.json")) as f:
    meta = json.load(f)
  arrays = {}
  for k in list(Table.ARRAYS) + ["aux/" + a for a in meta.get("aux_names", [])]:
    store = ts.open({"driver": "zarr", "kvstore": {
        "driver": "file", "path": os.path.join(where, k.replace("/", "__"))}}).result()
    arrays[k] = store.read().result()
  return Table.from_parts(meta, arrays)


def as_list(x):
  return [] if x is None else [x] if isinstance(x, str) else list(x)
