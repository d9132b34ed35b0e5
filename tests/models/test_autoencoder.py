"""Tests of fdl.models.autoencoder: shapes, exact parameter counts, the reparameterization, checks."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import MODELS, VAE, ConvAutoencoder, create_model, reparameterize
from fdl.models.autoencoder import _TinyAutoencoder, _TinyVAE

KEY = jax.random.key(0)
RNGS = {'params': jax.random.key(0), 'latent': jax.random.key(1)}


def abstract_init(model, x_shape, **kwargs):
  init = functools.partial(model.init_with_output, train=False, **kwargs)
  return jax.eval_shape(init, RNGS, jax.ShapeDtypeStruct(x_shape, jnp.float32))


def count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def numpy_params(model, x_shape, seed=0):
  """Parameters shaped as ``model.init``'s, drawn with NumPy (no init compile)."""
  _, shapes = abstract_init(model, x_shape)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(0.3 * rng.normal(size=s.shape), s.dtype), shapes)


@pytest.mark.parametrize('shape, features', [((1, 28, 28, 1), (8, 16)),
                                             ((3, 32, 32, 1), (8, 16, 32)),
                                             ((5, 8, 12, 1), (2, 4)),
                                             ((7, 16, 16, 3), (4,))])
def test_output_shapes_on_odd_batch_sizes(shape, features):
  vae = VAE(latent_dim=5, image_shape=shape[1:], features=features)
  (logits, mean, logvar), _ = abstract_init(vae, shape, sample=True)
  assert logits.shape == shape and logits.dtype == jnp.float32
  assert mean.shape == logvar.shape == (shape[0], 5)
  ae = ConvAutoencoder(latent_dim=5, image_shape=shape[1:], features=features)
  out, _ = abstract_init(ae, shape)
  assert out.shape == shape and out.dtype == jnp.float32


