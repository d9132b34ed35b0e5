"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012) in the one-GPU layout of torchvision.

The ImageNet variant is the single-tower network of torchvision's ``alexnet`` (after
A. Krizhevsky, "One weird trick for parallelizing convolutional neural networks", 2014):

  conv 64 k11 s4 p2 - ReLU - maxpool 3/2
  conv 192 k5 p2    - ReLU - maxpool 3/2
  conv 384 k3 p1 - ReLU - conv 256 k3 p1 - ReLU - conv 256 k3 p1 - ReLU - maxpool 3/2
  adaptive average pool to 6x6 - flatten (9216)
  dropout - dense 4096 - ReLU - dropout - dense 4096 - ReLU - dense num_classes

It has 61,100,840 parameters at 1000 classes, torchvision's count, and takes any
H, W >= 63 (224 x 224 is the standard crop; 63 is the smallest size whose last
feature map is not empty).

The CIFAR variant keeps the five convolutions and their widths but for 32 x 32 inputs:
3x3 kernels with stride 1 and 2x2 max pools after the first, second and fifth conv
(32 -> 16 -> 8 -> 4), an adaptive average pool to 4x4 (the identity at 32 x 32),
and dense layers of 1024:

  conv 64 k3 - ReLU - maxpool 2/2 - conv 192 k3 - ReLU - maxpool 2/2
  conv 384 k3 - ReLU - conv 256 k3 - ReLU - conv 256 k3 - ReLU - maxpool 2/2
  adaptive average pool to 4x4 - flatten (4096)
  dropout - dense 1024 - ReLU - dropout - dense 1024 - ReLU - dense num_classes

It has 7,506,762 parameters at 10 classes and takes any H, W >= 8.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = alexnet(num_classes=10, variant='cifar')
  >>> x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, logits.dtype
  ((3, 10), dtype('float32'))
  >>> sum(p.size for p in jax.tree.leaves(variables['params']))
  7506762
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv
from fdl.models.pool import max_pool_2x2

VARIANTS = ('imagenet', 'cifar')


def adaptive_pool_matrix(in_size: int, out_size: int) -> np.ndarray:
  """The ``[out_size, in_size]`` float32 matrix of an adaptive average pool along one axis.

  Row ``i`` averages the inputs ``start <= k < end`` with ``start = floor(i * in / out)``
  and ``end = ceil((i + 1) * in / out)``, the bins of PyTorch's ``AdaptiveAvgPool2d``:
  they cover every input, overlap when ``in_size`` is not a multiple of ``out_size``
  and repeat inputs when ``in_size < out_size``.
  """
  _checks.check_positive('in_size', in_size)
  _checks.check_positive('out_size', out_size)
  matrix = np.zeros((out_size, in_size), np.float32)
  for i in range(out_size):
    start = (i * in_size) // out_size
    end = -((-(i + 1) * in_size) // out_size)  # ceil without floats
    matrix[i, start:end] = 1.0 / (end - start)
  return matrix


def adaptive_avg_pool(x: jax.Array, output_size: int | tuple[int, int]) -> jax.Array:
  """Adaptive average pooling of NHWC maps to a fixed spatial size (torchvision's bins).

  Args:
    x: float ``[N, H, W, C]`` with ``H, W >= 1`` (any size, smaller or larger than the
      output).
    output_size: ``out`` or ``(out_h, out_w)``, positive ints.

  Returns:
    ``[N, out_h, out_w, C]`` in ``x``'s dtype; output ``(i, j)`` is the mean of
    ``x[:, hs:he, ws:we]`` over the bins of `adaptive_pool_matrix`. Equal to ``x`` when
    ``(H, W) == (out_h, out_w)``.

  Raises:
    ValueError: ``x`` is not rank 4 with ``H, W >= 1``, or ``output_size`` is not
      positive.
  """
  out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else output_size
  _checks.check_positive_sequence('output_size', (out_h, out_w), allow_empty=False)
  if getattr(x, 'ndim', None) != 4 or min(x.shape[1:3]) < 1:
    raise ValueError(f'x must be [N, H, W, C] with H, W >= 1; got shape '
                     f'{getattr(x, "shape", None)}')
  _, h, w, _ = x.shape
  if (h, w) == (out_h, out_w):
    return x
  # Static per-axis averaging matrices: a pool over separable bins is two matrix products.
  ph = jnp.asarray(adaptive_pool_matrix(h, out_h), x.dtype)
  pw = jnp.asarray(adaptive_pool_matrix(w, out_w), x.dtype)
  return jnp.einsum('ih,nhwc,jw->nijc', ph, x, pw)


def _max_pool_3x3_s2(x: jax.Array) -> jax.Array:
  # torchvision's MaxPool2d(3, 2): no padding, floor mode.
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding='VALID')


