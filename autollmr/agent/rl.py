"""Multi-turn RL, GRPO-style, with the whole update in one jax.jit (PureJaxRL style).

One update: sample M training tasks uniformly, turn each into a random sub-study
(substudies.sub_studies: configs and visible fidelities dropped, so the optimum moves between
draws),
play G episodes of each in the vmapped env with the current policy (lax.scan over turns), return
= terminal 1 - regret + the env's invalid/repeat penalties, advantage = the return centred within
its group of G (not divided by the group's std: Dr. GRPO, Liu et al. 2025) given to every turn,
then `rl.epochs` passes of the PPO-clipped loss on every turn's action log-probability + KL to
the frozen reference (distilled) policy - entropy bonus, and an optax step. `rl.updates_per_call`
updates run in one call via lax.scan.

The landscape prior (`rl.prior_share` > 0): that share of the M groups plays landscapes drawn
anew every update inside the same jit (gym/prior_env.py: prior.draw, then the task's EnvParams,
one per episode, the env vmapped over them); the rest play the real training bank as above. The
loss averages every turn of both parts. Metrics add `regret_prior`, the drawn groups' regret.

Episodes are stored as their O(T) Obs; the loss rebuilds each turn's view from the env params
(play_lib.view), as sft.py does, so nothing A-sized is kept between rollout and loss.

Devices (sharding.py): the M x G episodes of an update are split over the mesh's `data` axis
(each device, and so each host, steps its share of the env batch; the loss's batch stays split
the same way), the (model, optimizer) state and the frozen reference policy are sharded by
config.mesh.params (the state donated), the env params are replicated.
"""
from __future__ import annotations

import functools
import os
import sys
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tensorboardX import SummaryWriter
from tqdm import tqdm

from autollmr import errors
from autollmr import sharding
from autollmr.agent import bank as bank_lib
from autollmr.agent import checkpoints
from autollmr.agent import gate
from autollmr.agent import optim
from autollmr.agent import play as play_lib
from autollmr.agent import train_log
from autollmr.gym import env as env_lib
from autollmr.gym import prior
from autollmr.gym import prior_env
from autollmr.gym import substudies
from autollmr.gym import tasks as tasks_lib


def rollout(model, ref_model, params, family_N, task_B, seed_B, key, sizes, max_keys, mesh=None,
            per_episode: bool = False):
  """G-grouped episodes with sampled actions; per-turn records (leading T) and final info.
  mesh: split the episodes over its `data` axis. per_episode: params holds one single-task
  EnvParams per episode (leading axis B; drawn landscapes) and family_N one family per episode."""
  if mesh is not None:
    task_B, seed_B = sharding.constrain_batch((task_B, seed_B), mesh)
    if per_episode:
      params, family_N = sharding.constrain_batch((params, family_N), mesh)
  pax = 0 if per_episode else None  # the params' vmap axis
  state = jax.vmap(lambda p, t, s: env_lib.fresh_state(p, sizes, t, s, 0),
                   in_axes=(pax, 0, 0))(params, task_B, seed_B)
  done_B = jnp.zeros(task_B.shape, bool)

  def turn(carry, key_t):
    state, done_B = carry
    obs = jax.vmap(env_lib.observe, in_axes=(pax, 0))(params, state)
    v = play_lib.view(params, family_N, obs, sizes, per_episode)
    logits_BxA = model(v, max_keys)[0]
    ref_logits_BxA = ref_model(v, max_keys)[0]
    action_B = jax.random.categorical(key_t, logits_BxA).astype(jnp.int32)
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxA), action_B[:, None], 1)[:, 0]
    _, nxt, reward_B, _, _, info = jax.vmap(
        lambda s, a, p: env_lib.step(s, a, p, sizes, auto_reset=False),
        in_axes=(0, 0, pax))(state, action_B, params)
    state = jax.tree.map(lambda n, s: jnp.where(
        done_B.reshape(done_B.shape + (1,) * (n.ndim - 1)), s, n), nxt, state)
    out = dict(obs=obs, action=action_B, logp=logp_B, ref_logits=ref_logits_BxA,
               active=~done_B, reward=jnp.where(done_B, 0.0, reward_B),
               invalid=info["invalid"] & ~done_B, repeat=info["repeat"] & ~done_B)
    return (state, done_B | info["done"]), out

  keys = jax.random.split(key, sizes.max_turns)
  (state, _), traj_T = jax.lax.scan(turn, (state, done_B), keys)
  regret_B = jax.vmap(env_lib.regret_of, in_axes=(pax, 0, 0))(params, state.task, state.best)
  return traj_T, regret_B


