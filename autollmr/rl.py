"""Multi-turn RL, GRPO-style, with the whole update in one jax.jit (PureJaxRL style).

One update: sample M training tasks uniformly, turn each into a random sub-study
(env.sub_studies: configs and visible fidelities dropped, so the optimum moves between draws),
play G episodes of each in the vmapped env with the current policy (lax.scan over turns), return
= terminal 1 - regret + the env's invalid/repeat penalties, advantage = the return centred within
its group of G (not divided by the group's std: Dr. GRPO, Liu et al. 2025) given to every turn,
then `rl.epochs` passes of the PPO-clipped loss on every turn's action log-probability + KL to
the frozen reference (distilled) policy - entropy bonus, and an optax step. `rl.updates_per_call`
updates run in one call via lax.scan.

Episodes are stored as their O(T) Obs; the loss rebuilds each turn's view from the env params
(agent.view), as sft.py does, so nothing A-sized is kept between rollout and loss.

Devices (sharding.py): the M x G episodes of an update are split over the mesh's `data` axis
(each device, and so each host, steps its share of the env batch; the loss's batch stays split
the same way), the (model, optimizer) state and the frozen reference policy are sharded by
config.mesh.params (the state donated), the env params are replicated.
"""
from __future__ import annotations

import functools
import json
import os
import sys
import time

from absl import logging
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp

from autollmr import agent
from autollmr import env as env_lib
from autollmr import model as model_lib
from autollmr import sft
from autollmr import sharding
from autollmr import simulate

METHOD = "rl_agent"


def make_optimizer(config):
  c = config.rl
  lr = optax.warmup_cosine_decay_schedule(0.0, c.lr, max(int(c.warmup_steps), 1),
                                          max(int(c.steps), int(c.warmup_steps) + 1),
                                          end_value=0.1 * c.lr)
  return optax.chain(optax.clip_by_global_norm(c.clip_norm), optax.adamw(lr, weight_decay=0.0)), lr


def rollout(model, ref_model, params, family_N, task_B, seed_B, key, sizes, max_keys, mesh=None):
  """G-grouped episodes with sampled actions; per-turn records (leading T) and final info.
  mesh: split the episodes over its `data` axis."""
  if mesh is not None:
    task_B, seed_B = sharding.constrain_batch((task_B, seed_B), mesh)
  state = jax.vmap(lambda t, s: env_lib._fresh_state(params, sizes, t, s, 0))(task_B, seed_B)
  done_B = jnp.zeros(task_B.shape, bool)

  def turn(carry, key_t):
    state, done_B = carry
    obs = jax.vmap(lambda s: env_lib.observe(params, s))(state)
    v = agent.view(params, family_N, obs, sizes)
    logits_BxA = model(v, max_keys)[0]
    ref_logits_BxA = ref_model(v, max_keys)[0]
    action_B = jax.random.categorical(key_t, logits_BxA).astype(jnp.int32)
    logp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BxA), action_B[:, None], 1)[:, 0]
    _, nxt, reward_B, _, _, info = jax.vmap(
        lambda s, a: env_lib.step(s, a, params, sizes, auto_reset=False))(state, action_B)
    state = jax.tree.map(lambda n, s: jnp.where(
        done_B.reshape(done_B.shape + (1,) * (n.ndim - 1)), s, n), nxt, state)
    out = dict(obs=obs, action=action_B, logp=logp_B, ref_logits=ref_logits_BxA,
               active=~done_B, reward=jnp.where(done_B, 0.0, reward_B),
               invalid=info["invalid"] & ~done_B, repeat=info["repeat"] & ~done_B)
    return (state, done_B | info["done"]), out

  keys = jax.random.split(key, sizes.max_turns)
  (state, _), traj_T = jax.lax.scan(turn, (state, done_B), keys)
  regret_B = env_lib.regret_of(params, state.task, state.best)
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


