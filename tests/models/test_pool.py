"""The reshape 2x2 max pool equals nn.max_pool, forward and (away from ties) backward."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models.pool import max_pool_2x2


@pytest.mark.parametrize("shape", [(2, 8, 6, 3), (1, 9, 7, 1), (3, 2, 5, 4)])
def test_max_pool_2x2_equals_reduce_window_forward_and_gradient(shape):
  # Continuous random values: no ties, so both gradients are the same subgradient.
  x = jax.random.normal(jax.random.key(0), shape)
  reference = lambda x: nn.max_pool(x, (2, 2), strides=(2, 2))
  np.testing.assert_array_equal(max_pool_2x2(x), reference(x))
  g = jax.random.normal(jax.random.key(1), reference(x).shape)
  grad = jax.grad(lambda x: jnp.sum(max_pool_2x2(x) * g))(x)
  grad_ref = jax.grad(lambda x: jnp.sum(reference(x) * g))(x)
  np.testing.assert_array_equal(grad, grad_ref)


def test_max_pool_2x2_against_numpy_and_ties_share_the_gradient():
  x = np.arange(2 * 5 * 4, dtype=np.float64).reshape(1, 5, 4, 2) % 7
  expected = np.array([[x[0, 2 * i:2 * i + 2, 2 * j:2 * j + 2].max(axis=(0, 1))
                        for j in range(2)] for i in range(2)])[None]
  np.testing.assert_array_equal(max_pool_2x2(jnp.asarray(x, jnp.float32)), expected)
  tied = jnp.ones((1, 2, 2, 1))
  grad = jax.grad(lambda x: jnp.sum(max_pool_2x2(x)))(tied)
  np.testing.assert_allclose(grad, np.full((1, 2, 2, 1), 0.25))


def test_max_pool_2x2_rejects_small_or_wrong_rank_input():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\] with H, W >= 2; got shape \(1, 1, 4, 2\)"):
    max_pool_2x2(jnp.zeros((1, 1, 4, 2)))
  with pytest.raises(ValueError, match="got shape"):
    max_pool_2x2(jnp.zeros((4, 4, 2)))
