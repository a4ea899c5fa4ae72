"""The text policy's training: tokenizer, distillation on the rendered teacher trajectories, then
multi-turn GRPO, and its evaluation rows (`--config.policy=lm`).

Distillation reads the simulate stage's ArrayRecord (the pointer policy's data, unchanged): each
kept episode's actions are replayed in the text env (teacher forcing, inside the jitted step), so
the tokens the LM is trained on are exactly the tokens it later sees and emits. Loss: cross-
entropy on the action tokens only, under the same trie mask the decoder uses; environment tokens
(header, known results, result slots, PAD) carry weight zero (`token_weights`).

RL: per update M tasks x G sampled episodes in the text env; return = 1 - regret + the env's
penalties; one group-centred advantage per episode (rl.advantages), given to every
action token of the episode; PPO-clipped per-token ratio, KL to the frozen distilled LM over the
trie-masked next-token distributions, entropy bonus. Everything of an update is one jax.jit.

Files: WORKDIR/lm/tokenizer.model, lm/sft/{ckpt,metrics.jsonl}, lm/rl/{ckpt,metrics.jsonl}.
"""
from __future__ import annotations

import functools
import json
import os
import time

from flax import nnx
import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from autollmr import errors
from autollmr.agent import bank as bank_lib
from autollmr.agent import features
from autollmr.agent import rl
from autollmr.agent import simulate
from autollmr.evaluation import agents
from autollmr.gym import build
from autollmr.gym import env as env_lib
from autollmr.gym import tasks as tasks_lib
from autollmr.text import agent as lm_agent
from autollmr.text import lm as lm_lib
from autollmr.text import words as text

SFT_METHOD, RL_METHOD = "lm_sft_agent", "lm_rl_agent"


def _dir(workdir, *parts):
  return os.path.join(workdir, "lm", *parts)


# --- text arrays for a bank or a test table ------------------------------------------------------


def bank_lines(config, tables, splits, split, bank) -> list[dict]:
  """Rendered lines of every task of a bank_lib.build_bank bank, in the bank's task order (the
  same views and padding as build_bank, so candidate a of task n is the bank's (n, a))."""
  A, T = bank["sizes"].num_candidates, bank["sizes"].max_turns
  cheap, target = ((config.sim.max_cheap_rows, config.sim.max_target_configs) if split == "train"
                   else (config.env.max_cheap_rows, config.env.max_target_configs))
  out = []
  for name in sorted(splits):
    s = splits[name]
    if not s[split]:
      continue
    view = tasks_lib.training_table(tables[name], s["train"] + s["val"])
    p, _ = build.make_params(
        view,
        s[split],
        max_cheap_rows=cheap,
        max_target_configs=target,
        invalid_penalty=config.env.invalid_penalty,
        repeat_penalty=config.env.repeat_penalty,
        pad_to=A,
        pad_turns_to=T)
    out += text.task_lines(p, view, s[split])
  if split == "train":  # train_bank's copies (sim.draws), in its order; their text still shows
    out = out * bank_lib.bank_copies(config)  # dropped configs, so configs/lm.py keeps draws = 1
  if len(out) != len(bank["names"]):
    raise RuntimeError("text lines and the bank disagree on the task list")
  return out


def ensure_tokenizer(config, workdir, tables, splits, force=False) -> str:
  """Trains WORKDIR/lm/tokenizer.model on the training bank's rendered lines, once."""
  path = _dir(workdir, text.TOKENIZER)
  if os.path.exists(path) and not force:
    return path
  bank = bank_lib.train_bank(config, tables, splits)
  if bank is None:
    raise errors.UserError("[lm] no training tasks to train a tokenizer on")
  lines = bank_lines(config, tables, splits, "train", bank)
  text.train_tokenizer(text.corpus(lines), path, int(config.lm.vocab_size))
  return path


def vocab_of(config) -> int:
  return int(config.lm.vocab_size)  # the model's table size; sentencepiece may use fewer


# --- teacher forcing, log-probs, the loss weights ------------------------------------------------