def advantages(reward_TxB, active_TxB, group: int):
  """Group-centred advantages; groups are consecutive blocks of `group` episodes. Not divided by
  the group's std (Dr. GRPO, Liu et al. 2025): a group whose returns differ by noise (regret 1e-4
  vs 2e-4) pushes the policy 1e-4 hard, not as hard as a group that found the optimum once in
  eight tries. Every turn of an episode gets its episode's advantage."""
  T, B = reward_TxB.shape
  ret_GxN = reward_TxB.sum(0).reshape(B // group, group)
  adv_B = (ret_GxN - ret_GxN.mean(-1, keepdims=True)).reshape(B)
  return jnp.broadcast_to(adv_B, (T, B)) * active_TxB


def prior_groups(rc) -> int:
  """How many of an update's M task groups are drawn from the landscape prior (rl.prior_share)."""
  share = float(rc.prior_share)
  if not 0.0 <= share <= 1.0:
    raise errors.UserError(f"--config.rl.prior_share={share}: a share, between 0 and 1")
  return int(round(share * int(rc.tasks_per_update)))


def make_update(graphdef, ref_graphdef, sizes, max_keys, rc, mesh, state_sh, ref_sh, draw=None):
  """The jitted function: `updates_per_call` full GRPO updates (rollout, advantages, loss, step),
  with the state's and reference's shardings (sharding.state_shardings); the state is donated.
  draw: dict(fn=key, n -> (per-episode EnvParams, family_n), sizes=EnvSizes, max_keys): the prior's
  landscapes (gym/prior_env.py), new ones every update for round(rl.prior_share * M) groups."""
  M, G = int(rc.tasks_per_update), int(rc.group_size)
  Mp = prior_groups(rc) if draw is not None else 0
  Mr = M - Mp
  sharding.check_divisible(M * G, mesh, "--config.rl.tasks_per_update x --config.rl.group_size")
  if Mp:
    sharding.check_divisible(Mp * G, mesh, "round(rl.prior_share x rl.tasks_per_update) x "
                             "rl.group_size")

  def token_terms(model, part, per_episode):
    """Per-turn PPO terms of one part of the batch (the real tables' or the prior's)."""
    obs_flat, action, logp_old, adv, active, ref_logits, params, family = part
    sz = draw["sizes"] if per_episode else sizes
    v = play_lib.view(params, family, obs_flat, sz, per_episode)
    logits_NxA = model(v, draw["max_keys"] if per_episode else max_keys)[0]
    logp_NxA = jax.nn.log_softmax(logits_NxA)
    logp = jnp.take_along_axis(logp_NxA, action[:, None], 1)[:, 0]
    ratio = jnp.exp(logp - logp_old)
    pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - rc.clip_eps, 1 + rc.clip_eps) * adv)
    p_NxA = jnp.exp(logp_NxA)
    kl = jnp.sum(p_NxA * (logp_NxA - jax.nn.log_softmax(ref_logits)), -1)
    ent = -jnp.sum(p_NxA * logp_NxA, -1)
    clipped = (jnp.abs(ratio - 1) > rc.clip_eps).astype(jnp.float32)
    return pg, kl, ent, clipped, active.astype(jnp.float32)

  def loss_fn(model, parts, kinds):
    terms = [token_terms(model, part, per_episode) for part, per_episode in zip(parts, kinds)]
    pg, kl, ent, clipped, w = (jnp.concatenate(x) for x in zip(*terms))
    n = jnp.maximum(w.sum(), 1.0)
    mean = lambda x: (x * w).sum() / n
    loss = mean(pg) + rc.kl_coef * mean(kl) - rc.entropy_coef * mean(ent)
    return loss, dict(pg=mean(pg), kl=mean(kl), entropy=mean(ent), clip_frac=mean(clipped))

  def play_part(model, ref_model, params, family, m, k_seed, k_roll, sz, keys_max, per_episode):
    """m groups of G episodes: (the loss's batch, regret_B, the trajectories)."""
    task_B = (jnp.zeros((m * G,), jnp.int32) if per_episode
              else jnp.repeat(jnp.arange(m, dtype=jnp.int32), G))
    seed_B = jax.random.bits(k_seed, (m * G,), jnp.uint32)
    traj, regret_B = rollout(model, ref_model, params, family, task_B, seed_B, k_roll, sz,
                             keys_max, mesh, per_episode)
    adv_TxB = advantages(traj["reward"], traj["active"], G)
    T = sz.max_turns
    # episode-major (B x T -> B*T): the loss batch stays split over `data` as the episodes were
    flat = lambda x: sharding.constrain_batch(
        jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), mesh)
    if per_episode:  # each turn's view needs its episode's landscape
      params = jax.tree.map(lambda x: jnp.repeat(x, T, 0), params)
      family = jnp.repeat(family, T)
    part = (jax.tree.map(flat, traj["obs"]), flat(traj["action"]), flat(traj["logp"]),
            flat(adv_TxB), flat(traj["active"]), flat(traj["ref_logits"]), params, family)
    return part, regret_B, traj

  def one_update(carry, key):
    state, ref_state, bank, bank_family_N = carry
    model, opt = nnx.merge(graphdef, state)
    ref_model = nnx.merge(ref_graphdef, ref_state)
    k_task, k_seed, k_roll = jax.random.split(key, 3)
    played = []  # per part (the bank's, the prior's): (the loss's batch, regret_B, trajectories)
    if Mr:
      k_task, k_aug = jax.random.split(k_task)
      task_M = jax.random.choice(k_task, bank_family_N.shape[0], (Mr,))
      # the group's G episodes share one random sub-study (rl.drop_*; 0 = the task as it is)
      params = substudies.sub_studies(bank, task_M, k_aug, rc.drop_configs, rc.drop_fidelities)
      played.append(play_part(model, ref_model, params, bank_family_N[task_M], Mr, k_seed,
                              k_roll, sizes, max_keys, False))
    if Mp:  # new landscapes every update, each group its own
      k_draw, k_seed, k_roll = jax.random.split(jax.random.fold_in(key, 1), 3)
      params, family = draw["fn"](k_draw, Mp)
      params = jax.tree.map(lambda x: jnp.repeat(x, G, 0), params)
      family = jnp.repeat(family, G)
      played.append(play_part(model, ref_model, params, family, Mp, k_seed, k_roll,
                              draw["sizes"], draw["max_keys"], True))
    parts, regrets, trajs = zip(*played)
    kinds = [False] * bool(Mr) + [True] * bool(Mp)  # per part: per-episode params or the bank
    aux = {}
    for _ in range(int(rc.epochs)):
      (loss, aux), grads = nnx.value_and_grad(
          lambda m, p: loss_fn(m, p, kinds), has_aux=True,
          argnums=nnx.DiffState(0, opt.wrt))(model, parts)
      opt.update(model, grads)
    total = lambda k: sum(tr[k].sum() for tr in trajs)
    turns = jnp.maximum(total("active"), 1)
    n_ep = sum(tr["reward"].shape[1] for tr in trajs)
    metrics = dict(aux, loss=loss, regret=jnp.concatenate(regrets).mean(),
                   ret=sum(tr["reward"].sum() for tr in trajs) / n_ep,
                   invalid_rate=total("invalid") / turns,
                   repeat_rate=total("repeat") / turns, turns=turns.astype(jnp.float32))
    if Mp:
      metrics["regret_prior"] = regrets[-1].mean()
    return (nnx.state((model, opt)), ref_state, bank, bank_family_N), metrics

  rep = sharding.replicated(mesh)

  @functools.partial(jax.jit, in_shardings=(state_sh, ref_sh, rep, rep, rep),
                     out_shardings=(state_sh, rep), donate_argnums=(0,))
  def updates(state, ref_state, params, family_N, key):
    keys = jax.random.split(key, int(rc.updates_per_call))
    (state, *_), metrics = jax.lax.scan(one_update, (state, ref_state, params, family_N), keys)
    return state, jax.tree.map(jnp.mean, metrics)

  return updates


