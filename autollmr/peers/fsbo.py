"""FSBO: few-shot BO (Wistuba & Grabocka 2021), a deep-kernel GP in JAX meta-trained on the
training tasks' marginal likelihood, fine-tuned on the test task's visible results, EI at the
target. Training data and caching: learned.py.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax

from autollmr.peers import learned
from autollmr.peers.learned import ScoredTargetPeer

_WARM: set = set()

WIDTH, EMBED = 32, 8
META_STEPS, META_BATCH, META_LR = 300, 4, 3e-3  # batch 8 ran ~6x slower a step on XLA:CPU
SUPPORT_V, SUPPORT_T = 64, 32  # points per meta-training task: visible results, target results
FINETUNE_STEPS, FINETUNE_LR, SELF_STEPS = 20, 1e-3, 100
GP_VISIBLE = 112  # visible results the test-time GP conditions on (+ <= 16 target results: 128)

MIN_DIMS = (24, 4)  # inputs padded to at least this: one compiled shape serves every table

JITTER = 1e-5


def init_gp(key, n_in):
  ks = jax.random.split(key, 3)
  dims = [n_in, WIDTH, WIDTH, EMBED]
  p = {f"w{i}": jax.random.normal(k, (a, b)) * math.sqrt(2.0 / a)
       for i, (k, a, b) in enumerate(zip(ks, dims[:-1], dims[1:]))}
  p.update({f"b{i}": jnp.zeros(b) for i, b in enumerate(dims[1:])})
  p.update(log_ls=jnp.float32(0.0), log_sf=jnp.float32(0.0), log_sn=jnp.float32(-1.5),
           m=jnp.float32(0.0))
  return p


def embed(p, u_NxI):
  h = jax.nn.relu(u_NxI @ p["w0"] + p["b0"])
  h = jax.nn.relu(h @ p["w1"] + p["b1"])
  return h @ p["w2"] + p["b2"]


def kernel(kp, a_NxH, b_MxH):
  d2 = ((a_NxH[:, None, :] - b_MxH[None, :, :]) ** 2).sum(-1)
  return jnp.exp(2 * kp["log_sf"]) * jnp.exp(-0.5 * d2 * jnp.exp(-2 * kp["log_ls"]))


def _chol(kp, z_NxH, mask_N):
  """Cholesky of K + noise on the masked points; padding rows are identity, so the GP on padded
  arrays is exactly the GP on the real points (one compiled shape serves many sizes)."""
  both = mask_N[:, None] & mask_N[None, :]
  K = jnp.where(both, kernel(kp, z_NxH, z_NxH), 0.0)
  diag = jnp.where(mask_N, jnp.exp(2 * kp["log_sn"]) + JITTER, 1.0)
  return jnp.linalg.cholesky(K + jnp.diag(diag))


def gp_nll(kp, z_NxH, y_N, mask_N):
  """Negative log marginal likelihood per point."""
  L = _chol(kp, z_NxH, mask_N)
  r = jnp.where(mask_N, y_N - kp["m"], 0.0)
  a = jax.scipy.linalg.cho_solve((L, True), r)
  n = jnp.maximum(mask_N.sum(), 1)
  logdet = jnp.sum(jnp.where(mask_N, jnp.log(jnp.diag(L)), 0.0))
  return (0.5 * r @ a + logdet + 0.5 * n * math.log(2 * math.pi)) / n


def gp_posterior(kp, z_NxH, y_N, mask_N, zc_AxH):
  """Posterior mean and (latent, noise-free) variance at zc, given the masked observations."""
  L = _chol(kp, z_NxH, mask_N)
  r = jnp.where(mask_N, y_N - kp["m"], 0.0)
  a = jax.scipy.linalg.cho_solve((L, True), r)
  Kc = jnp.where(mask_N[:, None], kernel(kp, z_NxH, zc_AxH), 0.0)
  v = jax.scipy.linalg.solve_triangular(L, Kc, lower=True)
  var = jnp.exp(2 * kp["log_sf"]) - (v ** 2).sum(0)
  return kp["m"] + Kc.T @ a, jnp.maximum(var, 1e-12)


def expected_improvement(mean_A, var_A, best):
  sd = jnp.sqrt(var_A)
  z = (mean_A - best) / sd
  return (mean_A - best) * jax.scipy.stats.norm.cdf(z) + sd * jax.scipy.stats.norm.pdf(z)


def _loss(p, u_NxI, y_N, mask_N):
  return gp_nll(p, embed(p, u_NxI), y_N, mask_N)


def _batch_loss(p, u_BxNxI, y_BxN, mask_BxN):
  return jax.vmap(_loss, (None, 0, 0, 0))(p, u_BxNxI, y_BxN, mask_BxN).mean()


@functools.cache
def _train_step():
  """Adam, the learning rate an argument: one compiled step per shape serves every use."""
  opt = optax.scale_by_adam()

  @jax.jit
  def step(p, state, u, y, mask, lr):
    loss, g = jax.value_and_grad(_batch_loss)(p, u, y, mask)
    upd, state = opt.update(g, state, p)
    return jax.tree.map(lambda w, d: w - lr * d, p, upd), state, loss
  return opt, step


def fit_gp(p, batches, lr):
  """Adam on the batched marginal likelihood; `batches` yields (u_BxNxI, y_BxN, mask_BxN)."""
  opt, step = _train_step()
  state = opt.init(p)
  for u, y, mask in batches:
    p, state, _ = step(p, state, jnp.asarray(u, jnp.float32), jnp.asarray(y, jnp.float32),
                       jnp.asarray(mask), jnp.float32(lr))
  return p


@jax.jit
def _posterior_ei(p, u_NxI, y_N, mask_N, uc_AxI, best):
  mean, var = gp_posterior(p, embed(p, u_NxI), y_N, mask_N, embed(p, uc_AxI))
  return mean, var, expected_improvement(mean, var, best)


def gp_points(obs, dims):
  """(u of the visible results, y, u of the target candidates), padded to dims = (I_D, I_G)."""
  mu, sd = learned.obs_stats(obs)
  gt = obs["g_F"][obs["target"]]
  pad = lambda a, n: np.pad(a, ((0, 0), (0, n - a.shape[1])))
  gap = np.array([obs["g_F"][f] - gt for f in obs["fid_N"].tolist()]).reshape(-1, len(gt))
  u_v = np.concatenate([pad((obs["x_NxD"] - mu) / sd, dims[0]), pad(gap, dims[1])], 1)
  u_t = np.concatenate([pad((obs["xt_AxD"] - mu) / sd, dims[0]),
                        np.zeros((len(obs["xt_AxD"]), dims[1]))], 1)
  return u_v, obs["y_N"], u_t


def _support_batches(tasks, rng, steps):
  """Each step: META_BATCH tasks, each SUPPORT_V visible and SUPPORT_T target points (masked
  when a task has fewer): the marginal likelihood of the joint set teaches both the landscape
  and how visible results carry to the target."""
  B, n, i_dim = META_BATCH, SUPPORT_V + SUPPORT_T, tasks[0][0].shape[1]
  for _ in range(steps):
    u, y, m = np.zeros((B, n, i_dim)), np.zeros((B, n)), np.zeros((B, n), bool)
    for b, i in enumerate(rng.integers(0, len(tasks), B)):
      u_v, y_v, u_t, y_t = tasks[i]
      iv = rng.permutation(len(y_v))[:SUPPORT_V]
      it = SUPPORT_V + np.arange(min(len(y_t), SUPPORT_T))
      jt = rng.permutation(len(y_t))[:SUPPORT_T]
      u[b, :len(iv)], y[b, :len(iv)], m[b, :len(iv)] = u_v[iv], y_v[iv], True
      u[b, it], y[b, it], m[b, it] = u_t[jt], y_t[jt], True
    yield u, y, m


def meta_train_gp(table, target):
  """(params, dims): the deep kernel meta-trained on the training views of `table`; with no
  training data, the seeded random init (the peer then fits it on the visible results)."""
  views = learned.training_views(table, target)
  dims = tuple(max([m, len(getattr(table, n))] + [len(getattr(v, n)) for v, _ in views])
               for m, n in zip(MIN_DIMS, ("config_feature_names", "fidelity_feature_names")))
  key = learned.cache_key("fsbo", views, dims)
  if key not in learned.CACHE:
    p = init_gp(jax.random.PRNGKey(0), sum(dims))
    data = []
    for view, ts in views:
      for task in ts:
        obs, lab = learned.obs_from_table(view, task)
        if len(obs["y_N"]):
          data.append(gp_points(obs, dims) + (lab,))
    if data:
      p = fit_gp(p, _support_batches(data, np.random.default_rng(0), META_STEPS), META_LR)
    learned.CACHE[key] = (p, dims, bool(data))
  return learned.CACHE[key]


def _pad_to(n, m=128):
  return max(m, -(-n // m) * m)


def _warm(p, n, a, i):
  """Compiles the fine-tune step and the posterior for these shapes once per process, outside
  decision time (like meta-training; XLA:CPU takes seconds to compile a Cholesky gradient)."""
  if (n, a, i) in _WARM:
    return
  _WARM.add((n, a, i))
  one = (np.zeros((1, n, i), np.float32), np.zeros((1, n), np.float32), np.zeros((1, n), bool))
  fit_gp(p, [one], FINETUNE_LR)
  jax.block_until_ready(_posterior_ei(p, one[0][0], one[1][0], one[2][0],
                                      np.zeros((a, i), np.float32), np.float32(0)))


def nearest_rows(obs, cap):
  """Up to `cap` visible results for the GP, whole fidelities nearest the target first; the one
  the cap cuts keeps a spread of its results by value rank (O(n^3) Cholesky: a few hundred rows
  cost ~10x more per decision and add little beyond the nearest fidelities)."""
  out = []
  for f in learned.near_fids(obs):
    rows = np.flatnonzero(obs["fid_N"] == f)
    room = cap - sum(len(r) for r in out)
    if room <= 0:
      break
    if len(rows) > room:
      rows = rows[np.argsort(-obs["y_N"][rows], kind="stable")]
      rows = rows[np.linspace(0, len(rows) - 1, room).round().astype(int)]
    out.append(rows)
  return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


class FSBOPeer(ScoredTargetPeer):
  """Few-shot BO (FSBO, Wistuba & Grabocka 2021) with a deep-kernel GP in JAX (see `kernel`).

  Meta-training (once per training-source set, cached): Adam on the GP marginal likelihood of
  batches of training tasks, each a support set of its visible results and its target configs'
  labels (the `learned.obs_from_table` labels). At the first decision the kernel is fine-tuned on
  the
  test task's visible results (FINETUNE_STEPS Adam steps on their marginal likelihood; the
  GP_VISIBLE nearest). No training data: SELF_STEPS from the seeded random init, with the
  fidelity-gap inputs zeroed (nothing has learned what a gap means, so visible results count as
  target results, like TPE's prior trials).

  Each decision: the jitted posterior at every target candidate given the visible results and the
  observed target results; the first query is the best posterior mean (FSBO's warm start: the
  meta-learned model's best), later ones the unqueried target candidate with the highest expected
  improvement over the best observed target result. The env's target scale has an unknown offset
  from the labels', so observed target results are shifted by their mean residual against the
  visible-only posterior before they condition; clipped (censored) ones condition nothing.
  """

  def __init__(self, ctx, seed: int):
    self.ctx, self.rng = ctx, np.random.default_rng(seed)
    self.p, self.dims, self.trained = meta_train_gp(ctx.table, ctx.target)
    self.obs_a, self.obs_y, self.started = [], [], False
    self.n = _pad_to(GP_VISIBLE + ctx.task.max_turns)  # visible + every possible target result
    n_t = int((ctx.cand_exists_A & (ctx.cand_fid_A == ctx.target)).sum())
    _warm(self.p, self.n, _pad_to(n_t), sum(self.dims))

  def _start(self, view):
    obs = learned.obs_from_view(self.ctx, view)
    u_v, y_v, u_t = gp_points(obs, self.dims)
    if not self.trained:  # no kernel has learned what a fidelity gap means: treat visible results
      u_v[:, self.dims[0]:] = 0.0  # as target results (the transfer assumption, as TPE's priors)
    keep = nearest_rows(obs, GP_VISIBLE)
    u_v, y_v = u_v[keep], y_v[keep]
    n = self.n
    self.u = np.zeros((n, u_v.shape[1]), np.float32)
    self.y, self.mask = np.zeros(n, np.float32), np.zeros(n, bool)
    self.u[:len(y_v)], self.y[:len(y_v)], self.mask[:len(y_v)] = u_v, y_v, True
    self.n_v = len(y_v)
    self.tgt = np.flatnonzero(view["is_target_A"])
    self.uc = np.zeros((_pad_to(len(self.tgt)), u_v.shape[1]), np.float32)
    self.uc[:len(self.tgt)] = u_t
    steps = FINETUNE_STEPS if self.trained else SELF_STEPS
    if self.n_v:
      one = (self.u[None], self.y[None], self.mask[None])
      self.p = fit_gp(self.p, (one for _ in range(steps)),
                      FINETUNE_LR if self.trained else META_LR)
    self.prior_mean = self._posterior(-np.inf)[0]  # visible results only

  def _posterior(self, best):
    out = _posterior_ei(self.p, self.u, self.y, self.mask, self.uc, np.float32(best))
    return [np.asarray(x)[:len(self.tgt)] for x in out]

  def scores(self, view):
    """EI of every target candidate (-inf elsewhere), given what has been observed."""
    if not self.started:
      self._start(view)
      self.started = True
    pos = {int(a): i for i, a in enumerate(self.tgt)}
    k = [pos[a] for a in self.obs_a]
    y = np.array(self.obs_y)
    if k:  # the offset: the mean residual against the visible-only posterior
      y = y - np.mean(y - self.prior_mean[k])
    n = self.n_v + len(k)
    self.u[self.n_v:n], self.y[self.n_v:n], self.mask[self.n_v:n] = self.uc[k], y, True
    mean, _, ei = self._posterior(y.max() if k else -np.inf)
    s = np.full(len(view["is_target_A"]), -np.inf)
    s[self.tgt] = ei if k else mean  # the first query: FSBO's warm start, the best mean
    return s