def forced_rollout(params, tx, family_N, task_B, seed_B, action_BxT, sizes, lay):
  """Replays given actions (-1: none) in the text env. Returns seq B x length, open B x T x A,
  tok B x T x L (action tokens written), active B x T."""
  state = jax.vmap(lambda t, s: env_lib.fresh_state(params, sizes, t, s, 0))(task_B, seed_B)
  observe = lambda st: jax.vmap(lambda s: env_lib.observe(params, s))(st)
  seq = lm_agent.reset_tokens(params, tx, observe(state), sizes, lay)
  act_BxAxL, res_BxAxR = tx.act_NxAxL[task_B], tx.res_NxAxR[task_B]
  A = act_BxAxL.shape[1]

  def turn(carry, t):
    state, seq, done_B = carry
    a_B = action_BxT[:, t]
    active = (a_B >= 0) & ~done_B
    a_B = jnp.maximum(a_B, 0)
    open_BxA = (lm_agent.open_actions(params, family_N, observe(state), sizes)
                | jax.nn.one_hot(a_B, A, dtype=bool))  # the teacher's action is always nameable
    row = jnp.concatenate([jnp.take_along_axis(act_BxAxL, a_B[:, None, None], 1)[:, 0],
                           jnp.take_along_axis(res_BxAxR, a_B[:, None, None], 1)[:, 0]], -1)
    start = lay.header + (lay.known + t) * lay.row
    new = jax.lax.dynamic_update_slice_in_dim(seq, row, start, axis=1)
    seq = jnp.where(active[:, None], new, seq)
    _, nxt, _, _, _, info = jax.vmap(
        lambda s, a: env_lib.step(s, a, params, sizes, auto_reset=False))(state, a_B)
    state = jax.tree.map(lambda n, s: jnp.where(
        active.reshape(active.shape + (1,) * (n.ndim - 1)), n, s), nxt, state)
    return (state, seq, done_B | ~active | info["done"]), dict(
        open=open_BxA, tok=row[:, :lay.action], active=active)

  (_, seq, _), out = jax.lax.scan(turn, (state, seq, jnp.zeros(task_B.shape, bool)),
                                  jnp.arange(action_BxT.shape[1]))
  sw = lambda x: jnp.swapaxes(x, 0, 1)
  return seq, sw(out["open"]), sw(out["tok"]), sw(out["active"])


def token_weights(seq_BxN, active_BxT, lay) -> jax.Array:
  """B x length loss weights: 1 on the action tokens of active turns (EOS included), 0 on every
  environment token (header, known results, result slots) and on PAD."""
  pos_TxL = jnp.asarray(lay.action_positions())
  w_BxTxL = active_BxT[:, :, None] & (seq_BxN[:, pos_TxL] != text.PAD)
  return jnp.zeros(seq_BxN.shape, jnp.float32).at[:, pos_TxL].set(w_BxTxL.astype(jnp.float32))


def masked_logp(model, seq_BxN, act_BxAxL, open_BxTxA, lay, vocab):
  """Log-probs over the vocabulary at every action token, under the trie mask (B x T x L x V),
  and the taken token ids (B x T x L). Position p is predicted from the hidden state at p - 1."""
  pos_TxL = jnp.asarray(lay.action_positions())
  h_BxNxW = model(seq_BxN)
  logits = model.logits(h_BxNxW[:, pos_TxL - 1])  # B x T x L x V
  tok_BxTxL = seq_BxN[:, pos_TxL]
  masks = jax.vmap(lambda a, o_T, t_T: jax.vmap(
      lambda o, t: text.trie_masks(a, o, t, vocab))(o_T, t_T))(act_BxAxL, open_BxTxA, tok_BxTxL)
  return jax.nn.log_softmax(jnp.where(masks, logits, features.NEG), -1), tok_BxTxL, masks


def _taken(lp_BxTxLxV, tok_BxTxL):
  return jnp.take_along_axis(lp_BxTxLxV, tok_BxTxL[..., None], -1)[..., 0]


# --- distillation --------------------------------------------------------------------------------


def load_episodes(workdir, max_turns: int):
  """(task, seed, actions T) of every kept teacher episode in WORKDIR/sim."""
  src = grain.sources.ArrayRecordDataSource([os.path.join(workdir, "sim", simulate.RECORDS)])
  last = {}
  for i in range(len(src)):
    r = simulate.decode_step(src[i])
    k = (int(r["task"]), int(r["seed"]))
    if k not in last or int(r["turn"]) > int(last[k]["turn"]):
      last[k] = r
  keys = sorted(last)
  act = np.full((len(keys), max_turns), -1, np.int32)
  for e, k in enumerate(keys):
    r = last[k]
    n = int(r["turn"])
    prev = [int(a) for a in np.asarray(r["queried_T"])[:n] if a >= 0]
    seq = (prev + [int(r["action"])])[:max_turns]
    act[e, :len(seq)] = seq
  return (np.array([k[0] for k in keys], np.int32), np.array([k[1] for k in keys], np.uint32),
          act)


