"""Tests of AlexNet, VGG and ViT: torchvision's parameter counts, shapes, the adaptive pool
against NumPy, forward passes against float64 NumPy references, checks, registry."""

import functools
import math
import re

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import models
from fdl.models import AlexNet, VGG, ViT, create_model
from fdl.models.alexnet import _TinyAlexNet, adaptive_avg_pool, adaptive_pool_matrix
from fdl.models.vgg import CONFIGS, _TinyVGG
from fdl.models.vit import _TinyViT

KEY = jax.random.key(0)


def abstract_init(model, x_shape, dtype=jnp.float32):
  """(logits, variables) as ShapeDtypeStructs: nothing is compiled."""
  init = functools.partial(model.init_with_output, train=False)
  return jax.eval_shape(init, KEY, jax.ShapeDtypeStruct(x_shape, dtype))


def num_params(variables):
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(variables['params']))


def numpy_variables(model, x_shape, seed=0, scale=0.2):
  """Variables shaped as ``model.init``'s, drawn with NumPy (flax's init compiles slowly)."""
  _, shapes = abstract_init(model, x_shape)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(scale * rng.normal(size=s.shape), s.dtype), shapes)


def random_images(shape, seed=1):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


# torchvision.models' counts (alexnet, vgg11, vgg11_bn, vgg16, vit_b_16) at 1000 classes.
@pytest.mark.parametrize('model, expected', [
    (models.alexnet(), 61_100_840),
    (models.vgg11(), 132_863_336),
    (models.vgg11(batch_norm=True), 132_868_840),
    (models.vgg16(), 138_357_544),
    (models.vit_b16(), 86_567_656),
])
def test_imagenet_parameter_counts_equal_torchvision(model, expected):
  logits, variables = abstract_init(model, (1, 224, 224, 3))
  assert num_params(variables) == expected
  assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize('model, expected', [
    (models.alexnet_cifar(), 7_506_762),
    (models.vgg11_cifar(), 9_231_114),
    (models.vgg11_cifar(batch_norm=False), 9_225_610),
    (models.vgg16_cifar(), 14_728_266),
    (models.vgg16_cifar(batch_norm=False), 14_719_818),
    (models.vit_cifar(), 1_205_898),
])
def test_cifar_parameter_counts_and_shapes(model, expected):
  logits, variables = abstract_init(model, (3, 32, 32, 3))
  assert num_params(variables) == expected
  assert logits.shape == (3, 10) and logits.dtype == jnp.float32


def test_cifar_counts_by_hand():
  conv = lambda cin, cout, k: k * k * cin * cout + cout
  dense = lambda fin, fout: fin * fout + fout
  alex = (conv(3, 64, 3) + conv(64, 192, 3) + conv(192, 384, 3) + conv(384, 256, 3)
          + conv(256, 256, 3) + dense(256 * 4 * 4, 1024) + dense(1024, 1024)
          + dense(1024, 10))
  assert alex == 7_506_762
  widths = [3] + [v for v in CONFIGS['A'] if v != 'M']
  vgg = sum(conv(a, b, 3) for a, b in zip(widths, widths[1:])) + dense(512, 10)
  assert vgg == 9_225_610 and vgg + 2 * sum(widths[1:]) == 9_231_114
  widths = [3] + [v for v in CONFIGS['D'] if v != 'M']
  vgg = sum(conv(a, b, 3) for a, b in zip(widths, widths[1:])) + dense(512, 10)
  assert vgg == 14_719_818 and vgg + 2 * sum(widths[1:]) == 14_728_266
  w, tokens = 128, 65
  block = 2 * 2 * w + 4 * dense(w, w) + dense(w, 512) + dense(512, w)
  vit = conv(3, w, 4) + w + tokens * w + 6 * block + 2 * w + dense(w, 10)
  assert vit == 1_205_898


