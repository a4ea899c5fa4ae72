"""Step-by-step choosers for transcripts and the advisor, and the evidence behind each choice.

Evidence (why this choice): for the policy, GRADIENT SALIENCY of the chosen action's log-prob with
respect to the known tokens' values, d log p(a) / d value_k, by forward finite differences. Not
autodiff: the model's kernel-regression input features (features.kernel_features) stop gradients,
and they are the main path from a known value to a candidate's logit, so jax.grad would miss most
of it (and attention weights would miss it entirely). The pool is the chosen candidate's nearest
known results by the kernel below plus the best known ones (POOL slots, one batched forward pass),
not all known tokens: a far, mediocre result moves no logit, and the pass stays cheap (one
forward pass of 1 + POOL rows; forward, not central, differences: half the rows). For peers
without a policy: the known results the kernel regression weighs most for the chosen config.

Predicted outcome of a query: a kernel-regression prediction from the results known at the moment
of the query, labelled so everywhere. The policy's value head predicts the episode's return, not a
config's outcome, so it is not used as one.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from autollmr.agent import play as play_lib
from autollmr.lazy import lazy

nnx = lazy("flax.nnx")  # the advisor's exported programs (advisor/policy_cache.py) need none

KERNEL_H, KERNEL_LAM = 0.1, 2.0  # bandwidth (mean sq. standardized distance), fidelity weight

POOL = 8  # known results whose saliency is measured per decision (one forward pass of POOL+1)

NEAR_IN_POOL = 6  # of which the nearest by the kernel; the rest the best known

DELTA = 0.1  # finite-difference step, in score units

N_EVIDENCE = 3  # evidence rows shown per query


def standardize_np(x_AxD, exists_A):
  x = np.asarray(x_AxD, np.float64)
  if x.shape[1] == 0:
    return x, 1
  m, s = x[exists_A].mean(0), x[exists_A].std(0)
  ok = s > 1e-6
  return np.where(ok, (x - m) / np.where(ok, s, 1.0), 0.0), max(int(ok.sum()), 1)


def kernel_weights(view, exists_A, rows) -> np.ndarray:
  """w_RxA: for each candidate in `rows`, softmax over the known results of
  -(d2 / h + lam * df2) (zero elsewhere); d2 in standardized config space, df2 in standardized
  fidelity-feature space, as the policy's kernel features and the teacher compute them."""
  known = np.flatnonzero(np.asarray(view["known_A"]) & exists_A)
  rows = np.atleast_1d(np.asarray(rows, np.int64))
  w = np.zeros((len(rows), len(exists_A)))
  if known.size == 0:
    return w
  z, nvar = standardize_np(view["config_features_AxD"], exists_A)
  zf, _ = standardize_np(view["fidelity_features_AxG"], exists_A)
  sq = lambda a, b: np.maximum((a ** 2).sum(1)[:, None] + (b ** 2).sum(1)[None]
                               - 2 * a @ b.T, 0.0)
  logit = -(sq(z[rows], z[known]) / nvar / KERNEL_H + KERNEL_LAM * sq(zf[rows], zf[known]))
  logit -= logit.max(1, keepdims=True)
  e = np.exp(logit)
  w[:, known] = e / e.sum(1, keepdims=True)
  return w


def kernel_predict(view, exists_A, rows):
  """(mean, spread) of the score of each candidate in `rows`: the kernel-weighted mean of the
  known scores and their kernel-weighted standard deviation (how much the evidence disagrees)."""
  w = kernel_weights(view, exists_A, rows)
  v = np.asarray(view["value_A"], np.float64)
  mu = w @ v
  sd = np.sqrt(np.maximum(w @ v ** 2 - mu ** 2, 0.0))
  empty = w.sum(1) == 0
  return np.where(empty, np.nan, mu), np.where(empty, np.nan, sd)


def to_raw(p, task: int, f: int, score):
  """The objective value whose env score is `score` at fidelity f (env.normalize inverted; exact
  inside the clip)."""
  s = np.asarray(score, np.float64)
  z = np.sign(s) * np.expm1(np.abs(s))
  sign = float(p.sign)
  return float(p.loc_NxF[task, f]) - sign * z * float(p.scale_NxF[task, f])


def policy_inputs(view, exists_A, family: int, max_turns: int, pad: int = 256,
                  d_max: int | None = None, g_max: int | None = None) -> dict:
  """play_lib.view's batch of one, from ReferenceEnv.expand(). The candidate axis is padded (absent
  candidates) to a multiple of `pad` and the feature axes with zeros to d_max / g_max (constant
  features standardize to 0: the policy's input is unchanged), so every table of a similar size
  shares one compiled program."""
  A = len(exists_A)
  extra = -A % pad

  def grow(x, width=None):
    x = np.asarray(x)
    if not x.ndim or x.shape[0] != A:
      return x
    cols = [(0, 0)] * (x.ndim - 1)
    if width is not None and x.ndim == 2:
      cols = [(0, max(width - x.shape[1], 0))]
    return np.pad(x, [(0, extra)] + cols)
  def x32(x):  # numpy with jax's dtypes (float32, int32): no jax op per input (~10 ms each)
    x = np.asarray(x)
    return x.astype(jax.dtypes.canonicalize_dtype(x.dtype))[None]
  widths = {"config_features_AxD": d_max, "fidelity_features_AxG": g_max}
  v = {k: x32(grow(x, widths.get(k))) for k, x in view.items()}
  v["exists_A"] = x32(grow(exists_A))
  v["family"] = np.asarray([family], np.int32)
  v["turn_frac"] = np.asarray([float(view["turn"]) / max(int(max_turns), 1)], np.float32)
  v["turns_left"] = np.asarray([int(max_turns) - int(view["turn"])], np.int32)
  return v


