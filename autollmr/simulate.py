"""Trajectory simulation: teacher episodes on the TRAINING tasks, stored as ArrayRecord.

Teacher (why this one): best-of-N rejection sampling over a stochastic transfer strategy that a
researcher could run from the observations alone. Each candidate's outcome is predicted by kernel
regression over the known results: weights softmax_j(-|z_i - z_j|^2 / h - lam |g_i - g_j|^2), z
standardized config features, g standardized fidelity features, so the same or nearest config at
the nearest fidelity dominates; the policy's in-context quadratic ridge fits (model.ridges, global
smooth surrogates) are more scorers. Modes: "adaptive" also adds each target result as it comes
(it searches near what worked), "static" ranks by the cheap results only (a plan fixed up front that
spreads its queries, like top-k transfer). Actions are drawn from softmax(prediction / tau) over
the unqueried affordable target candidates; the N rollouts of one (task, seed) cycle through the
grid of kernels (h, lam) x modes (tau, adaptive?). Per (task, seed) the rollout with the best
final regret is kept (ties: less cost, then the better anytime curve). Every kept action is
explainable from the observation (the student gets the same kernel predictions as inputs), while
the outcome filter adds what the observation alone cannot: which kernel, mode and which of the
top-scored candidates actually pay off at a larger scale, learned across many tasks.

Everything runs in the jitted env (vmap over episodes, lax.scan over turns, one jit called on
fixed-size chunks of (task, seed) pairs). Only `tasks.training_table` views of the train and val
tasks are ever built here, so test targets cannot reach training. Output, in WORKDIR/sim/:
  steps.array_record  one record per decision (msgpack: task, seed, Obs fields, action, regret,
                      stream: the ensemble member it was simulated for, sim.member_draws)
  summary.json        sizes, mean teacher regret, the bank's task names (SFT checks them), the
                      record range [start, end) of each data stream (sim.member_draws)
"""
from __future__ import annotations

import functools
import json
import os
import time

from flax import serialization
import jax
import jax.numpy as jnp
import numpy as np

from autollmr import env as env_lib
from autollmr import model as model_lib
from autollmr import tasks as tasks_lib

RECORDS = "steps.array_record"


# --- the bank: every table's training tasks in one EnvParams --------------------------------------

def union_params(parts, d_max: int, g_max: int, invalid_penalty: float,
                 repeat_penalty: float) -> env_lib.EnvParams:
  """Stacks EnvParams of different tables (same padded A and T) into one.

  Fidelity and config indices are offset block-wise; a 'max' table's values (and its y*, y_worst
  and normalisation locations) are negated so one sign (+1) serves all, which leaves every
  normalized outcome, regret and percentile unchanged. One compiled program then serves all.
  """
  F = sum(p.values_FxC.shape[0] for p in parts)
  C = sum(p.values_FxC.shape[1] for p in parts)
  values = np.full((F, C), np.nan, np.float32)
  pct = np.zeros((F, C), np.float32)
  cfeat = np.zeros((C, d_max), np.float32)
  ffeat = np.zeros((F, g_max), np.float32)
  cols = {k: [] for k in env_lib.TASK_FIELDS}
  cost = []
  fo = co = 0
  for p in parts:
    p = jax.tree.map(np.asarray, p)
    f, c = p.values_FxC.shape
    d, g = p.config_features_CxD.shape[1], p.fidelity_features_FxG.shape[1]
    if d > d_max or g > g_max:
      raise ValueError(f"a table has {d} config / {g} fidelity features; the policy takes at most "
                       f"{d_max} / {g_max} (raise model.max_config_features / "
                       "model.max_fidelity_features)")
    s = float(p.sign)
    values[fo:fo + f, co:co + c] = s * p.values_FxC
    pct[fo:fo + f, co:co + c] = p.pct_better_FxC
    cfeat[co:co + c, :d] = p.config_features_CxD
    ffeat[fo:fo + f, :g] = p.fidelity_features_FxG
    cost.append(p.cost_F)
    n = p.target_N.shape[0]
    loc = np.zeros((n, F), np.float32)
    scale = np.ones((n, F), np.float32)
    loc[:, fo:fo + f], scale[:, fo:fo + f] = s * p.loc_NxF, p.scale_NxF
    for k, v in dict(cand_config_NxA=p.cand_config_NxA + co, cand_fid_NxA=p.cand_fid_NxA + fo,
                     cand_exists_NxA=p.cand_exists_NxA, cand_cheap_NxA=p.cand_cheap_NxA,
                     target_N=p.target_N + fo, y_star_N=s * p.y_star_N,
                     y_worst_N=s * p.y_worst_N, loc_NxF=loc, scale_NxF=scale,
                     min_cost_N=p.min_cost_N, rho_N=p.rho_N, budget_N=p.budget_N,
                     max_turns_N=p.max_turns_N).items():
      cols[k].append(v)
    fo, co = fo + f, co + c
  cat = {k: jnp.asarray(np.concatenate(v)) for k, v in cols.items()}
  return env_lib.EnvParams(
      values_FxC=jnp.asarray(values), pct_better_FxC=jnp.asarray(pct),
      config_features_CxD=jnp.asarray(cfeat), fidelity_features_FxG=jnp.asarray(ffeat),
      cost_F=jnp.asarray(np.concatenate(cost)), sign=jnp.float32(1.0),
      invalid_penalty=jnp.float32(invalid_penalty), repeat_penalty=jnp.float32(repeat_penalty),
      **cat)