def prior_draw(config) -> dict:
  """The prior's landscapes as RL draws them (make_update's `draw`): the kinds and rhos of
  config.prior, the budgets and turns of config.tasks, features padded to the model's maxima."""
  budgets = tuple(float(k) for k in str(config.tasks.budgets).split(",") if k.strip())
  fn = functools.partial(
      prior_env.draw_tasks, kinds=prior.kinds_of(config.prior), budgets=budgets,
      rhos=prior.rhos_of(config.prior), extra_turns=int(config.tasks.extra_turns),
      online_extra_turns=tasks_lib.ONLINE_EXTRA_TURNS,
      d_max=int(config.model.max_config_features), g_max=int(config.model.max_fidelity_features),
      invalid_penalty=float(config.env.invalid_penalty),
      repeat_penalty=float(config.env.repeat_penalty))
  sizes = prior_env.env_sizes(budgets, tasks_lib.ONLINE_EXTRA_TURNS)
  return dict(fn=fn, sizes=sizes, max_keys=min(sizes.num_candidates + sizes.max_turns,
                                               int(config.model.max_keys)))


def init_states(config, workdir):
  """(graphdef, state) of the trained model + optimizer, and the frozen reference policy.

  rl.init = "sft": start from (and stay close to) the distilled policy; "scratch": a fresh
  policy, whose initial weights are also the KL reference (so kl_coef only slows drift).
  """
  model, ref = checkpoints.start_policy(config, workdir), checkpoints.start_policy(config, workdir)
  tx, lr = optim.rl_optimizer(config)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))
  ref_graphdef, ref_state = nnx.split(ref)
  return graphdef, state, ref_graphdef, ref_state, lr


