"""ResNet-9: the small residual network of the DAWNBench CIFAR-10 training races.

The architecture follows D. Page, "How to train your ResNet" (2018), which
trained it to 94% CIFAR-10 test accuracy in 24 epochs: a 3x3 conv "prep" layer,
three stages that double the channels with a conv and halve the resolution with
a 2x2 max-pool (stages 1 and 3 add a residual pair of convs), a global max-pool
and a linear classifier whose output is scaled by 1/8. Every conv is
``conv 3x3 (no bias) -> batch norm -> ReLU``. `width` scales all channels
(64 in the paper): at width 16 it is cheap enough to train on a laptop CPU.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> model = ResNet9(num_classes=10, width=8)
  >>> x = jnp.zeros((2, 32, 32, 3))
  >>> variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
  >>> jax.eval_shape(lambda v: model.apply(v, x, train=False), variables).shape
  (2, 10)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv
from fdl.models.pool import max_pool_2x2


class _ConvBNReLU(nn.Module):
  features: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x, *, train: bool):
    x = Conv(self.features, (3, 3), padding='SAME', use_bias=False,
                dtype=self.dtype, param_dtype=jnp.float32)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                     dtype=self.dtype, param_dtype=jnp.float32)(x)
    return nn.relu(x)


class ResNet9(nn.Module):
  """ResNet-9 classifier for small images.

  Attributes:
    num_classes: number of output logits.
    width: channels of the prep layer; the stages use 2x, 4x and 8x this.
    output_scale: multiplier of the logits (1/8 in the reference recipe; it
      acts like a softmax temperature and speeds up early training).
    dtype: compute dtype; parameters are always float32.
  """

  num_classes: int = 10  # Number of logits.
  width: int = 64  # Prep-layer channels; stages use 2x, 4x, 8x.
  output_scale: float = 0.125  # Logit multiplier.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('num_classes', self.num_classes)
    _checks.check_positive('width', self.width)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float array ``[batch, H, W, C]`` with ``H, W >= 8``.
      train: batch statistics in training (apply with ``mutable=['batch_stats']``).

    Returns:
      float32 logits ``[batch, num_classes]``.
    """
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    if min(x.shape[1:3]) < 8:
      raise ValueError(f'x must have H, W >= 8 (three 2x2 pools); got shape {x.shape}')
    block = lambda features: _ConvBNReLU(features, dtype=self.dtype)
    pool = max_pool_2x2
    w = self.width
    x = block(w)(x.astype(self.dtype), train=train)
    x = pool(block(2 * w)(x, train=train))
    x = x + block(2 * w)(block(2 * w)(x, train=train), train=train)
    x = pool(block(4 * w)(x, train=train))
    x = pool(block(8 * w)(x, train=train))
    x = x + block(8 * w)(block(8 * w)(x, train=train), train=train)
    x = jnp.max(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, use_bias=False, dtype=self.dtype,
                 param_dtype=jnp.float32)(x)
    return (x * self.output_scale).astype(jnp.float32)
