"""Your own tables in the main job: a spec table that is only tested appears on the leaderboard,
in the transcripts and the plots; a bad spec path or targets entry is one `error:` line."""
import concurrent.futures
import json
import os

import numpy as np

import lr_bs_sweep  # tests/lr_bs_sweep.py
from autollmr import cli
from autollmr import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _write_spec(folder) -> str:
  """runs.csv (generated: lr x batch size at three model sizes) and spec.json; the spec's path."""
  rng = np.random.default_rng(1)
  rows = ["lr,bs,params,loss"]
  for n in (1e7, 1e8, 1e9):
    for lr in (1e-4, 3e-4, 1e-3, 3e-3):
      for bs in (64, 256):
        loss = 3 - 0.1 * np.log10(n) + 0.3 * (np.log10(lr) + 3) ** 2 + 0.01 * rng.normal()
        rows.append(f"{lr},{bs},{n:g},{loss:.5f}")
  (folder / "runs.csv").write_text("\n".join(rows) + "\n")
  spec = lr_bs_sweep.lr_bs_spec("mine", "pretraining_hparams", "runs.csv")
  (folder / "spec.json").write_text(json.dumps(spec))
  return str(folder / "spec.json")


def test_a_test_only_spec_table_in_the_main_job(tmp_path, monkeypatch, run_command,
                                                one_error_line):
  spec = os.path.relpath(_write_spec(tmp_path), REPO)  # relative to the command's directory
  env = dict(AUTOLLMR_CACHE=str(tmp_path / "cache"), AUTOLLMR_NO_PROGRESS="1")
  work = tmp_path / "w"
  main = ("autollmr.main", "--config=configs/eval.py", f"--config.tasks.test_specs={spec}",
          "--config.tasks.families=mine,synthetic_regmix", "--config.tasks.budgets=1,2",
          "--config.eval.methods=random,topk_transfer", "--config.eval.seeds=2",
          "--config.eval.workers=0", f"--workdir={work}")
  mistakes = [  # (args, what the line must name)
      (("autollmr.main", "--config=configs/eval.py", "--config.tasks.test_specs=nope/spec.json",
        f"--workdir={tmp_path / 'x'}"), "--config.tasks.test_specs: spec file not found: nope"),
      (("autollmr.main", "--config=configs/eval.py", f"--config.tasks.specs={spec}",
        "--config.tasks.targets=mine=N=70B", f"--workdir={tmp_path / 'y'}"),
       "no such fidelity; its fidelities: ['N=10M', 'N=100M', 'N=1B']"),
  ]
  with concurrent.futures.ThreadPoolExecutor(2) as ex:  # each a subprocess: fill both cores
    ran = ex.submit(run_command, *main, env=env)
    errs = list(ex.map(lambda m: run_command(*m[0], env=env), mistakes))
    r = ran.result()
  for (args, names), e in zip(mistakes, errs):
    assert names in one_error_line(e), (args, e.stderr)
  assert r.returncode == 0, r.stderr[-3000:]
  assert "mine                        0 /   0 /   2   test targets: N=1B" in r.stdout, r.stdout
  res = work / "results"
  rows = json.loads((res / "leaderboard.json").read_text())
  assert {(x["method"], x["family"]) for x in rows} >= {
      ("random", "mine"), ("topk_transfer", "mine"), ("random", "synthetic_regmix")}
  assert "mine" in (res / "leaderboard.md").read_text()
  assert any(f.startswith("mine__") for f in os.listdir(res / "transcripts"))
  assert (res / "landscape_mine.png").exists()
  # Commands that rebuild the tables from the workdir's config.json (transcripts, plots, export,
  # rl_audit) see the spec table from any directory: config.json holds the absolute path.
  config = cli.workdir_config(str(work))
  assert config.tasks.test_specs == os.path.join(str(tmp_path), "spec.json")
  monkeypatch.chdir(tmp_path)
  monkeypatch.setenv("AUTOLLMR_CACHE", env["AUTOLLMR_CACHE"])
  monkeypatch.setenv("AUTOLLMR_DATA", "none")  # as in the command (run_command)
  tables, splits = pipeline.build_tables(config)
  assert set(tables) == {"mine", "synthetic_regmix"}
  assert splits["mine"]["test"] and not splits["mine"]["train"] + splits["mine"]["val"]
  assert pipeline.load_table(config, "mine").fidelity_names == ("N=10M", "N=100M", "N=1B")
