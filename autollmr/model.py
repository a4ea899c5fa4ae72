"""The policy: a small transformer over candidate tokens with a pointer head (flax NNX).

Each candidate (config, fidelity) of the expanded observation is a token: fidelity features
(padded to G_max), is_target, known, value (0 when unknown), log cost, per-kernel
kernel-regression predictions of its value from the known results (`kernel_features`) and per
model.ridges (lam:fid_weight) an in-context quadratic ridge fit's prediction (`ridge_features`).
Config features (zero-padded to D_max; more is an error) are standardized per task over the task's
existing candidates, so tables on different scales look alike; by default they enter only through
relative geometry (distances to known results), never as absolute token inputs, because absolute
positions do not carry over to a shifted or unseen config space (e.g. hwgpt's larger L space). One global token carries the budget, the turn, the table
family and the mean candidate embedding. The global token's query against each encoded
candidate's key gives the pointer logits; a value head reads the global token.

Cost on CPU (why the attention is restricted): A is up to ~770 at evaluation (256 cheap rows +
512 target configs). Full self-attention is O(A^2); here every candidate attends only to the
KNOWN tokens (at most `max_keys`: the cheap results and the queried targets); the global token
also to itself. Unknown candidates carry no outcome. Every head has a learned distance bias
-beta_h |z_i - z_j|^2 (+ gamma_h for fidelity features), folded into the q.k matmul: a kernel
smoother over the known results, which only relative distances drive. Measured (B=32, A=192,
K=71, width 64, 2 CPU cores, loaded machine): ~0.25 s/step with 2 layers, ~0.17 s with 1; the
B x H x A x K logits' elementwise passes dominate, hence the smaller training candidate sets
(config.sim.max_*), the gathered keys and the folded bias.

Shapes: B batch, A candidates, K attended keys (1 + max_keys), D_max/G_max padded features, W
width, H heads, E head width. Parameters carry logical axis names (batch, embed, mlp, heads, kv,
vocab) for a later sharding module.
"""
from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

FAMILIES = ("pretraining_hparams", "architecture", "data_mixture_ift", "data_mixture_pretrain",
            "rl_hparams", "other")
NEG = -1e9


def family_id(family: str) -> int:
  return FAMILIES.index(family) if family in FAMILIES else FAMILIES.index("other")


def _init(names, init=nnx.initializers.lecun_normal()):
  return nnx.with_partitioning(init, names)


def _zeros(names):
  return nnx.with_partitioning(nnx.initializers.zeros_init(), names)


def _layernorm(w, rngs):
  return nnx.LayerNorm(w, scale_init=nnx.with_partitioning(nnx.initializers.ones_init(),
                                                           ("embed",)),
                       bias_init=_zeros(("embed",)), rngs=rngs)


def _dense(i, o, names, rngs):
  return nnx.Linear(i, o, kernel_init=_init(names), bias_init=_zeros(names[1:]), rngs=rngs)


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
  """Allowed actions: affordable, existing, not yet known (repeats are legal but pointless).

  Falls back to the affordable ones, then to all existing ones, so a row is never empty.
  """
  ok = view["action_mask_A"] & ~view["known_A"]
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
    out += _with_z(jnp.einsum("bak,bk->ba", w, vk_BxK), tgt)
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


def _with_z(mu_BxA, tgt_BxA):
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
  return jax.lax.stop_gradient(jnp.stack(_with_z(mu, tgt), -1))