@pytest.mark.parametrize('model, shape', [
    (models.alexnet(num_classes=10), (3, 224, 224, 3)),
    (models.alexnet(num_classes=10), (5, 63, 101, 1)),  # the smallest H; odd, non-square
    (models.vgg11(num_classes=10), (3, 224, 224, 3)),
    (models.vgg16(num_classes=10), (1, 45, 33, 3)),
    (models.vit_b16(num_classes=10), (3, 224, 224, 3)),
    (models.alexnet_cifar(num_classes=10), (7, 37, 41, 3)),
    (models.vgg11_cifar(num_classes=10), (5, 33, 47, 2)),
    (models.vgg16_cifar(num_classes=10), (3, 35, 39, 1)),
])
def test_logits_shape_for_ten_classes_and_odd_batches(model, shape):
  logits, variables = abstract_init(model, shape)
  assert logits.shape == (shape[0], 10) and logits.dtype == jnp.float32


def test_bfloat16_compute_keeps_float32_params_and_logits():
  for model in (_TinyAlexNet(dtype=jnp.bfloat16), _TinyVGG(dtype=jnp.bfloat16),
                _TinyViT(dtype=jnp.bfloat16)):
    size = 8 if isinstance(model, ViT) else 32
    logits, variables = abstract_init(model, (2, size, size, 3))
    assert logits.dtype == jnp.float32 and logits.shape == (2, 10)
    assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def numpy_adaptive_pool(x, out_h, out_w):
  """Float64 loops over torchvision's AdaptiveAvgPool2d bins."""
  n, h, w, c = x.shape
  y = np.zeros((n, out_h, out_w, c))
  for i in range(out_h):
    hs, he = math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h)
    for j in range(out_w):
      ws, we = math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w)
      y[:, i, j] = x[:, hs:he, ws:we].mean(axis=(1, 2))
  return y


@pytest.mark.parametrize('in_hw, out', [((13, 11), 6), ((4, 5), 6), ((14, 7), (7, 3)),
                                        ((224, 224), 7), ((1, 1), 6)])
def test_adaptive_avg_pool_matches_numpy(in_hw, out):
  x = np.random.default_rng(0).normal(size=(2,) + in_hw + (3,))
  out_h, out_w = (out, out) if isinstance(out, int) else out
  y = adaptive_avg_pool(jnp.asarray(x, jnp.float32), out)
  assert y.shape == (2, out_h, out_w, 3) and y.dtype == jnp.float32
  np.testing.assert_allclose(y, numpy_adaptive_pool(x, out_h, out_w), rtol=1e-5, atol=1e-6)


