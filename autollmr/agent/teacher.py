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
fixed-size chunks of (task, seed) pairs).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from autollmr.agent import features
from autollmr.agent import model as model_lib
from autollmr.agent import play as play_lib
from autollmr.gym import env as env_lib


def teacher_prior(v, hl_Hx2, max_keys: int) -> dict:
  """The part of the kernel regression fixed for an episode: the cheap results known at reset
  (the teacher buys targets only), per pair (B) and kernel (H of (h, lam)). Kept as a running
  softmax (max, sum w, sum w*v) so a turn adds only its target results: O(A*T) per turn, and the
  N rollouts of a pair share it."""
  g = features.geometry(v, max_keys)
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
  ok = features.policy_mask(v)
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

  ridges: ((lam, fid_weight), ...) adds R in-context ridge fits (`features.ridge_predict`) as
  scorers beside the H kernels (rollout r uses scorer r % (H + R)); their adaptive mode adds each
  new target result to running sums (`features.ridge_sums`, the same fit as refitting on the turn's
  view), their static mode keeps the fit at reset.

  Out: per pair the kept trajectory (P x T: Obs fields, action, active), its final regret and
  cost, and every rollout's final regret (P x N).
  """
  P, H = task_P.shape[0], hl_Hx2.shape[0]
  R = len(ridges)
  S = H + R  # scorers: the kernels, then the ridge fits
  fresh = lambda t, s: jax.vmap(lambda a, b: env_lib.fresh_state(params, sizes, a, b, 0))(t, s)
  observe = lambda st: jax.vmap(lambda s: env_lib.observe(params, s))(st)
  view0_P = play_lib.view(params, family_N, observe(fresh(task_P, seed_P)), sizes)
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
      x_PxAxP, w = features.ridge_design(prior_P["z_BxAxD"], prior_P["zf_BxAxG"],
                                         view0_P["is_target_A"] & ex0, fw)
      w_RxPxA.append(w)
      sums.append(
          features.ridge_sums(x_PxAxP, w * known0, jnp.where(known0, view0_P["value_A"], 0.0)))
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
    v = play_lib.view(params, family_N, obs, sizes)
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
      mu_ExA = jnp.where(ridge_E[:, None], features.ridge_solve(
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