def make_update(graphdef, ref_graphdef, sizes, max_keys, rc, mesh, state_sh, ref_sh):
  """The jitted function: `updates_per_call` full GRPO updates (rollout, advantages, loss, step),
  with the state's and reference's shardings (sharding.state_shardings); the state is donated."""
  M, G = int(rc.tasks_per_update), int(rc.group_size)
  sharding.check_divisible(M * G, mesh, "--config.rl.tasks_per_update x --config.rl.group_size")

  def loss_fn(model, obs_flat, action, logp_old, adv, active, ref_logits, params, family_N):
    v = agent.view(params, family_N, obs_flat, sizes)
    logits_NxA = model(v, max_keys)[0]
    logp_NxA = jax.nn.log_softmax(logits_NxA)
    logp = jnp.take_along_axis(logp_NxA, action[:, None], 1)[:, 0]
    ratio = jnp.exp(logp - logp_old)
    pg = -jnp.minimum(ratio * adv, jnp.clip(ratio, 1 - rc.clip_eps, 1 + rc.clip_eps) * adv)
    p_NxA = jnp.exp(logp_NxA)
    kl = jnp.sum(p_NxA * (logp_NxA - jax.nn.log_softmax(ref_logits)), -1)
    ent = -jnp.sum(p_NxA * logp_NxA, -1)
    w = active.astype(jnp.float32)
    n = jnp.maximum(w.sum(), 1.0)
    mean = lambda x: (x * w).sum() / n
    loss = mean(pg) + rc.kl_coef * mean(kl) - rc.entropy_coef * mean(ent)
    clipped = mean((jnp.abs(ratio - 1) > rc.clip_eps).astype(jnp.float32))
    return loss, dict(pg=mean(pg), kl=mean(kl), entropy=mean(ent), clip_frac=clipped)

  def one_update(carry, key):
    state, ref_state, bank, bank_family_N = carry
    model, opt = nnx.merge(graphdef, state)
    ref_model = nnx.merge(ref_graphdef, ref_state)
    k_task, k_seed, k_roll = jax.random.split(key, 3)
    k_task, k_aug = jax.random.split(k_task)
    task_M = jax.random.choice(k_task, bank_family_N.shape[0], (M,))
    # the group's G episodes share one random sub-study (rl.drop_*; 0 = the task as it is)
    params = env_lib.sub_studies(bank, task_M, k_aug, rc.drop_configs, rc.drop_fidelities)
    family_N = bank_family_N[task_M]
    task_B = jnp.repeat(jnp.arange(M, dtype=jnp.int32), G)
    seed_B = jax.random.bits(k_seed, (M * G,), jnp.uint32)
    traj, regret_B = rollout(model, ref_model, params, family_N, task_B, seed_B, k_roll, sizes,
                             max_keys, mesh)
    adv_TxB = advantages(traj["reward"], traj["active"], G)
    # episode-major (B x T -> B*T): the loss batch stays split over `data` as the episodes were
    flat = lambda x: sharding.constrain_batch(
        jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:]), mesh)
    obs_flat = jax.tree.map(flat, traj["obs"])
    batch = (obs_flat, flat(traj["action"]), flat(traj["logp"]), flat(adv_TxB),
             flat(traj["active"]), flat(traj["ref_logits"]))
    aux = {}
    for _ in range(int(rc.epochs)):
      (loss, aux), grads = nnx.value_and_grad(loss_fn, has_aux=True, argnums=nnx.DiffState(
          0, opt.wrt))(model, *batch, params, family_N)
      opt.update(model, grads)
    turns = jnp.maximum(traj["active"].sum(), 1)
    metrics = dict(aux, loss=loss, regret=regret_B.mean(),
                   ret=traj["reward"].sum(0).mean(),
                   invalid_rate=traj["invalid"].sum() / turns,
                   repeat_rate=traj["repeat"].sum() / turns, turns=turns.astype(jnp.float32))
    return (nnx.state((model, opt)), ref_state, bank, bank_family_N), metrics

  rep = sharding.replicated(mesh)

  @functools.partial(jax.jit, in_shardings=(state_sh, ref_sh, rep, rep, rep),
                     out_shardings=(state_sh, rep), donate_argnums=(0,))
  def updates(state, ref_state, params, family_N, key):
    keys = jax.random.split(key, int(rc.updates_per_call))
    (state, *_), metrics = jax.lax.scan(one_update, (state, ref_state, params, family_N), keys)
    return state, jax.tree.map(jnp.mean, metrics)

  return updates


def _manager(workdir, sub="ckpt"):
  return ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "rl", sub)),
                               options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True))