def _param_count(latent_dim, image_shape, features, encoder_out):
  """By hand: conv 3x3 (+bias) blocks, dense heads, transposed 4x4 convs, a 3x3 output."""
  h, w, c = image_shape
  cells = (h // 2 ** len(features)) * (w // 2 ** len(features)) * features[-1]
  total, cin = 0, c
  for f in features:
    total += 9 * cin * f + f
    cin = f
  total += cells * encoder_out + encoder_out  # encoder dense
  total += latent_dim * cells + cells  # decoder dense
  cin = features[-1]
  for f in reversed(features):
    total += 16 * cin * f + f
    cin = f
  return total + 9 * features[0] * c + c


def test_exact_parameter_counts():
  _, variables = abstract_init(_TinyVAE(), (1, 8, 12, 1))
  assert count(variables['params']) == _param_count(2, (8, 12, 1), (2, 4), 4) == 677
  _, variables = abstract_init(_TinyAutoencoder(), (1, 8, 12, 1))
  assert count(variables['params']) == _param_count(3, (8, 12, 1), (2, 4), 3) == 676
  vae = VAE(latent_dim=2, image_shape=(28, 28, 1), features=(32, 64))
  _, variables = abstract_init(vae, (1, 28, 28, 1))
  assert count(variables['params']) == _param_count(2, (28, 28, 1), (32, 64), 4) == 139_461
  assert set(variables) == {'params'}  # no batch norm, no state


def test_reparameterization_has_the_posterior_mean_and_variance():
  n = 40_000
  mean = jnp.broadcast_to(jnp.array([1.0, -2.0, 0.0]), (n, 3))
  logvar = jnp.broadcast_to(jnp.log(jnp.array([1.0, 4.0, 0.01])), (n, 3))
  z = np.asarray(reparameterize(mean, logvar, jax.random.key(3)), np.float64)
  std = np.array([1.0, 2.0, 0.1])
  # The sample mean is within 4 standard errors; the variance within 4 of its errors.
  np.testing.assert_array_less(np.abs(z.mean(0) - [1.0, -2.0, 0.0]), 4 * std / np.sqrt(n))
  np.testing.assert_array_less(np.abs(z.var(0) / std**2 - 1), 4 * np.sqrt(2 / n))
  # Deterministic given the key, different for another key.
  np.testing.assert_array_equal(reparameterize(mean[:4], logvar[:4], jax.random.key(3)),
                                z[:4].astype(np.float32))
  assert not np.allclose(reparameterize(mean[:4], logvar[:4], jax.random.key(4)), z[:4])


def test_reparameterization_gradients_are_the_path_derivatives():
  mean, logvar = jnp.array([[0.5, -1.0]]), jnp.array([[0.2, -0.6]])
  key = jax.random.key(7)
  eps = jax.random.normal(key, (1, 2))
  g_mean, g_logvar = jax.grad(lambda m, v: reparameterize(m, v, key).sum(), (0, 1))(
      mean, logvar)
  np.testing.assert_allclose(g_mean, 1.0)
  np.testing.assert_allclose(g_logvar, 0.5 * np.exp(0.5 * np.asarray(logvar)) * eps,
                             rtol=1e-6)


def test_vae_call_samples_from_the_latent_stream_and_decode_maps_z():
  model = _TinyVAE()
  x = jnp.asarray(np.random.default_rng(0).uniform(size=(3, 8, 12, 1)), jnp.float32)
  variables = numpy_params(model, x.shape)
  run = lambda seed, **kw: model.apply(variables, x, rngs={'latent': jax.random.key(seed)},
                                       **kw)
  a, b, c = run(1, train=True), run(1, train=True), run(2, train=True)
  np.testing.assert_array_equal(a[0], b[0])  # same key, same sample
  assert not np.allclose(a[0], c[0])  # another key, another sample
  np.testing.assert_array_equal(a[1], c[1])  # the posterior does not depend on the key
  # Without sampling (eval default) z is the mean: decode(mean).
  logits, mean, _ = model.apply(variables, x, train=False)
  np.testing.assert_allclose(logits, model.apply(variables, mean, method='decode'),
                             rtol=1e-6)
  # sample=True in eval mode samples too (the ELBO of an eval step needs it).
  np.testing.assert_array_equal(run(1, train=False, sample=True)[0], a[0])


@pytest.mark.parametrize('kwargs, message', [
    (dict(latent_dim=0), 'latent_dim must be a positive int; got 0'),
    (dict(latent_dim=2, image_shape=(28, 28, 1), features=(8, 16, 32)),
     'image_shape H and W must be multiples of 2**len(features) = 8'),
    (dict(latent_dim=2, image_shape=(28, 28)), 'image_shape must be (H, W, C); got (28, 28)'),
    (dict(latent_dim=2, features=()), 'features must be a non-empty sequence of positive ints'),
])
@pytest.mark.parametrize('cls', [VAE, ConvAutoencoder])
def test_invalid_config_names_the_field(cls, kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    cls(**kwargs)


@pytest.mark.parametrize('shape, method, message', [
    ((2, 8, 8, 1), None, 'x must have shape [batch, 8, 12, 1] (the model\'s image_shape); '
                         'got (2, 8, 8, 1)'),
    ((2, 8, 12), None, 'x must be a float array of rank 4 [batch, H, W, C]'),
    ((2, 3), 'decode', 'z must have shape [batch, 2] (latent_dim); got (2, 3)'),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(shape, method, message):
  model = _TinyVAE()
  variables = numpy_params(model, (1, 8, 12, 1))
  with pytest.raises(ValueError, match=re.escape(message)):
    model.apply(variables, jnp.zeros(shape), **({'method': method} if method else
                                                {'train': False}))


def test_registered_by_name():
  assert MODELS['vae'] is VAE and MODELS['autoencoder'] is ConvAutoencoder
  model = create_model('vae', latent_dim=4, image_shape=(16, 16, 1))
  assert (model.latent_dim, tuple(model.image_shape), tuple(model.features)) == (
      4, (16, 16, 1), (32, 64))
