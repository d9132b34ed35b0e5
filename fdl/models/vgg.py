"""VGG networks (K. Simonyan & A. Zisserman, "Very deep convolutional networks for
large-scale image recognition", ICLR 2015), in torchvision's layout.

A configuration is a sequence of conv widths and ``'M'`` (a 2x2, stride-2 max pool);
every conv is 3x3 with padding 1 and a bias, followed by ReLU (or by batch norm and
ReLU with ``batch_norm=True``, which keeps the conv bias, as torchvision's ``*_bn``
models do). `CONFIGS` holds the paper's A (VGG-11) and D (VGG-16).

The ImageNet variant ends with an adaptive average pool to 7x7 (the identity at
224 x 224) and the head dense 4096 - ReLU - dropout - dense 4096 - ReLU - dropout -
dense num_classes. At 1000 classes VGG-11 has 132,863,336 parameters and VGG-16
138,357,544 (torchvision's counts); with batch norm VGG-11 has 132,868,840. It takes
any H, W >= 32 (five pools).

The CIFAR variant runs the same conv stack on 32 x 32 images (five pools: 32 -> 1),
averages the last map over space (a no-op at 32 x 32, where it is 1 x 1) and has one
dense layer 512 -> num_classes, after dropout. VGG-11-CIFAR has 9,225,610 parameters at
10 classes (9,231,114 with batch norm, which `vgg11_cifar` uses by default: without
it VGG-11 trains slowly from scratch); VGG-16-CIFAR has 14,728,266 (14,719,818 without
batch norm). It takes any H, W >= 32.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = vgg11_cifar(num_classes=10)
  >>> x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, sum(p.size for p in jax.tree.leaves(variables['params']))
  ((3, 10), 9231114)
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.alexnet import adaptive_avg_pool
from fdl.models.conv import Conv
from fdl.models.pool import max_pool_2x2

VARIANTS = ('imagenet', 'cifar')
CONFIGS: dict[str, tuple[int | str, ...]] = {
    # Table 1 of Simonyan & Zisserman (2015): conv widths, 'M' = 2x2 max pool.
    'A': (64, 'M', 128, 'M', 256, 256, 'M', 512, 512, 'M', 512, 512, 'M'),
    'D': (64, 64, 'M', 128, 128, 'M', 256, 256, 256, 'M', 512, 512, 512, 'M',
          512, 512, 512, 'M'),
}


def _check_cfg(cfg) -> None:
  ok = isinstance(cfg, Sequence) and not isinstance(cfg, str) and len(cfg) > 0
  ok = ok and all(v == 'M' or (isinstance(v, int) and not isinstance(v, bool) and v > 0)
                  for v in cfg)
  ok = ok and any(v != 'M' for v in cfg)
  if not ok:
    raise ValueError("cfg must be a non-empty sequence of positive ints (conv widths) and "
                     f"'M' (max pools) with at least one conv; got {cfg!r}")


class VGG(nn.Module):
  """VGG classifier: a stack of 3x3 convs and 2x2 max pools, then a dense head.

  Attributes:
    cfg: conv widths and ``'M'`` for max pools, e.g. ``CONFIGS['D']``.
    num_classes: number of output logits.
    dropout: drop probability in the head (ImageNet: after both hidden dense layers;
      CIFAR: before the one dense layer), in [0, 1).
    batch_norm: batch norm after every conv (apply with ``mutable=['batch_stats']`` in
      training).
    variant: ``'imagenet'`` (7x7 adaptive pool, dense 4096, 4096, classes) or
      ``'cifar'`` (global average, dense classes); both take H, W >= ``2 ** pools``.
    dtype: compute dtype; parameters and logits are always float32.
  """

  cfg: Sequence[int | str]  # Conv widths and 'M' (2x2 max pool).
  num_classes: int = 1000  # Number of logits.
  dropout: float = 0.5  # Dropout in the head.
  batch_norm: bool = False  # Batch norm after each conv.
  variant: str = 'imagenet'  # 'imagenet' or 'cifar'.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _check_cfg(self.cfg)
    _checks.check_positive('num_classes', self.num_classes)
    _checks.check_rate('dropout', self.dropout)
    _checks.check_choice('batch_norm', self.batch_norm, (False, True))
    _checks.check_choice('variant', self.variant, VARIANTS)
    super().__post_init__()

  @property
  def min_size(self) -> int:
    """The smallest H (and W): each 2x2 pool needs a map of at least 2 x 2."""
    return 2 ** sum(v == 'M' for v in self.cfg)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float images ``[N, H, W, C]`` (NHWC, any C) with ``H, W >= 2 ** pools`` (32 for
        configs A and D); 224 x 224 (ImageNet) or 32 x 32 (CIFAR) are standard.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``) and batch
        statistics (with ``batch_norm``).

    Returns:
      float32 logits ``[N, num_classes]``.

    Raises:
      ValueError: ``x`` is not rank 4, or H or W is below ``2 ** pools``.
      TypeError: ``x`` is not floating.
    """
    _checks.check_input(x, rank=4, layout='[N, H, W, C]')
    if min(x.shape[1:3]) < self.min_size:
      raise ValueError(f'x must have H, W >= {self.min_size} ({self.min_size.bit_length() - 1}'
                       f' 2x2 max pools) [N, H, W, C]; got shape {x.shape}')
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32)
    x = x.astype(self.dtype)
    for v in self.cfg:
      if v == 'M':
        x = max_pool_2x2(x)
        continue
      x = Conv(v, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype,
               param_dtype=jnp.float32)(x)
      if self.batch_norm:
        x = nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                         dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = nn.relu(x)
    drop = nn.Dropout(self.dropout, deterministic=not train)
    if self.variant == 'imagenet':
      x = adaptive_avg_pool(x, 7)
      # Flattened in (H, W, C) order; torchvision flattens (C, H, W): same count.
      x = x.reshape(x.shape[0], -1)
      x = drop(nn.relu(dense(4096)(x)))
      x = drop(nn.relu(dense(4096)(x)))
    else:
      x = drop(jnp.mean(x, axis=(1, 2)))
    return dense(self.num_classes)(x).astype(jnp.float32)


def vgg11(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-11 (config A): 132,863,336 parameters at 1000 classes (ImageNet variant)."""
  return VGG(CONFIGS['A'], num_classes=num_classes, **kwargs)


def vgg16(num_classes: int = 1000, **kwargs) -> VGG:
  """VGG-16 (config D): 138,357,544 parameters at 1000 classes (ImageNet variant)."""
  return VGG(CONFIGS['D'], num_classes=num_classes, **kwargs)


def vgg11_cifar(num_classes: int = 10, *, batch_norm: bool = True, **kwargs) -> VGG:
  """VGG-11 for 32 x 32 images: config A, global average, one dense layer.

  9,231,114 parameters at 10 classes with batch norm (the default here), 9,225,610
  without.
  """
  return VGG(CONFIGS['A'], num_classes=num_classes, batch_norm=batch_norm,
             variant='cifar', **kwargs)


def vgg16_cifar(num_classes: int = 10, *, batch_norm: bool = True, **kwargs) -> VGG:
  """VGG-16 for 32 x 32 images: config D, global average, one dense layer.

  14,728,266 parameters at 10 classes with batch norm (the default here), 14,719,818
  without.
  """
  return VGG(CONFIGS['D'], num_classes=num_classes, batch_norm=batch_norm,
             variant='cifar', **kwargs)


# For tests: a two-conv, one-pool VGG for small images.
_TinyVGG = functools.partial(VGG, cfg=(4, 'M', 8), num_classes=10, dropout=0.0,
                             variant='cifar')
