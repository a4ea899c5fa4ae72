"""A lab's sweep as the advisor reads it: a target listed in `fidelity.values` with planned runs
only, a listed fidelity with no rows anywhere (one error naming both files), and categorical
config columns given back as their levels."""
import json

import numpy as np
import pandas as pd
import pytest

from autollmr.advisor import answer
from autollmr.advisor import sweep as sweep_lib
from autollmr.gym import spec as spec_lib


def _write(tmp_path, values=None, categorical=None, where=None):
  """runs.csv at 10M / 100M, planned.csv at 1B (objective empty), and the spec."""
  rng = np.random.default_rng(0)
  rows, planned = [], []
  for size, gpu_h in ((1e7, 1.0), (1e8, 10.0), (1e9, 100.0)):
    for i in range(12):
      r = dict(x0=float(rng.normal()), opt=["adamw", "muon", "lion"][i % 3], params=size,
               loss=float(rng.normal()), gpu_h=gpu_h, step=1000)
      if size == 1e9:
        r.pop("loss")
        r.pop("step")  # a planned run has no training step yet
        planned.append(r)
      else:
        rows.append(r)
  pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
  pd.DataFrame(planned).to_csv(tmp_path / "planned.csv", index=False)
  spec = {"name": "mine", "csv": "runs.csv", "candidates": "planned.csv",
          "config": [{"column": "x0"}] + ([categorical] if categorical else []),
          "fidelity": {"columns": ["params"], "name_format": "{params:si}",
                       "features": [{"column": "params", "name": "log10_N",
                                     "transform": "log10"}]},
          "objective": {"column": "loss", "direction": "min"}, "cost": {"column": "gpu_h"}}
  if values is not None:
    spec["fidelity"]["values"] = values
  if where is not None:
    spec["where"] = where
  (tmp_path / "spec.json").write_text(json.dumps(spec))
  return str(tmp_path / "spec.json")


def test_listed_target_with_planned_runs_only(tmp_path):
  spec = _write(tmp_path, values=["10M", "100M", "1B"],
                where=[{"column": "step", "equals": 1000}])  # planned.csv has no step column
  _, table, plan = sweep_lib.load(spec)
  assert table.fidelity_names == ("10M", "100M", "1B") and plan[2].sum() == 12
  out = answer.advise(spec, "1B", k=2, method="trend")
  assert len(out["suggestions"]) == 2 and out["candidates"] == 12
  assert out["candidates_from"].startswith("planned runs")


def test_listed_fidelity_without_rows_names_both_files(tmp_path):
  spec = _write(tmp_path, values=["10M", "100M", "1B", "2B"])
  with pytest.raises(spec_lib.SpecError) as e:
    sweep_lib.load(spec)
  msg = str(e.value)
  assert "'fidelity.values'" in msg and "'2B'" in msg
  assert str(tmp_path / "runs.csv") in msg and str(tmp_path / "planned.csv") in msg


@pytest.mark.parametrize("kind", ["onehot", "ordinal"])
def test_categorical_config_given_back_as_its_level(tmp_path, kind):
  spec = _write(tmp_path, categorical={"column": "opt", "categorical": kind,
                                       "levels": ["adamw", "muon", "lion"]})
  spec_d, table, _ = sweep_lib.load(spec)
  for c in range(table.num_configs):
    cols = sweep_lib.columns(spec_d, table, c)
    assert cols["opt"] in ("adamw", "muon", "lion") and isinstance(cols["x0"], float)
  out = answer.advise(spec, "1B", k=1, method="random")
  planned = pd.read_csv(tmp_path / "planned.csv")
  s = out["suggestions"][0]["config"]
  match = planned[np.isclose(planned["x0"], s["x0"], atol=1e-5)]
  assert list(match["opt"]) == [s["opt"]]  # the level of the planned run suggested
  assert f"opt={s['opt']}" in answer.format_text(out)


def test_long_format_sweep_plays_against_long_format_withheld_rows(tmp_path):
  """Runs x step x domain rows, the mixture one '-'-joined column, a text layout column: the spec
  keys (derive, where, run, objective.mean_over, categorical) apply to the runs and the reveal
  file; the planned runs (one row per run, no step, domain or loss) still declare the target."""
  rng = np.random.default_rng(1)
  mixes = [f"{a}-{b}-{100 - a - b}" for a in (20, 40, 60) for b in (10, 20, 30)]
  rows = []
  for size, gpu_h in ((1e7, 1.0), (1e8, 10.0), (1e9, 100.0)):
    for m in mixes:
      w = [float(x) for x in m.split("-")]
      for layout in ("a", "b"):
        for step in (500, 1000):
          for dom in ("web", "code"):
            loss = 3 - 0.3 * np.log10(size / 1e7) + (w[0] - 40) ** 2 / 2e3 + 0.01 * rng.normal()
            rows.append(dict(run_id=f"{size:g}-{m}-{layout}", params=size, mix=m, layout=layout,
                             step=step, domain=dom, loss=loss + (step == 500) + (dom == "code"),
                             gpu_h=gpu_h))
  df = pd.DataFrame(rows)
  target = df["params"] == 1e9
  df[~target].to_csv(tmp_path / "runs.csv", index=False)
  df[target].to_csv(tmp_path / "withheld.csv", index=False)
  df[target & (df["step"] == 1000) & (df["domain"] == "web")].drop(
      columns=["loss", "step", "domain"]).to_csv(tmp_path / "planned.csv", index=False)
  spec = {"name": "mix", "csv": "runs.csv", "candidates": "planned.csv",
          "derive": [{"split": "mix", "sep": "-", "names": ["w_web", "w_code", "w_math"]}],
          "where": [{"column": "layout", "equals": "a"}],
          "run": {"id": ["run_id"], "by": "step", "pick": "last"},
          "config": [{"column": "w_web"}, {"column": "w_code"}],
          "fidelity": {"columns": ["params"], "name_format": "{params:si}",
                       "values": ["10M", "100M", "1B"],
                       "features": [{"column": "params", "name": "log10_N",
                                     "transform": "log10"}]},
          "objective": {"column": "loss", "mean_over": "domain", "direction": "min"},
          "cost": {"column": "gpu_h"}}
  (tmp_path / "spec.json").write_text(json.dumps(spec))
  path = str(tmp_path / "spec.json")
  out = answer.play(path, "1B", 2, str(tmp_path / "withheld.csv"), method="trend")
  assert out["candidates"] == 9 and out["revealed_n"] == 9
  # By hand: layout a, step 1000, the mean over the two domains, at 1B.
  last = df[target & (df["layout"] == "a") & (df["step"] == 1000)]
  truth = last.groupby("mix")["loss"].mean()
  for r in out["runs"]:
    mix = f"{r['config']['w_web']:g}-{r['config']['w_code']:g}-" + \
        f"{100 - r['config']['w_web'] - r['config']['w_code']:g}"
    assert np.isclose(r["value"], truth[mix], rtol=1e-6)  # float32 in the table
    assert np.isclose(r["regret"], (truth[mix] - truth.min()) / (truth.max() - truth.min()),
                      atol=1e-5)