class AlexNet(nn.Module):
  """AlexNet classifier, ImageNet (torchvision layout) or CIFAR-sized (see module doc).

  Attributes:
    num_classes: number of output logits.
    dropout: drop probability before the two hidden dense layers, in [0, 1).
    variant: ``'imagenet'`` (11x11/4 stem, 3x3/2 max pools, 6x6 pool, dense 4096; any
      H, W >= 63) or ``'cifar'`` (3x3 convs, 2x2 max pools, 4x4 pool, dense 1024; any
      H, W >= 8).
    dtype: compute dtype; parameters and logits are always float32.
  """

  num_classes: int = 1000  # Number of logits.
  dropout: float = 0.5  # Dropout before the two hidden dense layers.
  variant: str = 'imagenet'  # 'imagenet' or 'cifar'.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('num_classes', self.num_classes)
    _checks.check_rate('dropout', self.dropout)
    _checks.check_choice('variant', self.variant, VARIANTS)
    super().__post_init__()

  @property
  def min_size(self) -> int:
    """The smallest H (and W) whose last feature map is not empty."""
    return 63 if self.variant == 'imagenet' else 8

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float images ``[N, H, W, C]`` (NHWC, any C) with ``H, W >= 63`` for the
        ImageNet variant (224 x 224 is standard) or ``>= 8`` for the CIFAR variant
        (32 x 32 is standard).
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      float32 logits ``[N, num_classes]``.

    Raises:
      ValueError: ``x`` is not rank 4, or H or W is below the variant's minimum.
      TypeError: ``x`` is not floating.
    """
    _checks.check_input(x, rank=4, layout='[N, H, W, C]')
    if min(x.shape[1:3]) < self.min_size:
      raise ValueError(f'x must have H, W >= {self.min_size} for variant '
                       f'{self.variant!r} [N, H, W, C]; got shape {x.shape}')
    conv = functools.partial(Conv, dtype=self.dtype, param_dtype=jnp.float32)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    if self.variant == 'imagenet':
      pool, pooled, hidden = _max_pool_3x3_s2, 6, 4096
      x = pool(nn.relu(conv(64, (11, 11), strides=(4, 4), padding=((2, 2), (2, 2)))(x)))
      x = pool(nn.relu(conv(192, (5, 5), padding=((2, 2), (2, 2)))(x)))
    else:
      pool, pooled, hidden = max_pool_2x2, 4, 1024
      x = pool(nn.relu(conv(64, (3, 3), padding=((1, 1), (1, 1)))(x)))
      x = pool(nn.relu(conv(192, (3, 3), padding=((1, 1), (1, 1)))(x)))
    for features in (384, 256, 256):
      x = nn.relu(conv(features, (3, 3), padding=((1, 1), (1, 1)))(x))
    x = pool(x)
    x = adaptive_avg_pool(x, pooled)
    # Flattened in (H, W, C) order; torchvision flattens (C, H, W): same count, other order.
    x = x.reshape(x.shape[0], -1)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    x = nn.relu(dense(hidden)(drop(x)))
    x = nn.relu(dense(hidden)(drop(x)))
    return dense(self.num_classes)(x).astype(jnp.float32)


def alexnet(num_classes: int = 1000, **kwargs) -> AlexNet:
  """`AlexNet` with ``num_classes`` logits; ``kwargs`` are its other attributes."""
  return AlexNet(num_classes=num_classes, **kwargs)


def alexnet_cifar(num_classes: int = 10, **kwargs) -> AlexNet:
  """The CIFAR-sized `AlexNet` (32 x 32 inputs; 7,506,762 parameters at 10 classes)."""
  return AlexNet(num_classes=num_classes, variant='cifar', **kwargs)


# For tests: the CIFAR layout with ten classes and no dropout.
_TinyAlexNet = functools.partial(AlexNet, num_classes=10, dropout=0.0, variant='cifar')