def _optimizer(lr, warmup, steps, clip=1.0, wd=1e-4):
  sched = optax.warmup_cosine_decay_schedule(0.0, lr, max(min(warmup, steps // 2), 1),
                                             max(steps, 2), end_value=0.05 * lr)
  return optax.chain(optax.clip_by_global_norm(clip), optax.adamw(sched, weight_decay=wd))


def init_state(config, vocab, lr, warmup, steps):
  model = lm_lib.make_lm(config.lm, vocab, seed=int(config.seed))
  opt = nnx.Optimizer(model, _optimizer(lr, warmup, steps), wrt=nnx.Param)
  return nnx.split((model, opt))


@functools.lru_cache(maxsize=4)
def make_sft_step(graphdef, sizes, lay, vocab):
  def loss_fn(model, seq, act, open_, active):
    lp, tok, _ = masked_logp(model, seq, act, open_, lay, vocab)
    w = token_weights(seq, active, lay)[:, jnp.asarray(lay.action_positions())]
    nll = -_taken(lp, tok)
    ce = (w * nll).sum() / jnp.maximum(w.sum(), 1.0)
    acc = ((jnp.argmax(lp, -1) == tok) * w).sum() / jnp.maximum(w.sum(), 1.0)
    return ce, dict(ce=ce, token_acc=acc)

  @jax.jit
  def step(state, params, tx, family_N, task_B, seed_B, action_BxT):
    model, opt = nnx.merge(graphdef, state)
    seq, open_, _, active = forced_rollout(params, tx, family_N, task_B, seed_B, action_BxT,
                                           sizes, lay)
    (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
        model, seq, tx.act_NxAxL[task_B], open_, active)
    opt.update(model, grads)
    return nnx.state((model, opt)), dict(aux, loss=loss)

  return step


def _save(path, step, state):
  mngr = ocp.CheckpointManager(os.path.abspath(path),
                               options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True))
  mngr.save(step, args=ocp.args.StandardSave(nnx.to_pure_dict(state)), force=True)
  mngr.wait_until_finished()
  mngr.close()


def _restore(path, state):
  if not os.path.isdir(path):
    return None
  mngr = ocp.CheckpointManager(os.path.abspath(path))
  step = mngr.latest_step()
  if step is None:
    mngr.close()
    return None
  pure = mngr.restore(step, args=ocp.args.StandardRestore(nnx.to_pure_dict(state)))
  mngr.close()
  nnx.replace_by_pure_dict(state, jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), pure))
  return step


def log_row(path, row):
  with open(path, "a") as f:
    f.write(json.dumps(row) + "\n")


def train_sft(config, workdir, tables, splits) -> dict:
  lc = config.lm
  sp = text.load_tokenizer(ensure_tokenizer(config, workdir, tables, splits))
  vocab = vocab_of(config)
  if sp.get_piece_size() > vocab:
    raise errors.UserError(
        f"the tokenizer has {sp.get_piece_size()} pieces > lm.vocab_size={vocab}")
  bank = bank_lib.train_bank(config, tables, splits)
  tx = text.arrays(sp, bank_lines(config, tables, splits, "train", bank), lc)
  lay = lm_agent.layout(lc, bank["sizes"].max_turns)
  task_E, seed_E, act_ExT = load_episodes(workdir, bank["sizes"].max_turns)
  steps, bs = int(lc.sft_steps), int(lc.batch_size)
  graphdef, state = init_state(config, vocab, float(lc.lr), int(lc.warmup_steps), steps)
  step_fn = make_sft_step(graphdef, bank["sizes"], lay, vocab)
  out_dir = _dir(workdir, "sft")
  os.makedirs(out_dir, exist_ok=True)
  metrics = os.path.join(out_dir, "metrics.jsonl")
  if os.path.exists(metrics):
    os.remove(metrics)
  rng = np.random.default_rng(int(config.seed))
  t0, t_first, last = time.time(), None, {}
  for step in range(1, steps + 1):
    idx = rng.integers(0, len(task_E), bs)
    state, aux = step_fn(state, bank["params"], tx, bank["family_N"], jnp.asarray(task_E[idx]),
                         jnp.asarray(seed_E[idx]), jnp.asarray(act_ExT[idx]))
    if t_first is None:
      jax.block_until_ready(aux)
      t_first = time.time()
    if step % int(lc.log_every) == 0 or step == steps:
      dt = time.time() - t_first
      last = dict(step=step, episodes_per_s=(step - 1) * bs / max(dt, 1e-9),
                  **{k: float(v) for k, v in aux.items()})
      log_row(metrics, last)
  _save(os.path.join(out_dir, "ckpt"), steps, state)
  return dict(step=steps, last=last, seconds=time.time() - t0, episodes=len(task_E),
              layout=lay)