def build_bank(config, tables, splits, split: str, max_cheap_rows: int,
               max_target_configs: int) -> dict:
  """One EnvParams over the `split` ("train" or "val") tasks of every table, built from each
  table's `training_table` view (train + val fidelities only). Returns params, sizes, family_N,
  names (one per task) and tasks."""
  built = []
  for name in sorted(splits):
    s = splits[name]
    if not s[split]:
      continue
    view = tasks_lib.training_table(tables[name], s["train"] + s["val"])
    built.append((view, s[split]))
  if not built:
    return None
  make = lambda v, ts, **kw: env_lib.make_params(
      v, ts, max_cheap_rows=max_cheap_rows, max_target_configs=max_target_configs,
      invalid_penalty=config.env.invalid_penalty, repeat_penalty=config.env.repeat_penalty, **kw)
  sizes = [make(v, ts)[1] for v, ts in built]
  A = max(s.num_candidates for s in sizes)
  T = max(s.max_turns for s in sizes)
  parts = [make(v, ts, pad_to=A, pad_turns_to=T)[0] for v, ts in built]
  params = union_params(parts, config.model.max_config_features,
                        config.model.max_fidelity_features, config.env.invalid_penalty,
                        config.env.repeat_penalty)
  all_tasks = [t for _, ts in built for t in ts]
  family = [model_lib.family_id(v.family) for v, ts in built for _ in ts]
  return dict(params=params, sizes=env_lib.EnvSizes(A, T), tasks=all_tasks,
              names=[t.name for t in all_tasks], family_N=jnp.asarray(family, jnp.int32),
              table_sizes=[(v.name, p.values_FxC.shape[1]) for (v, _), p in zip(built, parts)])


def val_bank(config, tables, splits) -> dict | None:
  """The val tasks at eval size; with `sft.val_draws` = n > 0 also n random sub-studies of each
  (env.sub_studies, drop `sft.val_drop_configs`, fixed key) under "sub": a validation signal with
  many optima instead of a handful, which the few val tasks alone saturate (~0.003)."""
  val = build_bank(config, tables, splits, "val", config.env.max_cheap_rows,
                   config.env.max_target_configs)
  n = int(config.sft.val_draws)
  if val is None or n <= 0:
    return val
  task_M = jnp.tile(jnp.arange(len(val["tasks"]), dtype=jnp.int32), n)
  sub = env_lib.sub_studies(val["params"], task_M, jax.random.key(20261123),
                            float(config.sft.val_drop_configs), 0.0)
  val["sub"] = dict(params=sub, sizes=val["sizes"], family_N=val["family_N"][task_M],
                    tasks=[val["tasks"][i] for i in np.asarray(task_M)])
  return val


