"""The text policy's backbone: a small decoder-only transformer over sentencepiece tokens (NNX).

Pre-LN blocks, causal self-attention, learned absolute positions (the text env's layout puts
every line in a fixed slot, see lm_agent.Layout), tied-free LM head. PAD tokens are masked out as
keys, so fixed-width slots cost nothing in meaning. Parameters carry logical axis names (embed,
mlp, heads, kv, vocab) like model.py, so the sharding module's rules apply unchanged.

Decoding (text/agent.py): `prefill` runs the whole sequence once per turn and returns every layer's
keys and values; `step` then adds one token at a time against that cache: a turn costs one full
pass plus action_tokens one-token passes instead of action_tokens full passes.

Shapes: B batch, L sequence, W width, H heads, E head width, V vocabulary.
"""
from __future__ import annotations

from flax import nnx
import jax
import jax.numpy as jnp

from autollmr.agent import model as model_lib

NEG = -1e9


class Block(nnx.Module):

  def __init__(self, width, heads, mlp, rngs):
    e = width // heads
    self.heads, self.e = heads, e
    self.ln1 = model_lib.layernorm(width, rngs)
    self.ln2 = model_lib.layernorm(width, rngs)
    gen = lambda: nnx.LinearGeneral(
        width, (heads, e),
        kernel_init=model_lib.param_init(("embed", "heads", "kv")),
        use_bias=False,
        rngs=rngs)
    self.q, self.k, self.v = gen(), gen(), gen()
    self.o = nnx.LinearGeneral((heads, e),
                               width,
                               axis=(-2, -1),
                               use_bias=False,
                               kernel_init=model_lib.param_init(("heads", "kv", "embed")),
                               rngs=rngs)
    self.up = model_lib.dense(width, mlp, ("embed", "mlp"), rngs)
    self.down = model_lib.dense(mlp, width, ("mlp", "embed"), rngs)

  def _attend(self, q_BxNxHxE, k_BxLxHxE, v_BxLxHxE, ok_BxNxL):
    logits = jnp.einsum("bnhe,blhe->bhnl", q_BxNxHxE, k_BxLxHxE) / jnp.sqrt(self.e)
    logits = jnp.where(ok_BxNxL[:, None], logits, NEG)
    att = jax.nn.softmax(logits, -1)
    return jnp.einsum("bhnl,blhe->bnhe", att, v_BxLxHxE)

  def __call__(self, h_BxLxW, ok_BxLxL):
    x = self.ln1(h_BxLxW)
    k, v = self.k(x), self.v(x)
    h_BxLxW = h_BxLxW + self.o(self._attend(self.q(x), k, v, ok_BxLxL))
    return h_BxLxW + self.down(jax.nn.gelu(self.up(self.ln2(h_BxLxW)))), (k, v)

  def step(self, h_BxW, pos, cache, ok_BxL):
    """One new token at position `pos` (scalar) against the cache (k, v of B x L x H x E)."""
    x = self.ln1(h_BxW)[:, None]
    k_c, v_c = cache
    k_c = jax.lax.dynamic_update_slice_in_dim(k_c, self.k(x), pos, axis=1)
    v_c = jax.lax.dynamic_update_slice_in_dim(v_c, self.v(x), pos, axis=1)
    h = h_BxW + self.o(self._attend(self.q(x), k_c, v_c, ok_BxL[:, None]))[:, 0]
    return h + self.down(jax.nn.gelu(self.up(self.ln2(h)))), (k_c, v_c)


class LM(nnx.Module):

  def __init__(self, *, vocab, max_len, width=64, heads=4, layers=2, mlp=256, rngs: nnx.Rngs):
    emb = lambda n: nnx.Embed(n, width, embedding_init=model_lib.param_init(
        ("vocab", "embed"), nnx.initializers.normal(0.02)), rngs=rngs)
    self.tok, self.pos = emb(vocab), emb(max_len)
    self.blocks = nnx.List([Block(width, heads, mlp, rngs) for _ in range(layers)])
    self.ln_out = model_lib.layernorm(width, rngs)
    self.head = nnx.Linear(
        width,
        vocab,
        use_bias=False,
        kernel_init=model_lib.param_init(("embed", "vocab")),
        rngs=rngs)
    self.max_len = max_len

  def _mask(self, tok_BxL):
    """Causal, PAD keys hidden; every query also sees itself (a PAD query still gets a row)."""
    L = tok_BxL.shape[1]
    causal = jnp.tril(jnp.ones((L, L), bool))
    key_ok = tok_BxL != 0
    return (causal[None] & key_ok[:, None]) | jnp.eye(L, dtype=bool)[None]

  def prefill(self, tok_BxL):
    """-> hidden states B x L x W (after the final norm) and the per-layer (k, v) cache."""
    L = tok_BxL.shape[1]
    h = self.tok(tok_BxL) + self.pos(jnp.arange(L))[None]
    ok = self._mask(tok_BxL)
    cache = []
    for b in self.blocks:
      h, kv = b(h, ok)
      cache.append(kv)
    return self.ln_out(h), cache

  def __call__(self, tok_BxL):
    return self.prefill(tok_BxL)[0]

  def logits(self, h):
    return self.head(h)

  def step(self, tok_B, pos, cache, tok_BxL):
    """Logits for the token after `tok_B`, which sits at position `pos` of tok_BxL (already
    written there); returns (logits_BxV, cache)."""
    L = tok_BxL.shape[1]
    ok_BxL = ((tok_BxL != 0) & (jnp.arange(L) <= pos)[None]) | (jnp.arange(L) == pos)[None]
    h = self.tok(tok_B) + self.pos(pos)[None]
    new = []
    for b, kv in zip(self.blocks, cache):
      h, kv = b.step(h, pos, kv, ok_BxL)
      new.append(kv)
    return self.head(self.ln_out(h)), new


def make_lm(lc, vocab: int, seed: int = 0) -> LM:
  with nnx.use_eager_sharding(False):
    return LM(vocab=vocab, max_len=int(lc.max_len), width=int(lc.width), heads=int(lc.heads),
              layers=int(lc.layers), mlp=int(lc.mlp), rngs=nnx.Rngs(seed))
