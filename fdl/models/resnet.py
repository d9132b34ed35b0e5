"""ResNet v1.5 (torchvision layout) with an ImageNet or a CIFAR stem.

Layer for layer as torchvision's ``resnet18/34/50``: bias-free convolutions, batch norm
(momentum 0.9 in Flax's convention = PyTorch's 0.1, eps 1e-5) with scale and bias, ReLU,
projection shortcuts (1x1 conv + BN) only where the shape changes, and in bottleneck blocks
the stride on the 3x3 conv (v1.5). The CIFAR stem is the usual 3x3 stride-1 conv without
max-pool. Convolutions use PyTorch's symmetric padding, so odd sizes give the same output
sizes as torchvision.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = resnet18(num_classes=10, stem='cifar')
  >>> x = jnp.zeros((1, 32, 32, 3))
  >>> init = functools.partial(model.init, train=False)  # shapes only, nothing computed
  >>> variables = jax.eval_shape(init, jax.random.key(0), x)
  >>> sum(p.size for p in jax.tree.leaves(variables['params']))
  11173962
"""

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv

ModuleDef = Any

BLOCKS = ('basic', 'bottleneck')
STEMS = ('imagenet', 'cifar')

# As torchvision: He-normal (not truncated) over fan-out for the convolutions.
_conv_init = nn.initializers.variance_scaling(2.0, 'fan_out', 'normal')


class _BasicBlock(nn.Module):
  """Two 3x3 convs; output channels ``features``."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  zero_init_residual: bool

  expansion = 1  # Output channels / features (a class constant, not a field).

  @nn.compact
  def __call__(self, x):
    out_features = self.features * self.expansion
    y = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.features, (3, 3), 1, padding=1, name='conv2')(y)
    y = self.norm(name='bn2', scale_init=_last_scale_init(self.zero_init_residual))(y)
    return nn.relu(y + _shortcut(x, out_features, self.strides, self.conv, self.norm))


class _BottleneckBlock(nn.Module):
  """1x1 reduce, 3x3 (strided), 1x1 expand by 4; output channels ``4 * features``."""

  features: int
  strides: int
  conv: ModuleDef
  norm: ModuleDef
  zero_init_residual: bool

  expansion = 4

  @nn.compact
  def __call__(self, x):
    out_features = self.features * self.expansion
    y = self.conv(self.features, (1, 1), 1, padding=0, name='conv1')(x)
    y = nn.relu(self.norm(name='bn1')(y))
    y = self.conv(self.features, (3, 3), self.strides, padding=1, name='conv2')(y)
    y = nn.relu(self.norm(name='bn2')(y))
    y = self.conv(out_features, (1, 1), 1, padding=0, name='conv3')(y)
    y = self.norm(name='bn3', scale_init=_last_scale_init(self.zero_init_residual))(y)
    return nn.relu(y + _shortcut(x, out_features, self.strides, self.conv, self.norm))


def _last_scale_init(zero_init_residual: bool):
  # Zero scale makes each residual branch start as the identity (Goyal et al. 2017).
  return nn.initializers.zeros if zero_init_residual else nn.initializers.ones


def _shortcut(x, out_features, strides, conv, norm):
  if strides == 1 and x.shape[-1] == out_features:
    return x
  x = conv(out_features, (1, 1), strides, padding=0, name='proj_conv')(x)
  return norm(name='proj_bn')(x)


class ResNet(nn.Module):
  """Residual network classifier.

  Stage ``i`` has ``stage_sizes[i]`` blocks of ``width * 2**i`` features (times 4 output
  channels for bottleneck blocks); every stage but the first halves H and W in its first
  block. Then global average pooling and ``Dense(num_classes)``.

  Attributes:
    stage_sizes: blocks per stage, e.g. ``(2, 2, 2, 2)`` for ResNet-18.
    block: ``'basic'`` (two 3x3 convs) or ``'bottleneck'`` (1x1, 3x3, 1x1 with expansion 4).
    num_classes: number of output logits.
    stem: ``'imagenet'`` (7x7/2 conv, BN, ReLU, 3x3/2 max-pool) or ``'cifar'`` (3x3/1 conv,
      BN, ReLU).
    width: features of the stem and of the first stage.
    zero_init_residual: start the last BN scale of each block at 0 (torchvision's default
      is False).
    dtype: compute dtype; parameters and batch statistics are always float32.
  """

  stage_sizes: Sequence[int]  # Blocks per stage.
  block: str = 'basic'  # 'basic' or 'bottleneck'.
  num_classes: int = 1000  # Number of logits.
  stem: str = 'imagenet'  # 'imagenet' or 'cifar'.
  width: int = 64  # Stem / first-stage features; doubled per stage.
  zero_init_residual: bool = False  # Zero-init each block's last BN scale.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive_sequence('stage_sizes', self.stage_sizes, allow_empty=False)
    _checks.check_choice('block', self.block, BLOCKS)
    _checks.check_positive('num_classes', self.num_classes)
    _checks.check_choice('stem', self.stem, STEMS)
    _checks.check_positive('width', self.width)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float array ``[batch, H, W, C]``; any H, W >= 1.
      train: use batch statistics and update the running averages (apply with
        ``mutable=['batch_stats']``); False uses the running averages.

    Returns:
      float32 logits ``[batch, num_classes]``.
    """
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    conv = functools.partial(Conv, use_bias=False, kernel_init=_conv_init,
                             dtype=self.dtype, param_dtype=jnp.float32)
    norm = functools.partial(nn.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype, param_dtype=jnp.float32)
    block_cls = _BasicBlock if self.block == 'basic' else _BottleneckBlock

    if self.stem == 'imagenet':
      x = conv(self.width, (7, 7), 2, padding=3, name='stem_conv')(x)
      x = nn.relu(norm(name='stem_bn')(x))
      x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    else:
      x = conv(self.width, (3, 3), 1, padding=1, name='stem_conv')(x)
      x = nn.relu(norm(name='stem_bn')(x))

    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        strides = 2 if i > 0 and j == 0 else 1
        x = block_cls(self.width * 2**i, strides, conv, norm, self.zero_init_residual,
                      name=f'stage{i + 1}_block{j + 1}')(x)

    x = jnp.mean(x, axis=(1, 2))
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 name='head')(x)
    return x.astype(jnp.float32)


def resnet18(num_classes: int = 1000, stem: str = 'imagenet', **kwargs) -> ResNet:
  """ResNet-18: basic blocks (2, 2, 2, 2); 11,689,512 params (ImageNet, 1000 classes)."""
  return ResNet(stage_sizes=(2, 2, 2, 2), block='basic', num_classes=num_classes, stem=stem,
                **kwargs)


def resnet34(num_classes: int = 1000, stem: str = 'imagenet', **kwargs) -> ResNet:
  """ResNet-34: basic blocks (3, 4, 6, 3); 21,797,672 params (ImageNet, 1000 classes)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block='basic', num_classes=num_classes, stem=stem,
                **kwargs)


def resnet50(num_classes: int = 1000, stem: str = 'imagenet', **kwargs) -> ResNet:
  """ResNet-50: bottleneck blocks (3, 4, 6, 3); 25,557,032 params (ImageNet, 1000 classes)."""
  return ResNet(stage_sizes=(3, 4, 6, 3), block='bottleneck', num_classes=num_classes,
                stem=stem, **kwargs)


# Two stages of one basic block, width 8: for fast tests.
_TinyResNet = functools.partial(ResNet, stage_sizes=(1, 1), width=8, stem='cifar',
                                num_classes=10)
