"""Table specs, the cache, the built-in tables and the describe command."""
import json
import os
import subprocess
import sys
import threading

import numpy as np
import pandas as pd
import pytest

from autollmr import errors
from autollmr.gym import sources
from autollmr.gym import spec as spec_lib

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HAVE_DATA = sources.find_data_dir() is not None and os.path.exists(
    os.path.join(sources.find_data_dir(), "step-law", "dense_lr_bs_loss.csv"))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv("AUTOLLMR_CACHE", str(tmp_path / "cache"))


def _runs(tmp_path, n=60, seed=0):
  """A CSV of runs at 3 model sizes: lr x batch grid, loss with a bowl, some holes."""
  rng = np.random.default_rng(seed)
  rows = []
  for size in (1e7, 1e8, 1e9):
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
      for bs in (64, 128, 256):
        if rng.random() < 0.15:
          continue  # no run here
        loss = 3 - 0.1 * np.log10(size) + (np.log10(lr) + 3.2) ** 2 + 0.01 * rng.normal()
        rows.append(dict(params=size, lr=lr, batch=bs, loss=loss, gpu_h=size / 1e7))
  df = pd.DataFrame(rows)
  path = tmp_path / "runs.csv"
  df.to_csv(path, index=False)
  return df, path


def _spec(tmp_path, **over):
  spec = {
      "name": "mine", "family": "pretraining_hparams", "csv": "runs.csv",
      "config": [{"column": "lr", "name": "log10_lr", "transform": "log10"},
                 {"column": "batch", "name": "log2_batch", "transform": "log2"}],
      "fidelity": {"columns": ["params"], "name_format": "{params:si}",
                   "features": [{"column": "params", "name": "log10_N", "transform": "log10"}]},
      "objective": {"column": "loss", "direction": "min"},
      "cost": {"column": "gpu_h", "unit": "GPU-hours"},
  }
  spec.update(over)
  path = tmp_path / "spec.json"
  path.write_text(json.dumps(spec))
  return str(path)


def test_spec_round_trips(tmp_path):
  df, _ = _runs(tmp_path)
  t = sources.load_spec_table(_spec(tmp_path))
  assert t.fidelity_names == ("10M", "100M", "1B")  # ordered by cost
  assert t.num_configs == 12
  assert int(t.valid_FxC.sum()) == len(df)
  for _, r in df.iterrows():
    f = t.fidelity_names.index({1e7: "10M", 1e8: "100M", 1e9: "1B"}[r["params"]])
    feats = np.array([np.log10(r["lr"]), np.log2(r["batch"])], np.float32)
    c = int(np.flatnonzero(np.all(np.isclose(t.config_features_CxD, feats), axis=1))[0])
    assert t.values_FxC[f, c] == np.float32(r["loss"])
  assert np.isnan(t.values_FxC[~t.valid_FxC]).all()
  np.testing.assert_allclose(t.cost_F, [1, 10, 100])


def test_cache_hit_is_identical_and_keyed_by_content(tmp_path):
  _runs(tmp_path)
  spec = _spec(tmp_path)
  t1 = sources.load_spec_table(spec)
  t2 = sources.load_spec_table(spec)  # from the zarr cache
  for k in t1.ARRAYS:
    np.testing.assert_array_equal(getattr(t1, k), getattr(t2, k))
  assert t1.metadata() == t2.metadata()
  assert len(os.listdir(os.environ["AUTOLLMR_CACHE"])) == 1
  _runs(tmp_path, seed=1)  # the CSV changes: a new cache entry, new values
  t3 = sources.load_spec_table(spec)
  assert len(os.listdir(os.environ["AUTOLLMR_CACHE"])) == 2
  assert not np.array_equal(np.nan_to_num(t1.values_FxC), np.nan_to_num(t3.values_FxC))


def test_concurrent_cache_writers_leave_one_readable_cache(tmp_path):
  """Processes building the same table at once (the test workers at collection, hosts) each
  write their own folder and rename it into place: none fails, one cache stays, and a broken
  cache (no meta.json) is replaced."""
  _runs(tmp_path)
  table = sources.load_spec_table(_spec(tmp_path), use_cache=False)
  where = str(tmp_path / "cache" / "t-key")
  os.makedirs(where)  # a broken cache: a folder without meta.json
  start = threading.Barrier(4)
  errors_seen = []

  def write():
    start.wait()
    try:
      sources.write_cached(table, where)
    except Exception as e:  # noqa: BLE001  (the test reports any)
      errors_seen.append(e)

  threads = [threading.Thread(target=write) for _ in range(4)]
  for t in threads:
    t.start()
  for t in threads:
    t.join()
  assert not errors_seen and os.listdir(tmp_path / "cache") == ["t-key"]
  back = sources.read_cached(where)
  for k in table.ARRAYS:
    np.testing.assert_array_equal(getattr(table, k), getattr(back, k))


def test_missing_objective_rows_are_counted_not_dropped_silently(tmp_path):
  df, path = _runs(tmp_path)
  df.loc[[0, 3], "loss"] = np.nan
  df.to_csv(path, index=False)
  t = sources.load_spec_table(_spec(tmp_path))
  assert t.excluded == {"objective 'loss' missing": 2}
  assert int(t.valid_FxC.sum()) == len(df) - 2
  assert sources.load_spec_table(_spec(tmp_path)).describe()["excluded_rows"] == t.excluded


