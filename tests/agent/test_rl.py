"""Multi-turn RL: group advantages, the validation gate, and the whole pipeline on a tiny config."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autollmr.agent import bank as bank_lib
from autollmr.agent import gate
from autollmr.agent import rl
from autollmr.gym import substudies


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
    gate.paired_gain(
        dict(tasks=new["tasks"], sub=new["sub"][:5]),
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
    tgt = lambda q, n: set(q.cand_config_NxA[n][q.cand_exists_NxA[n] & ~q.cand_cheap_NxA[n]].tolist(
    ))
    assert not tgt(rl_p, i) & tgt(h, m) and len(tgt(h, m)) >= 2
    cheap = lambda q, n: set(q.cand_config_NxA[n][q.cand_exists_NxA[n] & q.cand_cheap_NxA[n]].
                             tolist())
    assert cheap(rl_p, i) == set(np.asarray(bank["params"].cand_config_NxA[i])[
        np.asarray(bank["params"].cand_exists_NxA[i] & bank["params"].cand_cheap_NxA[i])].tolist())
    ex = h.cand_exists_NxA[m] & ~h.cand_cheap_NxA[m]
    y = h.sign * h.values_FxC[h.cand_fid_NxA[m][ex], h.cand_config_NxA[m][ex]]
    assert np.isclose(h.sign * h.y_star_N[m], y.min()) and np.isclose(h.sign * h.y_worst_N[m],
                                                                      y.max())
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