def rl_bank(config, tables, splits) -> dict | None:
  """The training tasks RL draws its episodes from (each as random sub-studies, rl.drop_*):
  training-sized candidate sets (sim.max_*), and under
  `rl.holdout_configs` without the target results of the held configs (env.config_holdout:
  those are for the gate, held_bank)."""
  bank = build_bank(config, tables, splits, "train", config.sim.max_cheap_rows,
                    config.sim.max_target_configs)
  if bank is not None and float(config.rl.holdout_configs):
    frac = float(config.rl.holdout_configs)
    bank["params"] = env_lib.config_holdout(
        bank["params"], frac, False, env_lib.held_configs(bank["table_sizes"], frac))[0]
  return bank


def held_bank(config, tables, splits) -> dict | None:
  """The training tasks at eval size, each with only its held target configs
  (env.config_holdout, `rl.holdout_configs`): the share of every training task RL never sees a
  target result of, on which its checkpoints are gated (rl.py) beside the val tasks. Why: the val
  tasks cover two families (the ones with >= 2 training levels); these cover every family RL
  trains on. Tasks with < 2 held target configs are left out."""
  bank = build_bank(config, tables, splits, "train", config.env.max_cheap_rows,
                    config.env.max_target_configs)
  if bank is None:
    return None
  frac = float(config.rl.holdout_configs)
  params, ok_N = env_lib.config_holdout(bank["params"], frac, True,
                                        env_lib.held_configs(bank["table_sizes"], frac))
  keep = np.flatnonzero(np.asarray(ok_N))
  if not len(keep):
    return None
  params = env_lib.sub_studies(params, jnp.asarray(keep, jnp.int32), jax.random.key(0), 0.0, 0.0)
  return dict(params=params, sizes=bank["sizes"], tasks=[bank["tasks"][i] for i in keep],
              names=[bank["names"][i] for i in keep], family_N=bank["family_N"][keep])


def data_streams(config) -> int:
  """How many separate teacher datasets SFT reads: one per ensemble member under
  `sim.member_draws`, else one that every member shares."""
  if not config.sim.member_draws:
    return 1
  return max(1, int(config.model.members))


def bank_copies(config) -> int:
  """Copies of the training tasks in train_bank: copy 0, then draws - 1 sub-studies per stream."""
  return 1 + (max(1, int(config.sim.draws)) - 1) * data_streams(config)


def stream_copies(config, m: int) -> list[int]:
  """The bank copies stream (member) m is simulated on: copy 0 and its own draws."""
  d = max(1, int(config.sim.draws)) - 1
  return [0] + list(range(1 + m * d, 1 + (m + 1) * d))


def train_bank(config, tables, splits):
  """The training tasks at training size (simulate, sft). With `sim.draws` = S > 1 the bank holds
  S copies of them: copy 0 as they are, copies 1..S-1 random sub-studies (env.sub_studies with
  rl.drop_configs / rl.drop_fidelities, fixed key), so the teacher is distilled on S landscapes
  per training task instead of one (why: 65 training tasks are 13 landscapes, which a policy can
  learn by heart). Under `sim.member_draws` each of the M ensemble members gets its own S - 1
  draws (1 + M (S - 1) copies, `stream_copies`). Task names get a "#copy" suffix."""
  bank = build_bank(config, tables, splits, "train", config.sim.max_cheap_rows,
                    config.sim.max_target_configs)
  S = bank_copies(config)
  if bank is None or S <= 1:
    return bank
  n = len(bank["tasks"])
  task_M = jnp.tile(jnp.arange(n, dtype=jnp.int32), S)
  p = bank["params"]
  sub = env_lib.sub_studies(p, task_M, jax.random.key(int(config.seed) + 7919),
                            float(config.rl.drop_configs), float(config.rl.drop_fidelities))
  keep = lambda x, orig: x.at[:n].set(orig)  # copy 0: the tasks themselves
  sub = sub.replace(cand_exists_NxA=keep(sub.cand_exists_NxA, p.cand_exists_NxA),
                    y_star_N=keep(sub.y_star_N, p.y_star_N),
                    y_worst_N=keep(sub.y_worst_N, p.y_worst_N))
  return dict(params=sub, sizes=bank["sizes"], tasks=bank["tasks"] * S,
              names=[f"{nm}#{d}" for d in range(S) for nm in bank["names"]],
              family_N=jnp.tile(bank["family_N"], S))


# --- the teacher -----------------------------------------------------------------------------------

