"""Every command: --help works, and a user's mistake ends in one `error:` line, exit status 2."""
import json

import pytest

COMMANDS = ("main", "advise", "ablate", "select", "rl_audit", "bench", "transcripts", "plots",
            "export", "multihost_check", "sharding_check", "gym")


def test_every_command_has_help(run_forked):
  for name, r in zip(COMMANDS, run_forked([(f"autollmr.{c}", "--help") for c in COMMANDS])):
    assert r.returncode == 0 and f"python -m autollmr.{name}" in r.stdout, (name, r.stderr[-2000:])
    assert "--" in r.stdout  # the flags, each with its meaning


@pytest.fixture
def bad_spec(tmp_path):
  (tmp_path / "runs.csv").write_text("lr,params,loss\n0.001,1e7,3.0\n0.002,1e8,2.9\n")
  spec = dict(name="mine", csv="runs.csv", config=[dict(column="lr", transform="log2")],
              fidelity=dict(columns=["params"], features=[dict(column="params")]),
              objective=dict(column="los", direction="min"))  # a misspelt column
  path = tmp_path / "spec.json"
  path.write_text(json.dumps(spec))
  return str(path)


def test_mistakes_end_in_one_error_line(tmp_path, bad_spec, run_forked, one_error_line):
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "config.json").write_text(json.dumps(dict(data_dir="none", tasks=dict(
      families="", budgets="1"))))
  cases = [  # (args, what the line must name)
      (("autollmr.gym", "describe", f"--spec={bad_spec}"), "'los'"),
      (("autollmr.gym", "describe", "--tables=nope"), "'nope'"),
      (("autollmr.gym", "describe", "--json=maybe"), "json"),
      (("autollmr.advise", f"--spec={bad_spec}", "--target=1B", "--method=random"), "'los'"),
      (("autollmr.advise", "--export=nope", f"--out={tmp_path / 'x'}"), "'nope'"),
      (("autollmr.main", "--config=configs/eval.py", f"--config.tasks.specs={bad_spec}",
        f"--workdir={tmp_path / 'm'}"), "'los'"),
      (("autollmr.main", "--config=configs/eval.py", f"--config.tasks.test_specs={bad_spec}",
        f"--workdir={tmp_path / 'm'}"), "'los'"),
      (("autollmr.main", "--config=configs/eval.py", "--config.tasks.families=nope",
        f"--workdir={tmp_path / 'm'}"), "--config.tasks.families"),
      (("autollmr.main", "--config=configs/eval.py", "--config.eval.seeds=many",
        f"--workdir={tmp_path / 'm'}"), "eval.seeds"),
      (("autollmr.main", "--config=configs/eval.py", "--config.eval.split=other",
        f"--workdir={tmp_path / 'm'}"), "--config.eval.split"),
      (("autollmr.plots", "landscape", f"--workdir={tmp_path / 'w'}", "--tables=nope"),
       "'nope'"),
      (("autollmr.transcripts", f"--workdir={tmp_path / 'w'}", "--table=nope"), "'nope'"),
  ]
  for (args, names), r in zip(cases, run_forked([c[0] for c in cases])):
    assert names in one_error_line(r), (args, r.stderr)
