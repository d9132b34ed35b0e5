"""Tests of fdl.models.segmenter: shapes over odd sizes, the U-Net it wraps, checks, registry."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import MODELS, Segmenter, UNet, create_model, predict_labels
from fdl.models.segmenter import _TinySegmenter

KEY = jax.random.key(0)


def abstract_init(model, x_shape, dtype=jnp.float32):
  init = functools.partial(model.init_with_output, train=False)
  return jax.eval_shape(init, KEY, jax.ShapeDtypeStruct(x_shape, dtype))


@pytest.mark.parametrize('shape', [(2, 16, 16, 1), (1, 13, 22, 2), (3, 7, 9, 1),
                                   (1, 1, 5, 3)])
def test_logits_have_one_channel_per_class_for_odd_and_non_square_sizes(shape):
  logits, variables = abstract_init(_TinySegmenter(), shape)
  assert logits.shape == shape[:3] + (3,) and logits.dtype == jnp.float32
  assert {leaf.dtype for leaf in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


def numpy_params(model, x_shape, seed=0):
  """Parameters shaped as ``model.init``'s, drawn with NumPy (Flax's init compiles slowly)."""
  _, shapes = abstract_init(model, x_shape)
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda leaf: jnp.asarray(0.3 * rng.normal(size=leaf.shape), leaf.dtype),
                      shapes)


def test_is_the_unet_with_num_classes_outputs():
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 11, 13, 1)), jnp.float32)
  seg = Segmenter(num_classes=4, base_channels=4, num_pools=1)
  unet = UNet(out_channels=4, base_channels=4, num_pools=1)
  variables = numpy_params(seg, x.shape)
  logits = seg.apply(variables, x, train=False)
  # Same parameters (under 'unet') give the same function.
  expected = unet.apply({'params': variables['params']['unet']}, x, train=False)
  np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-6)
  assert logits.shape == (2, 11, 13, 4) and bool(jnp.isfinite(logits).all())
  probs = jax.nn.softmax(logits, axis=-1)
  np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
  labels = predict_labels(logits)
  assert labels.shape == (2, 11, 13) and labels.dtype == jnp.int32
  np.testing.assert_array_equal(labels, np.argmax(np.asarray(logits), -1))


def test_bfloat16_compute_keeps_float32_logits():
  logits, _ = abstract_init(_TinySegmenter(dtype=jnp.bfloat16), (1, 9, 10, 1))
  assert logits.dtype == jnp.float32 and logits.shape == (1, 9, 10, 3)


@pytest.mark.parametrize('dtype, shape, error, message', [
    (jnp.float32, (2, 8, 8), ValueError,
     'x must be a float array of rank 4 [N, H, W, C]; got float32 with shape (2, 8, 8)'),
    (jnp.int32, (2, 8, 8, 1), TypeError,
     'x must be a float array of rank 4 [N, H, W, C]; got int32 with shape (2, 8, 8, 1)'),
    (jnp.float32, (1, 0, 8, 1), ValueError, 'x must have H, W, C >= 1 [N, H, W, C]'),
])
def test_rejects_bad_input(dtype, shape, error, message):
  with pytest.raises(error, match=re.escape(message)):
    abstract_init(_TinySegmenter(), shape, dtype)


@pytest.mark.parametrize('kwargs, message', [
    (dict(num_classes=1), 'num_classes must be >= 2 (background and at least one class); '
                          'got 1'),
    (dict(num_classes=0), 'num_classes must be a positive int; got 0'),
    (dict(num_classes=3, num_pools=0), 'num_pools must be a positive int; got 0'),
    (dict(num_classes=3, base_channels=2.5), 'base_channels must be a positive int'),
    (dict(num_classes=3, dropout=1.0), 'dropout must be a float in [0, 1); got 1.0'),
])
def test_invalid_config_names_the_field(kwargs, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    Segmenter(**kwargs)


def test_predict_labels_rejects_integer_input():
  with pytest.raises(ValueError, match=re.escape('logits must be real floating')):
    predict_labels(jnp.zeros((2, 3), jnp.int32))


def test_registered_as_segmenter():
  assert MODELS['segmenter'] is Segmenter
  model = create_model('segmenter', num_classes=5, base_channels=8, num_pools=3)
  assert (model.num_classes, model.base_channels, model.num_pools) == (5, 8, 3)


@pytest.mark.slow  # About 8 s on 2 CPU cores: compiles the U-Net's gradient and Adam.
def test_trains_with_the_segmentation_loss_through_the_train_step():
  from fdl.losses import segmentation_loss
  from fdl.train.optim import make_optimizer
  from fdl.train.state import create_train_state
  from fdl.train.step import make_train_step

  model = create_model('segmenter', num_classes=3, base_channels=4, num_pools=1)
  state = create_train_state(model, make_optimizer('adam', 1e-2), (2, 9, 11, 1))
  step = make_train_step(segmentation_loss('dice_ce'), learning_rate=1e-2)
  labels = np.random.default_rng(0).integers(0, 3, (2, 9, 11)).astype(np.int32)
  batch = {'image': jnp.asarray(labels[..., None], jnp.float32), 'label': jnp.asarray(labels)}
  history = []
  for _ in range(3):
    state, metrics = step(state, batch)
    history.append(float(metrics['loss']))
  assert history[-1] < history[0] and all(np.isfinite(history))
  assert {'dice', 'pixel_accuracy', 'soft_dice_loss', 'cross_entropy'} <= set(metrics)