def teacher_prior(v, hl_Hx2, max_keys: int) -> dict:
  """The part of the kernel regression fixed for an episode: the cheap results known at reset
  (the teacher buys targets only), per pair (B) and kernel (H of (h, lam)). Kept as a running
  softmax (max, sum w, sum w*v) so a turn adds only its target results: O(A*T) per turn, and the
  N rollouts of a pair share it."""
  g = model_lib.geometry(v, max_keys)
  h, lam = hl_Hx2[None, :, 0, None, None], hl_Hx2[None, :, 1, None, None]
  logit_BxHxAxK = -(g["d2_BxAxK"][:, None] / h + lam * g["df2_BxAxK"][:, None])
  logit_BxHxAxK = jnp.where(g["key_ok_BxK"][:, None, None], logit_BxHxAxK, -jnp.inf)
  m_BxHxA = jnp.max(logit_BxHxAxK, -1)
  m_BxHxA = jnp.where(jnp.isfinite(m_BxHxA), m_BxHxA, -1e30)
  w_BxHxAxK = jnp.exp(logit_BxHxAxK - m_BxHxA[..., None])
  vk_BxK = jnp.take_along_axis(v["value_A"], g["key_idx_BxK"], axis=1)
  return dict(m_BxHxA=m_BxHxA, s0_BxHxA=w_BxHxAxK.sum(-1),
              s1_BxHxA=jnp.einsum("bhak,bk->bha", w_BxHxAxK, vk_BxK),
              z_BxAxD=g["z_BxAxD"], zf_BxAxG=g["zf_BxAxG"], nvar_B1=g["nvar_B1"])


def teacher_update(prior, obs, hl_Bx2, adapt_B):
  """Adds the result of the previous turn (slot turn - 1, if that query was new) to the running
  softmax: one key per turn, O(A) per episode. Returns (prior, predicted value per candidate)."""
  slot = jnp.maximum(obs.turn - 1, 0)
  q_B = jnp.take_along_axis(obs.queried_T, slot[:, None], axis=1)[:, 0]
  new_B = (obs.turn >= 1) & (q_B >= 0) & adapt_B
  take = lambda x: jnp.take_along_axis(x, jnp.maximum(q_B, 0)[:, None, None], axis=1)
  d2_BxA = jnp.sum((prior["z_BxAxD"] - take(prior["z_BxAxD"])) ** 2, -1) / prior["nvar_B1"]
  df2_BxA = jnp.sum((prior["zf_BxAxG"] - take(prior["zf_BxAxG"])) ** 2, -1)
  logit_BxA = -(d2_BxA / hl_Bx2[:, 0:1] + hl_Bx2[:, 1:2] * df2_BxA)
  logit_BxA = jnp.where(new_B[:, None], logit_BxA, -jnp.inf)
  v_B = jnp.take_along_axis(obs.norm_T, slot[:, None], axis=1)
  m_BxA = jnp.maximum(prior["m_BxA"], logit_BxA)
  old, add = jnp.exp(prior["m_BxA"] - m_BxA), jnp.exp(logit_BxA - m_BxA)
  prior = dict(prior, m_BxA=m_BxA, s0_BxA=prior["s0_BxA"] * old + add,
               s1_BxA=prior["s1_BxA"] * old + add * v_B)
  mu_BxA = jnp.where(prior["s0_BxA"] > 0, prior["s1_BxA"] / jnp.maximum(prior["s0_BxA"], 1e-30),
                     0.0)
  return prior, mu_BxA


def teacher_action(v, mu_BxA, key, tau_B):
  """softmax(score / tau) over unqueried affordable targets (tau = 0: the argmax)."""
  ok = model_lib.policy_mask(v)
  tgt = ok & v["is_target_A"]
  ok = jnp.where(tgt.any(-1, keepdims=True), tgt, ok)
  score = mu_BxA + tau_B[:, None] * jax.random.gumbel(key, mu_BxA.shape)
  return jnp.argmax(jnp.where(ok, score, -jnp.inf), -1).astype(jnp.int32)


