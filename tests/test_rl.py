"""Multi-turn RL: group advantages, the validation gate, and the whole pipeline on a tiny config."""
import collections
import json
import os
import time

from flax import nnx
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from autollmr import pipeline
from autollmr import rl_audit
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import gate
from autollmr.agent import rl
from autollmr.gym import substudies
from configs import rl as rl_config


def test_group_advantages_are_centred_per_group():
  reward_TxB = jnp.array([[0.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.5, 0.1]])
  active = jnp.ones((2, 4), bool)
  adv = np.asarray(rl.advantages(reward_TxB, active, group=2))
  np.testing.assert_allclose(adv[0], adv[1])  # every turn gets the episode's advantage
  # Dr. GRPO: centred, not scaled: a group differing by noise pushes by that noise only
  np.testing.assert_allclose(adv[0], [0.5, -0.5, 0.2, -0.2], atol=1e-6)
  adv_t = np.asarray(rl.advantages(reward_TxB, active.at[1, 1].set(False), 2))
  assert adv_t[1, 1] == 0  # inactive turns carry nothing


def test_paired_gain_weighs_tasks_and_draws_like_val_select():
  start = dict(tasks=np.array([0.1, 0.2, 0.3]), sub=np.array([0.0, 0.4, 0.0, 0.0, 0.2, 0.0]))
  same = gate.paired_gain(start, start)
  assert same == (0.0, 0.0)
  # tasks -0.1 each; draws (task 0, 1, 2, task 0, 1, 2): +0.2 / -0.2 cancel within task 1 only
  new = dict(tasks=np.array([0.0, 0.1, 0.2]), sub=np.array([0.0, 0.6, 0.0, 0.0, 0.0, 0.3]))
  gain, se = gate.paired_gain(new, start)
  u_sub = new["sub"] - start["sub"]
  assert np.isclose(gain, 0.5 * -0.1 + 0.5 * u_sub.mean())
  c = 0.5 * -0.1 + 0.5 * u_sub.reshape(2, 3).mean(0)  # one cluster per val task
  assert np.isclose(se, np.std(c, ddof=1) / np.sqrt(3))
  with pytest.raises(ValueError, match="5 sub-study draws for 3 val tasks"):
    gate.paired_gain(dict(tasks=new["tasks"], sub=new["sub"][:5]),
                   dict(tasks=start["tasks"], sub=start["sub"][:5]))


def test_paired_gain_with_held_tasks_weighs_tables_equally():
  """rl.holdout_configs: val clusters and held training tasks, each table 1/n_tables."""
  start = dict(tasks=np.array([0.1, 0.3]), held=np.array([0.2, 0.2, 0.2, 0.0]),
               table=np.array(["a", "a", "b", "b", "b", "c"]))
  # clusters a: 0.1, 0.3 (w 1/6 each); b: 0.2 x 3 (w 1/9 each); c: 0.0 (w 1/3)
  assert np.isclose(gate.select_value(start), (0.4 / 6) + (0.6 / 9))
  new = dict(start, tasks=np.array([0.1, 0.1]), held=np.array([0.2, 0.1, 0.2, 0.3]))
  gain, se = gate.paired_gain(new, start)
  d = np.array([0.0, -0.2, 0.0, -0.1, 0.0, 0.3])
  w = np.array([1 / 6, 1 / 6, 1 / 9, 1 / 9, 1 / 9, 1 / 3])
  assert np.isclose(gain, (w * d).sum())
  assert np.isclose(gain, gate.select_value(new) - gate.select_value(start))
  assert np.isclose(se, np.sqrt(6 / 5 * (w ** 2 * (d - gain) ** 2).sum()))
  # equal weights (no held bank): the same s.e. as std / sqrt(n)
  plain = gate.paired_gain(dict(tasks=d), dict(tasks=np.zeros(6)))
  assert np.allclose(plain, (d.mean(), d.std(ddof=1) / np.sqrt(6)))
  # landscapes as clusters: the tasks of one (table, target) move together; the gain is the same,
  # the s.e. is over the 4 landscapes (D_g - W_g gain), here with a's two tasks one landscape
  land = np.array(["a:x", "a:x", "b:y", "b:y", "b:z", "c:w"])
  gain2, se2 = gate.paired_gain(new | dict(landscape=land), start)  # the start may lack it
  D = np.array([w[:2] @ d[:2], w[2:4] @ d[2:4], w[4] * d[4], w[5] * d[5]])
  W = np.array([w[:2].sum(), w[2:4].sum(), w[4], w[5]])
  assert np.isclose(gain2, gain) and np.isclose(se2, np.sqrt(4 / 3 * ((D - W * gain) ** 2).sum()))