def load_model(config, workdir, which: str):
  """The LM of WORKDIR/lm/{sft,rl}/ckpt (None if absent)."""
  graphdef, state = init_state(config, vocab_of(config), 1e-3, 1, 2)
  if _restore(_dir(workdir, which, "ckpt"), state) is None:
    return None
  model, _ = nnx.merge(graphdef, state)
  return model


def done(config, workdir, which: str) -> bool:
  path = _dir(workdir, which, "ckpt")
  if not os.path.isdir(path):
    return False
  mngr = ocp.CheckpointManager(os.path.abspath(path))
  step = mngr.latest_step()
  mngr.close()
  want = config.lm.sft_steps if which == "sft" else config.lm.rl_steps
  return step is not None and step >= int(want)


# --- RL ------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def make_rl_update(graphdef, ref_graphdef, sizes, lay, vocab, M, G, rc_items):
  rc = dict(rc_items)

  def loss_fn(model, ref, seq, act, open_, active, logp_old, adv_BxT):
    lp, tok, masks = masked_logp(model, seq, act, open_, lay, vocab)
    ref_lp, _, _ = masked_logp(ref, seq, act, open_, lay, vocab)
    ref_lp = jax.lax.stop_gradient(ref_lp)
    w = token_weights(seq, active, lay)[:, jnp.asarray(lay.action_positions())]
    n = jnp.maximum(w.sum(), 1.0)
    logp = _taken(lp, tok)
    ratio = jnp.exp(logp - logp_old)
    adv = adv_BxT[:, :, None]
    pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - rc["clip_eps"], 1 + rc["clip_eps"]) * adv)
    p = jnp.exp(lp) * masks
    kl = (p * (lp - ref_lp)).sum(-1)  # masked entries: p = 0
    ent = -(p * jnp.where(masks, lp, 0.0)).sum(-1)
    mean = lambda x: (w * x).sum() / n
    loss = mean(pg) + rc["kl_coef"] * mean(kl) - rc["entropy_coef"] * mean(ent)
    return loss, dict(pg=mean(pg), kl=mean(kl), entropy=mean(ent))

  @jax.jit
  def update(state, ref_state, params, tx, family_N, key):
    model, opt = nnx.merge(graphdef, state)
    ref = nnx.merge(ref_graphdef, ref_state)
    k1, k2, k3 = jax.random.split(key, 3)
    task_M = jax.random.choice(k1, family_N.shape[0], (M,))
    task_B = jnp.repeat(task_M, G)
    seed_B = jax.random.bits(k2, (M * G,), jnp.uint32)
    state_f, seq, out = lm_agent.rollout(model, params, tx, family_N, task_B, seed_B, k3, sizes,
                                         lay, False, vocab)
    regret_B = env_lib.regret_of(params, state_f.task, state_f.best)
    adv_TxB = rl.advantages(out["reward"], out["active"], G)
    sw = lambda x: jnp.swapaxes(x, 0, 1)
    (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True)(
        model, ref, seq, tx.act_NxAxL[task_B], sw(out["open"]), sw(out["active"]),
        sw(out["logp"]), sw(adv_TxB))
    opt.update(model, grads)
    turns = jnp.maximum(out["active"].sum(), 1)
    return nnx.state((model, opt)), dict(aux, loss=loss, regret=regret_B.mean(),
                                         invalid_rate=out["invalid"].sum() / turns,
                                         turns=turns.astype(jnp.float32))

  return update


