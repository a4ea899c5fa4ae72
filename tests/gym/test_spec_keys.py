"""The spec keys that read real sweeps as they come: derive, where, run, categorical config
columns, objective means over columns and rows, validity flags and caps, family, cost order."""
import json

import numpy as np
import pandas as pd
import pytest

from autollmr.gym import sources
from autollmr.gym import spec as spec_lib


def _long_runs() -> pd.DataFrame:
  """runs x step x domain, the mixture as one '-'-joined column, a text layout column."""
  rows = []
  for run, (mix, layout, params) in enumerate([("0.5-0.5", "1in8", 1e7), ("0.2-0.8", "2in8", 1e7),
                                               ("0.5-0.5", "1in8", 1e8), ("0.2-0.8", "2in8", 1e8),
                                               ("0.8-0.2", "1in8", 1e8)]):
    for step in (100, 200):
      for d, dom in enumerate(("web", "code")):
        w = float(mix.split("-")[0])
        rows.append(dict(run=f"r{run}", mix=mix, layout=layout, params=params, step=step,
                         domain=dom, loss=3.0 - 0.1 * np.log10(params) + w * d - 0.001 * step))
  return pd.DataFrame(rows)


def _compile(tmp_path, df, drop=(), **keys):
  df.to_csv(tmp_path / "runs.csv", index=False)
  spec = {"name": "mine", "family": "data_mixture_pretrain", "csv": "runs.csv",
          "derive": [{"split": "mix", "sep": "-", "names": ["w_web", "w_code"]}],
          "config": [{"column": "w_web"}, {"column": "layout", "categorical": "onehot",
                                           "levels": ["1in8", "2in8"]}],
          "fidelity": {"columns": ["params"], "name_format": "{params:si}",
                       "features": [{"column": "params", "name": "log10_N",
                                     "transform": "log10"}]},
          "objective": {"column": "loss", "direction": "min", "mean_over": "domain"},
          "run": {"id": ["run"], "by": "step", "pick": "last"},
          "cost": {"formula": "6 * params * 1e9"}}
  spec.update(keys)
  for k in drop:
    del spec[k]
  path = tmp_path / "spec.json"
  path.write_text(json.dumps(spec))
  return sources.load_spec_table(str(path), use_cache=False)


def test_long_format_split_categorical_last_step_mean_over_domains(tmp_path):
  t = _compile(tmp_path, _long_runs())
  assert t.fidelity_names == ("10M", "100M")
  assert t.config_feature_names == ("w_web", "layout=1in8", "layout=2in8")
  assert t.objective == "mean loss over domain"
  assert int(t.valid_FxC.sum()) == 5
  # run r2: params 1e8, w_web 0.5, step 200: web 3.0-0.8-0.2, code + 0.5 -> mean 2.25
  c = [i for i, x in enumerate(t.config_features_CxD) if x[0] == 0.5][0]
  np.testing.assert_allclose(t.values_FxC[1, c], 2.25, rtol=1e-6)
  np.testing.assert_array_equal(t.config_features_CxD[c, 1:], [1, 0])
  assert t.excluded["not the last step of its run (spec key 'run')"] == 10
  assert t.excluded["rows merged into one per run (mean over domain)"] == 5


def test_run_pick_a_given_step_and_where_filters(tmp_path):
  df = _long_runs()
  df = df[~((df.run == "r4") & (df.step == 100))]  # r4 lacks step 100
  t = _compile(tmp_path, df, run={"id": "run", "by": "step", "pick": 100},
               where=[{"column": "layout", "in": ["1in8", "2in8"]},
                      {"column": "params", "range": [1e8, None]}])
  assert t.fidelity_names == ("100M",)
  assert t.excluded["where: not params in [100000000.0, None]"] == 8
  assert t.excluded["run without step = 100"] == 2
  np.testing.assert_allclose(t.values_FxC[0][t.valid_FxC[0]].min(), 3.0 - 0.8 - 0.1 + 0.1,
                             rtol=1e-6)
  t2 = _compile(tmp_path, _long_runs(), where=[{"column": "layout", "equals": "2in8"}])
  assert int(t2.valid_FxC.sum()) == 2


def test_ordinal_objective_columns_glob_derive_expr(tmp_path):
  df = pd.DataFrame({"lr": [1e-3, 2e-3, 1e-3, 2e-3], "size": ["s", "m", "s", "m"],
                     "params": [1e7, 1e7, 1e8, 1e8], "val/a": [3.0, 2.0, 2.5, 1.5],
                     "val/b": [1.0, 2.0, 0.5, 0.5]})
  df.to_csv(tmp_path / "r.csv", index=False)
  spec = {"name": "w", "csv": "r.csv", "family": "pretraining_hparams",
          "derive": [{"name": "lr_x2", "expr": "2 * lr"}],
          "config": [{"column": "lr_x2", "transform": "log2"},
                     {"column": "size", "categorical": "ordinal", "levels": ["s", "m"]}],
          "fidelity": {"columns": ["params"],
                       "features": [{"column": "params", "transform": "log10"}]},
          "objective": {"columns": "val/*", "direction": "min"}, "cost": {"column": "params"}}
  (tmp_path / "s.json").write_text(json.dumps(spec))
  t = sources.load_spec_table(str(tmp_path / "s.json"), use_cache=False)
  order = np.argsort(t.config_features_CxD[:, 1])  # ordinal: s = 0, m = 1
  np.testing.assert_allclose(t.config_features_CxD[order, 1], [0, 1])
  np.testing.assert_allclose(t.config_features_CxD[order, 0], np.log2([2e-3, 4e-3]), rtol=1e-6)
  np.testing.assert_allclose(t.values_FxC[:, order], [[2.0, 2.0], [1.5, 1.0]])
  spec["objective"] = {"columns": ["val/a", "val/b"], "direction": "min", "name": "avg"}
  (tmp_path / "s.json").write_text(json.dumps(spec))
  t = sources.load_spec_table(str(tmp_path / "s.json"), use_cache=False)
  assert t.objective == "avg"