class Block(nnx.Module):
  """Pre-LN block: tokens attend to [global token, known tokens] with a distance bias."""

  def __init__(self, width, heads, mlp, d_max, rngs):
    e = width // heads
    self.heads, self.e, self.d = heads, e, d_max
    self.ln1 = _layernorm(width, rngs)
    self.ln2 = _layernorm(width, rngs)
    gen = lambda: nnx.LinearGeneral(width, (heads, e), kernel_init=_init(("embed", "heads", "kv")),
                                    bias_init=_zeros(("heads", "kv")), rngs=rngs)
    self.q, self.k, self.v = gen(), gen(), gen()
    self.o = nnx.LinearGeneral((heads, e), width, axis=(-2, -1),
                               kernel_init=_init(("heads", "kv", "embed")),
                               bias_init=_zeros(("embed",)), rngs=rngs)
    # Per-head inverse bandwidths of the distance bias, log-spaced from broad (0.3) to sharp
    # (30: a nearest-neighbour lookup among hundreds of cheap runs needs it).
    self.log_beta = nnx.Param(jnp.linspace(jnp.log(0.3), jnp.log(30.0), heads),
                              out_sharding=("heads",))
    self.log_gamma = nnx.Param(jnp.linspace(jnp.log(0.1), jnp.log(3.0), heads),
                               out_sharding=("heads",))
    self.up = _dense(width, mlp, ("embed", "mlp"), rngs)
    self.down = _dense(mlp, width, ("mlp", "embed"), rngs)

  def __call__(self, h_BxNxW, key_idx_BxK, ok_BxNxK, zq_BxNxC, zk_BxKxC):
    """ok: which keys each query sees; zq / zk: geometric features of queries and keys.

    The distance bias -beta_h |z_q - z_k|^2 (and gamma_h for fidelity features) is folded into
    the q.k product by appending features, up to a per-query constant that softmax ignores: one
    batched matmul instead of several elementwise passes over the B x H x N x K logits, which
    dominate the step time on CPU. Only relative distances matter (as in kernel regression), so
    a target config far from every cheap one (a shifted config space) still reads its nearest.
    """
    x = self.ln1(h_BxNxW)
    xk_BxKxW = jnp.take_along_axis(x, key_idx_BxK[..., None], axis=1)
    q_BxNxHxE, k_BxKxHxE, v_BxKxHxE = self.q(x), self.k(xk_BxKxW), self.v(xk_BxKxW)
    beta, gamma = jnp.exp(self.log_beta[...]), jnp.exp(self.log_gamma[...])
    d, B, N, K, H = self.d, *zq_BxNxC.shape[:2], zk_BxKxC.shape[1], self.heads
    zq, fq, on = zq_BxNxC[..., :d], zq_BxNxC[..., d:-1], zq_BxNxC[..., -1:]  # on: 0 = global
    qg_BxNxHxC = on[..., None] * jnp.concatenate([
        2 * beta[:, None] * zq[:, :, None], 2 * gamma[:, None] * fq[:, :, None],
        jnp.broadcast_to(-beta[:, None], (B, N, H, 1)),
        jnp.broadcast_to(-gamma[:, None], (B, N, H, 1))], -1)
    kg_BxKxHxC = jnp.broadcast_to(zk_BxKxC[:, :, None], (B, K, H, zk_BxKxC.shape[-1]))
    q_aug = jnp.concatenate([q_BxNxHxE / jnp.sqrt(self.e), qg_BxNxHxC], -1)
    k_aug = jnp.concatenate([k_BxKxHxE, kg_BxKxHxC], -1)
    logits_BxHxNxK = jnp.einsum("bnhc,bkhc->bhnk", q_aug, k_aug)
    logits_BxHxNxK = jnp.where(ok_BxNxK[:, None], logits_BxHxNxK, NEG)
    att = jax.nn.softmax(logits_BxHxNxK, axis=-1) * ok_BxNxK[:, None]  # no keys: no update
    h_BxNxW = h_BxNxW + self.o(jnp.einsum("bhnk,bkhe->bnhe", att, v_BxKxHxE))
    return h_BxNxW + self.down(jax.nn.gelu(self.up(self.ln2(h_BxNxW))))


