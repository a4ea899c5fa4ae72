"""The advisor: valid suggestions at a withheld target with their revealed regret, statelessness
over the CSV, and refusals that name what is missing."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from autollmr.advisor import answer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TARGET = "N=1.07B,D=20B"  # the target of the `sweep` fixture (tests/advisor/conftest.py)


def _true_regret(table, features: dict) -> tuple[int, float]:
  """(config index, regret) of a suggested config at TARGET, from the full table."""
  t = table.fidelity_index(TARGET)
  x = np.array([features[n] for n in table.config_feature_names])
  c = int(np.flatnonzero(np.all(np.isclose(table.config_features_CxD, x, atol=1e-5), 1))[0])
  v = table.values_FxC[t][table.valid_FxC[t]]
  return c, float((table.values_FxC[t, c] - v.min()) / (v.max() - v.min()))


def _check(out, table, k):
  t = table.fidelity_index(TARGET)
  assert out["known"]["target_runs"] == 0 and len(out["suggestions"]) == k
  labels = [s["label"] for s in out["suggestions"]]
  assert len(set(labels)) == k  # k different configs
  for s in out["suggestions"]:
    c, regret = _true_regret(table, s["features"])
    assert table.valid_FxC[t, c]  # a valid config of the target
    assert s["revealed"] is not None
    assert np.isclose(s["revealed"]["regret"], regret, atol=1e-5)
    assert np.isclose(s["revealed"]["value"], table.values_FxC[t, c], rtol=1e-6)
    assert np.isfinite(s["predicted"]["value"]) and s["predicted"]["spread"] >= 0
    assert s["evidence"]


def test_peer_suggestions_are_target_configs_with_revealed_regret(sweep, table):
  """The acceptance test, through the command line: --method, --json, --reveal."""
  env = dict(os.environ, AUTOLLMR_DATA="none")
  cmd = [sys.executable, "-m", "autollmr.advise", "--spec", sweep["spec"], "--target", TARGET,
         "--k", "3", "--method", "topk_transfer", "--reveal", sweep["withheld"]]
  out = subprocess.run(cmd + ["--json"], cwd=REPO, env=env, capture_output=True, text=True,
                       timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  _check(json.loads(out.stdout), table, 3)
  text = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert "Next 3 run(s) at N=1.07B,D=20B" in text.stdout and "regret" in text.stdout


def test_agent_suggestions_are_target_configs_with_revealed_regret(sweep, table, agent_dir):
  out = answer.advise(sweep["spec"], TARGET, k=2, agent_dir=agent_dir, reveal=sweep["withheld"])
  _check(out, table, 2)
  assert out["evidence_kind"] == "saliency" and "sft policy" in out["method"]
  assert all(0 < s["policy_prob"] <= 1 for s in out["suggestions"])


def test_advisor_is_stateless_over_the_csv(sweep, table, agent_dir):
  """Run the suggestion (its withheld row joins the CSV), ask again: the search goes on."""
  first = answer.advise(sweep["spec"], TARGET, k=1, agent_dir=agent_dir,
                        reveal=sweep["withheld"])
  s1 = first["suggestions"][0]
  held = pd.read_csv(sweep["withheld"])
  x = np.array([s1["features"][n] for n in table.config_feature_names])
  row = held[np.all(np.isclose(held[list(table.config_feature_names)].to_numpy(), x,
                               atol=1e-5), 1)]
  assert len(row) == 1
  runs = pd.read_csv(sweep["runs"])
  pd.concat([runs, row], ignore_index=True).to_csv(sweep["runs"], index=False)
  second = answer.advise(sweep["spec"], TARGET, k=1, agent_dir=agent_dir,
                         reveal=sweep["withheld"])
  assert second["known"]["target_runs"] == 1
  assert second["best_so_far"]["label"] == s1["label"]
  assert second["best_so_far"]["revealed"]["regret"] == s1["revealed"]["regret"]
  assert second["candidates"] == first["candidates"] - 1
  assert second["suggestions"][0]["label"] != s1["label"]
  again = answer.advise(sweep["spec"], TARGET, k=1, agent_dir=agent_dir)
  assert again["suggestions"][0]["label"] == second["suggestions"][0]["label"]  # no hidden state


def _small_sweep(tmp_path, n_config=2, fidelity_features=True, target_rows=True):
  rng = np.random.default_rng(0)
  rows = []
  for size, gpu_h in ((1e7, 1.0), (1e8, 10.0), (1e9, 100.0)):
    if size == 1e9 and not target_rows:
      continue
    for i in range(12):
      r = {f"x{j}": float(rng.normal()) for j in range(n_config)}
      r.update(params=size, loss=float(rng.normal()), gpu_h=gpu_h)
      rows.append(r)
  pd.DataFrame(rows).to_csv(tmp_path / "runs.csv", index=False)
  spec = {"name": "mine", "csv": "runs.csv",
          "config": [{"column": f"x{j}"} for j in range(n_config)],
          "fidelity": {"columns": ["params"], "name_format": "{params:si}",
                       "features": ([{"column": "params", "name": "log10_N",
                                      "transform": "log10"}] if fidelity_features else [])},
          "objective": {"column": "loss", "direction": "min"}, "cost": {"column": "gpu_h"}}
  (tmp_path / "spec.json").write_text(json.dumps(spec))
  return str(tmp_path / "spec.json")


def test_refusals_name_what_is_missing(tmp_path, agent_dir, run_command, one_error_line):
  cases = [
      (dict(n_config=30), dict(agent_dir=agent_dir), "30 config features"),
      (dict(fidelity_features=False), dict(agent_dir=agent_dir), "no fidelity features"),
      (dict(target_rows=False), dict(method="random"), "'candidates'"),
      (dict(), dict(method="steplaw_formula"), "log10_N, log10_D"),
      (dict(), dict(), "exactly one of --agent"),
  ]
  for i, (sweep_kw, kw, says) in enumerate(cases):
    d = tmp_path / str(i)
    d.mkdir()
    spec = _small_sweep(d, **sweep_kw)
    with pytest.raises(answer.Refusal, match=says.replace("(", r"\(")):
      answer.advise(spec, "1B", k=2, **kw)
  ok = answer.advise(_small_sweep(tmp_path), "1B", k=2, method="trend")  # a healthy one
  assert len(ok["suggestions"]) == 2 and ok["known"]["target_runs"] == 12
  assert ok["candidates_from"] == "configs seen at other fidelities"
  assert "'nope'" in one_error_line(run_command(
      "autollmr.advise", f"--spec={spec}", "--target=nope", "--method=random"))
