"""The policy's input features, computed from the expanded observation (no parameters).

geometry: per-task standardized config and fidelity features and the squared distances from every
candidate to the known results; kernel_features: kernel-regression predictions of each candidate's
value (the teacher's scorers, given as inputs); ridge_*: in-context quadratic ridge fits;
policy_mask: the allowed actions. No gradient flows through the predictions.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

NEG = -1e9


def standardize(x_BxAxD, exists_BxA):
  """Per-task z-scores over the existing candidates; constant features become 0."""
  m = exists_BxA[..., None].astype(x_BxAxD.dtype)
  n = jnp.maximum(m.sum(1, keepdims=True), 1.0)
  mean = (x_BxAxD * m).sum(1, keepdims=True) / n
  var = (((x_BxAxD - mean) * m) ** 2).sum(1, keepdims=True) / n
  std = jnp.sqrt(var)
  z = jnp.where(std > 1e-6, (x_BxAxD - mean) / jnp.maximum(std, 1e-6), 0.0)
  return z * m, (std > 1e-6).sum(-1).astype(x_BxAxD.dtype)  # z, number of varying features


def policy_mask(view):
  """Allowed actions: affordable, existing, not yet known (repeats are legal but pointless), and,
  until a target result is known, no cheap run that would leave too little budget or too few
  turns for one target run: an episode never ends without a recommendation it could have bought
  (online, an untrained or greedy policy otherwise spent K on cheap runs: regret 1).

  Falls back to the affordable ones, then to all existing ones, so a row is never empty.
  """
  tgt = view["is_target_A"] & view["exists_A"]
  no_target = ~jnp.any(tgt & view["known_A"], -1, keepdims=True)
  leaves_one = ((view["budget_left"][..., None] - view["cost_A"] >= 1.0 - 1e-6)
                & (view["turns_left"][..., None] >= 2))
  ok = view["action_mask_A"] & ~view["known_A"] & (tgt | ~no_target | leaves_one)
  ok = jnp.where(ok.any(-1, keepdims=True), ok, view["action_mask_A"])
  return jnp.where(ok.any(-1, keepdims=True), ok, view["exists_A"])


def known_keys(known_BxA, max_keys: int):
  """Indices of (up to) max_keys known candidates, lowest index first: a set, so the result is
  the same under any permutation of the candidates while the known count fits."""
  k = min(max_keys, known_BxA.shape[-1])
  idx_BxK = jnp.argsort(~known_BxA, axis=-1, stable=True)[:, :k]
  return idx_BxK, jnp.take_along_axis(known_BxA, idx_BxK, axis=-1)


def sqdist(a_BxAxD, b_BxKxD):
  """Squared euclidean distances, by the expansion (no B x A x K x D intermediate)."""
  d = (jnp.sum(a_BxAxD ** 2, -1)[..., None] + jnp.sum(b_BxKxD ** 2, -1)[:, None]
       - 2 * jnp.einsum("bad,bkd->bak", a_BxAxD, b_BxKxD))
  return jnp.maximum(d, 0.0)


def geometry(view, max_keys: int) -> dict:
  """Standardized features, the known keys and squared distances from every candidate to them.

  d2: mean squared distance in standardized config space (over the varying features); df2:
  squared distance in standardized fidelity-feature space (nearness by features, not cost: the
  iso-FLOP cells of Step Law cost alike but differ 4x in N).
  """
  exists = view["exists_A"]
  known = view["known_A"] & exists
  z_BxAxD, nvar_B1 = standardize(view["config_features_AxD"], exists)
  zf_BxAxG, _ = standardize(view["fidelity_features_AxG"], exists)
  idx_BxK, ok_BxK = known_keys(known, max_keys)
  take = lambda x: jnp.take_along_axis(x, idx_BxK[..., None], axis=1)
  d2_BxAxK = sqdist(z_BxAxD, take(z_BxAxD)) / jnp.maximum(nvar_B1, 1.0)[..., None]
  return dict(z_BxAxD=z_BxAxD, zf_BxAxG=zf_BxAxG, nvar_B1=nvar_B1, known_A=known,
              key_idx_BxK=idx_BxK, key_ok_BxK=ok_BxK, d2_BxAxK=d2_BxAxK,
              df2_BxAxK=sqdist(zf_BxAxG, take(zf_BxAxG)))


def kernel_features(g, view, kernels):
  """Per candidate, for each kernel (h, lam): the kernel-regression prediction of its value from
  the known results, softmax_j(-d2_ij / h - lam df2_ij) weighted, raw and as a z-score over the
  task's target candidates. The teacher's scorer, given as input: the pointer can then rank by
  any of them from the first step (a learned head would need many steps to become this sharp);
  the transformer learns when to trust which, and the corrections. No gradient flows here.
  """
  ok_BxK = g["key_ok_BxK"]
  vk_BxK = jnp.take_along_axis(view["value_A"], g["key_idx_BxK"], axis=1)
  tgt = view["is_target_A"] & view["exists_A"]
  out = []
  for h, lam in kernels:
    logit_BxAxK = -(g["d2_BxAxK"] / h + lam * g["df2_BxAxK"])
    w = jax.nn.softmax(jnp.where(ok_BxK[:, None], logit_BxAxK, NEG), -1) * ok_BxK[:, None]
    out += with_z(jnp.einsum("bak,bk->ba", w, vk_BxK), tgt)
  return jax.lax.stop_gradient(jnp.stack(out, -1))


def ridge_predict(z_BxAxD, zf_BxAxG, known_BxA, value_BxA, target_BxA, lam: float,
                  fid_weight: float = 0.0):
  """In-context quadratic ridge regression: value ~ [z, z^2, 1] fitted on the known results of
  each task (weight exp(-fid_weight |zf - zf_target|^2): 0 pools the visible fidelities, whose
  outcomes are already normalized per fidelity), predicted for every candidate, clipped to the
  outcomes' range (+-5).

  Why: the kernel smoother is local; in a 19-dim mixture space or an architecture space it averages
  a few noisy neighbours. A global smooth fit ranks a larger scale's configs far better there: on
  the training pairs (cheap fidelity -> the next one), top-1 regret 0.156 vs 0.646 (admire 0.5B ->
  3B) and 0.007 vs 0.043 (hwgpt S -> M) against "the same config's cheap result"; worse on Step
  Law and grpo (0.012 vs 0.007, 0.079 vs 0.056), where the policy can keep to the kernels.
  """
  x_BxAxP, w_BxA = ridge_design(z_BxAxD, zf_BxAxG, target_BxA, fid_weight)
  xtx, xty = ridge_sums(x_BxAxP, w_BxA * known_BxA, jnp.where(known_BxA, value_BxA, 0.0))
  return ridge_solve(xtx, xty, x_BxAxP, jnp.full(x_BxAxP.shape[:1], lam, jnp.float32))


def ridge_design(z_BxAxD, zf_BxAxG, target_BxA, fid_weight: float):
  """(regressors [z, z^2, 1] per candidate, its row weight by nearness in fidelity features to
  the task's target)."""
  tgt = target_BxA.astype(jnp.float32)
  n_t = jnp.maximum(tgt.sum(-1, keepdims=True), 1.0)
  zf_t = (zf_BxAxG * tgt[..., None]).sum(1, keepdims=True) / n_t[..., None]
  w_BxA = jnp.exp(-fid_weight * jnp.sum((zf_BxAxG - zf_t) ** 2, -1))
  return jnp.concatenate([z_BxAxD, z_BxAxD ** 2, jnp.ones_like(z_BxAxD[..., :1])], -1), w_BxA


def ridge_sums(x_BxAxP, w_BxA, y_BxA):
  """The normal equations' sums X'WX, X'Wy (rows with weight 0 drop out): a running fit adds
  one row at a time (the teacher, simulate.py)."""
  return (jnp.einsum("bap,ba,baq->bpq", x_BxAxP, w_BxA, x_BxAxP),
          jnp.einsum("bap,ba->bp", x_BxAxP, w_BxA * y_BxA))


def ridge_solve(xtx_BxPxP, xty_BxP, x_BxAxP, lam_B):
  """Predictions of the ridge fit with penalty lam_B (the intercept almost unpenalized)."""
  P = x_BxAxP.shape[-1]
  pen_BxP = jnp.broadcast_to(lam_B[:, None], (lam_B.shape[0], P)).at[:, -1].set(1e-6)
  beta = jnp.linalg.solve(xtx_BxPxP + jax.vmap(jnp.diag)(pen_BxP), xty_BxP[..., None])[..., 0]
  return jnp.clip(jnp.einsum("bap,bp->ba", x_BxAxP, beta), -5.0, 5.0)


def with_z(mu_BxA, tgt_BxA):
  """[raw, z-score over the task's target candidates]."""
  tgt = tgt_BxA.astype(jnp.float32)
  n_t = jnp.maximum(tgt.sum(-1, keepdims=True), 1.0)
  m = (mu_BxA * tgt).sum(-1, keepdims=True) / n_t
  sd = jnp.sqrt((((mu_BxA - m) * tgt) ** 2).sum(-1, keepdims=True) / n_t)
  return [mu_BxA, jnp.where(sd > 1e-6, (mu_BxA - m) / jnp.maximum(sd, 1e-6), 0.0)]


def ridge_features(g, view, lam: float, fid_weight: float):
  """`ridge_predict` from the geometry's standardized features: [raw, z-score over targets]."""
  tgt = view["is_target_A"] & view["exists_A"]
  mu = ridge_predict(g["z_BxAxD"], g["zf_BxAxG"], g["known_A"], view["value_A"], tgt, lam,
                     fid_weight)
  return jax.lax.stop_gradient(jnp.stack(with_z(mu, tgt), -1))