def test_adaptive_pool_bins_by_hand():
  # 13 -> 6: starts floor(13 i / 6) = 0 2 4 6 8 10, ends ceil(13 (i + 1) / 6) = 3 5 7 9 11 13.
  m = adaptive_pool_matrix(13, 6)
  starts = [int(np.flatnonzero(row)[0]) for row in m]
  ends = [int(np.flatnonzero(row)[-1]) + 1 for row in m]
  assert starts == [0, 2, 4, 6, 8, 10] and ends == [3, 5, 7, 9, 11, 13]
  np.testing.assert_allclose(m.sum(axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(adaptive_pool_matrix(6, 6), np.eye(6, dtype=np.float32))
  x = jnp.ones((1, 6, 6, 2))
  assert adaptive_avg_pool(x, 6) is x  # identity at the output size


def numpy_conv_same(x, kernel, bias):
  """3x3 'SAME' (pad 1) convolution in float64: x [N, H, W, C], kernel [3, 3, C, O]."""
  n, h, w, _ = x.shape
  xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  y = sum(np.einsum('nhwc,co->nhwo', xp[:, a:a + h, b:b + w], kernel[a, b])
          for a in range(3) for b in range(3))
  return y + bias


def test_tiny_vgg_matches_numpy_reference():
  model = _TinyVGG()  # conv 4 - ReLU - maxpool 2 - conv 8 - ReLU - mean - dense 10
  x = np.asarray(random_images((3, 7, 9, 2)), np.float64)  # odd: the pool drops a row/col
  variables = numpy_variables(model, x.shape)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  y = np.maximum(numpy_conv_same(x, p['Conv_0']['kernel'], p['Conv_0']['bias']), 0)
  y = y[:, :6, :8].reshape(3, 3, 2, 4, 2, 4).max(axis=(2, 4))
  y = np.maximum(numpy_conv_same(y, p['Conv_1']['kernel'], p['Conv_1']['bias']), 0)
  expected = y.mean(axis=(1, 2)) @ p['Dense_0']['kernel'] + p['Dense_0']['bias']
  logits = model.apply(variables, jnp.asarray(x, jnp.float32), train=False)
  assert logits.shape == (3, 10)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def numpy_vit(p, x, patch, heads):
  """Float64 pre-norm ViT forward (torchvision's formulas) on x [N, H, W, C]."""
  def layer_norm(t, q):
    mean = t.mean(-1, keepdims=True)
    var = ((t - mean) ** 2).mean(-1, keepdims=True)
    return (t - mean) / np.sqrt(var + 1e-6) * q['scale'] + q['bias']

  def gelu(t):  # exact GELU, x * Phi(x)
    return 0.5 * t * (1 + np.vectorize(math.erf)(t / math.sqrt(2)))

  n, h, w, c = x.shape
  patches = x.reshape(n, h // patch, patch, w // patch, patch, c).transpose(0, 1, 3, 2, 4, 5)
  patches = patches.reshape(n, -1, patch * patch * c)
  kernel = p['patch_embedding']['kernel'].reshape(patch * patch * c, -1)
  t = patches @ kernel + p['patch_embedding']['bias']
  width = t.shape[-1]
  t = np.concatenate([np.broadcast_to(p['class_token'], (n, 1, width)), t], axis=1)
  t = t + p['position_embedding']
  for name in sorted(k for k in p if k.startswith('block_')):
    b = p[name]
    a = b['MultiHeadDotProductAttention_0']
    y = layer_norm(t, b['LayerNorm_0'])
    q, k, v = (np.einsum('nld,dhk->nlhk', y, a[s]['kernel']) + a[s]['bias']
               for s in ('query', 'key', 'value'))
    logits = np.einsum('nqhk,nlhk->nhql', q, k) / math.sqrt(width // heads)
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    y = np.einsum('nhql,nlhk->nqhk', weights, v)
    t = t + np.einsum('nqhk,hkd->nqd', y, a['out']['kernel']) + a['out']['bias']
    y = layer_norm(t, b['LayerNorm_1'])
    y = gelu(y @ b['Dense_0']['kernel'] + b['Dense_0']['bias'])
    t = t + y @ b['Dense_1']['kernel'] + b['Dense_1']['bias']
  cls = layer_norm(t[:, 0], p['final_norm'])
  return cls @ p['head']['kernel'] + p['head']['bias']


def test_tiny_vit_matches_numpy_reference():
  model = _TinyViT()  # 8 x 8 images, patch 4 (4 patches + class token), 2 blocks, 2 heads
  x = random_images((3, 8, 8, 3))
  variables = numpy_variables(model, x.shape, scale=0.5)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), variables['params'])
  expected = numpy_vit(p, np.asarray(x, np.float64), patch=4, heads=2)
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (3, 10)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_vit_dropout_needs_rng_in_training_and_is_off_in_eval():
  model = _TinyViT(dropout=0.5)
  x = random_images((2, 8, 8, 3))
  variables = numpy_variables(model, x.shape)
  eval_logits = model.apply(variables, x, train=False)
  np.testing.assert_array_equal(eval_logits, model.apply(variables, x, train=False))
  with pytest.raises(flax.errors.InvalidRngError, match='dropout'):
    model.apply(variables, x, train=True)
  train_logits = model.apply(variables, x, train=True, rngs={'dropout': KEY})
  assert bool(jnp.isfinite(train_logits).all())
  assert float(jnp.max(jnp.abs(train_logits - eval_logits))) > 1e-3
  np.testing.assert_array_equal(
      train_logits, model.apply(variables, x, train=True, rngs={'dropout': KEY}))


@pytest.mark.parametrize('name', ['alexnet_cifar', 'vgg11_cifar', 'vgg16_cifar', 'vit_cifar'])
def test_cifar_models_forward_on_two_images_is_finite(name):
  model = create_model(name, num_classes=10)
  x = random_images((2, 32, 32, 3))
  variables = jax.jit(functools.partial(model.init, train=False))(KEY, x)
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  assert bool(jnp.isfinite(logits).all())
  # One training-mode call: dropout from the 'dropout' rng, batch stats (VGG) updated.
  logits, updates = model.apply(variables, x, train=True, rngs={'dropout': KEY},
                                mutable=['batch_stats'])
  assert logits.shape == (2, 10) and bool(jnp.isfinite(logits).all())
  assert ('batch_stats' in updates) == name.startswith('vgg')


@pytest.mark.parametrize('model, shape, error, message', [
    (_TinyAlexNet(), (2, 32, 32), ValueError,
     'x must be a float array of rank 4 [N, H, W, C]; got float32 with shape (2, 32, 32)'),
    (_TinyVGG(), (2, 32, 32, 3), TypeError,
     'x must be a float array of rank 4 [N, H, W, C]; got int32 with shape (2, 32, 32, 3)'),
    (models.alexnet(), (1, 62, 224, 3), ValueError,
     "x must have H, W >= 63 for variant 'imagenet' [N, H, W, C]; got shape (1, 62, 224, 3)"),
    (_TinyAlexNet(), (1, 32, 7, 3), ValueError,
     "x must have H, W >= 8 for variant 'cifar'"),
    (models.vgg11(), (1, 31, 64, 3), ValueError,
     'x must have H, W >= 32 (5 2x2 max pools) [N, H, W, C]; got shape (1, 31, 64, 3)'),
    (models.vit_cifar(), (1, 48, 48, 3), ValueError,
     'x must have H = W = image_size = 32 (position embeddings are learned for it) '
     '[N, H, W, C]; got shape (1, 48, 48, 3)'),
    (models.vit_cifar(), (1, 32, 28, 3), ValueError, 'x must have H = W = image_size = 32'),
])
def test_rejects_bad_input(model, shape, error, message):
  dtype = jnp.int32 if error is TypeError else jnp.float32
  with pytest.raises(error, match=re.escape(message)):
    abstract_init(model, shape, dtype)


@pytest.mark.parametrize('build, message', [
    (lambda: AlexNet(variant='svhn'), "variant must be one of ('imagenet', 'cifar'); got 'svhn'"),
    (lambda: AlexNet(dropout=1.0), 'dropout must be a float in [0, 1); got 1.0'),
    (lambda: models.alexnet(num_classes=0), 'num_classes must be a positive int; got 0'),
    (lambda: VGG(('M',)), "cfg must be a non-empty sequence of positive ints (conv widths) "
                          "and 'M' (max pools) with at least one conv; got ('M',)"),
    (lambda: VGG((64, 'X')), "cfg must be a non-empty sequence"),
    (lambda: models.vgg16(variant='tiny'), "variant must be one of ('imagenet', 'cifar')"),
    (lambda: models.vit_cifar(image_size=30), 'image_size must be a multiple of patch_size=4;'
                                              ' got 30'),
    (lambda: models.vit_cifar(width=130), 'width must be a multiple of num_heads=4; got 130'),
    (lambda: models.vit_cifar(depth=0), 'depth must be a positive int; got 0'),
    (lambda: ViT(attention_dropout=-0.1), 'attention_dropout must be a float in [0, 1)'),
])
def test_invalid_config_names_the_field(build, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    build()


@pytest.mark.parametrize('name, cls, attrs', [
    ('alexnet', AlexNet, dict(variant='imagenet', dropout=0.5)),
    ('alexnet_cifar', AlexNet, dict(variant='cifar')),
    ('vgg11', VGG, dict(cfg=CONFIGS['A'], variant='imagenet', batch_norm=False)),
    ('vgg16', VGG, dict(cfg=CONFIGS['D'], variant='imagenet')),
    ('vgg11_cifar', VGG, dict(cfg=CONFIGS['A'], variant='cifar', batch_norm=True)),
    ('vgg16_cifar', VGG, dict(cfg=CONFIGS['D'], variant='cifar', batch_norm=True)),
    ('vit_b16', ViT, dict(image_size=224, patch_size=16, width=768, depth=12, num_heads=12,
                          mlp_dim=3072)),
    ('vit_cifar', ViT, dict(image_size=32, patch_size=4, width=128, depth=6, num_heads=4,
                            mlp_dim=512)),
])
def test_registry_round_trip(name, cls, attrs):
  assert name in models.MODELS
  model = create_model(name, num_classes=10)
  assert type(model) is cls and model.num_classes == 10
  for field, value in attrs.items():
    assert getattr(model, field) == value, field


def test_cifar_models_are_classifiers_of_the_task():
  from fdl.tasks import classification
  for name in ('alexnet_cifar', 'vgg11_cifar', 'vgg16_cifar', 'vit_cifar'):
    assert name in classification.CLASSIFIERS
