"""`python -m autollmr.prior calibrate` on one real table with 20 draws: the report, the JSON, the
plot, one line per table; a user's mistake is one `error:` line."""
import concurrent.futures
import json

import pytest

from autollmr.gym import landscape_stats as ls
from autollmr.gym import sources

TABLE = "porian_isoflop"  # small, and it has training pairs and a test pair


def test_calibrate_one_real_table(tmp_path, run_command, one_error_line):
  data = sources.find_data_dir()
  if data is None or TABLE not in sources.available_tables(data):
    pytest.skip(f"no data directory with the real table {TABLE}")
  env = dict(AUTOLLMR_DATA=data, AUTOLLMR_CACHE=str(tmp_path / "cache"))
  work = tmp_path / "w"
  calibrate = ("autollmr.prior", "calibrate", f"--workdir={work}", "--config.prior.draws=20",
               f"--config.tasks.families={TABLE}")
  mistakes = [  # (args, env, what the line must say)
      (("autollmr.prior", "calibrate", f"--workdir={work}", "--config.prior.band=5"), env,
       "prior.band needs"),
      (("autollmr.prior", "calibrate", f"--workdir={tmp_path / 'x'}",
        "--config.tasks.families=synthetic_regmix"), dict(env, AUTOLLMR_DATA="none"),
       "no real table here")]
  with concurrent.futures.ThreadPoolExecutor(2) as ex:  # each a subprocess: fill both cores
    ran = ex.submit(run_command, *calibrate, env=env)
    errs = list(ex.map(lambda m: run_command(*m[0], env=m[1]), mistakes))
    r = ran.result()
  for m, e in zip(mistakes, errs):
    assert m[2] in one_error_line(e), (m[0], e.stderr)
  assert r.returncode == 0, r.stderr[-3000:]
  assert f"{TABLE} (compute_allocation): " in r.stdout, r.stdout
  out = json.loads((work / "calibration.json").read_text())
  row = out["tables"][TABLE]
  assert out["draws"] == 20 and out["band"] == [2.5, 97.5]
  assert set(row["training"]["mean"]) == set(ls.STATS) == set(row["training"]["percentile"])
  assert row["test"]["pairs"] and row["test"]["pairs"][0]["g"] == "C=2.56e+19"
  assert "C=2.56e+19" not in row["training"]["fidelities"]  # the test target never calibrates
  assert all(len(v) == 20 for v in out["draw_stats"]["compute_allocation"].values())
  md = (work / "calibration.md").read_text()
  assert f"| {TABLE} | compute_allocation |" in md and "never tuned on" in md
  assert (work / "calibration_compute_allocation.png").stat().st_size > 0
