"""The text environment and the text policy in it: token ids in, token ids out, all under jax.jit.

Layout of one episode's token sequence (fixed slots; PAD fills what a line does not use and is
masked as a key, so positions are the same in every episode and a turn writes at a known place):

  [header H] [row 0] ... [row k-1] [row k] ... [row k+T-1]      row = [action L][result R]

Rows 0..k-1 hold the known cheap results at reset, capped at k = config.lm.known_rows (why a
cap: context length on CPU; which ones: the best k by normalized value at the visible fidelity
nearest the target, then the next fidelities, so the ranking that transfer needs is kept).
Row k + t is turn t: the policy decodes the action slot token by token under the trie mask of
the open actions (affordable, existing, not yet known: features.policy_mask), the decoded tokens
name exactly one candidate (text.chosen), the env steps it and writes that candidate's
pre-tokenized result into the result slot. No invalid action can be produced.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from autollmr import errors
from autollmr.agent import features
from autollmr.agent import play as play_lib
from autollmr.gym import env as env_lib
from autollmr.gym import table as table_lib
from autollmr.text import words as text


@dataclasses.dataclass(frozen=True)
class Layout:
  header: int  # H
  known: int  # k
  turns: int  # T
  action: int  # L
  result: int  # R

  @property
  def row(self):
    return self.action + self.result

  @property
  def length(self):
    return self.header + (self.known + self.turns) * self.row

  def action_start(self, turn):
    return self.header + (self.known + turn) * self.row

  def action_positions(self) -> np.ndarray:
    """T x L sequence positions of the action slots."""
    return np.array([[self.action_start(t) + j for j in range(self.action)]
                     for t in range(self.turns)], np.int32)


def layout(lc, turns: int) -> Layout:
  lay = Layout(int(lc.header_tokens), int(lc.known_rows), int(turns), int(lc.action_tokens),
               int(lc.result_tokens))
  if lay.length > int(lc.max_len):
    raise errors.UserError(f"an episode of {turns} turns takes {lay.length} tokens, more than "
                           f"config.lm.max_len={lc.max_len}")
  return lay


def open_actions(params, family_N, obs, sizes):
  """B x A: the candidates an action line may name (policy_mask: never empty)."""
  return features.policy_mask(play_lib.view(params, family_N, obs, sizes))


def known_rows(params, obs, sizes, k: int):
  """B x k candidate indices of the known cheap results rendered at reset, and which are real."""
  def one(o):
    v = env_lib.expand_obs(params, o, sizes)
    known = v["known_A"] & params.cand_cheap_NxA[o.task]
    top_cost = jnp.max(jnp.where(known, v["cost_A"], -jnp.inf))
    # Nearest visible fidelity first (cost ratio steps dominate the +-5 value range), best first.
    near = jnp.log(jnp.maximum(v["cost_A"], 1e-9) / jnp.maximum(top_cost, 1e-9))
    prio = jnp.where(known, v["value_A"] + 20.0 * near, -jnp.inf)
    score_k, idx_k = jax.lax.top_k(prio, k)
    return idx_k, jnp.isfinite(score_k)
  return jax.vmap(one)(obs)


def reset_tokens(params, tx: text.TextArrays, obs, sizes, lay: Layout):
  """B x length: header + the k known-result rows; the turn rows PAD."""
  idx_Bxk, ok_Bxk = known_rows(params, obs, sizes, lay.known)

  def one(t, idx_k, ok_k):
    rows = jnp.concatenate([tx.act_NxAxL[t, idx_k], tx.res_NxAxR[t, idx_k]], -1)
    rows = jnp.where(ok_k[:, None], rows, text.PAD)
    tail = jnp.zeros((lay.turns * lay.row,), jnp.int32)
    return jnp.concatenate([tx.header_NxH[t], rows.reshape(-1), tail])
  return jax.vmap(one)(obs.task, idx_Bxk, ok_Bxk)


def decode_action(model, seq_BxL, act_BxAxL, open_BxA, start, key, greedy: bool, vocab: int):
  """Decodes one action slot starting at `start` under the trie mask. Returns (seq with the
  action written, tokens B x L, log-probs B x L of the taken tokens under the masked policy)."""
  L = act_BxAxL.shape[-1]
  B = seq_BxL.shape[0]
  h_BxLxW, cache = model.prefill(seq_BxL)
  logits_BxV = model.logits(jax.lax.dynamic_index_in_dim(h_BxLxW, start - 1, 1, keepdims=False))
  tok_BxL = jnp.zeros((B, L), jnp.int32)
  logp_BxL = jnp.zeros((B, L), jnp.float32)

  def body(j, carry):
    seq, tok, logp, logits, cache, key = carry
    key, sub = jax.random.split(key)
    mask_BxV = jax.vmap(lambda a, o, t: text.trie_mask_at(a, o, t, j, vocab))(
        act_BxAxL, open_BxA, tok)
    lp_BxV = jax.nn.log_softmax(jnp.where(mask_BxV, logits, features.NEG), -1)
    nxt = (jnp.argmax(lp_BxV, -1) if greedy else jax.random.categorical(sub, lp_BxV)).astype(
        jnp.int32)
    tok = tok.at[:, j].set(nxt)
    logp = logp.at[:, j].set(jnp.take_along_axis(lp_BxV, nxt[:, None], 1)[:, 0])
    seq = jax.lax.dynamic_update_slice_in_dim(seq, nxt[:, None], start + j, axis=1)
    logits, cache = model.step(nxt, start + j, cache, seq)
    return seq, tok, logp, logits, cache, key

  seq, tok, logp, *_ = jax.lax.fori_loop(
      0, L, body, (seq_BxL, tok_BxL, logp_BxL, logits_BxV, cache, key))
  return seq, tok, logp


def rollout(model, params, tx, family_N, task_B, seed_B, key, sizes, lay: Layout, greedy: bool,
            vocab: int):
  """Plays each (task, reveal seed) once in the text env (auto_reset off). Returns the final
  state, the token sequences B x length, and per-turn records with leading T."""
  state = jax.vmap(lambda t, s: env_lib.fresh_state(params, sizes, t, s, 0))(task_B, seed_B)
  observe = lambda st: jax.vmap(lambda s: env_lib.observe(params, s))(st)
  seq = reset_tokens(params, tx, observe(state), sizes, lay)
  act_BxAxL = tx.act_NxAxL[task_B]
  res_BxAxR = tx.res_NxAxR[task_B]
  done_B = jnp.zeros(task_B.shape, bool)

  def turn(carry, xs):
    state, seq, done_B, prev_regret = carry
    t, key_t = xs
    obs = observe(state)
    open_BxA = open_actions(params, family_N, obs, sizes)
    start = lay.header + (lay.known + t) * lay.row
    new_seq, tok_BxL, logp_BxL = decode_action(model, seq, act_BxAxL, open_BxA, start, key_t,
                                               greedy, vocab)
    action_B = jax.vmap(text.chosen)(act_BxAxL, open_BxA, tok_BxL)
    _, nxt, reward_B, _, _, info = jax.vmap(
        lambda s, a: env_lib.step(s, a, params, sizes, auto_reset=False))(state, action_B)
    res_BxR = jnp.take_along_axis(res_BxAxR, action_B[:, None, None], 1)[:, 0]
    new_seq = jax.lax.dynamic_update_slice_in_dim(new_seq, res_BxR, start + lay.action, axis=1)
    seq = jnp.where(done_B[:, None], seq, new_seq)  # a finished episode writes nothing
    state = jax.tree.map(lambda n, s: jnp.where(
        done_B.reshape(done_B.shape + (1,) * (n.ndim - 1)), s, n), nxt, state)
    out = dict(open=open_BxA, tok=tok_BxL, logp=logp_BxL, action=action_B, active=~done_B,
               reward=jnp.where(done_B, 0.0, reward_B), is_target=info["is_target"] & ~done_B,
               regret=info["regret"], invalid=info["invalid"] & ~done_B)
    return (state, seq, done_B | info["done"], info["regret"]), out

  xs = (jnp.arange(lay.turns), jax.random.split(key, lay.turns))
  (state, seq, _, _), out_T = jax.lax.scan(
      turn, (state, seq, done_B, jnp.ones(task_B.shape)), xs)
  return state, seq, out_T


@functools.partial(jax.jit, static_argnames=("sizes", "lay", "greedy", "vocab"))
def _play(model, params, tx, family_N, task_B, seed_B, key, sizes, lay, greedy, vocab):
  state, seq, out = rollout(model, params, tx, family_N, task_B, seed_B, key, sizes, lay, greedy,
                            vocab)
  target = params.target_N[state.task]
  pct = jnp.where(state.best_config >= 0,
                  params.pct_better_FxC[target, jnp.maximum(state.best_config, 0)], 1.0)
  final = dict(regret=env_lib.regret_of(params, state.task, state.best), percentile=pct,
               cost_spent=state.cost_spent, n_invalid=state.n_invalid, n_repeat=state.n_repeat)
  return final, seq, dict(active=out["active"], action=out["action"],
                          is_target=out["is_target"], regret=out["regret"])


def play(model, params, tx, sizes, lay, vocab, task_indices, seeds, family_N=None, greedy=True,
         key=None) -> dict:
  """Per-episode arrays as play_lib.play returns them, plus `tokens` (E x length). Compiled ahead
  of time, so decision time excludes compilation."""
  task_B = jnp.asarray(task_indices, jnp.int32)
  seed_B = jnp.asarray(np.asarray(seeds, np.int64).astype(np.uint32))
  if family_N is None:
    family_N = jnp.full(params.target_N.shape, table_lib.family_id("other"), jnp.int32)
  key = jax.random.key(0) if key is None else key
  args = (model, params, tx, jnp.asarray(family_N, jnp.int32), task_B, seed_B, key)
  compiled = _play.lower(*args, sizes=sizes, lay=lay, greedy=greedy, vocab=vocab).compile()
  t0 = time.perf_counter()
  final, seq, out = jax.block_until_ready(compiled(*args))
  wall_ms = 1e3 * (time.perf_counter() - t0)
  return dict(play_lib.summarize_play(final, out, wall_ms), tokens=np.asarray(seq), wall_ms=wall_ms)