def test_flagged_rows_stay_valid(tmp_path):
  _runs(tmp_path)
  t = sources.load_spec_table(_spec(tmp_path, validity={"flag_above": 2.6}))
  assert t.flagged_FxC.any()
  assert (t.valid_FxC[t.flagged_FxC]).all()
  assert (t.values_FxC[t.flagged_FxC] > 2.6).all() and not t.flagged_FxC.all()


@pytest.mark.parametrize("case,expect", [
    ("missing_file", "CSV file not found"),
    ("misspelt_column", "no column 'lrr'"),
    ("non_numeric", "line 4: value 'abc' is not a number"),
    ("fidelity_without_rows", "names fidelity '1T'"),
    ("all_nan_objective", "is empty (all NaN)"),
    ("bad_direction", "objective.direction"),
    ("bad_json", "not valid JSON"),
])
def test_bad_input_errors_name_the_place(tmp_path, case, expect):
  df, path = _runs(tmp_path)
  over = {}
  if case == "missing_file":
    over["csv"] = "nope.csv"
  elif case == "misspelt_column":
    over["config"] = [{"column": "lrr"}]
  elif case == "non_numeric":
    df["lr"] = df["lr"].astype(object)
    df.loc[2, "lr"] = "abc"
    df.to_csv(path, index=False)
  elif case == "fidelity_without_rows":
    over["fidelity"] = {
        "columns": ["params"],
        "name_format": "{params:si}",
        "values": ["10M", "1T"]
    }
  elif case == "all_nan_objective":
    df["loss"] = np.nan
    df.to_csv(path, index=False)
  elif case == "bad_direction":
    over["objective"] = {"column": "loss", "direction": "down"}
  spec = _spec(tmp_path, **over)
  if case == "bad_json":
    open(spec, "w").write("{not json")
  with pytest.raises(spec_lib.SpecError) as e:
    sources.load_spec_table(spec)
  msg = str(e.value)
  assert expect in msg, msg
  if case in ("misspelt_column", "non_numeric", "all_nan_objective"):
    assert "runs.csv" in msg
  if case == "misspelt_column":
    assert "did you mean ['lr']" in msg


def test_no_data_dir_gives_synthetic_tables(monkeypatch):
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  names = sources.available_tables()
  assert "grpo" in names and all(n.startswith("synthetic_") or n == "grpo" for n in names)
  t = sources.load_table("synthetic_hwgpt_lat")
  assert t.valid_FxC.sum() < sources.load_table("synthetic_hwgpt").valid_FxC.sum()


def test_explicit_missing_data_dir_is_an_error(monkeypatch):
  monkeypatch.setenv("AUTOLLMR_DATA", "/no/such/dir")
  with pytest.raises(errors.UserError, match="AUTOLLMR_DATA"):
    sources.find_data_dir()


@pytest.mark.skipif(not HAVE_DATA, reason="no data directory")
def test_describe_json_real_tables():
  out = subprocess.run(
      [sys.executable, "-m", "autollmr.gym", "describe", "--json"], cwd=REPO,
      capture_output=True, text=True, check=True, timeout=120).stdout
  d = {x["name"]: x for x in json.loads(out)}
  nv = lambda n: [f["n_valid"] for f in d[n]["fidelities"]]
  assert len(d["steplaw_dense"]["fidelities"]) == 17
  assert nv("hwgpt") == [10000, 5245, 429]
  assert nv("admire") == [256, 128, 76]
  assert nv("regmix") == [256, 256]
  assert d["grpo"]["provenance"] == "semi-synthetic" and len(d["grpo"]["fidelities"]) >= 3
  assert sum(f["n_flagged"] for f in d["steplaw_dense"]["fidelities"]) == 181
  assert d["hwgpt"]["excluded_rows"] == {"objective 'perplexity' missing": 14326}
  assert d["hwgpt"]["aux_metrics"] == ["lat_ms_h100", "mem_MB_a100"]


def test_describe_without_data_dir():
  env = dict(os.environ, AUTOLLMR_DATA="none")
  out = subprocess.run([sys.executable, "-m", "autollmr.gym", "describe", "--json"], cwd=REPO,
                       capture_output=True, text=True, check=True, timeout=120, env=env).stdout
  d = json.loads(out)
  assert {x["provenance"] for x in d} == {"synthetic", "semi-synthetic"}
  txt = subprocess.run([sys.executable, "-m", "autollmr.gym", "describe"], cwd=REPO,
                       capture_output=True, text=True, check=True, timeout=120, env=env).stdout
  assert "synthetic_steplaw_dense" in txt and "Spearman" in txt




def test_builtin_specs_are_found():
  """The built-in specs sit in data_tables/specs of this checkout (a wrong repo path would fall
  back to the synthetic tables silently, beside the data directory too)."""
  assert os.path.isfile(os.path.join(sources.SPEC_DIR, "steplaw_dense.json"))
  assert sources.REPO_DIR == REPO
  for name in sources.REAL_TABLES:
    assert sources.builtin_spec(name)["name"] == name
