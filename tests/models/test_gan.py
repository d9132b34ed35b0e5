"""Tests of fdl.models.gan: shapes, exact parameter counts, the DCGAN layout rules, checks."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import DCGAN, MODELS, Discriminator, Generator, create_model
from fdl.models.gan import _TinyDCGAN

KEY = jax.random.key(0)


def abstract_init(model, z_shape, x_shape):
  init = functools.partial(model.init_with_output, train=False)
  return jax.eval_shape(init, KEY, jax.ShapeDtypeStruct(z_shape, jnp.float32),
                        jax.ShapeDtypeStruct(x_shape, jnp.float32))


def count(tree):
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


@pytest.mark.parametrize('batch, image_shape, num_layers', [
    (1, (32, 32, 1), 3), (3, (28, 28, 1), 2), (5, (16, 16, 3), 2), (7, (8, 12, 1), 1)])
def test_shapes_on_odd_batch_sizes(batch, image_shape, num_layers):
  gan = DCGAN(latent_dim=6, image_shape=image_shape, features=4, num_layers=num_layers)
  (images, logits), variables = abstract_init(gan, (batch, 6), (batch, *image_shape))
  assert images.shape == (batch, *image_shape) and images.dtype == jnp.float32
  assert logits.shape == (batch,) and logits.dtype == jnp.float32
  assert sorted(variables['params']) == ['discriminator', 'generator']
  # One layer: the discriminator is its input layer only, which has no batch norm.
  assert sorted(variables['batch_stats']) == (
      ['discriminator', 'generator'] if num_layers > 1 else ['generator'])


def _generator_count(latent_dim, image_shape, features, num_layers):
  h, w, c = image_shape
  width = features * 2 ** (num_layers - 1)
  cells = (h // 2 ** num_layers) * (w // 2 ** num_layers)
  total = latent_dim * cells * width + 2 * width  # dense (no bias) + BN scale, bias
  for _ in range(num_layers - 1):
    total += 16 * width * (width // 2) + 2 * (width // 2)  # conv^T (no bias) + BN
    width //= 2
  return total + 16 * width * c + c  # output conv^T with bias, no BN


def _discriminator_count(image_shape, features, num_layers):
  h, w, c = image_shape
  total = 16 * c * features + features  # first conv: bias, no BN
  cin = features
  for i in range(1, num_layers):
    total += 16 * cin * features * 2 ** i + 2 * features * 2 ** i  # conv (no bias) + BN
    cin = features * 2 ** i
  return total + (h // 2 ** num_layers) * (w // 2 ** num_layers) * cin + 1


def test_exact_parameter_counts():
  _, variables = abstract_init(_TinyDCGAN(), (1, 4), (1, 8, 12, 1))
  params = variables['params']
  assert count(params['generator']) == _generator_count(4, (8, 12, 1), 2, 2) == 269
  assert count(params['discriminator']) == _discriminator_count((8, 12, 1), 2, 2) == 195
  # Radford et al.'s 64x64 DCGAN shapes at 32x32: z 100, 3 layers, 64 features.
  _, variables = abstract_init(DCGAN(), (1, 100), (1, 32, 32, 1))
  assert count(variables['params']['generator']) == _generator_count(
      100, (32, 32, 1), 64, 3) == 1_066_881
  assert count(variables['params']['discriminator']) == _discriminator_count(
      (32, 32, 1), 64, 3) == 661_313


def test_layout_batch_norm_everywhere_but_g_output_and_d_input():
  _, variables = abstract_init(_TinyDCGAN(num_layers=3, image_shape=(16, 24, 1)), (1, 4),
                               (1, 16, 24, 1))
  g, d = variables['params']['generator'], variables['params']['discriminator']
  assert sorted(g) == ['BatchNorm_0', 'BatchNorm_1', 'BatchNorm_2', 'ConvTranspose_0',
                       'ConvTranspose_1', 'ConvTranspose_2', 'Dense_0']
  assert 'bias' in g['ConvTranspose_2'] and 'bias' not in g['ConvTranspose_0']
  assert sorted(d) == ['BatchNorm_0', 'BatchNorm_1', 'Conv_0', 'Conv_1', 'Conv_2', 'Dense_0']
  assert 'bias' in d['Conv_0'] and 'bias' not in d['Conv_1']
  assert [d[f'Conv_{i}']['kernel'].shape for i in range(3)] == [
      (4, 4, 1, 2), (4, 4, 2, 4), (4, 4, 4, 8)]


def test_generator_output_is_tanh_bounded_and_discriminator_leaky():
  gan = _TinyDCGAN()
  _, shapes = abstract_init(gan, (1, 4), (1, 8, 12, 1))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: jnp.asarray(3.0 * rng.normal(size=s.shape), s.dtype),
                           shapes)
  variables['batch_stats'] = jax.tree.map(jnp.abs, variables['batch_stats'])
  z = jnp.asarray(rng.normal(size=(5, 4)), jnp.float32)
  images = gan.apply(variables, z, train=False, method='generate')
  assert images.shape == (5, 8, 12, 1)
  assert float(jnp.abs(images).max()) <= 1.0 and float(jnp.abs(images).max()) > 0.9
  logits = gan.apply(variables, images, train=False, method='discriminate')
  assert logits.shape == (5,) and bool(jnp.isfinite(logits).all())


def test_weights_start_from_n_0_002():
  gan = _TinyDCGAN(features=16)
  variables = jax.jit(functools.partial(gan.init, train=False))(
      KEY, jnp.zeros((1, 4)), jnp.zeros((1, 8, 12, 1)))
  kernel = np.asarray(variables['params']['discriminator']['Conv_1']['kernel'])  # 8192
  assert abs(kernel.std() - 0.02) < 0.001 and abs(kernel.mean()) < 0.001


@pytest.mark.parametrize('kwargs, message', [
    (dict(latent_dim=0), 'latent_dim must be a positive int; got 0'),
    (dict(image_shape=(28, 28, 1), num_layers=3),
     'image_shape H and W must be multiples of 2**num_layers = 8'),
    (dict(num_layers=0), 'num_layers must be a positive int; got 0'),
    (dict(features=0), 'features must be a positive int; got 0'),
])
def test_invalid_config_names_the_field(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    DCGAN(**kwargs)


def test_bad_inputs_name_the_argument():
  gan = _TinyDCGAN()
  with pytest.raises(ValueError, match=re.escape('z must have shape [batch, 4] (latent_dim); '
                                                 'got (2, 5)')):
    abstract_init(gan, (2, 5), (2, 8, 12, 1))
  with pytest.raises(ValueError, match=re.escape(
      "x must have shape [batch, 8, 12, 1] (the model's image_shape); got (2, 8, 8, 1)")):
    abstract_init(gan, (2, 4), (2, 8, 8, 1))
  with pytest.raises(ValueError, match=re.escape('x must have H and W multiples of')):
    jax.eval_shape(functools.partial(Discriminator(num_layers=2).init, train=False), KEY,
                   jax.ShapeDtypeStruct((1, 6, 8, 1), jnp.float32))


def test_registered_by_name():
  assert MODELS['dcgan'] is DCGAN
  gan = create_model('dcgan', latent_dim=8, image_shape=(16, 16, 1), num_layers=2)
  assert isinstance(gan, DCGAN) and gan.latent_dim == 8
  assert isinstance(Generator(), Generator)