def train_rl(config, workdir, tables, splits) -> dict:
  lc, rc = config.lm, config.rl
  sp = text.load_tokenizer(_dir(workdir, text.TOKENIZER))
  vocab = vocab_of(config)
  bank = bank_lib.train_bank(config, tables, splits)
  tx = text.arrays(sp, bank_lines(config, tables, splits, "train", bank), lc)
  lay = lm_agent.layout(lc, bank["sizes"].max_turns)
  steps = int(lc.rl_steps)
  graphdef, state = init_state(config, vocab, float(lc.rl_lr), 1, steps)
  if _restore(_dir(workdir, "sft", "ckpt"), state) is None:
    raise errors.UserError(f"no LM SFT checkpoint in {_dir(workdir, 'sft', 'ckpt')}")
  model, opt = nnx.merge(graphdef, state)
  opt = nnx.Optimizer(model, _optimizer(float(lc.rl_lr), 1, steps, wd=0.0), wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))  # fresh optimizer state on the distilled weights
  ref_graphdef, ref_state = nnx.split(load_model(config, workdir, "sft"))
  rc_items = tuple(sorted(dict(clip_eps=float(rc.clip_eps), kl_coef=float(rc.kl_coef),
                               entropy_coef=float(rc.entropy_coef)).items()))
  M, G = int(lc.tasks_per_update), int(lc.group_size)
  update = make_rl_update(graphdef, ref_graphdef, bank["sizes"], lay, vocab, M, G, rc_items)
  out_dir = _dir(workdir, "rl")
  os.makedirs(out_dir, exist_ok=True)
  metrics = os.path.join(out_dir, "metrics.jsonl")
  if os.path.exists(metrics):
    os.remove(metrics)
  key = jax.random.key(int(config.seed) + 1)
  t0, t_train, env_steps, last = time.time(), 0.0, 0.0, {}
  for step in range(1, steps + 1):
    t1 = time.time()
    state, m = update(state, ref_state, bank["params"], tx, bank["family_N"],
                      jax.random.fold_in(key, step))
    m = {k: float(v) for k, v in m.items()}
    if step > 1:  # the first call compiles
      t_train += time.time() - t1
      env_steps += m["turns"]
    last = dict(step=step, steps_per_s=env_steps / t_train if t_train else None, **m)
    if step % int(lc.log_every) == 0 or step == steps:
      log_row(metrics, last)
  _save(os.path.join(out_dir, "ckpt"), steps, state)
  return dict(step=steps, last=last, seconds=time.time() - t0,
              policy_env_steps_per_s=env_steps / t_train if t_train else None)


# --- pipeline stages and evaluation rows ----------------------------------------------------------


def stage_sft(config, workdir, tables, splits):
  if done(config, workdir, "sft"):
    print(f"[lm sft] exists: {_dir(workdir, 'sft', 'ckpt')}")
    return
  out = train_sft(config, workdir, tables, splits)
  print(f"[lm sft] {out['step']} steps on {out['episodes']} teacher episodes in "
        f"{out['seconds']:.0f}s (sequence {out['layout'].length} tokens); last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in out["last"].items() if isinstance(v, float)))


def stage_rl(config, workdir, tables, splits):
  if done(config, workdir, "rl"):
    print(f"[lm rl] exists: {_dir(workdir, 'rl', 'ckpt')}")
    return
  out = train_rl(config, workdir, tables, splits)
  rate = out["policy_env_steps_per_s"]
  print(f"[lm rl] {out['step']} updates in {out['seconds']:.0f}s"
        + (f", {rate:.1f} policy+env steps/s" if rate else "") + "; last: "
        + ", ".join(f"{k}={v:.4g}" for k, v in out["last"].items() if isinstance(v, float)))


def eval_records(config, workdir, tables, splits) -> list[dict]:
  """Leaderboard records of the LM checkpoints in workdir (SFT, RL) on every test task."""
  path = _dir(workdir, text.TOKENIZER)
  if not os.path.exists(path):
    return []
  sp = text.load_tokenizer(path)
  records = []
  for method, which in ((SFT_METHOD, "sft"), (RL_METHOD, "rl")):
    model = load_model(config, workdir, which)
    if model is None:
      continue
    t0, decisions, wall = time.time(), 0, 0.0
    for table, test, params, sizes, family_N, task_E, seed_E in agents.test_batches(
        config, tables, splits):
      tx = text.arrays(sp, text.task_lines(params, table, test), config.lm)
      lay = lm_agent.layout(config.lm, sizes.max_turns)
      out = lm_agent.play(model, params, tx, sizes, lay, vocab_of(config), task_E, seed_E,
                          family_N, greedy=True)
      decisions += int(out["n_turns"].sum())
      wall += out["wall_ms"] / 1e3
      records += agents.episode_records(method, table, test, task_E, seed_E, out)
    print(f"[eval] {method}: {decisions} decisions, {decisions / max(wall, 1e-9):.1f} "
          f"decisions/s (compiled), {time.time() - t0:.0f}s with compilation")
  return records