_LOGP = {}


def bumped_log_probs(model, v, bump_BxA):
  """log softmax of the policy's pointer logits for one view (batch of one) broadcast to the rows
  of bump_BxA, each row added to the known values: B x A (traced; `log_probs` and the advisor's
  exported programs, advisor/policy_cache.py, compile it)."""
  vb = {k: jnp.broadcast_to(x, (bump_BxA.shape[0],) + x.shape[1:]) for k, x in v.items()}
  vb["value_A"] = vb["value_A"] + bump_BxA
  logits, _ = model(vb)
  return jax.nn.log_softmax(logits, -1)


def log_probs(model, v, bump_BxA=None) -> np.ndarray:
  """log softmax of the policy's masked pointer logits for one view (batch of one) with each row
  of `bump_BxA` added to its known values: B x A. Two compiled programs per candidate count: one
  row (choosing; no bump) and 1 + POOL rows (saliency)."""
  if "f" not in _LOGP:
    _LOGP["f"] = nnx.jit(bumped_log_probs)
  if bump_BxA is None:
    bump_BxA = np.zeros((1, v["value_A"].shape[1]), np.float32)
  return np.asarray(_LOGP["f"](model, v, jnp.asarray(bump_BxA)))


def saliency(log_probs_fn, v, action: int, pool) -> np.ndarray:
  """d log p(action) / d value_k for each known candidate k in `pool` (at most POOL), by forward
  differences: row 0 is the view as is, row j+1 moves candidate pool[j]'s value by DELTA.
  log_probs_fn(v, bump_BxA): as `log_probs` of the policy."""
  pool = np.asarray(pool, np.int64)[:POOL]
  bump = np.zeros((1 + POOL, v["value_A"].shape[1]), np.float32)
  j = np.arange(len(pool))
  bump[1 + j, pool] = DELTA
  lp = log_probs_fn(v, bump)[:, action]
  return (lp[1 + j] - lp[0]) / DELTA


def evidence_pool(view, exists_A, action: int) -> np.ndarray:
  """The known candidates whose saliency is measured: nearest by the kernel, then the best."""
  known = np.flatnonzero(np.asarray(view["known_A"]) & exists_A)
  w = kernel_weights(view, exists_A, [action])[0]
  near = known[np.argsort(-w[known], kind="stable")][:NEAR_IN_POOL]
  best = known[np.argsort(-np.asarray(view["value_A"])[known], kind="stable")]
  pool = list(near) + [a for a in best if a not in set(near)][:POOL - len(near)]
  return np.asarray(pool, np.int64)


class AgentChooser:
  """The greedy policy as a step-by-step chooser (play_lib.greedy_action, as the batched play: a
  question asked here alone gets the evaluation's answer); evidence by finite-difference
  saliency. `model` gives the input sizes (d_max, g_max); log_probs_fn(v, bump_BxA) its
  log-probabilities (default `log_probs` of the nnx model; the advisor passes its exported
  programs, advisor/policy_cache.py)."""
  kind, evidence_col = "policy", "saliency"
  evidence_label = "saliency d log p(query) / d score (finite differences)"

  def __init__(self, model, exists_A, family: int, max_turns: int, log_probs_fn=None):
    self.model, self.exists, self.family, self.max_turns = model, exists_A, family, max_turns
    self.log_probs_fn = log_probs_fn or (lambda v, bump=None: log_probs(model, v, bump))
    self.prob = None

  def act(self, view) -> int:
    self.v = policy_inputs(view, self.exists, self.family, self.max_turns,
                           d_max=self.model.d_max, g_max=self.model.g_max)
    lp = self.log_probs_fn(self.v, np.zeros((1, self.v["value_A"].shape[1]), np.float32))
    lp = lp[0][:len(self.exists)]
    a = int(play_lib.greedy_action(lp[None])[0])  # the batched play's rule: the same pick
    self.prob = float(np.exp(lp[a]))
    return a

  def tell(self, action, value):
    pass

  def evidence(self, view, action: int, n: int = N_EVIDENCE):
    pool = evidence_pool(view, self.exists, action)
    if pool.size == 0:
      return []
    s = saliency(self.log_probs_fn, self.v, action, pool)
    order = np.argsort(-np.abs(s), kind="stable")[:n]
    return [(int(pool[i]), float(s[i])) for i in order]


class PeerChooser:
  """A peer (peers/) as a chooser; evidence = the known results the kernel weighs most."""
  kind, evidence_col = "peer", "kernel weight"
  evidence_label = "kernel weight of the known result in the query's predicted score"

  def __init__(self, peer, exists_A):
    self.peer, self.exists, self.prob = peer, exists_A, None

  def act(self, view) -> int:
    return int(self.peer.act(view))

  def tell(self, action, value):
    self.peer.tell(action, value)

  def evidence(self, view, action: int, n: int = N_EVIDENCE):
    w = kernel_weights(view, self.exists, [action])[0]
    top = np.argsort(-w, kind="stable")[:n]
    return [(int(a), float(w[a])) for a in top if w[a] > 0]
