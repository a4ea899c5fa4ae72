"""The policy: a small transformer over candidate tokens with a pointer head (flax NNX).

Each candidate (config, fidelity) of the expanded observation is a token: fidelity features
(padded to G_max), is_target, known, value (0 when unknown), log cost, per-kernel
kernel-regression predictions of its value from the known results (`features.kernel_features`)
and per model.ridges (lam:fid_weight) an in-context quadratic ridge fit's prediction
(`features.ridge_features`). Config features (zero-padded to D_max; more is an error) are
standardized per task over the task's existing candidates, so tables on different scales look
alike; they enter only through relative geometry (distances to known results), never as absolute
token inputs, because absolute positions do not carry over to a shifted or unseen config space
(e.g. hwgpt's larger L space). One global token carries the budget, the turn, the table family
and the mean candidate embedding. The global token's query against each encoded candidate's key
gives the pointer logits; a value head reads the global token.

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

from autollmr import errors
from autollmr.agent import features
from autollmr.gym import table as table_lib


def param_init(names, init=nnx.initializers.lecun_normal()):
  return nnx.with_partitioning(init, names)


def zeros_init(names):
  return nnx.with_partitioning(nnx.initializers.zeros_init(), names)


def layernorm(w, rngs):
  return nnx.LayerNorm(w, scale_init=nnx.with_partitioning(nnx.initializers.ones_init(),
                                                           ("embed",)),
                       bias_init=zeros_init(("embed",)), rngs=rngs)


def dense(i, o, names, rngs):
  return nnx.Linear(i, o, kernel_init=param_init(names), bias_init=zeros_init(names[1:]), rngs=rngs)


class Block(nnx.Module):
  """Pre-LN block: tokens attend to [global token, known tokens] with a distance bias."""

  def __init__(self, width, heads, mlp, d_max, rngs):
    e = width // heads
    self.heads, self.e, self.d = heads, e, d_max
    self.ln1 = layernorm(width, rngs)
    self.ln2 = layernorm(width, rngs)
    gen = lambda: nnx.LinearGeneral(
        width, (heads, e),
        kernel_init=param_init(("embed", "heads", "kv")),
        bias_init=zeros_init(("heads", "kv")),
        rngs=rngs)
    self.q, self.k, self.v = gen(), gen(), gen()
    self.o = nnx.LinearGeneral((heads, e), width, axis=(-2, -1),
                               kernel_init=param_init(("heads", "kv", "embed")),
                               bias_init=zeros_init(("embed",)), rngs=rngs)
    # Per-head inverse bandwidths of the distance bias, log-spaced from broad (0.3) to sharp
    # (30: a nearest-neighbour lookup among hundreds of cheap runs needs it).
    self.log_beta = nnx.Param(jnp.linspace(jnp.log(0.3), jnp.log(30.0), heads),
                              out_sharding=("heads",))
    self.log_gamma = nnx.Param(jnp.linspace(jnp.log(0.1), jnp.log(3.0), heads),
                               out_sharding=("heads",))
    self.up = dense(width, mlp, ("embed", "mlp"), rngs)
    self.down = dense(mlp, width, ("mlp", "embed"), rngs)

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
    logits_BxHxNxK = jnp.where(ok_BxNxK[:, None], logits_BxHxNxK, features.NEG)
    att = jax.nn.softmax(logits_BxHxNxK, axis=-1) * ok_BxNxK[:, None]  # no keys: no update
    h_BxNxW = h_BxNxW + self.o(jnp.einsum("bhnk,bkhe->bnhe", att, v_BxKxHxE))
    return h_BxNxW + self.down(jax.nn.gelu(self.up(self.ln2(h_BxNxW))))


class Policy(nnx.Module):
  """Pointer policy over candidates. Call on a batched view (see `play_lib.view`)."""

  def __init__(self, *, max_config_features, max_fidelity_features, width, heads, layers, mlp,
               max_keys, kernels, ridges, rngs: nnx.Rngs):
    self.d_max, self.g_max, self.max_keys = max_config_features, max_fidelity_features, max_keys
    self.kernels = tuple(tuple(float(x) for x in k) for k in kernels)
    self.ridges = tuple(tuple(float(x) for x in r) for r in ridges)
    n_in = max_fidelity_features + 4 + 2 * len(self.kernels) + 2 * len(self.ridges)
    self.embed_in = dense(n_in, width, (None, "embed"), rngs)
    self.embed_mid = dense(width, width, ("embed", "embed"), rngs)
    self.embed_glob = dense(3, width, (None, "embed"), rngs)
    self.family = nnx.Embed(len(table_lib.FAMILIES), width, embedding_init=param_init(
        ("vocab", "embed"), nnx.initializers.normal(0.02)), rngs=rngs)
    self.blocks = nnx.List(
        [Block(width, heads, mlp, max_config_features, rngs) for _ in range(layers)])
    self.ln_out = layernorm(width, rngs)
    self.ptr_q = dense(width, width, ("embed", "mlp"), rngs)
    self.ptr_k = dense(width, width, ("embed", "mlp"), rngs)
    self.value_hidden = dense(width, mlp, ("embed", "mlp"), rngs)
    self.value_out = dense(mlp, 1, ("mlp", None), rngs)

  def __call__(self, view, max_keys: int | None = None):
    """-> (logits_BxA masked by `features.policy_mask`, value_B).

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
      raise errors.UserError(
          f"the table has {cfg_BxAxD.shape[-1]} config / {fid_BxAxG.shape[-1]} "
          f"fidelity features; the policy takes at most {self.d_max} / {self.g_max} "
          "(raise model.max_config_features / model.max_fidelity_features)")
    g = features.geometry(view, max_keys or self.max_keys)
    z_BxAxD = jnp.pad(g["z_BxAxD"], ((0, 0), (0, 0), (0, self.d_max - g["z_BxAxD"].shape[-1])))
    zf_BxAxG = jnp.pad(g["zf_BxAxG"], ((0, 0), (0, 0), (0, self.g_max - g["zf_BxAxG"].shape[-1])))
    known = g["known_A"]
    lc_BxA = jnp.log(jnp.clip(view["cost_A"], 1e-6, 1e6))
    f32 = lambda x: x.astype(jnp.float32)
    tok_BxAxI = jnp.concatenate(
        [zf_BxAxG, f32(view["is_target_A"])[..., None],
         f32(known)[..., None],
         jnp.where(known, view["value_A"], 0.0)[..., None], lc_BxA[..., None],
         features.kernel_features(g, view, self.kernels)]
        + [features.ridge_features(g, view, lam, fw) for lam, fw in self.ridges], axis=-1)
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
    logits_BxA = jnp.where(features.policy_mask(view), logits_BxA, features.NEG)
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
    logp_BxA = jnp.where(features.policy_mask(view), logp_BxA, features.NEG)
    return logp_BxA, sum(o[1] for o in outs) / len(outs)


def make_policy(mcfg, seed: int = 0) -> Policy | Ensemble:
  """The policy from config.model (an Ensemble when model.members > 1; member i is initialized
  from seed + 7919 i, so member 0 is the single policy of that seed); sharding names are recorded,
  not applied (no mesh here)."""
  members = int(mcfg.members)
  if members < 1:
    raise errors.UserError(f"--config.model.members must be >= 1, got {members}")
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
