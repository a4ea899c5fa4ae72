"""The text policy: rendering/tokenizing round-trips, the trie mask, zero loss weight on
environment tokens, and a tiny `--config.policy=lm` run end to end."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autollmr import pipeline
from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.evaluation import runs
from autollmr.text import agent as lm_agent
from autollmr.text import export as text_export
from autollmr.text import lm as lm_lib
from autollmr.text import train as lm_train
from autollmr.text import words as text
from configs import lm as lm_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  c = lm_config.get_config("tiny")
  c.tasks.families = "grpo"
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AUTOLLMR_DATA", "none")
    tables = pipeline.load_tables(c)
  splits = pipeline.curate_all(c, tables)
  workdir = str(tmp_path_factory.mktemp("lm"))
  path = lm_train.ensure_tokenizer(c, workdir, tables, splits)
  sp = text.load_tokenizer(path)
  bank = bank_lib.train_bank(c, tables, splits)
  lines = lm_train.bank_lines(c, tables, splits, "train", bank)
  return dict(c=c, tables=tables, splits=splits, workdir=workdir, sp=sp, bank=bank, lines=lines,
              tx=text.arrays(sp, lines, c.lm), path=path)


def test_round_trips_and_deterministic_tokenizer(setup, tmp_path):
  sp, lines, tx = setup["sp"], setup["lines"], setup["tx"]
  test = setup["splits"]["grpo"]["test"]  # unseen fidelity names still round-trip (byte fallback)
  p, _ = runs.build_eval_params(setup["tables"]["grpo"], test, setup["c"])
  all_lines = lines + text.task_lines(p, setup["tables"]["grpo"], test)
  n = 0
  for x in all_lines:
    for s in [x["header"]] + [a + r for a, r in zip(x["action"], x["result"]) if a]:
      assert text.decode(sp, text.encode(sp, s)) == s
      n += 1
  assert n > 100
  act, res = np.asarray(tx.act_NxAxL), np.asarray(tx.res_NxAxR)
  for i, x in enumerate(lines):
    for a, (s, r) in enumerate(zip(x["action"], x["result"])):
      if s:  # the lookup rows spell the lines: action + EOS, then the result
        assert text.decode(sp, act[i, a]) == s and text.EOS in act[i, a]
        assert text.decode(sp, np.concatenate([act[i, a], res[i, a]])) == s + r
  assert any(sp.id_to_piece(i) == "7" for i in range(sp.get_piece_size()))  # digits split
  again = str(tmp_path / "again.model")
  text.train_tokenizer(text.corpus(lines), again, int(setup["c"].lm.vocab_size))
  assert open(again, "rb").read() == open(setup["path"], "rb").read()


def _strings(act_AxL, open_A, vocab):
  """Every token string a decoder can emit under the trie mask (depth-first over its rows)."""
  L = act_AxL.shape[1]
  mask_at = jax.jit(lambda tok, j: text.trie_mask_at(act_AxL, open_A, tok, j, vocab))
  out = set()

  def go(prefix):
    j = len(prefix)
    if j == L:
      out.add(tuple(prefix))
      return
    tok = jnp.asarray(prefix + [0] * (L - j), jnp.int32)
    allowed = np.flatnonzero(np.asarray(mask_at(tok, j)))
    assert allowed.size > 0  # never a dead end
    np.testing.assert_array_equal(  # the all-steps form agrees with the per-step form
        np.asarray(text.trie_masks(act_AxL, open_A, tok, vocab))[j], np.asarray(mask_at(tok, j)))
    for v in allowed:
      go(prefix + [int(v)])

  go([])
  return out


def test_trie_mask_admits_exactly_the_open_actions(setup):
  tx, vocab = setup["tx"], int(setup["c"].lm.vocab_size)
  act_AxL = tx.act_NxAxL[0]
  exists = np.asarray(setup["bank"]["params"].cand_exists_NxA[0])
  rng = np.random.default_rng(0)
  for _ in range(3):
    open_A = exists & (rng.random(exists.shape) < 0.3)
    got = _strings(act_AxL, jnp.asarray(open_A), vocab)
    want = {tuple(int(t) for t in np.asarray(act_AxL[a])) for a in np.flatnonzero(open_A)}
    assert got == want and len(want) == open_A.sum()
    for s in got:  # and each names its candidate
      a = int(text.chosen(act_AxL, jnp.asarray(open_A), jnp.asarray(s)))
      assert open_A[a] and tuple(np.asarray(act_AxL[a]).tolist()) == s


def test_sampled_decoding_only_names_open_actions(setup):
  c, bank, tx = setup["c"], setup["bank"], setup["tx"]
  lay = lm_agent.layout(c.lm, bank["sizes"].max_turns)
  model = lm_lib.make_lm(c.lm, int(c.lm.vocab_size))
  n = len(bank["tasks"])
  task_B = jnp.asarray(np.repeat(np.arange(n), 4), jnp.int32)
  state, seq, out = jax.jit(lambda m, k: lm_agent.rollout(
      m, bank["params"], tx, bank["family_N"], task_B, jnp.arange(4 * n, dtype=jnp.uint32), k,
      bank["sizes"], lay, False, int(c.lm.vocab_size)))(model, jax.random.key(1))
  assert int(state.n_invalid.sum()) == 0 and int(state.n_repeat.sum()) == 0
  act, open_, active = (np.asarray(out[k]) for k in ("action", "open", "active"))
  T, B = act.shape
  assert all(open_[t, b, act[t, b]] for t in range(T) for b in range(B) if active[t, b])


def test_environment_tokens_carry_zero_loss_weight(setup):
  c, bank, tx = setup["c"], setup["bank"], setup["tx"]
  sizes = bank["sizes"]
  lay = lm_agent.layout(c.lm, sizes.max_turns)
  task_E, seed_E, act_ExT = _teacher_like(bank)
  seq, open_, tok, active = lm_train.forced_rollout(
      bank["params"], tx, bank["family_N"], task_E, seed_E, act_ExT, sizes, lay)
  w = np.asarray(lm_train.token_weights(seq, active, lay))
  seq, active = np.asarray(seq), np.asarray(active)
  pos = lay.action_positions()
  is_action = np.zeros(lay.length, bool)
  is_action[pos.reshape(-1)] = True
  assert (w[:, ~is_action] == 0).all()  # header, known results, result slots: weight zero
  assert (seq[:, ~is_action] != text.PAD).any(axis=1).all()  # ... and they are there
  for b in range(len(task_E)):
    for t in range(lay.turns):
      row = seq[b, pos[t]]
      np.testing.assert_array_equal(w[b, pos[t]], (row != text.PAD) & active[b, t])
  assert (w.sum(1) > 0).all()


def _teacher_like(bank):
  """One episode per task naming the first target candidates (never invalid)."""
  p = bank["params"]
  n, T = len(bank["tasks"]), bank["sizes"].max_turns
  tgt = np.asarray(~p.cand_cheap_NxA & p.cand_exists_NxA)
  act = np.full((n, T), -1, np.int32)
  for i in range(n):
    k = int(np.asarray(p.budget_N)[i])
    act[i, :k] = np.flatnonzero(tgt[i])[:k]
  return jnp.arange(n, dtype=jnp.int32), jnp.zeros(n, jnp.uint32), jnp.asarray(act)


def test_tiny_lm_pipeline_end_to_end(tmp_path, monkeypatch):
  """curate -> simulate -> tokenizer + LM SFT -> LM RL -> eval (--config.policy=lm), then export."""
  monkeypatch.setenv("AUTOLLMR_DATA", "none")
  monkeypatch.setenv("AUTOLLMR_NO_PROGRESS", "1")
  c = lm_config.get_config("tiny")
  c.tasks.families = "grpo"
  c.eval.methods = "random"
  pipeline.run(c, str(tmp_path))
  rows = json.loads((tmp_path / "results" / "leaderboard.json").read_text())
  methods = {r["method"] for r in rows}
  assert {"lm_sft_agent", "lm_rl_agent", "random"} <= methods
  assert all(r["invalid_rate"] == 0 for r in rows if r["method"].startswith("lm_"))
  assert lm_train.done(c, str(tmp_path), "sft") and lm_train.done(c, str(tmp_path), "rl")
  eps = text_export.episodes(c, str(tmp_path), *_tables_splits(c))
  assert eps and all(e["messages"][0]["role"] == "system" for e in eps)
  assert all(m["role"] == ("assistant" if i % 2 == 0 else "user")
             for e in eps for i, m in enumerate(e["messages"][2:]))


def _tables_splits(c):
  tables = pipeline.load_tables(c)
  return tables, pipeline.curate_all(c, tables)


def test_lm_parameters_map_onto_a_mesh():
  """The LM's logical axis names are read by the sharding module (every parameter gets a
  NamedSharding on a mesh, under each parameter mode)."""
  from flax import nnx

  from configs import common
  c = common.base()
  model = lm_lib.make_lm(c.lm, vocab=64, seed=0)
  state = nnx.state(model)
  mesh = sharding.make_mesh(c)
  for mode in ("replicated", "fsdp", "tp"):
    sh = sharding.state_shardings(state, mesh, mode)
    leaves = jax.tree.leaves(sh, is_leaf=lambda x: isinstance(x, jax.sharding.NamedSharding))
    assert leaves and all(isinstance(x, jax.sharding.NamedSharding) for x in leaves)
    if mode == "fsdp":  # the names are really read: embed dims go on the data axis
      assert any("data" in tuple(x.spec) for x in leaves)
