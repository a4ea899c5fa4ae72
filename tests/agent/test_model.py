"""The policy: shapes, masking, permutation equivariance, logical axis names."""
from flax import nnx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from autollmr import pipeline
from autollmr.agent import bank as bank_lib
from autollmr.agent import features
from autollmr.agent import model as model_lib
from autollmr.agent import play as play_lib
from autollmr.gym import env as env_lib
from configs import sft as sft_config


@pytest.fixture(scope="module")
def setup():
  c = sft_config.get_config("tiny")
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv("AUTOLLMR_DATA", "none")  # the synthetic tables
    tables = pipeline.load_tables(c)
  splits = pipeline.curate_all(c, tables)
  bank = bank_lib.train_bank(c, tables, splits)
  policy = model_lib.make_policy(c.model, seed=0)
  return c, bank, policy


def _views(bank, n_turns=2, seed=0):
  """Views of every training task after `n_turns` random target queries."""
  params, sizes = bank["params"], bank["sizes"]
  n = len(bank["tasks"])
  rng = np.random.default_rng(seed)
  states = jax.vmap(lambda t: env_lib.fresh_state(params, sizes, t, jnp.uint32(7), 0))(
      jnp.arange(n))
  for _ in range(n_turns):
    obs = jax.vmap(lambda s: env_lib.observe(params, s))(states)
    v = play_lib.view(params, bank["family_N"], obs, sizes)
    ok = np.asarray(v["action_mask_A"] & ~v["known_A"] & v["is_target_A"])
    a = np.array([rng.choice(np.flatnonzero(r)) if r.any() else 0 for r in ok], np.int32)
    _, states, *_ = jax.vmap(lambda s, x: env_lib.step(s, x, params, sizes, auto_reset=False))(
        states, jnp.asarray(a))
  obs = jax.vmap(lambda s: env_lib.observe(params, s))(states)
  return play_lib.view(params, bank["family_N"], obs, sizes)


def test_shapes_and_mask(setup):
  c, bank, policy = setup
  v = _views(bank, n_turns=1)
  B, A = v["known_A"].shape
  logits, value = policy(v)
  assert logits.shape == (B, A) and value.shape == (B,)
  allowed = np.asarray(features.policy_mask(v))
  # Known candidates (revealed cheap rows, queried targets) are masked while others are open.
  open_ = np.asarray(v["action_mask_A"] & ~v["known_A"]).any(-1)
  assert open_.any() and not (allowed & np.asarray(v["known_A"]))[open_].any()
  assert (allowed <= np.asarray(v["action_mask_A"]))[open_].all()
  greedy = np.asarray(jnp.argmax(logits, -1))
  assert allowed[np.arange(B), greedy].all()
  samples = np.asarray(jax.random.categorical(jax.random.key(0), logits, shape=(256, B)))
  assert allowed[np.arange(B)[None], samples].all()


def test_mask_keeps_an_option():
  v = dict(action_mask_A=jnp.array([[True, True, False]]), known_A=jnp.array([[True, True, False]]),
           exists_A=jnp.array([[True, True, True]]), is_target_A=jnp.array([[False, True, True]]),
           cost_A=jnp.array([[0.1, 1.0, 1.0]]), budget_left=jnp.array([3.0]),
           turns_left=jnp.array([5]))
  assert np.asarray(features.policy_mask(v)).tolist() == [[True, True, False]]
  v["action_mask_A"] = jnp.zeros((1, 3), bool)
  assert np.asarray(features.policy_mask(v)).tolist() == [[True, True, True]]


def test_mask_keeps_budget_and_a_turn_for_a_target_run():
  v = dict(action_mask_A=jnp.ones((1, 3), bool), known_A=jnp.zeros((1, 3), bool),
           exists_A=jnp.ones((1, 3), bool), is_target_A=jnp.array([[False, False, True]]),
           cost_A=jnp.array([[0.1, 0.5, 1.0]]), budget_left=jnp.array([1.5]),
           turns_left=jnp.array([5]))
  mask = lambda: np.asarray(features.policy_mask(v)).tolist()
  assert mask() == [[True, True, True]]
  v["budget_left"] = jnp.array([1.2])  # the 0.5 run would leave 0.7 < one target run
  assert mask() == [[True, False, True]]
  v["turns_left"] = jnp.array([1])  # the last turn: only a target run
  assert mask() == [[False, False, True]]
  v["known_A"] = jnp.array([[False, False, True]])  # a target result is known: cheap runs open
  assert mask() == [[True, True, False]]