class Policy(nnx.Module):
  """Pointer policy over candidates. Call on a batched view (see `agent.view`)."""

  def __init__(self, *, max_config_features, max_fidelity_features, width, heads, layers, mlp,
               max_keys, kernels, ridges, rngs: nnx.Rngs):
    self.d_max, self.g_max, self.max_keys = max_config_features, max_fidelity_features, max_keys
    self.kernels = tuple(tuple(float(x) for x in k) for k in kernels)
    self.ridges = tuple(tuple(float(x) for x in r) for r in ridges)
    n_in = max_fidelity_features + 4 + 2 * len(self.kernels) + 2 * len(self.ridges)
    self.embed_in = _dense(n_in, width, (None, "embed"), rngs)
    self.embed_mid = _dense(width, width, ("embed", "embed"), rngs)
    self.embed_glob = _dense(3, width, (None, "embed"), rngs)
    self.family = nnx.Embed(len(FAMILIES), width, embedding_init=_init(
        ("vocab", "embed"), nnx.initializers.normal(0.02)), rngs=rngs)
    self.blocks = nnx.List([Block(width, heads, mlp, max_config_features, rngs)
                              for _ in range(layers)])
    self.ln_out = _layernorm(width, rngs)
    self.ptr_q = _dense(width, width, ("embed", "mlp"), rngs)
    self.ptr_k = _dense(width, width, ("embed", "mlp"), rngs)
    self.value_hidden = _dense(width, mlp, ("embed", "mlp"), rngs)
    self.value_out = _dense(mlp, 1, ("mlp", None), rngs)

  def __call__(self, view, max_keys: int | None = None):
    """-> (logits_BxA masked by `policy_mask`, value_B).

    max_keys: known tokens attended to (default self.max_keys); the caller knows the bound
    (cheap-row cap + turns), and a tighter one is cheaper.
    """
    return self.forward(view, max_keys)

  def forward(self, view, max_keys: int | None = None):
    """-> (logits_BxA, value_B)."""
    exists = view["exists_A"]
    cfg_BxAxD = view["config_features_AxD"]
    fid_BxAxG = view["fidelity_features_AxG"]
    if cfg_BxAxD.shape[-1] > self.d_max or fid_BxAxG.shape[-1] > self.g_max:
      raise ValueError(f"the table has {cfg_BxAxD.shape[-1]} config / {fid_BxAxG.shape[-1]} "
                       f"fidelity features; the policy takes at most {self.d_max} / {self.g_max} "
                       "(raise model.max_config_features / model.max_fidelity_features)")
    g = geometry(view, max_keys or self.max_keys)
    z_BxAxD = jnp.pad(g["z_BxAxD"], ((0, 0), (0, 0), (0, self.d_max - g["z_BxAxD"].shape[-1])))
    zf_BxAxG = jnp.pad(g["zf_BxAxG"], ((0, 0), (0, 0), (0, self.g_max - g["zf_BxAxG"].shape[-1])))
    known = g["known_A"]
    lc_BxA = jnp.log(jnp.clip(view["cost_A"], 1e-6, 1e6))
    f32 = lambda x: x.astype(jnp.float32)
    tok_BxAxI = jnp.concatenate(
        [zf_BxAxG, f32(view["is_target_A"])[..., None],
         f32(known)[..., None],
         jnp.where(known, view["value_A"], 0.0)[..., None], lc_BxA[..., None],
         kernel_features(g, view, self.kernels)]
        + [ridge_features(g, view, lam, fw) for lam, fw in self.ridges], axis=-1)
    h_BxAxW = self.embed_mid(jax.nn.gelu(self.embed_in(tok_BxAxI)))
    h_BxAxW = jnp.where(exists[..., None], h_BxAxW, 0.0)
    pooled_BxW = h_BxAxW.sum(1) / jnp.maximum(f32(exists).sum(1), 1.0)[:, None]
    glob_Bx3 = jnp.stack([view["budget_left"], jnp.log1p(view["budget_left"]),
                          view["turn_frac"]], -1)
    g_BxW = self.embed_glob(glob_Bx3) + self.family(view["family"]) + pooled_BxW
    h_BxNxW = jnp.concatenate([g_BxW[:, None], h_BxAxW], axis=1)  # N = 1 + A, global first

    # Keys: the known candidates (gathered, so the cost is A*K, not A^2), plus the global token
    # for the global query only. Geometry per token: [z / sqrt(#varying), zf, |.|^2 of both].
    zs_BxAxD = z_BxAxD / jnp.sqrt(jnp.maximum(g["nvar_B1"], 1.0))[..., None]
    sq = lambda x: jnp.sum(x ** 2, -1, keepdims=True)
    geo_BxAxC = jnp.concatenate([zs_BxAxD, zf_BxAxG, sq(zs_BxAxD), sq(zf_BxAxG)], -1)
    zq_BxNxC = jnp.pad(jnp.concatenate([zs_BxAxD, zf_BxAxG, jnp.ones_like(lc_BxA[..., None])],
                                       -1), ((0, 0), (1, 0), (0, 0)))
    idx_BxK, ok_BxK = g["key_idx_BxK"], g["key_ok_BxK"]
    zk_BxKxC = jnp.pad(jnp.take_along_axis(geo_BxAxC, idx_BxK[..., None], axis=1),
                       ((0, 0), (1, 0), (0, 0)))
    key_idx = jnp.concatenate([jnp.zeros_like(idx_BxK[:, :1]), idx_BxK + 1], axis=1)
    # Key 0 (the global token) is seen by the global query only.
    is_glob_N = jnp.arange(h_BxNxW.shape[1]) == 0
    ok_BxNxK = jnp.concatenate([jnp.broadcast_to(is_glob_N[None, :, None], (ok_BxK.shape[0],
                                                                            len(is_glob_N), 1)),
                                jnp.broadcast_to(ok_BxK[:, None], (ok_BxK.shape[0],
                                                                   len(is_glob_N),
                                                                   ok_BxK.shape[1]))], -1)
    for block in self.blocks:
      h_BxNxW = block(h_BxNxW, key_idx, ok_BxNxK, zq_BxNxC, zk_BxKxC)

    h_BxNxW = self.ln_out(h_BxNxW)
    q_BxW = self.ptr_q(h_BxNxW[:, 0])
    k_BxAxW = self.ptr_k(h_BxNxW[:, 1:])
    logits_BxA = jnp.einsum("bw,baw->ba", q_BxW, k_BxAxW) / jnp.sqrt(q_BxW.shape[-1])
    logits_BxA = jnp.where(policy_mask(view), logits_BxA, NEG)
    value_B = self.value_out(jax.nn.gelu(self.value_hidden(h_BxNxW[:, 0])))[:, 0]
    return logits_BxA, value_B

  def member_outputs(self, view, max_keys: int | None = None):
    """[(logits, value)]: one member (the Ensemble's has one per member; sft.py trains each)."""
    return [self.forward(view, max_keys)]


