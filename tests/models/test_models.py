"""Tests of fdl.models: shapes, exact parameter counts, NumPy references, modes, input checks.

Flax's random initialisers compile slowly on CPU (about 0.7 s per distinct kernel shape, the
threefry RNG), so most tests take the variable structure from ``jax.eval_shape(model.init)``
and draw the values with NumPy (:func:`numpy_variables`). Parameter counts and dtypes come
from ``jax.eval_shape`` alone, which compiles nothing.
"""

import functools
import math
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import (CNN, KNOWN_ACTIVATIONS, MLP, MODELS, Activation, ResNet, UNet,
                        create_model, resnet18, resnet34, resnet50)
from fdl.models import unet as unet_lib
from fdl.models.activations import check_activation
from fdl.models.resnet import _TinyResNet

KEY = jax.random.key(0)


def abstract_init(model, x_shape, dtype=jnp.float32):
  """``(outputs, variables)`` of ``model.init_with_output`` as shapes, computing nothing."""
  init = functools.partial(model.init_with_output, train=False)
  return jax.eval_shape(init, KEY, jax.ShapeDtypeStruct(x_shape, dtype))


def count_params(model, x_shape):
  """Number of scalars in the ``params`` collection (batch statistics excluded)."""
  _, variables = abstract_init(model, x_shape)
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables['params']))


