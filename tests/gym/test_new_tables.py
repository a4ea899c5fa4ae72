"""The marin_opt and porian_isoflop tables: the marin loader, then counts on the real data."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autollmr.gym import loaders
from autollmr.gym import sources
from autollmr.gym import spec as spec_lib
from autollmr.gym import tasks
from configs import common

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = sources.find_data_dir()


def have(name: str) -> bool:
  return DATA is not None and all(os.path.exists(os.path.join(DATA, p))
                                  for p in sources.as_list(sources.builtin_spec(name)["csv"]))


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
  monkeypatch.setenv("AUTOLLMR_CACHE", str(tmp_path / "cache"))


def _marin_rows(**over):
  base = json.dumps({"learning_rate": 0.008, "epsilon": 9.999999999999999e-26, "nesterov": False,
                     "max_grad_norm": 1})
  rows = [dict(optimizer="adamw", row_type="baseline", param=np.nan, value=np.nan,
               baseline_config=base),
          dict(optimizer="adamw", row_type="ablation", param="epsilon", value="1e-25",
               baseline_config=base),
          dict(optimizer="adamw", row_type="ablation", param="max_grad_norm", value="1.0",
               baseline_config=base),
          dict(optimizer="adamw", row_type="ablation", param="learning_rate", value="0.016",
               baseline_config=base),
          dict(optimizer="adamw", row_type="ablation", param="nesterov", value="True",
               baseline_config=base)]
  df = pd.DataFrame(rows)
  for k, v in over.items():
    df.loc[1, k] = v
  df["_file"], df["_line"] = "runs.csv", np.arange(len(df)) + 2
  return df


def test_marin_loader_overrides_one_param_and_names_configs_canonically():
  out = loaders.marin(_marin_rows(), "")
  # 1e-25 == 9.999999999999999e-26 and 1.0 == 1: the same run as the baseline.
  assert len(set(out["config_id"][:3])) == 1
  assert out["config_id"].nunique() == 3
  assert out["learning_rate"].tolist() == [0.008, 0.008, 0.008, 0.016, 0.008]
  assert out["nesterov"].tolist() == [0.0, 0.0, 0.0, 0.0, 1.0]  # true/false -> 1/0
  assert json.loads(out["config_id"][0])["optimizer"] == "adamw"


@pytest.mark.parametrize("over,expect", [
    (dict(baseline_config="{not json"), "runs.csv: line 3: column 'baseline_config'"),
    (dict(param="beta3"), "runs.csv: line 3: ablated param 'beta3'"),
    (dict(row_type="sweep"), "runs.csv: line 3: column 'row_type' is 'sweep'"),
])
def test_marin_loader_errors_name_the_line(over, expect):
  with pytest.raises(spec_lib.SpecError, match=expect):
    loaders.marin(_marin_rows(**over), "")


@pytest.mark.skipif(not have("marin_opt"), reason="no marin-optimizer-sweep in the data directory")
def test_marin_opt_counts_and_curation():
  t = sources.load_table("marin_opt")
  opt = [j for j, n in enumerate(t.config_feature_names) if n.startswith("optimizer=")]
  assert len(opt) == 11 and t.num_configs == 1176
  assert t.config_features_CxD.shape[1] <= common.base().model.max_config_features
  assert t.num_fidelities == 18  # 4 sizes x 1-8x, plus 16x at 130m/300m
  # Every diverged run of the source (182 with a loss > 5, 5 NaN) is a flagged result capped at 5.
  assert int(t.flagged_FxC.sum()) == 187
  assert np.nanmax(t.values_FxC) == 5.0
  assert int(t.valid_FxC.sum()) == 1760  # 1766 with a loss - 6 repeats of the baseline
  assert t.excluded == {"objective 'final_loss' missing": 57, "duplicate rows merged by mean": 6}
  onehot = t.config_features_CxD[:, opt] > 0.5
  per_cell = (t.valid_FxC[:, :, None] & onehot[None]).sum(axis=1)  # F x optimizer
  assert int((per_cell >= 10).sum()) == 64
  assert spec_lib.order_conflicts(t) == []  # 6ND never reverses the (N, D) order
  s = tasks.curate(t)
  assert {x.target for x in s["test"]} == {"1.2b-1x", "1.2b-2x", "1.2b-4x", "1.2b-8x"}
  assert {x.target.split("-")[0] for x in s["train"]} == {"300m"}
  assert {x.target.split("-")[0] for x in s["val"]} == {"520m"}
  assert not any(v.startswith("1.2b") for x in s["train"] + s["val"] for v in x.visible)


@pytest.mark.skipif(not have("porian_isoflop"), reason="no porian IsoFLOP points in the data "
                    "directory")
def test_porian_isoflop_counts_and_curation():
  t = sources.load_table("porian_isoflop")
  assert t.num_fidelities == 12 and t.num_configs == 16 and int(t.valid_FxC.sum()) == 121
  assert int(t.flagged_FxC.sum()) == 0
  assert t.fidelity_names[-1] == "C=2.56e+19" and int(t.valid_FxC[-1].sum()) == 6
  assert np.all(np.diff(t.cost_F) > 0)
  s = tasks.curate(t)
  assert {x.target for x in s["test"]} == {"C=2.56e+19"}
  assert {x.target for x in s["val"]} == {"C=1.28e+19"}
  assert len({x.target for x in s["train"]}) == 9
  assert all(len(x.visible) == 11 for x in s["test"])


@pytest.mark.skipif(not (have("marin_opt") and have("porian_isoflop")), reason="no data")
def test_describe_shows_the_new_tables():
  out = subprocess.run(
      [sys.executable, "-m", "autollmr.gym", "describe", "--json", "--tables",
       "marin_opt,porian_isoflop"], cwd=REPO, capture_output=True, text=True, check=True,
      timeout=120).stdout
  d = {x["name"]: x for x in json.loads(out)}
  assert d["marin_opt"]["family"] == "optimizer_choice"
  assert d["porian_isoflop"]["family"] == "compute_allocation"
  assert sum(f["n_flagged"] for f in d["marin_opt"]["fidelities"]) == 187
  assert [f["n_valid"] for f in d["porian_isoflop"]["fidelities"]] == [
      8, 9, 10, 15, 14, 13, 12, 10, 9, 8, 7, 6]
