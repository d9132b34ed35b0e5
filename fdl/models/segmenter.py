"""A U-Net segmenter: the fastMRI U-Net (`fdl.models.unet.UNet`) with one logit per class.

The network maps 2-D slices ``[N, H, W, C]`` to per-pixel class logits
``[N, H, W, num_classes]``; class probabilities are ``jax.nn.softmax(logits, axis=-1)``
and the hard labels ``jnp.argmax(logits, axis=-1)`` (`predict_labels`). Train it with
`fdl.losses.segmentation_loss` (soft Dice, cross-entropy or their sum) and score it with
`fdl.evaluate.segmentation`.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = Segmenter(num_classes=3, base_channels=4, num_pools=2)
  >>> x = jnp.zeros((1, 13, 22, 1))  # odd, non-square sizes: the U-Net pads and crops back
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, logits.dtype
  ((1, 13, 22, 3), dtype('float32'))
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.unet import UNet


class Segmenter(nn.Module):
  """Semantic segmentation of 2-D slices by a U-Net with a softmax head.

  The body is `fdl.models.unet.UNet` with ``out_channels=num_classes`` (same blocks,
  instance norm, reflect padding of any H, W to a multiple of ``2**num_pools`` and
  cropping back); its final 1x1 convolution gives the logits. The softmax itself is left
  to the loss (`fdl.losses.soft_dice_loss`, `fdl.losses.segmentation_cross_entropy`
  take logits), so it runs in float32 in a numerically stable ``log_softmax``.

  Attributes:
    num_classes: number of classes including background (label 0 by convention), >= 2.
    base_channels: channels of the first U-Net level; doubled per level.
    num_pools: number of 2x down-/up-sampling levels, >= 1.
    dropout: channel-wise drop probability inside every ConvBlock, in [0, 1).
    dtype: compute dtype; parameters and logits are always float32.
  """

  num_classes: int  # Classes including background; one logit each.
  base_channels: int = 32  # First-level channels of the U-Net.
  num_pools: int = 4  # Down-/up-sampling levels.
  dropout: float = 0.0  # Channel-wise (2D) dropout in the ConvBlocks.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive('num_classes', self.num_classes)
    if self.num_classes < 2:
      raise ValueError('num_classes must be >= 2 (background and at least one class); '
                       f'got {self.num_classes!r}')
    _checks.check_positive('base_channels', self.base_channels)
    _checks.check_positive('num_pools', self.num_pools)
    _checks.check_rate('dropout', self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Per-pixel class logits.

    Args:
      x: float images ``[N, H, W, C]`` (NHWC, any number of input channels, any
        H, W >= 1; odd and non-square sizes are padded inside the U-Net and cropped back).
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      float32 logits ``[N, H, W, num_classes]``; probabilities are
      ``jax.nn.softmax(logits, axis=-1)``.

    Raises:
      ValueError: ``x`` is not rank 4, or H or W is 0.
      TypeError: ``x`` is not floating (integer, bool or complex).
    """
    _checks.check_input(x, rank=4, layout='[N, H, W, C]')
    if x.shape[1] < 1 or x.shape[2] < 1 or x.shape[3] < 1:
      raise ValueError(f'x must have H, W, C >= 1 [N, H, W, C]; got shape {x.shape}')
    unet = UNet(out_channels=self.num_classes, base_channels=self.base_channels,
                num_pools=self.num_pools, dropout=self.dropout, dtype=self.dtype,
                name='unet')
    return unet(x, train=train)


def predict_labels(logits: jax.Array) -> jax.Array:
  """Hard labels ``argmax(logits, -1)``: int32 ``[N, H, W]`` from logits ``[N, H, W, K]``.

  Ties go to the lowest class index (``jnp.argmax``).
  """
  logits = jnp.asarray(logits)
  if logits.ndim < 2 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError('logits must be real floating [N, ..., num_classes]; '
                     f'got {logits.dtype} {tuple(logits.shape)}')
  return jnp.argmax(logits, axis=-1).astype(jnp.int32)


# For tests: three classes, two pooling levels, four base channels.
_TinySegmenter = functools.partial(Segmenter, num_classes=3, base_channels=4, num_pools=2)
