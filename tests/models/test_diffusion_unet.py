"""Tests of fdl.models.diffusion_unet: shapes over odd sizes, time conditioning, checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import MODELS, DiffusionUNet, create_model, timestep_embedding
from fdl.models.diffusion_unet import _TinyDiffusionUNet

KEY = jax.random.key(0)


def abstract_init(model, x_shape, t_shape=None):
  init = functools.partial(model.init_with_output, train=False)
  t_shape = (x_shape[0],) if t_shape is None else t_shape
  return jax.eval_shape(init, KEY, jax.ShapeDtypeStruct(x_shape, jnp.float32),
                        jax.ShapeDtypeStruct(t_shape, jnp.int32))


@pytest.mark.parametrize('shape, mults', [((2, 16, 16, 2), (1, 2)), ((1, 13, 22, 2), (1, 2, 2)),
                                          ((3, 7, 9, 1), (1, 2, 2)), ((1, 1, 5, 2), (1,))])
def test_output_has_the_input_size_for_odd_and_non_square_sizes(shape, mults):
  model = DiffusionUNet(out_channels=shape[-1], base_channels=4, channel_mults=mults,
                        num_groups=2)
  y, variables = abstract_init(model, shape)
  assert y.shape == shape and y.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def test_timestep_embedding_matches_the_formula():
  t = jnp.array([0, 3, 250])
  emb = timestep_embedding(t, 6, max_period=100.0)
  w = 100.0 ** (-np.arange(3) / 3)
  expected = np.concatenate([np.cos(np.outer([0, 3, 250], w)),
                             np.sin(np.outer([0, 3, 250], w))], axis=1)
  np.testing.assert_allclose(emb, expected, rtol=1e-5, atol=1e-5)
  assert timestep_embedding(t, 7).shape == (3, 7)


def numpy_params(model, x_shape, seed=0):
  """Parameters of ``model.init``'s shapes drawn with NumPy (none zero, unlike init)."""
  _, shapes = abstract_init(model, x_shape)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(0.3 * rng.normal(size=leaf.shape), leaf.dtype),
                      shapes)


def test_output_depends_on_t_and_is_deterministic():
  model = _TinyDiffusionUNet()
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 9, 11, 2)), jnp.float32)
  variables = numpy_params(model, x.shape)
  a = model.apply(variables, x, jnp.array([3, 3]), train=False)
  b = model.apply(variables, x, jnp.array([3, 3]), train=False)
  c = model.apply(variables, x, jnp.array([3, 700]), train=False)
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(a[0], c[0], rtol=1e-5, atol=1e-5)  # same t, same output
  assert float(jnp.abs(a[1] - c[1]).mean()) > 1e-3  # another t, another output
  # A scalar t is broadcast to the batch.
  np.testing.assert_allclose(model.apply(variables, x, 3, train=False), a, rtol=1e-6)


def test_init_starts_at_zero_noise_prediction():
  # The zero-initialised output conv: eps_theta = 0 before training.
  model = _TinyDiffusionUNet()
  x = jnp.ones((1, 8, 8, 2))
  variables = model.init(KEY, x, jnp.zeros((1,), jnp.int32), train=False)
  out = model.apply(variables, x, jnp.zeros((1,), jnp.int32), train=False)
  assert out.shape == (1, 8, 8, 2) and float(jnp.abs(out).max()) == 0.0


def test_registry_builds_it():
  model = create_model('diffusion_unet', out_channels=1, base_channels=4)
  assert isinstance(model, DiffusionUNet) and MODELS['diffusion_unet'] is DiffusionUNet


@pytest.mark.parametrize('kwargs, message', [
    (dict(base_channels=0), 'base_channels must be a positive int; got 0'),
    (dict(channel_mults=()), 'channel_mults must be a non-empty sequence'),
    (dict(num_res_blocks=-1), 'num_res_blocks must be a positive int'),
    (dict(embed_dim=1), 'embed_dim must be 0'),
    (dict(dropout=1.0), r'dropout must be a float in \[0, 1\)'),
])
def test_bad_settings_raise_value_errors_that_name_them(kwargs, message):
  with pytest.raises(ValueError, match=message):
    DiffusionUNet(**kwargs)


def test_bad_inputs_raise():
  with pytest.raises(ValueError, match=r't must be a scalar or \[batch\] = \[2\]; got shape'):
    abstract_init(_TinyDiffusionUNet(), (2, 8, 8, 2), t_shape=(3,))
  with pytest.raises(ValueError, match=r'x must be a float array of rank 4'):
    abstract_init(_TinyDiffusionUNet(), (8, 8, 2))
