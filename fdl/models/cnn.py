"""Plain convolutional classifier (LeNet/VGG-style stack of conv-pool blocks).

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = CNN(features=(8, 16), dense=(32,), num_classes=10)
  >>> x = jnp.zeros((2, 28, 28, 1))
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, variables['params']['Conv_1']['kernel'].shape
  ((2, 10), (3, 3, 8, 16))
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv
from fdl.models.pool import max_pool_2x2
from fdl.models.activations import Activation, check_activation

POOLS = ('max', 'avg')


class CNN(nn.Module):
  """Conv blocks, then dense layers, then a linear classifier.

  Each block is ``conv (SAME) -> [batch norm] -> activation -> 2x2 pool, stride 2``; pooling
  floors odd sizes (9 -> 4). Then the feature map is flattened and passed through
  ``[Dense -> activation -> dropout]`` per entry of ``dense`` and a final
  ``Dense(num_classes)``. Convolutions drop their bias when batch norm follows (the norm's
  bias replaces it).

  Attributes:
    features: output channels of each conv block.
    kernel_size: square conv kernel size.
    pool: ``'max'`` or ``'avg'``.
    dense: widths of the hidden dense layers.
    num_classes: number of output logits.
    activation: one of ``KNOWN_ACTIVATIONS``.
    negative_slope: slope of ``leaky_relu`` for negative inputs.
    dropout: drop probability after each hidden dense layer, in [0, 1).
    batch_norm: batch norm (momentum 0.9, eps 1e-5) after each conv.
    dtype: compute dtype; parameters are always float32.
  """

  features: Sequence[int] = (32, 64)  # Channels per conv block.
  kernel_size: int = 3  # Square kernel.
  pool: str = 'max'  # 'max' or 'avg'.
  dense: Sequence[int] = (128,)  # Hidden dense widths.
  num_classes: int = 10  # Number of logits.
  activation: str = 'relu'  # One of KNOWN_ACTIVATIONS.
  negative_slope: float = 0.01  # leaky_relu slope.
  dropout: float = 0.0  # Drop probability after each hidden dense layer.
  batch_norm: bool = False  # Batch norm after each conv.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive_sequence('features', self.features, allow_empty=False)
    _checks.check_positive('kernel_size', self.kernel_size)
    _checks.check_choice('pool', self.pool, POOLS)
    _checks.check_positive_sequence('dense', self.dense, allow_empty=True)
    _checks.check_positive('num_classes', self.num_classes)
    check_activation(self.activation)
    _checks.check_rate('dropout', self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float array ``[batch, H, W, C]`` with ``H, W >= 2 ** len(features)``.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``) and batch-norm
        batch statistics (apply with ``mutable=['batch_stats']``).

    Returns:
      float32 logits ``[batch, num_classes]``.
    """
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    min_size = 2 ** len(self.features)
    if min(x.shape[1:3]) < min_size:
      raise ValueError(f'x must have H, W >= {min_size} (one 2x2 pool per block); '
                       f'got shape {x.shape}')
    conv = functools.partial(Conv, kernel_size=(self.kernel_size,) * 2, padding='SAME',
                             use_bias=not self.batch_norm, dtype=self.dtype,
                             param_dtype=jnp.float32)
    for width in self.features:
      x = conv(width)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = Activation(self.activation, self.negative_slope)(x)
      x = max_pool_2x2(x) if self.pool == 'max' else nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape(x.shape[0], -1)
    for width in self.dense:
      x = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = Activation(self.activation, self.negative_slope)(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)