def strategies(config):
  """The teacher's grid: kernels (h, lam) and modes (tau, adapt). adapt = 0 ranks by the cheap
  results only (a plan fixed up front, like top-k transfer: it spreads its queries); adapt = 1
  also learns from each target result (searches near what worked). Rollout r of a pair uses
  kernel r % H and mode (r // H) % M, so every pair tries every combination once N >= H * M."""
  f = lambda s: [float(x) for x in str(s).split(",") if x.strip()]
  hl = [(h, lam) for h in f(config.sim.bandwidths) for lam in f(config.sim.fid_weights)]
  modes = ([(t, 1.0) for t in f(config.sim.temperatures)]
           + [(t, 0.0) for t in f(config.sim.static_temperatures)])
  return np.array(hl, np.float32), np.array(modes, np.float32)


def teacher_ridges(config) -> tuple:
  """((lam, fid_weight), ...) of the ridge scorers the teacher adds to its kernels: the policy's
  ridge inputs (model.ridges), so every teacher choice stays explainable from the student's
  observation."""
  return model_lib.pairs(config.model.ridges)


@functools.partial(jax.jit, static_argnames=("sizes", "n", "max_keys", "ridges"))
def simulate_chunk(params, family_N, task_P, seed_P, key, hl_Hx2, mode_Mx2, sizes, n, max_keys,
                   ridges=()):
  """N teacher rollouts of each (task, seed) pair; returns the best rollout per pair.

  ridges: ((lam, fid_weight), ...) adds R in-context ridge fits (`model.ridge_predict`) as
  scorers beside the H kernels (rollout r uses scorer r % (H + R)); their adaptive mode adds each
  new target result to running sums (`model.ridge_sums`, the same fit as refitting on the turn's
  view), their static mode keeps the fit at reset.

  Out: per pair the kept trajectory (P x T: Obs fields, action, active), its final regret and
  cost, and every rollout's final regret (P x N).
  """
  from autollmr import agent
  P, H = task_P.shape[0], hl_Hx2.shape[0]
  R = len(ridges)
  S = H + R  # scorers: the kernels, then the ridge fits
  fresh = lambda t, s: jax.vmap(lambda a, b: env_lib._fresh_state(params, sizes, a, b, 0))(t, s)
  observe = lambda st: jax.vmap(lambda s: env_lib.observe(params, s))(st)
  view0_P = agent.view(params, family_N, observe(fresh(task_P, seed_P)), sizes)
  prior_P = teacher_prior(view0_P, hl_Hx2, max_keys)
  r_N = jnp.arange(n)
  pair_E, scorer_E = jnp.repeat(jnp.arange(P), n), jnp.tile(r_N % S, P)
  ridge_E, which_E = scorer_E >= H, jnp.clip(scorer_E - H, 0, max(R - 1, 0))
  kern_E = jnp.minimum(scorer_E, H - 1)
  mode_Ex2 = jnp.tile(mode_Mx2[(r_N // S) % mode_Mx2.shape[0]], (P, 1))
  hl_Ex2 = hl_Hx2[kern_E]
  state = fresh(task_P[pair_E], seed_P[pair_E])
  if R:  # running ridge fits: the sums at reset, then one row per new target result
    ex0 = view0_P["exists_A"]
    known0 = view0_P["known_A"] & ex0
    w_RxPxA, sums = [], []
    for _, fw in ridges:  # the regressors are the same for every fit, the row weights are not
      x_PxAxP, w = model_lib.ridge_design(prior_P["z_BxAxD"], prior_P["zf_BxAxG"],
                                          view0_P["is_target_A"] & ex0, fw)
      w_RxPxA.append(w)
      sums.append(model_lib.ridge_sums(x_PxAxP, w * known0,
                                       jnp.where(known0, view0_P["value_A"], 0.0)))
    w_ExA = jnp.stack(w_RxPxA)[which_E, pair_E]
    lam_E = jnp.asarray([lam for lam, _ in ridges], jnp.float32)[which_E]
    ridge_carry = dict(xtx=jnp.stack([a for a, _ in sums])[which_E, pair_E],
                       xty=jnp.stack([b for _, b in sums])[which_E, pair_E],
                       seen=known0[pair_E])
  else:
    ridge_carry = {}
  prior = dict(m_BxA=prior_P["m_BxHxA"][pair_E, kern_E], s0_BxA=prior_P["s0_BxHxA"][pair_E, kern_E],
               s1_BxA=prior_P["s1_BxHxA"][pair_E, kern_E], z_BxAxD=prior_P["z_BxAxD"][pair_E],
               zf_BxAxG=prior_P["zf_BxAxG"][pair_E],
               nvar_B1=jnp.maximum(prior_P["nvar_B1"][pair_E], 1.0), **ridge_carry)

  def turn(carry, key_t):
    state, done_E, prior = carry
    obs = observe(state)
    prior, mu_ExA = teacher_update(prior, obs, hl_Ex2, mode_Ex2[:, 1] > 0)
    v = agent.view(params, family_N, obs, sizes)
    if R:  # the adaptive mode adds the last turn's new result; the static one keeps the reset fit
      slot = jnp.maximum(obs.turn - 1, 0)
      q_E = jnp.maximum(jnp.take_along_axis(obs.queried_T, slot[:, None], 1)[:, 0], 0)
      e = jnp.arange(q_E.shape[0])
      new_E = ((obs.turn >= 1) & (obs.queried_T[e, slot] >= 0) & (mode_Ex2[:, 1] > 0)
               & ~prior["seen"][e, q_E] & v["known_A"][e, q_E])  # revealed, not seen before
      xq_ExP = x_PxAxP[pair_E, q_E]
      a_E = new_E * w_ExA[e, q_E]
      prior = dict(prior, seen=prior["seen"].at[e, q_E].max(new_E),
                   xtx=prior["xtx"] + a_E[:, None, None] * xq_ExP[:, :, None] * xq_ExP[:, None],
                   xty=prior["xty"] + (a_E * obs.norm_T[e, slot])[:, None] * xq_ExP)
      mu_ExA = jnp.where(ridge_E[:, None], model_lib.ridge_solve(
          prior["xtx"], prior["xty"], x_PxAxP[pair_E], lam_E), mu_ExA)
    action_E = teacher_action(v, mu_ExA, key_t, mode_Ex2[:, 0])
    _, nxt, _, _, _, info = jax.vmap(
        lambda s, a: env_lib.step(s, a, params, sizes, auto_reset=False))(state, action_E)
    state = jax.tree.map(lambda x, s: jnp.where(
        done_E.reshape(done_E.shape + (1,) * (x.ndim - 1)), s, x), nxt, state)
    rec = dict(queried_T=obs.queried_T, norm_T=obs.norm_T, budget_left=obs.budget_left,
               turn=obs.turn, action=action_E, active=~done_E,
               regret=jnp.where(done_E, 0.0, info["regret"]))
    return (state, done_E | info["done"], prior), rec

  (state, _, _), rec = jax.lax.scan(turn, (state, jnp.zeros(pair_E.shape, bool), prior),
                                 jax.random.split(key, sizes.max_turns))
  regret_PxN = env_lib.regret_of(params, state.task, state.best).reshape(P, n)
  cost_PxN = state.cost_spent.reshape(P, n)
  auc_PxN = rec["regret"].sum(0).reshape(P, n)  # anytime regret summed over the turns
  # ties (same regret, cost and curve) go to the lowest rollout index
  best_P = jax.vmap(lambda r, c, a: jnp.lexsort((a, c, r))[0])(regret_PxN, cost_PxN, auc_PxN)
  pick = lambda x: jax.vmap(lambda xp, b: xp[b])(x.reshape((P, n) + x.shape[1:]), best_P)
  kept = {k: pick(jnp.swapaxes(v, 0, 1)) for k, v in rec.items() if k != "regret"}  # P x T
  return dict(kept, regret_P=pick(regret_PxN.reshape(-1)), cost_P=pick(cost_PxN.reshape(-1)),
              regret_PxN=regret_PxN)


def run_teacher(config, bank, pairs_task, pairs_seed, key):
  """All pairs in fixed-size chunks (one compile); host-side numpy out, pairs in order."""
  chunk = int(config.sim.chunk)
  hl, modes = (jnp.asarray(x) for x in strategies(config))
  outs = []
  for i in range(0, len(pairs_task), chunk):
    t = np.asarray(pairs_task[i:i + chunk], np.int32)
    s = np.asarray(pairs_seed[i:i + chunk], np.uint32)
    m = len(t)
    t, s = np.pad(t, (0, chunk - m), mode="edge"), np.pad(s, (0, chunk - m), mode="edge")
    out = simulate_chunk(bank["params"], bank["family_N"], jnp.asarray(t), jnp.asarray(s),
                         jax.random.fold_in(key, i), hl, modes, sizes=bank["sizes"],
                         n=int(config.sim.rollouts), max_keys=int(config.sim.max_cheap_rows),
                         ridges=teacher_ridges(config))
    outs.append(jax.tree.map(lambda x: np.asarray(x)[:m], out))
  return {k: np.concatenate([o[k] for o in outs]) for k in outs[0]}


# --- the stage -------------------------------------------------------------------------------------

def encode_step(rec: dict) -> bytes:
  return serialization.msgpack_serialize(rec)


def decode_step(b: bytes) -> dict:
  return serialization.msgpack_restore(b)


def run(config, workdir, tables, splits) -> dict:
  from array_record.python.array_record_module import ArrayRecordWriter
  out_dir = os.path.join(workdir, "sim")
  path = os.path.join(out_dir, RECORDS)
  t0 = time.time()
  bank = train_bank(config, tables, splits)
  if bank is None:
    raise ValueError("[simulate] no training tasks: every table lacks a train split")
  n_tasks = len(bank["tasks"])
  # sim.seeds episodes per training task and stream (member under sim.member_draws), shared
  # out over the stream's sim.draws copies
  M, draws = data_streams(config), max(1, int(config.sim.draws))
  n = n_tasks // bank_copies(config)  # training tasks per copy
  seeds = np.arange(max(1, int(config.sim.seeds) // draws))
  pairs_task, pairs_seed, ranges = [], [], []
  for m in range(M):  # records are written stream by stream: SFT slices them (summary "streams")
    tasks_m = np.concatenate([np.arange(c * n, (c + 1) * n) for c in stream_copies(config, m)])
    pairs_task.append(np.repeat(tasks_m, len(seeds)))
    pairs_seed.append(np.tile(seeds + m * len(seeds), len(tasks_m)) + 1000 * int(config.seed))
  pairs_task, pairs_seed = np.concatenate(pairs_task), np.concatenate(pairs_seed)
  out = run_teacher(config, bank, pairs_task, pairs_seed, jax.random.key(int(config.seed)))
  stream_P = np.repeat(np.arange(M), len(pairs_task) // M)
  os.makedirs(out_dir, exist_ok=True)
  n_steps = 0
  tmp = path + ".tmp"
  if jax.process_index() == 0:
    writer = ArrayRecordWriter(tmp, "group_size:1")
    for p in range(len(pairs_task)):
      if p == 0 or stream_P[p] != stream_P[p - 1]:
        ranges.append([n_steps, n_steps])
      for t in np.flatnonzero(out["active"][p]):
        writer.write(encode_step(dict(
            task=np.int32(pairs_task[p]), seed=np.uint32(pairs_seed[p]),
            queried_T=out["queried_T"][p, t], norm_T=out["norm_T"][p, t],
            budget_left=np.float32(out["budget_left"][p, t]), turn=np.int32(out["turn"][p, t]),
            action=np.int32(out["action"][p, t]), regret=np.float32(out["regret_P"][p]),
            stream=np.int32(stream_P[p]))))
        n_steps += 1
        ranges[-1][1] = n_steps
    writer.close()
    os.replace(tmp, path)  # atomic: a half-written file never looks finished
  per_table = {}
  for i, task in enumerate(bank["tasks"]):
    per_table.setdefault(task.table, []).append(out["regret_P"][pairs_task == i].mean())
  summary = dict(
      n_tasks=n_tasks, n_episodes=int(len(pairs_task)), n_steps=n_steps,
      rollouts=int(config.sim.rollouts),
      kernels=strategies(config)[0].tolist(), modes=strategies(config)[1].tolist(),
      ridges=[list(r) for r in teacher_ridges(config)],
      bytes=os.path.getsize(path) if os.path.exists(path) else 0,
      teacher_regret_mean=float(out["regret_P"].mean()),
      rollout_regret_mean=float(out["regret_PxN"].mean()),
      teacher_regret_per_table={k: float(np.mean(v)) for k, v in per_table.items()},
      seconds=time.time() - t0, names=bank["names"], streams=ranges,
      sizes=dict(A=bank["sizes"].num_candidates, T=bank["sizes"].max_turns))
  if jax.process_index() == 0:
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
      json.dump(summary, f, indent=1)
  return summary
