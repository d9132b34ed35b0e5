"""A U-Net wrapped in per-image normalization, for complex or real MRI images.

  NormUNet(x) = UNet((x - mean) / std) * std + mean

with ``mean`` and ``std`` taken per sample and per channel over H and W (the real and
imaginary parts of a complex image are two channels). Undoing the normalization makes the
network scale-equivariant, ``NormUNet(a x) = a NormUNet(x)`` for ``a > 0`` (up to the
``eps`` guard), so it works the same on k-space of any overall scale. This is the
normalization of fastMRI's ``NormUnet`` (used in E2E-VarNet), with the population std.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = NormUNet(base_channels=4, num_pools=2)
  >>> x = jnp.zeros((2, 13, 10), jnp.complex64)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> y, _ = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> y.shape, y.dtype
  ((2, 13, 10), dtype('complex64'))
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdl.models import _checks
from fdl.models.unet import UNet

# Guards the std of a constant channel (e.g. the imaginary part of a real image):
# std = sqrt(var + STD_EPS**2) is smooth at var = 0, where sqrt(var) has an infinite
# derivative. Negligible for images of max ~1 (std ~0.1).
STD_EPS = 1e-6


def complex_to_channels(x: jax.Array) -> jax.Array:
  """Complex images ``[B, H, W]`` -> float32 ``[B, H, W, 2]`` (real, imaginary).

  Examples:
    >>> import jax.numpy as jnp
    >>> complex_to_channels(jnp.array([[[1 + 2j]]], jnp.complex64))
    Array([[[[1., 2.]]]], dtype=float32)
  """
  return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1).astype(jnp.float32)


def channels_to_complex(x: jax.Array) -> jax.Array:
  """Float ``[B, H, W, 2]`` (real, imaginary) -> complex64 ``[B, H, W]``; inverse of
  :func:`complex_to_channels`.

  Examples:
    >>> import jax.numpy as jnp
    >>> channels_to_complex(jnp.array([[[[1.0, 2.0]]]]))
    Array([[[1.+2.j]]], dtype=complex64)
  """
  if x.shape[-1] != 2:
    raise ValueError(f"x must have 2 channels (real, imaginary) last; got shape {x.shape}")
  return jax.lax.complex(x[..., 0].astype(jnp.float32), x[..., 1].astype(jnp.float32))


def channel_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-sample, per-channel mean and guarded std over H, W of ``x [B, H, W, C]``.

  Returns:
    ``(mean, std)``, each float32 ``[B, 1, 1, C]``, with
    ``std = sqrt(mean((x - mean)^2) + STD_EPS^2)``.
  """
  mean = jnp.mean(x, axis=(1, 2), keepdims=True)
  var = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
  return mean, jnp.sqrt(var + STD_EPS**2)


class NormUNet(nn.Module):
  """:class:`~fdl.models.unet.UNet` between a per-image normalization and its inverse.

  A complex image ``[B, H, W]`` enters the U-Net as 2 channels (real, imaginary) and
  comes back complex; a real image ``[B, H, W]`` (e.g. an RSS image) enters as 1 channel
  and comes back real. Each channel is normalized by its own mean and std over H, W (see
  :func:`channel_stats`), and the U-Net output is multiplied by that std and shifted by
  that mean. So a U-Net output of zero gives back the channel means, not zero.

  Attributes:
    base_channels: channels of the U-Net's first level.
    num_pools: U-Net down-/up-sampling levels, >= 1.
    dropout: channel-wise dropout inside the U-Net, in [0, 1).
  """

  base_channels: int  # U-Net first-level channels.
  num_pools: int  # U-Net levels.
  dropout: float = 0.0  # U-Net channel-wise dropout.

  def __post_init__(self):
    _checks.check_positive("base_channels", self.base_channels)
    _checks.check_positive("num_pools", self.num_pools)
    _checks.check_rate("dropout", self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Refines images; the output has the kind (complex or real) of the input.

    Args:
      x: complex ``[B, H, W]`` or real floating ``[B, H, W]``.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      complex64 ``[B, H, W]`` for complex `x`, else float32 ``[B, H, W]``.
    """
    dtype = getattr(x, "dtype", None)
    is_complex = dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating)
    if dtype is None or not (is_complex or jnp.issubdtype(dtype, jnp.floating)):
      raise TypeError(f"x must be a complex or float array [B, H, W]; got {dtype}")
    if x.ndim != 3:
      raise ValueError(f"x must be an image batch [B, H, W]; got shape {x.shape}")
    channels = complex_to_channels(x) if is_complex else x[..., None].astype(jnp.float32)
    mean, std = channel_stats(channels)
    out = UNet(out_channels=channels.shape[-1], base_channels=self.base_channels,
               num_pools=self.num_pools, dropout=self.dropout,
               name="unet")((channels - mean) / std, train=train)
    out = out * std + mean
    return channels_to_complex(out) if is_complex else out[..., 0]
