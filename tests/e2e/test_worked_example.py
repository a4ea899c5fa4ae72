"""data_tables/README.md's worked example, every step as a user types it: generate the long-format
sweep, describe it, back-test a method with `advise --play 5 --reveal`, and score the whole
history as a test-only table in `autollmr.main`'s leaderboard."""
import concurrent.futures
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_worked_example(tmp_path, run_command):
  out = tmp_path / "my_sweep"
  made = subprocess.run([sys.executable, os.path.join(REPO, "data_tables", "example",
                                                      "make_sweep.py"), "--out", str(out)],
                        capture_output=True, text=True, timeout=60)
  assert made.returncode == 0, made.stderr
  calls = [
      ("autollmr.gym", "describe", f"--spec={out / 'spec.json'}", "--json"),
      ("autollmr.advise", f"--spec={out / 'spec.json'}", "--target=400M",
       "--method=topk_transfer", "--play=5", f"--reveal={out / 'withheld.csv'}", "--json"),
      ("autollmr.main", "--config=configs/eval.py", f"--workdir={tmp_path / 'eval'}",
       f"--config.tasks.test_specs={out / 'history.json'}",
       "--config.tasks.families=my_sweep_history,synthetic_regmix",
       "--config.eval.methods=random,topk_transfer", "--config.eval.seeds=2",
       "--config.eval.workers=0"),
  ]
  with concurrent.futures.ThreadPoolExecutor(2) as ex:
    describe, play, main = ex.map(lambda a: run_command(*a), calls)
  for r in (describe, play, main):
    assert r.returncode == 0, r.stderr[-3000:]

  d = json.loads(describe.stdout)[0]
  assert [f["name"] for f in d["fidelities"]] == ["20M", "60M", "150M"]
  assert [f["n_valid"] for f in d["fidelities"]] == [60, 30, 20]
  assert d["config_features"] == ["w_web", "w_code", "w_math", "log2_lr", "layout=1in4",
                                  "layout=2in4"]
  assert d["excluded_rows"] == {"not the last step of its run (spec key 'run')": 990,
                                "rows merged into one per run (mean over domain)": 220}

  p = json.loads(play.stdout)
  best = [r["best_regret"] for r in p["runs"]] if "runs" in p else None
  assert best is not None and len(best) == 5, sorted(p)
  assert all(a >= b for a, b in zip(best, best[1:])) and 0 <= best[-1] <= 1

  board = json.loads((tmp_path / "eval" / "results" / "leaderboard.json").read_text())
  assert {r["family"] for r in board} >= {"my_sweep_history", "synthetic_regmix"}