def train(config, workdir, tables, splits, stop_after: int | None = None) -> dict:
  logging.set_verbosity(logging.WARNING)
  rc = config.rl
  out_dir = os.path.join(workdir, "rl")
  os.makedirs(out_dir, exist_ok=True)
  bank = bank_lib.rl_bank(config, tables, splits)  # no target results of the held configs
  if bank is None:
    raise errors.UserError("[rl] no training tasks in the chosen families")
  val, held = gate.gate_banks(config, tables, splits)
  sizes = bank["sizes"]
  max_keys = int(config.sim.max_cheap_rows) + sizes.max_turns
  graphdef, state, ref_graphdef, ref_state, lr = init_states(config, workdir)
  mesh = sharding.make_mesh(config)
  state_sh = sharding.state_shardings(state, mesh, config.mesh.params)
  ref_sh = sharding.state_shardings(ref_state, mesh, config.mesh.params)
  update = make_update(graphdef, ref_graphdef, sizes, max_keys, rc, mesh, state_sh, ref_sh,
                       prior_draw(config) if prior_groups(rc) else None)
  state, ref_state = sharding.put((state, ref_state), (state_sh, ref_sh))
  env_params, family_N = sharding.put((bank["params"], bank["family_N"]),
                                      sharding.replicated(mesh))
  mngr = checkpoints.rl_manager(workdir)
  step = 0
  if mngr.latest_step() is not None:
    step = mngr.latest_step()
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(checkpoints.abstract(state))))
    nnx.replace_by_pure_dict(state, restored["state"])  # arrays on this run's mesh
  metrics_path = os.path.join(out_dir, "metrics.jsonl")
  train_log.truncate(metrics_path, step)
  tb = SummaryWriter(os.path.join(out_dir, "tb")) if sharding.is_main() else None
  total = int(rc.steps)
  per_call = int(rc.updates_per_call)
  bar = tqdm(total=total, initial=step, desc="[rl]", file=sys.stderr, leave=False,
             disable=os.environ.get("AUTOLLMR_NO_PROGRESS") == "1" or not sharding.is_main())
  key = jax.random.key(int(config.seed) + 1)
  last, t_train, env_steps = {}, 0.0, 0
  best = checkpoints.read_best(workdir)  # process 0 may be writing it: its view decides
  best_step, best_val = sharding.agree(
      np.array([-1.0, 0.0] if best is None else [best["step"], best["val_select"]]))
  best = None if best_step < 0 else dict(step=int(best_step), val_select=float(best_val))
  start = None  # the starting policy's per-task val regrets
  start_path = os.path.join(out_dir, "val_start.npz")  # the starting policy's per-task val regret
  if best is None and (val is not None or held is not None):  # the start is a candidate (step 0)
    # The distilled start was validated at the end of SFT (same parameters, same episodes): reuse.
    saved = (gate.final_val(config, workdir, val) if rc.init == "sft" and held is None
             else None)
    if saved is not None:
      row, per_task = gate.val_row(saved[0], saved[1]), saved[2]
    else:
      model, _ = nnx.merge(graphdef, state)
      row, per_task = gate.validate(config, model, val, held)  # val_select None: sft.val_seeds = 0
    if row["val_select"] is not None:
      train_log.log_row(metrics_path, tb, dict(step=0, **row))
      if sharding.is_main():
        np.savez(start_path, **per_task)
      best = checkpoints.write_best(workdir, 0, row["val_select"], None)
      start = per_task
  elif sharding.agree(os.path.exists(start_path)):  # a resumed run: written by an earlier one
    start = dict(np.load(start_path))
  while step < total:
    if stop_after is not None and step >= stop_after:
      break
    t0 = time.time()
    state, m = update(state, ref_state, env_params, family_N, jax.random.fold_in(key, step))
    m = {k: float(v) for k, v in m.items()}
    dt = time.time() - t0
    step += per_call
    bar.update(per_call)
    if step > per_call:  # the first call includes compilation
      t_train += dt
      env_steps += m["turns"] * per_call
    rate = env_steps / t_train if t_train else None
    last = dict(step=step, lr=float(lr(step)), steps_per_s=rate, **m)
    bar.set_postfix(regret=f"{m['regret']:.3f}", kl=f"{m['kl']:.3f}")
    if step % int(rc.checkpoint_every) < per_call or step >= total:
      model, _ = nnx.merge(graphdef, state)
      row, per_task = gate.validate(config, model, val, held)
      last.update(row)
      if per_task and sharding.is_main():  # per-task regrets behind val_select, for audits
        np.savez(os.path.join(out_dir, f"val_{step}.npz"), **per_task)
      significant = True
      if start is not None and row["val_select"] is not None:
        gain, se = gate.paired_gain(per_task, start)
        last.update(val_gain=gain, val_gain_se=se)
        significant = gain < -float(rc.select_z) * se
      adopt = sharding.agree(bool(best is not None and last["val_select"] is not None
                                  and last["val_select"] < best["val_select"] and significant))
      if adopt:
        best = checkpoints.write_best(workdir, step, last["val_select"], state)
      mngr.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(nnx.to_pure_dict(state))), force=True)
    if step % int(rc.log_every) < per_call or "val_regret" in last:
      train_log.log_row(metrics_path, tb, last)
  mngr.wait_until_finished()
  mngr.close()
  bar.close()
  if tb is not None:
    tb.close()
  return dict(step=step, last=last, policy_env_steps_per_s=(env_steps / t_train
                                                            if t_train else None))
