"""End to end: the README's smoke run, then every stage's outputs (leaderboard, RL gate, audit)."""
import collections
import json
import os
import time

from flax import nnx
import jax
import ml_collections
import numpy as np

from autollmr import pipeline
from autollmr import rl_audit
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import gate
from configs import rl as rl_config


def test_smoke_run_as_the_readme_says(tmp_path, run_command):
  """The README's smoke run, as a user types it (with and without a data directory it plays the
  synthetic tables): curate -> simulate -> sft -> rl -> eval, then what each stage left."""
  t0 = time.time()
  r = run_command("autollmr.main", "--config=configs/rl.py:tiny", f"--workdir={tmp_path}",
                  env=dict(AUTOLLMR_NO_PROGRESS="1"))
  assert r.returncode == 0, r.stderr[-3000:]
  assert time.time() - t0 < 180 and "Mean normalized regret" in r.stdout
  c = rl_config.get_config("tiny")
  rows = json.loads((tmp_path / "results" / "leaderboard.json").read_text())
  methods = {r["method"] for r in rows}
  assert {"sft_agent", "rl_agent", "random"} <= methods
  assert all(r["invalid_rate"] == 0 for r in rows if r["method"].endswith("_agent"))
  records = [json.loads(l) for l in open(tmp_path / "results" / "episodes.jsonl")]
  agent = [r for r in records if r["method"].endswith("_agent")]
  assert agent and all(r["n_invalid"] == 0 and len(r["anytime_regret"]) <= r["budget"]
                       for r in agent)
  assert (tmp_path / "sim" / "summary.json").exists() and os.listdir(tmp_path / "sft" / "tb")
  sft_rows = [json.loads(l) for l in open(tmp_path / "sft" / "metrics.jsonl")]
  # sft.val_every = 0 (default): validated once, after the last step
  assert [r["step"] for r in sft_rows if "val_regret" in r] == [c.sft.steps]
  assert sft_rows[-1]["val_regret"] is not None
  again = run_command("autollmr.main", "--config=configs/rl.py:tiny", f"--workdir={tmp_path}")
  assert again.returncode == 0, again.stderr[-3000:]  # a second run skips every stage
  assert all(f"[{s}] exists" in again.stdout for s in c.stages.split(",")), again.stdout
  metrics = [json.loads(l) for l in open(tmp_path / "rl" / "metrics.jsonl")]
  assert metrics[-1]["step"] == c.rl.steps and "kl" in metrics[-1]
  assert os.listdir(tmp_path / "rl" / "tb")
  assert checkpoints.rl_done(c, str(tmp_path))
  # Early stopping on validation: the evaluated policy is the best val checkpoint, the starting
  # (distilled) policy included as step 0, among those whose paired gain over it is significant
  # (rl.select_z standard errors).
  best = json.loads((tmp_path / "rl" / "best.json").read_text())
  logged = [m for m in metrics if m.get("val_select") is not None]
  assert logged[0]["step"] == 0 and all("val_gain_se" in m for m in logged[1:])
  eligible = [m["val_select"] for m in logged
              if m["step"] == 0 or m["val_gain"] < -c.rl.select_z * m["val_gain_se"]]
  assert np.isclose(best["val_select"], min(eligible))
  start = dict(np.load(tmp_path / "rl" / "val_start.npz"))  # the audit trail: rl/val_<step>.npz
  # SFT's validation of the same policy (sft/val_final.npz), which RL's step 0 reuses when there is
  # no held bank (rl.holdout_configs = 0), gives the same val tasks' regrets; only under the same
  # val settings
  tables = pipeline.load_tables(c)
  val = bank_lib.val_bank(c, tables, pipeline.curate_all(c, tables))
  v0, _, saved = gate.final_val(c, str(tmp_path), val)
  assert np.isclose(v0, logged[0]["val_regret"]) and set(saved) == {"tasks", "sub"}
  assert {"held", "table", "landscape"} <= set(start)  # the default gate: val + held configs
  assert len(start["table"]) == len(start["tasks"]) + len(start["held"]) == len(start["landscape"])
  assert len(set(start["landscape"])) < len(start["landscape"])  # budgets share a landscape
  assert np.isclose(logged[0]["val_select"], gate.select_value(start))
  for k in saved:
    np.testing.assert_array_equal(saved[k], start[k])
  other = ml_collections.ConfigDict(c.to_dict())
  other.sft.val_seeds += 1
  assert gate.final_val(other, str(tmp_path),
                        bank_lib.val_bank(other, tables, pipeline.curate_all(other,
                                                                             tables))) is None
  per_step = {m["step"]: dict(np.load(tmp_path / "rl" / f"val_{m['step']}.npz"))
              for m in logged[1:]}
  for m, row in zip(logged[1:], rl_audit.audit(c, str(tmp_path), per_step)):
    gain, se = gate.paired_gain(per_step[m["step"]], start)
    assert np.isclose(gain, m["val_gain"]) and np.isclose(se, m["val_gain_se"])
    assert row["step"] == m["step"] and np.isclose(row["val_select"], m["val_select"])
    assert row["passes"] == (m["val_gain"] < -c.rl.select_z * m["val_gain_se"])
    assert row["se_unclustered"] >= 0
  # --headroom: its greedy column is the gate's own start (per table), sampled >= best of group
  room = rl_audit.headroom(c, str(tmp_path), group=3)
  n_val = len(start["tasks"])
  for bank, regret_n, table_n in (("val", start["tasks"], start["table"][:n_val]),
                                  ("held", start["held"], start["table"][n_val:])):
    for k in set(table_n):
      assert np.isclose(room[bank][k][0], regret_n[table_n == k].mean(), atol=1e-6), (bank, k)
  assert {"train", "held", "val", "val_sub"} <= set(room)
  for rows in room.values():
    for greedy, sampled, best_of in rows.values():
      assert 0 <= best_of <= sampled + 1e-9 <= 1 + 1e-9 and 0 <= greedy <= 1
  replayed = rl_audit.replay(c, str(tmp_path))  # checkpoints on disk, played again: same regrets
  assert c.rl.steps in replayed
  for k, v in per_step[c.rl.steps].items():
    if v.dtype.kind == "U":  # which task is which
      np.testing.assert_array_equal(replayed[c.rl.steps][k], v)
    else:
      np.testing.assert_allclose(replayed[c.rl.steps][k], v, atol=1e-6)
  picked = checkpoints.load_rl_policy(c, str(tmp_path))
  ref = checkpoints.load_sft_policy(
      c, str(tmp_path)) if best["step"] == 0 else checkpoints.load_rl_policy(
          ml_collections.ConfigDict(
              dict(c.to_dict(), rl=dict(c.rl.to_dict(), select_on_val=False))),
          str(tmp_path))  # step > 0: the last checkpoint, equal only when the best is the last
  same = jax.tree.leaves(jax.tree.map(lambda a, b: bool(np.allclose(a, b)),
                                      nnx.state(picked, nnx.Param), nnx.state(ref, nnx.Param)))
  assert all(same) == (best["step"] in (0, c.rl.steps))
  res = tmp_path / "results"  # the eval stage's transcripts (of the final agent) and plots
  md = sorted((res / "transcripts").glob("*.md"))
  assert len(md) == c.eval.transcripts * len(pipeline.csv_list(c.tasks.families))
  assert all("__rl_agent__" in p.name for p in md) and "saliency" in md[0].read_text()
  for f in ("learning_curves.png", "landscape_grpo.png"):
    assert (res / f).stat().st_size > 0, f
  # --config.eval.split=val: the same agents and peers on the validation tasks (model selection
  # against the peers without reading a test result), in results/val/
  cv = ml_collections.ConfigDict(c.to_dict())
  cv.stages, cv.eval.split = "eval", "val"
  pipeline.run(cv, str(tmp_path))
  curated = json.loads((tmp_path / "curation" / "tasks.json").read_text())
  val_targets = {t["target"] for s in curated.values() for t in s["val"]}
  test_targets = {t["target"] for s in curated.values() for t in s["test"]}
  val_rows = json.loads((res / "val" / "leaderboard.json").read_text())
  assert {"sft_agent", "rl_agent", "random"} <= {r["method"] for r in val_rows}
  played = {r["task"] for r in val_rows}
  assert played and played <= val_targets and not played & test_targets
  # --config.eval.sub_studies=2: every test target on two random sub-studies (results/
  # sub_studies/); tasks are "<target>~<i>", agents and peers on the same draws
  cs = ml_collections.ConfigDict(c.to_dict())
  cs.stages, cs.eval.sub_studies = "eval", 2
  pipeline.run(cs, str(tmp_path))
  sub_rows = json.loads((res / "sub_studies" / "leaderboard.json").read_text())
  tasks_by_method = collections.defaultdict(set)
  for r in sub_rows:
    tasks_by_method[r["method"]].add(r["task"])
  assert {"sft_agent", "rl_agent", "random"} <= set(tasks_by_method)
  want = {f"{t}~{i}" for t in test_targets for i in range(2)}
  assert all(ts == want for ts in tasks_by_method.values()), tasks_by_method