def start_policy(config, workdir):
  """The policy RL starts from (rl.init): the distilled one, or a fresh one (config.seed)."""
  if config.rl.init == "sft":
    model = sft.load_policy(config, workdir)
    if model is None:
      raise FileNotFoundError(f"rl.init=sft but no SFT checkpoint in {workdir}/sft/ckpt: run the "
                              "simulate and sft stages first, or use configs/rl_scratch.py")
    return model
  if config.rl.init == "scratch":
    return model_lib.make_policy(config.model, seed=int(config.seed))
  raise ValueError(f"--config.rl.init must be 'sft' or 'scratch', got {config.rl.init!r}")


def init_states(config, workdir):
  """(graphdef, state) of the trained model + optimizer, and the frozen reference policy.

  rl.init = "sft": start from (and stay close to) the distilled policy; "scratch": a fresh
  policy, whose initial weights are also the KL reference (so kl_coef only slows drift).
  """
  model, ref = start_policy(config, workdir), start_policy(config, workdir)
  tx, lr = make_optimizer(config)
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, opt))
  ref_graphdef, ref_state = nnx.split(ref)
  return graphdef, state, ref_graphdef, ref_state, lr


def train(config, workdir, tables, splits, stop_after: int | None = None) -> dict:
  logging.set_verbosity(logging.WARNING)
  rc = config.rl
  out_dir = os.path.join(workdir, "rl")
  os.makedirs(out_dir, exist_ok=True)
  bank = simulate.rl_bank(config, tables, splits)  # no target results of the held configs
  if bank is None:
    raise RuntimeError("[rl] no training tasks in the chosen families")
  val, held = gate_banks(config, tables, splits)
  sizes = bank["sizes"]
  max_keys = int(config.sim.max_cheap_rows) + sizes.max_turns
  graphdef, state, ref_graphdef, ref_state, lr = init_states(config, workdir)
  mesh = sharding.make_mesh(config)
  state_sh = sharding.state_shardings(state, mesh, config.mesh.params)
  ref_sh = sharding.state_shardings(ref_state, mesh, config.mesh.params)
  update = make_update(graphdef, ref_graphdef, sizes, max_keys, rc, mesh, state_sh, ref_sh)
  state, ref_state = sharding.put((state, ref_state), (state_sh, ref_sh))
  env_params, family_N = sharding.put((bank["params"], bank["family_N"]),
                                      sharding.replicated(mesh))
  mngr = _manager(workdir)
  step = 0
  if mngr.latest_step() is not None:
    step = mngr.latest_step()
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(sft.abstract(state))))
    nnx.replace_by_pure_dict(state, restored["state"])  # arrays on this run's mesh
  metrics_path = os.path.join(out_dir, "metrics.jsonl")
  sft._truncate_metrics(metrics_path, step)
  from tensorboardX import SummaryWriter
  from tqdm import tqdm
  tb = SummaryWriter(os.path.join(out_dir, "tb")) if sharding.is_main() else None
  total = int(rc.steps)
  per_call = int(rc.updates_per_call)
  bar = tqdm(total=total, initial=step, desc="[rl]", file=sys.stderr, leave=False,
             disable=os.environ.get("AUTOLLMR_NO_PROGRESS") == "1" or not sharding.is_main())
  key = jax.random.key(int(config.seed) + 1)
  last, t_train, env_steps = {}, 0.0, 0
  best = _read_best(workdir)
  start_path = os.path.join(out_dir, "val_start.npz")  # the starting policy's per-task val regret
  if best is None and (val is not None or held is not None):  # the start is a candidate (step 0)
    # The distilled start was validated at the end of SFT (same parameters, same episodes): reuse.
    saved = (sft.final_val(config, workdir, val) if rc.init == "sft" and held is None
             else None)
    if saved is not None:
      row, per_task = _row(saved[0], saved[1]), saved[2]
    else:
      model, _ = nnx.merge(graphdef, state)
      row, per_task = _validate(config, model, val, held)  # val_select None: sft.val_seeds = 0
    if row["val_select"] is not None:
      sft._log(metrics_path, tb, dict(step=0, **row))
      if sharding.is_main():
        np.savez(start_path, **per_task)
      best = _write_best(workdir, 0, row["val_select"], None)
  start = dict(np.load(start_path)) if os.path.exists(start_path) else None
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
      row, per_task = _validate(config, model, val, held)
      last.update(row)
      if per_task and sharding.is_main():  # per-task regrets behind val_select, for audits
        np.savez(os.path.join(out_dir, f"val_{step}.npz"), **per_task)
      significant = True
      if start is not None and row["val_select"] is not None:
        gain, se = paired_gain(per_task, start)
        last.update(val_gain=gain, val_gain_se=se)
        significant = gain < -float(rc.select_z) * se
      if best is not None and last["val_select"] is not None \
          and last["val_select"] < best["val_select"] and significant:
        best = _write_best(workdir, step, last["val_select"], state)
      mngr.save(step, args=ocp.args.Composite(
          state=ocp.args.StandardSave(nnx.to_pure_dict(state))), force=True)
    if step % int(rc.log_every) < per_call or "val_regret" in last:
      sft._log(metrics_path, tb, last)
  mngr.wait_until_finished()
  mngr.close()
  bar.close()
  if tb is not None:
    tb.close()
  return dict(step=step, last=last, policy_env_steps_per_s=(env_steps / t_train
                                                            if t_train else None))