def test_config_holdout_splits_target_configs_the_same_way_in_both_banks(tiny_setup):
  """RL's bank keeps the non-held target configs, the gate's bank only the held ones: disjoint
  per task (by config, across the train-size and eval-size banks), cheap rows the same, y* / y_worst
  those of the part, every gate task with >= 2 target configs."""
  c, tables, splits = tiny_setup
  c.rl.holdout_configs = 0.5
  bank = bank_lib.build_bank(c, tables, splits, "train", c.sim.max_cheap_rows,
                             c.sim.max_target_configs)
  held_C = substudies.held_configs(bank["table_sizes"], 0.5)
  rl_p, ok = jax.tree.map(np.asarray, substudies.config_holdout(bank["params"], 0.5, False, held_C))
  np.testing.assert_array_equal(rl_p.cand_exists_NxA, np.asarray(
      bank_lib.rl_bank(c, tables, splits)["params"].cand_exists_NxA))
  held = bank_lib.held_bank(c, tables, splits)
  assert held is not None and 0 < len(held["tasks"]) <= len(bank["tasks"])
  h = jax.tree.map(np.asarray, held["params"])
  np.testing.assert_array_equal(h.values_FxC, rl_p.values_FxC)  # one config axis in both
  index = {name: i for i, name in enumerate(bank["names"])}
  checked = 0
  for m, name in enumerate(held["names"]):
    i = index[name]
    if not ok[i]:
      continue
    tgt = lambda q, n: set(q.cand_config_NxA[n][q.cand_exists_NxA[n] & ~q.cand_cheap_NxA[n]].tolist())
    assert not tgt(rl_p, i) & tgt(h, m) and len(tgt(h, m)) >= 2
    cheap = lambda q, n: set(q.cand_config_NxA[n][q.cand_exists_NxA[n] & q.cand_cheap_NxA[n]].tolist())
    assert cheap(rl_p, i) == set(np.asarray(bank["params"].cand_config_NxA[i])[
        np.asarray(bank["params"].cand_exists_NxA[i] & bank["params"].cand_cheap_NxA[i])].tolist())
    ex = h.cand_exists_NxA[m] & ~h.cand_cheap_NxA[m]
    y = h.sign * h.values_FxC[h.cand_fid_NxA[m][ex], h.cand_config_NxA[m][ex]]
    assert np.isclose(h.sign * h.y_star_N[m], y.min()) and np.isclose(h.sign * h.y_worst_N[m], y.max())
    checked += 1
  assert checked > 0
  with pytest.raises(ValueError, match="holdout_configs"):
    substudies.config_holdout(bank["params"], 1.0, True, held_C)
  # a table's held half is its own: the same whichever tables share the bank
  both = np.asarray(substudies.held_configs([("a", 50), ("b", 70)], 0.5))
  np.testing.assert_array_equal(both[50:], np.asarray(substudies.held_configs([("b", 70)], 0.5)))
  assert 0.3 < both.mean() < 0.7 and not np.array_equal(both[:50], both[50:100])


def test_sub_studies(tiny_setup):
  """Task randomization: a dropped config is gone at every fidelity, y* / y_worst are those of
  the target configs left, and no draw is empty; with nothing dropped the tasks are unchanged."""
  c, tables, splits = tiny_setup
  bank = bank_lib.train_bank(c, tables, splits)
  p = bank["params"]
  task_M = jnp.arange(len(bank["tasks"]), dtype=jnp.int32)
  same = substudies.sub_studies(p, task_M, jax.random.key(0), 0.0, 0.0)
  with pytest.raises(ValueError, match="drop_configs"):
    substudies.sub_studies(p, task_M, jax.random.key(0), 1.0, 0.0)
  np.testing.assert_array_equal(same.cand_exists_NxA, p.cand_exists_NxA)
  changed = 0
  for seed in range(5):
    q = jax.tree.map(np.asarray, substudies.sub_studies(p, task_M, jax.random.key(seed), 0.5, 0.5))
    old = np.asarray(p.cand_exists_NxA)
    assert not (q.cand_exists_NxA & ~old).any()  # only removes
    changed += int((q.cand_exists_NxA != old).sum())
    for m in range(len(task_M)):
      ex, cheap, cfg = q.cand_exists_NxA[m], q.cand_cheap_NxA[m], q.cand_config_NxA[m]
      gone = set(cfg[old[m] & ~ex & ~cheap].tolist())  # dropped target configs ...
      assert not gone & set(cfg[ex & cheap].tolist())  # ... are dropped at the cheap levels too
      tgt = ex & ~cheap
      assert tgt.sum() >= 2 and (ex & cheap).any()
      y = q.values_FxC[q.cand_fid_NxA[m][tgt], cfg[tgt]] * q.sign
      assert np.isclose(q.y_star_N[m] * q.sign, y.min()) and np.isclose(q.y_worst_N[m] * q.sign,
                                                                        y.max())
  assert changed > 0
  c.sft.val_draws = 3  # validation draws: 3 sub-studies per val task, the same on every call
  val, again = bank_lib.val_bank(c, tables, splits), bank_lib.val_bank(c, tables, splits)
  assert len(val["sub"]["tasks"]) == 3 * len(val["tasks"])
  np.testing.assert_array_equal(val["sub"]["params"].cand_exists_NxA,
                                again["sub"]["params"].cand_exists_NxA)


def test_tiny_pipeline_end_to_end(tmp_path, monkeypatch):
  """curate -> simulate -> sft -> rl -> eval on two synthetic tables, under 2 minutes."""
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  monkeypatch.setenv("AUTOLLMR_NO_PROGRESS", "1")
  c = rl_config.get_config("tiny")
  t0 = time.time()
  pipeline.run(c, str(tmp_path))
  assert time.time() - t0 < 120
  rows = json.loads((tmp_path / "results" / "leaderboard.json").read_text())
  methods = {r["method"] for r in rows}
  assert {"sft_agent", "rl_agent", "random"} <= methods
  assert all(r["invalid_rate"] == 0 for r in rows if r["method"].endswith("_agent"))
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
  assert gate.final_val(other, str(tmp_path), bank_lib.val_bank(other, tables,
                       pipeline.curate_all(other, tables))) is None
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
  ref = checkpoints.load_sft_policy(c, str(tmp_path)) if best["step"] == 0 else checkpoints.load_rl_policy(
      ml_collections.ConfigDict(dict(c.to_dict(), rl=dict(c.rl.to_dict(), select_on_val=False))),
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


