"""Plots: learning curves from the stages' JSONL metrics, landscapes with queries overlaid, and
the command line. (The eval stage's plots are checked by the tiny pipelines.)"""
import json

import numpy as np
import pytest

from autollmr import errors
from autollmr.evaluation import plots
from autollmr.gym import sources


def _metrics(workdir):
  (workdir / "sft").mkdir(parents=True)
  (workdir / "rl").mkdir()
  with open(workdir / "sft" / "metrics.jsonl", "w") as f:
    for s in range(10, 60, 10):
      f.write(json.dumps(dict(step=s, loss=1 / s, acc=s / 60,
                              val_regret=0.1 if s % 20 == 0 else None)) + "\n")
  with open(workdir / "rl" / "metrics.jsonl", "w") as f:
    for s in range(5, 25, 5):
      f.write(json.dumps(dict(step=s, regret=0.2 - s / 200, kl=s / 1000)) + "\n")


def test_learning_curves(tmp_path, run_command, one_error_line):
  assert "metrics.jsonl" in one_error_line(run_command(
      "autollmr.plots", "curves", f"--workdir={tmp_path}"))  # nothing trained yet
  _metrics(tmp_path)
  assert run_command("autollmr.plots", "curves", f"--workdir={tmp_path}").returncode == 0
  png = tmp_path / "results" / "learning_curves.png"
  assert png.read_bytes()[:4] == b"\x89PNG"
  assert plots.CURVES[2] == ("sft", "val_regret")  # a sparse key (checkpoints only) is drawn


def test_landscape_overlays_queries(tmp_path, run_command):
  table = sources.load_table("synthetic_hwgpt", "none")  # 3 fidelities: a quick figure
  target = table.fidelity_names[-1]
  t = table.fidelity_index(target)
  cs = np.flatnonzero(table.valid_FxC[t])[:3]
  q = dict(method="m", table=table.name, target=target, budget=3, seed=0, regret=0.1,
           recommendation=int(cs[1]),
           queries=[dict(fidelity=target, config=int(c),
                         features=table.config_features_CxD[c].tolist(),
                         value=float(table.values_FxC[t, c]), is_target=True) for c in cs])
  jx, jy = plots.default_axes(table)
  x = table.config_features_CxD
  assert jx != jy and len(np.unique(x[:, jx])) >= len(np.unique(x[:, 0]))
  path = plots.landscape(table, [q], str(tmp_path / "l.png"))
  assert open(path, "rb").read()[:4] == b"\x89PNG"
  with pytest.raises(errors.UserError, match="heads_frac"):  # names the features it has
    plots.landscape(table, [], str(tmp_path / "x.png"), axes=("lr", "bs"))
  d = tmp_path / "w" / "results" / "transcripts"
  d.mkdir(parents=True)
  (d / "queries.jsonl").write_text(json.dumps(q) + "\n")
  (tmp_path / "w" / "config.json").write_text(json.dumps(dict(data_dir="none",
                                                              tasks=dict(families=""))))
  r = run_command("autollmr.plots", "landscape", f"--workdir={tmp_path / 'w'}",
                  "--axes=embed_tier,heads_frac")  # tables from the transcripts
  assert r.returncode == 0, r.stderr
  assert (tmp_path / "w" / "results" / f"landscape_{table.name}.png").exists()