def gate_banks(config, tables, splits):
  """The banks RL checkpoints are validated on: the val tasks (simulate.val_bank, with their
  sub-study draws) and, under `rl.holdout_configs`, the training tasks restricted to their held
  target configs (simulate.held_bank; else None)."""
  val = simulate.val_bank(config, tables, splits)
  held = (simulate.held_bank(config, tables, splits)
          if float(config.rl.holdout_configs) else None)
  return val, held


def _validate(config, model, val, held=None) -> tuple[dict, dict]:
  """val_regret (the val tasks), val_by_table, and val_select, the early-stopping criterion: the
  mean of the val tasks' regret and their sub-studies' (sft.val_draws) where there are draws (the
  few val tasks alone move in steps of one decision), else the val tasks' regret. Also the
  per-task regrets behind val_select (sft.val_regret's per_task) for paired_gain, with each
  task's table and landscape. With a held bank (rl.holdout_configs) val_select is select_value
  over the val and the held training tasks, the tables weighing equally (as in the leaderboard)."""
  per, per_task = {}, {}
  v = sft.val_regret(config, model, val, per, per_task) if val is not None else None
  row = _row(v, per)
  tasks = list(val["tasks"]) if "tasks" in per_task else []
  if held is not None and int(config.sft.val_seeds) > 0:
    h = {}
    per["held"] = sft.val_regret(config, model, held, None, h)
    per_task["held"] = h["tasks"]
    tasks += list(held["tasks"])
  if tasks:  # the budgets K = 1..5 of one target share its landscape: one cluster (paired_gain)
    per_task["table"] = np.array([t.table for t in tasks])
    per_task["landscape"] = np.array([f"{t.table}:{t.target}" for t in tasks])
  if "held" in per_task:
    row["val_select"] = select_value(per_task)
  return row, per_task


def _row(v, per):
  sel = v if v is None or "sub_studies" not in per else 0.5 * (v + per["sub_studies"])
  return dict(val_regret=v, val_by_table=per, val_select=sel)


