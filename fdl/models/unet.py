"""The fastMRI U-Net (Ronneberger et al. 2015, as in Zbontar et al. 2018), for any H and W.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = UNet(out_channels=1, base_channels=4, num_pools=2)
  >>> x = jnp.zeros((1, 13, 22, 2))  # odd, non-square sizes are padded and cropped back
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> y, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> y.shape, y.dtype
  ((1, 13, 22, 1), dtype('float32'))
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv

# fastMRI trains with PyTorch's default init, uniform(+-1/sqrt(fan_in)); PyTorch takes a
# transposed conv's fan-in from its output channels.
_conv_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')
_transpose_init = nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform', in_axis=-1,
                                                   out_axis=-2)


class _ConvBlock(nn.Module):
  """Twice: 3x3 conv (no bias), instance norm, leaky ReLU 0.2, channel-wise dropout."""

  features: int
  dropout: float
  dtype: Dtype

  @nn.compact
  def __call__(self, x, *, train):
    for _ in range(2):
      # No conv bias: the instance norm right after would subtract it again.
      x = Conv(self.features, (3, 3), padding=1, use_bias=False, kernel_init=_conv_init,
                  dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = _instance_norm(self.dtype)(x)
      x = nn.leaky_relu(x, 0.2)
      # 2D dropout: one Bernoulli draw per (sample, channel), shared over H and W.
      x = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(x)
    return x


class _TransposeConvBlock(nn.Module):
  """2x2 stride-2 transposed conv (no bias), instance norm, leaky ReLU 0.2: doubles H, W."""

  features: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x):
    # The name keeps the parameter tree of nn.ConvTranspose (checkpoints, torch loaders).
    x = _Upsample2x2(self.features, self.dtype, name='ConvTranspose_0')(x)
    return nn.leaky_relu(_instance_norm(self.dtype)(x), 0.2)


class _Upsample2x2(nn.Module):
  """``nn.ConvTranspose(features, (2, 2), strides=(2, 2), padding='VALID', use_bias=False)``.

  The same function and parameter (``kernel [2, 2, in, features]``), computed as one
  matmul: stride-2 windows of a 2x2 kernel do not overlap, so input pixel ``(i, j)``
  alone writes output block ``(2i + u, 2j + v)``:

    y[b, 2i + u, 2j + v, o] = sum_c x[b, i, j, c] K[1 - u, 1 - v, c, o]

  (``lax.conv_transpose`` without ``transpose_kernel`` correlates the zero-dilated
  input with ``K``, hence the flip). XLA's CPU backend lowers the dilated convolution
  to a convolution over the zero-interleaved input, 6x slower than this matmul at the
  fastMRI U-Net's sizes (benchmarks/NOTES.md).
  """

  features: int
  dtype: Dtype

  @nn.compact
  def __call__(self, x):
    kernel = self.param('kernel', _transpose_init, (2, 2, x.shape[-1], self.features),
                        jnp.float32)
    batch, height, width, _ = x.shape
    y = jnp.einsum('bhwc,uvco->bhuwvo', x.astype(self.dtype),
                   kernel[::-1, ::-1].astype(self.dtype))
    return y.reshape(batch, 2 * height, 2 * width, self.features)


def _instance_norm(dtype):
  # Per-sample, per-channel normalisation over H, W without affine parameters.
  return nn.InstanceNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=dtype,
                         param_dtype=jnp.float32)


def pad_to_multiple(x: jax.Array, multiple: int) -> jax.Array:
  """Reflect-pads ``x [batch, H, W, C]`` at the bottom and right to multiples of ``multiple``.

  Reflection (rather than zeros) keeps the padded border statistically like the image, so
  it perturbs the instance-norm statistics and the border pixels less. An input whose
  H and W are already multiples is returned unchanged.
  """
  pad_h = -x.shape[1] % multiple
  pad_w = -x.shape[2] % multiple
  if pad_h == 0 and pad_w == 0:
    return x
  return jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode='reflect')


class UNet(nn.Module):
  """U-Net for image-to-image regression (e.g. MRI reconstruction), as fastMRI's ``Unet``.

  Down path: ``ConvBlock(c)``, then ``num_pools - 1`` times [2x2 average pool,
  ``ConvBlock`` doubling the channels], then a last pool and the bottleneck
  ``ConvBlock(2 * c_max)``. Up path, per level: transposed conv halving the channels,
  concatenation with the skip, ``ConvBlock``. A final 1x1 conv with bias maps to
  ``out_channels``. The input is reflect-padded at the bottom/right to a multiple of
  ``2**num_pools`` (see :func:`pad_to_multiple`) and the output cropped back, so any H, W
  work. With ``in_channels=1, out_channels=1, base_channels=32, num_pools=4`` it has
  7,756,097 parameters, as fastMRI's.

  Attributes:
    out_channels: output channels.
    base_channels: channels of the first level; doubled per level.
    num_pools: number of 2x down-/up-sampling levels, >= 1.
    dropout: channel-wise drop probability inside every ConvBlock, in [0, 1).
    dtype: compute dtype; parameters are always float32.
  """

  out_channels: int  # Output channels (2 for complex images as real/imaginary).
  base_channels: int = 32  # First-level channels.
  num_pools: int = 4  # Down-/up-sampling levels.
  dropout: float = 0.0  # Channel-wise (2D) dropout in the ConvBlocks.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive('out_channels', self.out_channels)
    _checks.check_positive('base_channels', self.base_channels)
    _checks.check_positive('num_pools', self.num_pools)
    _checks.check_rate('dropout', self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Maps images to images of the same H and W.

    Args:
      x: float array ``[batch, H, W, in_channels]``; any H, W >= 1.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``). Instance
        norm always uses the statistics of the current image.

    Returns:
      float32 array ``[batch, H, W, out_channels]``.
    """
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    height, width = x.shape[1:3]
    x = pad_to_multiple(x, 2**self.num_pools)

    skips = []
    channels = self.base_channels
    for level in range(self.num_pools):
      x = _ConvBlock(channels, self.dropout, self.dtype, name=f'down_{level}')(x, train=train)
      skips.append(x)
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
      channels *= 2
    x = _ConvBlock(channels, self.dropout, self.dtype, name='bottleneck')(x, train=train)

    for level in reversed(range(self.num_pools)):
      channels //= 2
      x = _TransposeConvBlock(channels, self.dtype, name=f'up_{level}_transpose')(x)
      x = jnp.concatenate([x, skips.pop()], axis=-1)
      x = _ConvBlock(channels, self.dropout, self.dtype, name=f'up_{level}')(x, train=train)

    x = Conv(self.out_channels, (1, 1), kernel_init=_conv_init, dtype=self.dtype,
                param_dtype=jnp.float32, name='out_conv')(x)
    return x[:, :height, :width, :].astype(jnp.float32)