def test_permutation_equivariant(setup):
  _, bank, policy = setup
  v = _views(bank, n_turns=1)
  A = v["known_A"].shape[1]
  perm = np.random.default_rng(0).permutation(A)
  pv = {k: (x[:, perm] if getattr(x, "ndim", 0) >= 2 and x.shape[1] == A else x)
        for k, x in v.items()}
  logits, value = policy(v, max_keys=A)
  plogits, pvalue = policy(pv, max_keys=A)
  ok = np.asarray(features.policy_mask(v))
  np.testing.assert_allclose(np.asarray(plogits)[ok[:, perm]],
                             np.asarray(logits)[:, perm][ok[:, perm]], rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(pvalue, value, rtol=1e-4, atol=1e-4)


def test_logical_axis_names(setup):
  _, _, policy = setup
  specs = jax.tree.leaves(nnx.get_partition_spec(nnx.state(policy, nnx.Param)),
                          is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec))
  names = {n for s in specs for n in s if n is not None}
  assert {"embed", "mlp", "heads", "kv", "vocab"} <= names


def test_too_many_features_is_an_error(setup):
  c, bank, _ = setup
  c = c.copy_and_resolve_references()
  c.model.max_config_features = 2
  small = model_lib.make_policy(c.model)
  with pytest.raises(ValueError, match="max_config_features"):
    small(_views(bank, n_turns=0))


def test_ridge_recovers_a_quadratic_from_known_rows_only():
  """The in-context ridge fit: a quadratic in the features, seen only through the known rows,
  is predicted at every candidate; unknown rows' values (here garbage) are ignored."""
  rng = np.random.default_rng(0)
  z = rng.normal(size=(1, 60, 3)).astype(np.float32)
  y = 1.0 + z[..., 0] - 0.5 * z[..., 1] ** 2 + 0.2 * z[..., 2]
  known = np.arange(60)[None] < 40
  value = np.where(known, y, 1e3).astype(np.float32)
  zf = np.where(known, 0.0, 1.0)[..., None].astype(np.float32)
  pred = features.ridge_predict(
      jnp.asarray(z),
      jnp.asarray(zf),
      jnp.asarray(known),
      jnp.asarray(value),
      jnp.asarray(~known),
      lam=1e-3)
  np.testing.assert_allclose(np.asarray(pred)[0, 40:], y[0, 40:], atol=1e-2)
  # Fidelity weighting: rows far from the target fidelity count less, so a level they alone
  # carry is not passed on.
  value2 = np.where(np.arange(60)[None] < 20, y + 3.0, value).astype(np.float32)
  zf2 = np.where(np.arange(60)[None] < 20, 3.0, 1.0)[..., None].astype(np.float32)  # target: 1
  far = features.ridge_predict(
      jnp.asarray(z),
      jnp.asarray(zf2),
      jnp.asarray(known),
      jnp.asarray(value2),
      jnp.asarray(~known),
      lam=1e-3,
      fid_weight=5.0)
  np.testing.assert_allclose(np.asarray(far)[0, 40:], y[0, 40:], atol=5e-2)


def test_policy_with_and_without_ridge_feature(setup):
  c, bank, _ = setup
  v = _views(bank, n_turns=1)
  n_in = {}
  for ridges in ("", "1:0,1:1"):
    c = c.copy_and_resolve_references()
    c.model.ridges = ridges
    policy = model_lib.make_policy(c.model, seed=0)
    n_in[ridges] = policy.embed_in.kernel.shape[0]
    logits, value = policy(v)
    assert np.isfinite(np.asarray(value)).all()
    assert np.asarray(features.policy_mask(v))[np.arange(len(logits)),
                                               np.asarray(jnp.argmax(logits, -1))].all()
  assert n_in["1:0,1:1"] == n_in[""] + 4  # per fit: raw and z-scored prediction
  r = np.asarray(features.ridge_features(features.geometry(v, c.model.max_keys), v, 1.0, 0.0))
  assert r.shape == v["known_A"].shape + (2,) and np.isfinite(r).all()
  assert np.abs(r[..., 0]).max() <= 5.0  # the raw prediction stays in the outcomes' range


def test_ensemble_averages_its_members_log_probs(setup):
  c, bank, _ = setup
  v = _views(bank, n_turns=1)
  c = c.copy_and_resolve_references()
  c.model.members = 2
  ens = model_lib.make_policy(c.model, seed=3)
  assert isinstance(ens, model_lib.Ensemble) and len(ens.members) == 2
  c.model.members = 1
  single = model_lib.make_policy(c.model, seed=3)  # member 0 is the single policy of the seed
  (l0, v0), (l1, v1) = ens.member_outputs(v)
  np.testing.assert_allclose(np.asarray(l0), np.asarray(single(v)[0]), rtol=1e-5, atol=1e-5)
  assert not np.allclose(np.asarray(l0), np.asarray(l1))  # members start apart
  logp, value = ens(v)
  mask = np.asarray(features.policy_mask(v))
  want = 0.5 * (jax.nn.log_softmax(l0) + jax.nn.log_softmax(l1))
  np.testing.assert_allclose(np.asarray(logp)[mask], np.asarray(want)[mask], rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(np.asarray(value), 0.5 * np.asarray(v0 + v1), rtol=1e-5, atol=1e-6)
  assert (np.asarray(logp)[~mask] <= features.NEG / 2).all()
  with pytest.raises(ValueError, match="members"):
    c.model.members = 0
    model_lib.make_policy(c.model)
