"""The trend ridge extrapolates a drifting optimum; the plain one stays where it was."""
import jax.numpy as jnp
import numpy as np

from autollmr.agent import features


def test_trend_ridge_follows_a_drifting_optimum():
  grid = np.linspace(-2, 2, 21)
  fid = np.repeat(np.arange(4), 21)  # 3 visible fidelities, the target last
  z = np.tile(grid, 4)[None, :, None].astype(np.float32)
  zf = ((fid - 1.5) / 1.1)[None, :, None].astype(np.float32)
  y = -(z[0, :, 0] - (-1.0 + 0.5 * fid)) ** 2  # the optimum moves +0.5 a level: 0.5 at the target
  tgt, known = (fid == 3)[None], (fid < 3)[None]
  best = {}
  for trend in (0.0, 1.0):
    mu = features.ridge_predict(jnp.asarray(z), jnp.asarray(zf), jnp.asarray(known),
                                jnp.asarray(y[None], jnp.float32), jnp.asarray(tgt), 1.0, 0.0,
                                trend)
    best[trend] = grid[np.asarray(mu)[0][fid == 3].argmax()]
  assert abs(best[1.0] - 0.5) <= 0.11  # one grid step
  assert best[0.0] < 0.0  # the pooled fit stays near the visible fidelities' optima


def test_one_visible_fidelity_gives_the_plain_fit():
  rng = np.random.default_rng(0)
  z = rng.normal(size=(1, 40, 3)).astype(np.float32)
  zf = np.repeat([0.0, 1.0], 20)[None, :, None].astype(np.float32)
  y = rng.normal(size=(1, 40)).astype(np.float32)
  tgt, known = (np.arange(40) >= 20)[None], (np.arange(40) < 20)[None]
  args = [jnp.asarray(x) for x in (z, zf, known, y, tgt)]
  plain = features.ridge_predict(*args, 1.0, 0.0, 0.0)
  trend = features.ridge_predict(*args, 1.0, 0.0, 1.0)
  np.testing.assert_allclose(np.asarray(plain), np.asarray(trend), atol=1e-4)