def test_flag_column_cap_fill_and_missing_flagged(tmp_path):
  df = pd.DataFrame({"lr": [1e-3, 2e-3, 4e-3, 8e-3], "wd": [0.1, None, 0.1, 0.1],
                     "params": [1e7] * 4, "loss": [3.0, 1e14, None, 2.9],
                     "diverged": [0, 1, 1, 0]})
  df.to_csv(tmp_path / "r.csv", index=False)
  spec = {"name": "v", "csv": "r.csv", "family": "optimizer_choice",
          "config": [{"column": "lr", "transform": "log2"}, {"column": "wd", "fill": 0.0}],
          "fidelity": {"columns": ["params"], "features": [{"column": "params"}]},
          "objective": {"column": "loss", "direction": "min"},
          "validity": {"flag_column": "diverged", "cap_above": 10.0, "missing_flagged_as": 10.0}}
  (tmp_path / "s.json").write_text(json.dumps(spec))
  t = sources.load_spec_table(str(tmp_path / "s.json"), use_cache=False)
  assert int(t.valid_FxC.sum()) == 4 and int(t.flagged_FxC.sum()) == 2
  assert float(np.nanmax(t.values_FxC)) == 10.0
  np.testing.assert_allclose(sorted(t.config_features_CxD[:, 1]), [0.0, 0.1, 0.1, 0.1],
                             rtol=1e-6)


def test_cost_order_contradiction_warns_once_unless_declared(tmp_path, caplog):
  df = pd.DataFrame({"lr": [1e-3, 2e-3] * 3, "N": [1e7] * 2 + [1e8] * 4,
                     "D": [1e9] * 2 + [4e9] * 2 + [8e9] * 2, "loss": [3, 2.9, 2.8, 2.7, 2.6, 2.5],
                     "hours": [1, 1, 30, 30, 20, 20]})
  df.to_csv(tmp_path / "r.csv", index=False)
  spec = {"name": "o", "csv": "r.csv",
          "config": [{"column": "lr", "transform": "log2"}],
          "fidelity": {"columns": ["N", "D"], "name_format": "N={N:si},D={D:si}",
                       "features": [{"column": "N", "transform": "log10"},
                                    {"column": "D", "transform": "log10"}]},
          "objective": {"column": "loss", "direction": "min"}, "cost": {"column": "hours"}}
  (tmp_path / "s.json").write_text(json.dumps(spec))
  with caplog.at_level("WARNING"):
    sources.load_spec_table(str(tmp_path / "s.json"), use_cache=False)
  msgs = [r.getMessage() for r in caplog.records if "cost order" in r.getMessage()]
  assert len(msgs) == 1 and "N=100M,D=4B costs more than N=100M,D=8B" in msgs[0]
  caplog.clear()
  spec["cost"]["order_ok"] = True
  (tmp_path / "s.json").write_text(json.dumps(spec))
  with caplog.at_level("WARNING"):
    sources.load_spec_table(str(tmp_path / "s.json"), use_cache=False)
  assert not [r for r in caplog.records if "cost order" in r.getMessage()]


@pytest.mark.parametrize("change, expect", [
    (dict(family="pretrain"), "spec key 'family' is 'pretrain'; one of"),
    (dict(config={"column": "w_web"}), "spec key 'config' must be a list"),
    (dict(where=[{"column": "layout", "equals": "1in8", "in": ["x"]}]), "exactly one of"),
    (dict(where=[{"column": "layuot", "equals": "1in8"}]), "no column 'layuot'"),
    (dict(derive=[{"split": "mix", "sep": "-", "names": ["a", "b", "c"]}]),
     "does not split by '-' into 3 parts"),
    (dict(derive=[{"name": "x", "expr": "__import__('os')"}]), "spec key 'derive[0].expr'"),
    (dict(config=[{"column": "layout", "categorical": "onehot", "levels": ["1in8"]}]),
     "value '2in8' is not among the levels ['1in8']"),
    (dict(run={"id": ["run"], "by": "step", "pick": "middle"}), "spec key 'run.pick'"),
    (dict(drop=("run",)), "has two rows for domain = 'web'; pick one row per run"),
    (dict(objective={"columns": "val/*", "direction": "min"}), "no column matches 'val/*'"),
])
def test_bad_new_keys_name_the_place(tmp_path, change, expect):
  with pytest.raises(spec_lib.SpecError) as e:
    _compile(tmp_path, _long_runs(), **change)
  assert expect in str(e.value) and "\n" not in str(e.value)