def clusters(per_task: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(value_n, weight_n, cluster_n) of the tasks behind val_select. A val task's value is 1/2 its
  regret + 1/2 the mean over its sub-study draws (entries i, i + n, i + 2n, ... of "sub",
  simulate.val_bank); a held training task's (rl.holdout_configs) its regret. Weights: with held
  tasks the tables ("table", one per task) weigh equally, else every task does. Clusters: the
  tasks of one landscape ("landscape": table and target; its budgets K = 1..5 share the
  landscape and the policy's first picks, so they move together), or each task its own where
  the record predates "landscape"."""
  parts = []
  if "tasks" in per_task:
    c = np.asarray(per_task["tasks"], np.float64)
    n = len(c)
    if "sub" in per_task:
      s = np.asarray(per_task["sub"], np.float64)
      if len(s) % n:
        raise ValueError(f"paired_gain: {len(s)} sub-study draws for {n} val tasks")
      c = 0.5 * c + 0.5 * s.reshape(-1, n).mean(0)
    parts.append(c)
  if "held" in per_task:
    parts.append(np.asarray(per_task["held"], np.float64))
  c_n = np.concatenate(parts) if parts else np.zeros(0)
  group_n = (np.unique(np.asarray(per_task["landscape"]), return_inverse=True)[1]
             if "landscape" in per_task else np.arange(len(c_n)))
  if "held" in per_task:
    _, inv, counts = np.unique(np.asarray(per_task["table"]), return_inverse=True,
                               return_counts=True)
    return c_n, 1.0 / (len(counts) * counts[inv]), group_n
  return c_n, np.full(len(c_n), 1.0 / max(len(c_n), 1)), group_n


def select_value(per_task: dict) -> float:
  """val_select from per-task regrets (the weighted mean of the clusters)."""
  c_n, w_n, _ = clusters(per_task)
  return float((c_n * w_n).sum())


def paired_gain(per_task: dict, start: dict) -> tuple[float, float]:
  """val_select(policy) - val_select(start) and its standard error, pairing each task (a val task
  with its sub-study draws, or a held training task; `clusters`) with itself. The s.e. is
  cluster-robust over the G landscapes: with D_g = sum of w_i d_i over cluster g and W_g its
  weight, sqrt(G / (G - 1) sum_g (D_g - W_g gain)^2) (one task per cluster and equal weights:
  std(d) / sqrt(n)); not that of independent tasks or draws, too small when the draws of a task,
  or the budgets of a landscape, move together. Why the test: a checkpoint is adopted only if
  its gain exceeds rl.select_z standard errors (on validation, gains of 2-4% in val_select were
  noise that did not carry over to held-out sub-studies)."""
  keys = [k for k in ("tasks", "sub", "held") if k in per_task and k in start]
  if not keys:
    return 0.0, 0.0
  # which task is which is the bank's, the same for both (a start saved by sft.final_val has none)
  meta = {k: per_task[k] if k in per_task else start[k] for k in ("table", "landscape")
          if k in per_task or k in start}
  c1, w_n, g_n = clusters({k: per_task[k] for k in keys} | meta)
  c0, _, _ = clusters({k: start[k] for k in keys} | meta)
  if c1.shape != c0.shape:
    raise ValueError(f"paired_gain: {len(c1)} tasks against {len(c0)} of the start")
  d_n = c1 - c0
  gain = float((w_n * d_n).sum())
  G = int(g_n.max()) + 1 if len(g_n) else 0
  D_g = np.bincount(g_n, w_n * d_n, G)
  W_g = np.bincount(g_n, w_n, G)
  se = float(np.sqrt(G / (G - 1) * ((D_g - W_g * gain) ** 2).sum())) if G > 1 else 0.0
  return gain, se


def _read_best(workdir):
  path = os.path.join(workdir, "rl", "best.json")
  if not os.path.exists(path):
    return None
  best = json.load(open(path))
  best.setdefault("val_select", best.get("val_regret"))  # written before val_select existed
  return best


def _write_best(workdir, step, val, state):
  """Records the policy with the lowest val_select so far (step 0: the starting policy, not
  copied)."""
  if state is not None:
    mngr = _manager(workdir, "best")
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(nnx.to_pure_dict(state))), force=True)
    mngr.wait_until_finished()
    mngr.close()
  best = dict(step=int(step), val_select=float(val))
  if sharding.is_main():  # every host saved the checkpoint above; one writes the record
    with open(os.path.join(workdir, "rl", "best.json"), "w") as f:
      json.dump(best, f)
  return best


def load_policy(config, workdir):
  """The RL policy to evaluate: with `rl.select_on_val` (and val tasks) the checkpoint with the
  lowest validation regret, the starting policy included (early stopping: if RL never beats it
  on validation, the starting policy is returned); else the last checkpoint."""
  path = os.path.join(workdir, "rl", "ckpt")
  if not os.path.isdir(path):
    return None
  sub, best = "ckpt", _read_best(workdir) if config.rl.select_on_val else None
  if best is not None:
    if best["step"] == 0:
      return start_policy(config, workdir)
    sub = "best"
  mngr = _manager(workdir, sub)
  step = mngr.latest_step()
  mngr.close()
  return None if step is None else restore_policy(config, workdir, sub, step)


def restore_policy(config, workdir, sub: str, step: int):
  """The policy of RL checkpoint `step` in WORKDIR/rl/<sub> (ckpt or best)."""
  model = model_lib.make_policy(config.model, seed=int(config.seed))
  tx, _ = make_optimizer(config)
  graphdef, state = nnx.split((model, nnx.Optimizer(model, tx, wrt=nnx.Param)))
  return sft.restore_model(_manager(workdir, sub), step, graphdef, state)


def done(config, workdir) -> bool:
  path = os.path.join(workdir, "rl", "ckpt")
  if not os.path.isdir(path):
    return False
  mngr = _manager(workdir)
  step = mngr.latest_step()
  mngr.close()
  return step is not None and step >= int(config.rl.steps)