def numpy_variables(model, x_shape, seed=0):
  """Variables shaped as ``model.init``'s, drawn with NumPy (fast; see module docstring)."""
  _, shapes = abstract_init(model, x_shape)
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    collection, name, shape = path[0].key, path[-1].key, leaf.shape
    if collection == 'batch_stats':
      value = rng.normal(0, 0.1, shape) if name == 'mean' else rng.uniform(0.5, 1.5, shape)
    elif name == 'kernel':  # He scaling keeps activations O(1) through deep nets.
      value = rng.normal(0, math.sqrt(2 / math.prod(shape[:-1])), shape)
    elif name == 'scale':
      value = 1 + 0.1 * rng.normal(size=shape)
    else:
      value = 0.1 * rng.normal(size=shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree.map_with_path(draw, shapes)


def random_input(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def to_float64(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def make_apply(model, *, train, mutable=False):
  """A jitted ``(variables, x, dropout_key) -> model.apply(...)``."""

  def apply(variables, x, key):
    return model.apply(variables, x, train=train, rngs={'dropout': key}, mutable=mutable)

  return jax.jit(apply)


# --------------------------------------------------------------------------- activations

_ERF = np.vectorize(math.erf)

REFERENCES = {
    'sigmoid': lambda x: 1 / (1 + np.exp(-x)),
    'tanh': np.tanh,
    'relu': lambda x: np.maximum(x, 0),
    'leaky_relu': lambda x: np.where(x >= 0, x, 0.01 * x),
    'prelu': lambda x: np.where(x >= 0, x, 0.25 * x),  # At its initial alpha.
    'gelu': lambda x: 0.5 * x * (1 + _ERF(x / math.sqrt(2))),  # Exact, erf form.
}


def test_references_cover_known_activations():
  assert tuple(REFERENCES) == KNOWN_ACTIVATIONS


@pytest.mark.parametrize('kind', KNOWN_ACTIVATIONS)
def test_activation_matches_float64_reference(kind):
  x = 3 * random_input((4, 25))
  act = Activation(kind)
  y = act.apply(act.init(KEY, x), x)
  assert y.dtype == jnp.float32 and y.shape == x.shape
  expected = REFERENCES[kind](np.asarray(x, np.float64))
  np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)


def test_leaky_relu_negative_slope():
  x = random_input((50,))
  y = Activation('leaky_relu', negative_slope=0.2).apply({}, x)
  x64 = np.asarray(x, np.float64)
  np.testing.assert_allclose(y, np.where(x64 >= 0, x64, 0.2 * x64), rtol=1e-6)


def test_prelu_has_learnable_alpha_with_gradient():
  x = random_input((64,))
  act = Activation('prelu')
  variables = act.init(KEY, x)
  alpha = variables['params']['alpha']
  assert alpha.shape == () and alpha.dtype == jnp.float32 and float(alpha) == 0.25
  grads = jax.grad(lambda v: act.apply(v, x).sum())(variables)
  x64 = np.asarray(x, np.float64)
  # d/d alpha of sum(alpha * x[x < 0]) is the sum of the negative inputs.
  np.testing.assert_allclose(grads['params']['alpha'], x64[x64 < 0].sum(), rtol=1e-5)
  assert float(grads['params']['alpha']) != 0
  y = act.apply({'params': {'alpha': jnp.float32(0.5)}}, x)
  np.testing.assert_allclose(y, np.where(x64 >= 0, x64, 0.5 * x64), rtol=1e-6)


@pytest.mark.parametrize('build', [
    lambda: Activation('relux'),
    lambda: MLP(activation='relux'),
    lambda: CNN(activation='relux'),
    lambda: check_activation('relux'),
])
def test_unknown_activation_lists_known_names(build):
  expected = f"activation must be one of {KNOWN_ACTIVATIONS}; got 'relux'"
  with pytest.raises(ValueError, match=re.escape(expected)):
    build()


# --------------------------------------------------------------------------- MLP

@pytest.mark.parametrize('x_shape', [(2, 12), (2, 2, 3, 2)])
def test_mlp_flattens_input_shape_and_param_count(x_shape):
  model = MLP(hidden=(16,), num_classes=3)
  logits, _ = abstract_init(model, x_shape)
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  assert count_params(model, x_shape) == (12 * 16 + 16) + (16 * 3 + 3)


def test_mlp_without_hidden_layers_is_linear():
  model = MLP(hidden=(), num_classes=4)
  x = random_input((3, 2, 5, 1))
  variables = numpy_variables(model, x.shape)
  assert set(variables['params']) == {'Dense_0'}
  p = to_float64(variables['params'])['Dense_0']
  expected = np.asarray(x, np.float64).reshape(3, 10) @ p['kernel'] + p['bias']
  np.testing.assert_allclose(model.apply(variables, x, train=False), expected, rtol=1e-5,
                             atol=1e-6)


def test_mlp_dropout_only_in_train_mode():
  model = MLP(hidden=(32, 32), num_classes=5, dropout=0.5)
  x = random_input((4, 6))
  variables = numpy_variables(model, x.shape)
  k1, k2 = jax.random.split(KEY)
  evaluate = make_apply(model, train=False)
  train = make_apply(model, train=True)
  reference = MLP(hidden=(32, 32), num_classes=5).apply(variables, x, train=False)
  np.testing.assert_array_equal(evaluate(variables, x, k1), evaluate(variables, x, k2))
  np.testing.assert_allclose(evaluate(variables, x, k1), reference, rtol=1e-6)
  np.testing.assert_array_equal(train(variables, x, k1), train(variables, x, k1))
  assert not np.allclose(train(variables, x, k1), train(variables, x, k2))


# --------------------------------------------------------------------------- CNN

@pytest.mark.parametrize('pool', ['max', 'avg'])
def test_cnn_shape_and_param_count_on_odd_size(pool):
  model = CNN(features=(4, 8), dense=(16,), num_classes=5, pool=pool)
  logits, _ = abstract_init(model, (2, 9, 11, 3))
  assert logits.shape == (2, 5) and logits.dtype == jnp.float32
  # Two 2x2 pools floor 9x11 to 2x2, so the first dense layer sees 2 * 2 * 8 features.
  expected = (9 * 3 * 4 + 4) + (9 * 4 * 8 + 8) + (2 * 2 * 8 * 16 + 16) + (16 * 5 + 5)
  assert count_params(model, (2, 9, 11, 3)) == expected


def cnn_1x1_reference(variables, x, pool, batch_norm):
  """Float64 NumPy forward of ``CNN(features=(c,), kernel_size=1, dense=(), 'tanh')``."""
  p, x = to_float64(variables['params']), np.asarray(x, np.float64)
  z = x @ p['Conv_0']['kernel'][0, 0]
  if batch_norm:  # Eval mode: normalise with the running statistics.
    stats, bn = to_float64(variables['batch_stats'])['BatchNorm_0'], p['BatchNorm_0']
    z = (z - stats['mean']) / np.sqrt(stats['var'] + 1e-5) * bn['scale'] + bn['bias']
  else:
    z = z + p['Conv_0']['bias']
  z = np.tanh(z)
  n, h, w, c = z.shape
  windows = z[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c)
  z = windows.max(axis=(2, 4)) if pool == 'max' else windows.mean(axis=(2, 4))
  return z.reshape(n, -1) @ p['Dense_0']['kernel'] + p['Dense_0']['bias']


@pytest.mark.parametrize('pool', ['max', 'avg'])
def test_cnn_matches_float64_reference(pool):
  model = CNN(features=(3,), kernel_size=1, pool=pool, dense=(), num_classes=4,
              activation='tanh')
  x = random_input((2, 5, 7, 2))
  variables = numpy_variables(model, x.shape)
  np.testing.assert_allclose(model.apply(variables, x, train=False),
                             cnn_1x1_reference(variables, x, pool, False), rtol=1e-5,
                             atol=1e-5)


@pytest.fixture(scope='module')
def bn_cnn():
  model = CNN(features=(4,), kernel_size=1, dense=(), num_classes=3, activation='tanh',
              batch_norm=True)
  x = random_input((4, 4, 6, 3))
  return model, x, numpy_variables(model, x.shape)


def test_cnn_batch_norm_train_updates_running_averages(bn_cnn):
  model, x, variables = bn_cnn
  assert 'bias' not in variables['params']['Conv_0']  # The BN bias replaces it.
  _, updates = make_apply(model, train=True, mutable=['batch_stats'])(variables, x, KEY)
  z = np.asarray(x, np.float64) @ np.asarray(variables['params']['Conv_0']['kernel'][0, 0])
  old = to_float64(variables['batch_stats'])['BatchNorm_0']
  new = updates['batch_stats']['BatchNorm_0']
  # Flax momentum 0.9 (PyTorch's 0.1); the variance is the biased batch variance.
  np.testing.assert_allclose(new['mean'], 0.9 * old['mean'] + 0.1 * z.mean(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new['var'], 0.9 * old['var'] + 0.1 * z.var(axis=(0, 1, 2)),
                             rtol=1e-5, atol=1e-6)


def test_cnn_batch_norm_eval_uses_running_averages(bn_cnn):
  model, x, variables = bn_cnn
  logits, updates = make_apply(model, train=False, mutable=['batch_stats'])(variables, x, KEY)
  np.testing.assert_allclose(logits, cnn_1x1_reference(variables, x, 'max', True), rtol=1e-5,
                             atol=1e-5)
  jax.tree.map(np.testing.assert_array_equal, updates['batch_stats'],
               variables['batch_stats'])


# --------------------------------------------------------------------------- ResNet

@pytest.mark.parametrize('build, expected', [
    (lambda: resnet18(num_classes=10, stem='cifar'), 11_173_962),
    (lambda: resnet18(num_classes=1000, stem='imagenet'), 11_689_512),
    (lambda: resnet34(num_classes=1000, stem='imagenet'), 21_797_672),
    (lambda: resnet50(num_classes=1000, stem='imagenet'), 25_557_032),
])
def test_resnet_param_counts_match_torchvision(build, expected):
  assert count_params(build(), (1, 32, 32, 3)) == expected


def _out_size(n, kernel, stride, pad):
  return (n + 2 * pad - kernel) // stride + 1  # PyTorch's conv / pool output size.


@pytest.mark.parametrize('block', ['basic', 'bottleneck'])
@pytest.mark.parametrize('stem', ['cifar', 'imagenet'])
def test_resnet_shapes_on_odd_size_follow_torchvision(block, stem):
  model = ResNet(stage_sizes=(1, 1), block=block, stem=stem, width=8, num_classes=7)
  x = jax.ShapeDtypeStruct((2, 9, 11, 3), jnp.float32)
  variables = abstract_init(model, x.shape)[1]
  apply = functools.partial(model.apply, train=False, capture_intermediates=True,
                            mutable=['intermediates'])
  logits, state = jax.eval_shape(apply, variables, x)
  assert logits.shape == (2, 7) and logits.dtype == jnp.float32
  h, w = 9, 11
  if stem == 'imagenet':  # 7x7/2 pad 3 conv, then 3x3/2 pad 1 max-pool.
    h, w = (_out_size(_out_size(n, 7, 2, 3), 3, 2, 1) for n in (h, w))
  channels = 8 * (4 if block == 'bottleneck' else 1)
  stage1 = state['intermediates']['stage1_block1']['__call__'][0]
  stage2 = state['intermediates']['stage2_block1']['__call__'][0]
  assert stage1.shape == (2, h, w, channels)
  assert stage2.shape == (2, _out_size(h, 3, 2, 1), _out_size(w, 3, 2, 1), 2 * channels)


@pytest.fixture(scope='module')
def tiny_resnet():
  model = _TinyResNet()
  x = random_input((2, 9, 11, 3))
  variables = numpy_variables(model, x.shape)
  return model, x, variables


def test_tiny_resnet_batch_norm_modes(tiny_resnet):
  model, x, variables = tiny_resnet
  train = make_apply(model, train=True, mutable=['batch_stats'])
  evaluate = make_apply(model, train=False, mutable=['batch_stats'])
  logits, updates = train(variables, x, KEY)
  assert logits.shape == (2, 10) and np.isfinite(logits).all()
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), updates['batch_stats'],
                         variables['batch_stats'])
  assert all(jax.tree.leaves(changed))  # Every BN layer's mean and var moved.
  _, unchanged = evaluate(variables, x, KEY)
  jax.tree.map(np.testing.assert_array_equal, unchanged['batch_stats'],
               variables['batch_stats'])
  # Replacing the second sample changes the first sample's output only through batch stats.
  x_other = x.at[1].set(random_input((9, 11, 3), seed=7))
  np.testing.assert_allclose(evaluate(variables, x, KEY)[0][0],
                             evaluate(variables, x_other, KEY)[0][0], rtol=1e-5, atol=1e-6)
  assert not np.allclose(train(variables, x, KEY)[0][0], train(variables, x_other, KEY)[0][0])


def test_tiny_resnet_bfloat16_compute_float32_params(tiny_resnet):
  _, x, variables = tiny_resnet
  model = _TinyResNet(dtype=jnp.bfloat16)
  _, abstract = abstract_init(model, x.shape)
  assert {leaf.dtype for leaf in jax.tree.leaves(abstract)} == {jnp.dtype(jnp.float32)}
  logits = make_apply(model, train=False)(variables, x, KEY)
  reference = make_apply(_TinyResNet(), train=False)(variables, x, KEY)
  assert logits.dtype == jnp.float32
  np.testing.assert_allclose(logits, reference, rtol=0.1, atol=0.1)
  assert not np.array_equal(logits, reference)  # The compute really was bfloat16.


# --------------------------------------------------------------------------- U-Net

def unet_param_count(in_channels, out_channels, base, num_pools):
  """Parameters of the fastMRI U-Net, from its architecture."""
  conv_block = lambda c_in, c_out: 9 * c_in * c_out + 9 * c_out * c_out  # No bias, no affine.
  total, c_in, c = 0, in_channels, base
  for _ in range(num_pools):  # Down path.
    total += conv_block(c_in, c)
    c_in, c = c, 2 * c
  total += conv_block(c_in, c)  # Bottleneck: c = base * 2**num_pools.
  for _ in range(num_pools):  # Up path: 2x2 transposed conv, then ConvBlock on the concat.
    total += 4 * c * (c // 2) + conv_block(c, c // 2)
    c //= 2
  return total + base * out_channels + out_channels  # Final 1x1 conv with bias.


@pytest.mark.parametrize('in_ch, out_ch, base, pools', [(1, 1, 32, 4), (2, 2, 8, 2),
                                                        (3, 1, 4, 1)])
def test_unet_param_count(in_ch, out_ch, base, pools):
  model = UNet(out_channels=out_ch, base_channels=base, num_pools=pools)
  assert count_params(model, (1, 16, 16, in_ch)) == unet_param_count(in_ch, out_ch, base,
                                                                     pools)


def test_unet_param_count_equals_fastmri():
  assert unet_param_count(1, 1, 32, 4) == 7_756_097
  assert count_params(UNet(out_channels=1), (1, 16, 16, 1)) == 7_756_097


@pytest.fixture(scope='module')
def small_unet():
  model = UNet(out_channels=3, base_channels=4, num_pools=2)
  x = random_input((2, 13, 22, 2))
  return model, x, numpy_variables(model, x.shape), make_apply(model, train=False)


def test_unet_odd_size_shape_and_finite(small_unet):
  _, x, variables, apply = small_unet
  y = apply(variables, x, KEY)
  assert y.shape == (2, 13, 22, 3) and y.dtype == jnp.float32
  assert np.isfinite(y).all()


def test_unet_pads_by_reflection_and_crops(small_unet):
  _, x, variables, apply = small_unet
  # 16 x 24 is a multiple of 2**2, so that call takes no padding path.
  padded = jnp.pad(x, ((0, 0), (0, 3), (0, 2), (0, 0)), mode='reflect')
  assert unet_lib.pad_to_multiple(padded, 4) is padded
  np.testing.assert_allclose(apply(variables, x, KEY), apply(variables, padded, KEY)[:, :13, :22],
                             rtol=1e-5, atol=1e-5)


def test_unet_is_scale_invariant(small_unet):
  # Bias-free convs followed by instance norm: scaling the input changes nothing but eps.
  _, x, variables, apply = small_unet
  np.testing.assert_allclose(apply(variables, 10 * x, KEY), apply(variables, x, KEY),
                             rtol=1e-3, atol=1e-3)


def test_unet_dropout_only_in_train_mode(small_unet):
  _, x, variables, apply = small_unet
  model = UNet(out_channels=3, base_channels=4, num_pools=2, dropout=0.5)
  k1, k2 = jax.random.split(KEY)
  evaluate, train = make_apply(model, train=False), make_apply(model, train=True)
  np.testing.assert_array_equal(evaluate(variables, x, k1), evaluate(variables, x, k2))
  np.testing.assert_allclose(evaluate(variables, x, k1), apply(variables, x, k1), rtol=1e-6)
  np.testing.assert_array_equal(train(variables, x, k1), train(variables, x, k1))
  assert not np.allclose(train(variables, x, k1), train(variables, x, k2))


def test_unet_conv_block_drops_whole_channels():
  block = unet_lib._ConvBlock(features=16, dropout=0.5, dtype=jnp.float32)
  x = random_input((3, 6, 5, 2))
  variables = numpy_variables(block, x.shape)
  y = np.asarray(block.apply(variables, x, train=True, rngs={'dropout': KEY}))
  zero_fraction = (y == 0).mean(axis=(1, 2))  # Per (sample, channel).
  assert set(np.unique(zero_fraction)) == {0.0, 1.0}  # Whole channels dropped, or none.


# --------------------------------------------------------------------------- bad input

IMAGE_MODELS = {
    'cnn': CNN(features=(4,), dense=()),
    'resnet': _TinyResNet(),
    'unet': UNet(out_channels=1, base_channels=4, num_pools=1),
}


@pytest.mark.parametrize('name', IMAGE_MODELS)
@pytest.mark.parametrize('dtype, shape, error, message', [
    (jnp.float32, (2, 8, 8), ValueError,
     'x must be a float array of rank 4 [batch, H, W, C]; got float32 with shape (2, 8, 8)'),
    (jnp.int32, (2, 8, 8, 1), TypeError,
     'x must be a float array of rank 4 [batch, H, W, C]; got int32 with shape (2, 8, 8, 1)'),
    (jnp.complex64, (2, 8, 8, 1), TypeError, 'got complex64 with shape (2, 8, 8, 1)'),
])
def test_image_models_reject_bad_input(name, dtype, shape, error, message):
  with pytest.raises(error, match=re.escape(message)):
    abstract_init(IMAGE_MODELS[name], shape, dtype)


@pytest.mark.parametrize('dtype, shape, error', [(jnp.float32, (5,), ValueError),
                                                 (jnp.uint8, (2, 5), TypeError)])
def test_mlp_rejects_bad_input(dtype, shape, error):
  with pytest.raises(error, match=re.escape('x must be a float array of rank >= 2')):
    abstract_init(MLP(), shape, dtype)


def test_cnn_rejects_input_smaller_than_its_pooling():
  with pytest.raises(ValueError, match=re.escape('x must have H, W >= 4')):
    abstract_init(CNN(features=(4, 4)), (1, 3, 8, 1))


@pytest.mark.parametrize('build, message', [
    (lambda: MLP(dropout=1.0), 'dropout must be a float in [0, 1); got 1.0'),
    (lambda: MLP(hidden=(8, 0)), 'hidden must be a sequence of positive ints'),
    (lambda: MLP(num_classes=0), 'num_classes must be a positive int; got 0'),
    (lambda: CNN(pool='median'), "pool must be one of ('max', 'avg'); got 'median'"),
    (lambda: CNN(features=()), 'features must be a non-empty sequence of positive ints'),
    (lambda: CNN(dropout=-0.1), 'dropout must be a float in [0, 1)'),
    (lambda: ResNet(stage_sizes=()), 'stage_sizes must be a non-empty sequence'),
    (lambda: ResNet(stage_sizes=(2,), block='wide'),
     "block must be one of ('basic', 'bottleneck'); got 'wide'"),
    (lambda: resnet18(stem='tiny'), "stem must be one of ('imagenet', 'cifar'); got 'tiny'"),
    (lambda: resnet50(width=0), 'width must be a positive int; got 0'),
    (lambda: UNet(out_channels=1, num_pools=0), 'num_pools must be a positive int; got 0'),
    (lambda: UNet(out_channels=1, base_channels=-4), 'base_channels must be a positive int'),
    (lambda: UNet(out_channels=1, dropout=1.5), 'dropout must be a float in [0, 1)'),
])
def test_invalid_config_names_the_field(build, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    build()


# --------------------------------------------------------------------------- registry

TINY_KWARGS = {
    'mlp': dict(hidden=(8,), num_classes=3),
    'cnn': dict(features=(4,), dense=(8,), num_classes=3, batch_norm=True),
    'resnet9': dict(num_classes=3, width=4),
    'resnet': dict(stage_sizes=(1, 1), block='basic', num_classes=3, stem='cifar', width=4),
    'resnet18': dict(num_classes=3, stem='cifar', width=4),
    'resnet34': dict(num_classes=3, stem='imagenet', width=4),
    'resnet50': dict(num_classes=3, stem='imagenet', width=4),
    'unet': dict(out_channels=3, base_channels=4, num_pools=2),
    'segmenter': dict(num_classes=3, base_channels=4, num_pools=2),
}


# Reconstruction networks take k-space, not NHWC images; tests/models/test_recon_models.py.
RECON_MODELS = {'recon_unet', 'modl', 'varnet'}
# Registered models with test files of their own (shapes, parameter counts, errors).
OWN_TESTS = {
    'recon_segmenter': 'test_joint.py',
    'diffusion_unet': 'test_diffusion_unet.py',
    'alexnet': 'test_classic_classifiers.py', 'alexnet_cifar': 'test_classic_classifiers.py',
    'vgg11': 'test_classic_classifiers.py', 'vgg16': 'test_classic_classifiers.py',
    'vgg11_cifar': 'test_classic_classifiers.py', 'vgg16_cifar': 'test_classic_classifiers.py',
    'vit_b16': 'test_classic_classifiers.py', 'vit_cifar': 'test_classic_classifiers.py',
    'rnn_classifier': 'test_recurrent.py',
    'autoencoder': 'test_autoencoder.py', 'vae': 'test_autoencoder.py', 'dcgan': 'test_gan.py',
}


def test_registry_names():
  # Every registered model is tested: here (TINY_KWARGS, RECON_MODELS) or in its own file.
  assert set(MODELS) == set(TINY_KWARGS) | RECON_MODELS | set(OWN_TESTS)
  here = os.path.dirname(os.path.abspath(__file__))
  for name, test_file in OWN_TESTS.items():
    with open(os.path.join(here, test_file), encoding='utf-8') as f:
      assert name in f.read(), (name, test_file)


@pytest.mark.parametrize('name', sorted(TINY_KWARGS))
def test_every_registered_model_in_bfloat16_keeps_float32_params_and_outputs(name):
  model = create_model(name, dtype=jnp.bfloat16, **TINY_KWARGS[name])
  outputs, variables = abstract_init(model, (2, 16, 16, 3))
  assert outputs.dtype == jnp.float32
  assert outputs.shape == ((2, 16, 16, 3) if name in ('unet', 'segmenter') else (2, 3))
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def test_create_model_passes_kwargs():
  model = create_model('resnet18', num_classes=10, stem='cifar')
  assert isinstance(model, ResNet)
  assert (model.stage_sizes, model.block, model.num_classes, model.stem) == (
      (2, 2, 2, 2), 'basic', 10, 'cifar')


def test_create_model_unknown_name_lists_known_names():
  expected = f'model name must be one of {tuple(MODELS)}; got \'vit\''
  with pytest.raises(ValueError, match=re.escape(expected)):
    create_model('vit')


# --------------------------------------------------------------------------- resnet9


def _resnet9_param_count(width, num_classes, in_channels=3):
  """Parameters of ResNet-9 from its architecture, by hand.

  Each conv-BN block has 9 * c_in * c_out kernel weights and 2 * c_out BN
  parameters; the classifier has no bias.
  """
  w = width
  blocks = [(in_channels, w), (w, 2 * w), (2 * w, 2 * w), (2 * w, 2 * w),
            (2 * w, 4 * w), (4 * w, 8 * w), (8 * w, 8 * w), (8 * w, 8 * w)]
  return sum(9 * a * b + 2 * b for a, b in blocks) + 8 * w * num_classes


@pytest.mark.parametrize('width, num_classes', [(64, 10), (16, 10), (5, 7)])
def test_resnet9_parameter_count(width, num_classes):
  model = create_model('resnet9', num_classes=num_classes, width=width)
  _, variables = abstract_init(model, (1, 32, 32, 3))
  got = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(variables['params']))
  assert got == _resnet9_param_count(width, num_classes)
  if (width, num_classes) == (64, 10):
    assert got == 6_573_120  # the ~6.57 M usually quoted for ResNet-9


def test_resnet9_shapes_on_odd_sizes_and_bad_input():
  model = create_model('resnet9', num_classes=4, width=2)
  outputs, variables = abstract_init(model, (3, 9, 11, 1))
  assert outputs.shape == (3, 4) and outputs.dtype == jnp.float32
  assert variables['batch_stats']  # batch norm everywhere
  with pytest.raises(ValueError, match=re.escape('x must have H, W >= 8')):
    abstract_init(model, (1, 7, 16, 3))
  with pytest.raises(ValueError, match=re.escape('width must be a positive int; got 0')):
    create_model('resnet9', width=0)


def test_unet_upsampling_equals_flax_conv_transpose_on_odd_sizes():
  """The U-Net's matmul form of the 2x2 stride-2 transposed conv is the same function
  and draws the same initial kernel as nn.ConvTranspose."""
  import flax.linen as nn  # pylint: disable=g-import-not-at-top
  from fdl.models import unet  # pylint: disable=g-import-not-at-top
  x = jax.random.normal(jax.random.key(1), (2, 5, 7, 6))
  reference = nn.ConvTranspose(4, (2, 2), strides=(2, 2), padding='VALID', use_bias=False,
                               kernel_init=unet._transpose_init)  # pylint: disable=protected-access
  upsample = unet._Upsample2x2(4, jnp.float32)  # pylint: disable=protected-access
  variables = reference.init(jax.random.key(0), x)
  np.testing.assert_array_equal(upsample.init(jax.random.key(0), x)['params']['kernel'],
                                variables['params']['kernel'])
  expected = reference.apply(variables, x)
  assert expected.shape == (2, 10, 14, 4)
  np.testing.assert_allclose(upsample.apply(variables, x), expected, rtol=1e-6, atol=1e-6)