class Ensemble(nnx.Module):
  """`model.members` policies acting as one: their log-probabilities and values averaged.

  Why: distilled policies of different training seeds fail on different held-out tasks
  (docs/experiments.md "Model selection": on validation one seed's admire pick is 0.045, another's
  0.16); averaging their log-probabilities keeps the picks they agree on. SFT trains each member
  on its own cross-entropy (sft.py); RL and evaluation see only the averaged policy.
  """

  def __init__(self, members):
    self.members = nnx.List(members)
    m = members[0]  # the same input sizes as every member (callers read them off the policy)
    self.d_max, self.g_max, self.max_keys = m.d_max, m.g_max, m.max_keys

  def member_outputs(self, view, max_keys: int | None = None):
    return [m.forward(view, max_keys) for m in self.members]

  def __call__(self, view, max_keys: int | None = None):
    outs = self.member_outputs(view, max_keys)
    logp_BxA = sum(jax.nn.log_softmax(o[0]) for o in outs) / len(outs)
    logp_BxA = jnp.where(policy_mask(view), logp_BxA, NEG)
    return logp_BxA, sum(o[1] for o in outs) / len(outs)


def make_policy(mcfg, seed: int = 0) -> Policy | Ensemble:
  """The policy from config.model (an Ensemble when model.members > 1; member i is initialized
  from seed + 7919 i, so member 0 is the single policy of that seed); sharding names are recorded,
  not applied (no mesh here)."""
  members = int(mcfg.members)
  if members < 1:
    raise ValueError(f"--config.model.members must be >= 1, got {members}")
  with nnx.use_eager_sharding(False):
    policies = [Policy(max_config_features=mcfg.max_config_features,
                       max_fidelity_features=mcfg.max_fidelity_features, width=mcfg.width,
                       heads=mcfg.heads, layers=mcfg.layers, mlp=mcfg.mlp, max_keys=mcfg.max_keys,
                       kernels=pairs(mcfg.kernels), ridges=pairs(mcfg.ridges),
                       rngs=nnx.Rngs(seed + 7919 * i)) for i in range(members)]
    return policies[0] if members == 1 else Ensemble(policies)


def pairs(s: str):
  """'0.1:0.5,0.3:2' -> ((0.1, 0.5), (0.3, 2.0))"""
  return tuple(tuple(float(x) for x in p.split(":")) for p in str(s).split(",") if p.strip())
