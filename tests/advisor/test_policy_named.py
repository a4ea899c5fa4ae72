"""The policy actually played is named: when the RL stage kept the distilled policy (the gate's
rl/best.json says step 0), the advisor and the reports say "sft policy", not "rl policy"."""
import json
import os
import shutil

from autollmr import cli
from autollmr.advisor import answer
from autollmr.agent import checkpoints
from autollmr.evaluation import agents
from autollmr.evaluation import report

TARGET = "N=1.07B,D=20B"


def _rl_workdir(agent_dir, tmp_path, step: int) -> str:
  """agent_dir plus an RL stage whose gate kept `step` (0: the starting, distilled policy)."""
  d = str(tmp_path / "wd")
  shutil.copytree(agent_dir, d)
  os.makedirs(os.path.join(d, "rl", "ckpt"))
  with open(os.path.join(d, "rl", "best.json"), "w") as f:
    json.dump(dict(step=step, val_select=0.2), f)
  return d


def test_advisor_names_the_kept_distilled_policy(sweep, agent_dir, tmp_path):
  d = _rl_workdir(agent_dir, tmp_path, 0)
  out = answer.advise(sweep["spec"], TARGET, k=1, agent_dir=d)
  assert "(sft policy (the RL stage kept the distilled policy" in out["method"]
  assert "rl policy" not in out["method"]
  assert out["policy"]["loaded"] == "rl" and out["policy"]["played"] == "sft"
  assert "sft policy (the RL stage kept the distilled policy" in answer.format_text(out)
  sft = answer.advise(sweep["spec"], TARGET, k=1, agent_dir=d, policy="sft")
  assert sft["method"].endswith("(sft policy)") and sft["policy"]["loaded"] == "sft"
  # The same policy either way: the same suggestion.
  assert sft["suggestions"][0]["label"] == out["suggestions"][0]["label"]
  played = answer.play(sweep["spec"], TARGET, 1, sweep["withheld"], agent_dir=d)
  assert played["policy"]["played"] == "sft"


def test_played_policy_from_the_gate_record(agent_dir, tmp_path):
  d = _rl_workdir(agent_dir, tmp_path, 40)
  c = cli.workdir_config(d)
  assert checkpoints.rl_policy_played(c, d)["played"] == "rl"
  assert checkpoints.rl_policy_played(c, agent_dir) is None  # no RL stage
  with open(os.path.join(d, "rl", "best.json"), "w") as f:
    json.dump(dict(step=0, val_select=0.2), f)
  assert agents.played(c, d, agents.RL_METHOD)["policy_played"] == "sft"
  assert agents.played(c, d, agents.METHOD) is None
  c.rl.init = "scratch"
  assert checkpoints.rl_policy_played(c, d)["played"] == "scratch"


def _records(played: str | None):
  recs = []
  for method in ("rl_agent", "sft_agent", "random"):
    for seed in range(2):
      r = dict(method=method, family="t", task="T", budget=1, rho=1.0, seed=seed, regret=0.1,
               percentile=0.1, cost=1.0, n_invalid=0, n_repeat=0, n_turns=1, decision_ms=1.0,
               anytime_regret=[0.1])
      if method == "rl_agent" and played:
        r.update(policy_played=played, policy_note="the RL stage kept the distilled policy")
      recs.append(r)
  return recs


def test_reports_name_the_policy_played(tmp_path):
  recs = _records("sft")
  md = report.leaderboard_md(recs, "cmd")
  assert "| rl_agent (sft policy) |" in md and "## Policies played" in md
  assert "rl_agent played the sft policy (the RL stage kept the distilled policy)" in md
  assert "rl_agent (sft policy)" in report.summary_md(recs, "cmd")
  assert "rl_agent (sft policy)" in report.summary_text(recs)
  assert "rl_agent (sft policy)" in report.cost_to_target_md(recs, "cmd")
  plain = report.leaderboard_md(_records("rl"), "cmd")
  assert "| rl_agent |" in plain and "rl_agent played an RL policy" in plain
  assert "Policies played" not in report.leaderboard_md(_records(None), "cmd")
