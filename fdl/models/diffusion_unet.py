"""A time-conditioned U-Net noise predictor for denoising diffusion (Ho et al. 2020).

The timestep ``t`` enters as a sinusoidal embedding (Vaswani et al. 2017) passed
through a two-layer MLP and added, per channel, inside every residual block (after the
first GroupNorm-SiLU-conv). Complex MRI images enter as two channels (real,
imaginary), magnitude images as one.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = DiffusionUNet(out_channels=2, base_channels=8, channel_mults=(1, 2))
  >>> x, t = jnp.zeros((1, 13, 22, 2)), jnp.zeros((1,), jnp.int32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> y, variables = jax.eval_shape(init, jax.random.key(0), x, t)
  >>> y.shape, y.dtype
  ((1, 13, 22, 2), dtype('float32'))
"""

import functools
import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.unet import pad_to_multiple


def timestep_embedding(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """Sinusoidal embedding of timesteps.

  ``[cos(t w_k), sin(t w_k)]`` with ``w_k = max_period^(-k / (dim / 2))``,
  ``k = 0 .. dim / 2 - 1`` (and a zero column when `dim` is odd).

  Args:
    t: int or float ``[B]`` timesteps.
    dim: embedding width, >= 2.
    max_period: the longest wavelength, in timesteps.

  Returns:
    float32 ``[B, dim]``.
  """
  if isinstance(dim, bool) or not isinstance(dim, int) or dim < 2:
    raise ValueError(f"dim must be an int >= 2; got {dim!r}")
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  args = jnp.asarray(t, jnp.float32)[:, None] * freqs[None]
  emb = jnp.concatenate([jnp.cos(args), jnp.sin(args)], axis=-1)
  if dim % 2:
    emb = jnp.pad(emb, ((0, 0), (0, 1)))
  return emb


def _groups(num_groups: int, channels: int) -> int:
  # The largest group count <= num_groups that divides the channels.
  return math.gcd(num_groups, channels)


class _ResBlock(nn.Module):
  """GroupNorm-SiLU-conv, + Dense(time embedding), GroupNorm-SiLU-dropout-conv, + skip."""

  features: int
  num_groups: int
  dropout: float
  dtype: Dtype

  @nn.compact
  def __call__(self, x, emb, *, train):
    conv = functools.partial(nn.Conv, kernel_size=(3, 3), padding=1, dtype=self.dtype,
                             param_dtype=jnp.float32)
    h = nn.GroupNorm(_groups(self.num_groups, x.shape[-1]), dtype=self.dtype)(x)
    h = conv(self.features)(nn.silu(h))
    h = h + nn.Dense(self.features, dtype=self.dtype)(nn.silu(emb))[:, None, None, :]
    h = nn.GroupNorm(_groups(self.num_groups, self.features), dtype=self.dtype)(h)
    h = nn.Dropout(self.dropout, deterministic=not train)(nn.silu(h))
    # Zero-initialised last conv: each block starts as the identity (Ho et al.).
    h = conv(self.features, kernel_init=nn.initializers.zeros)(h)
    if x.shape[-1] != self.features:
      x = nn.Conv(self.features, (1, 1), dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x + h


class DiffusionUNet(nn.Module):
  """U-Net ``eps_theta(x_t, t)`` predicting the noise of a diffused image.

  Levels ``l = 0 .. L - 1`` with ``base_channels * channel_mults[l]`` channels, each
  ``num_res_blocks`` residual blocks, 2x2 average pooling between levels; a middle of
  two blocks; the up path mirrors it (nearest-neighbour 2x upsampling, then a 3x3
  conv; skips concatenated); GroupNorm-SiLU and a zero-initialised 3x3 conv to
  `out_channels`. The input is reflect-padded to a multiple of ``2**(L - 1)`` and the
  output cropped back, so any H, W work.

  Attributes:
    out_channels: predicted-noise channels (= input channels: 2 complex, 1 magnitude).
    base_channels: channels of level 0.
    channel_mults: per-level channel multipliers; their count is the number of levels.
    num_res_blocks: residual blocks per level and direction.
    num_groups: GroupNorm groups (reduced to a divisor of the channels).
    embed_dim: width of the time embedding MLP (0: 4 * base_channels).
    dropout: dropout rate in the residual blocks, in [0, 1).
    dtype: compute dtype; parameters are float32.
  """

  out_channels: int = 2  # 2: real and imaginary part; 1: magnitude.
  base_channels: int = 16  # Level-0 channels.
  channel_mults: Sequence[int] = (1, 2, 2)  # Levels' channel multipliers.
  num_res_blocks: int = 1  # Residual blocks per level.
  num_groups: int = 8  # GroupNorm groups.
  embed_dim: int = 0  # Time-embedding width (0: 4 * base_channels).
  dropout: float = 0.0  # Residual-block dropout.
  dtype: Dtype = jnp.float32  # Compute dtype.

  def __post_init__(self):
    _checks.check_positive('out_channels', self.out_channels)
    _checks.check_positive('base_channels', self.base_channels)
    _checks.check_positive_sequence('channel_mults', self.channel_mults, allow_empty=False)
    _checks.check_positive('num_res_blocks', self.num_res_blocks)
    _checks.check_positive('num_groups', self.num_groups)
    if isinstance(self.embed_dim, bool) or not isinstance(self.embed_dim, int) or (
        self.embed_dim < 0 or self.embed_dim == 1):
      raise ValueError(f'embed_dim must be 0 (4 * base_channels) or an int >= 2; got '
                       f'{self.embed_dim!r}')
    _checks.check_rate('dropout', self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, *, train: bool) -> jax.Array:
    """Predicts the noise in `x` at timesteps `t`.

    Args:
      x: float ``[batch, H, W, C]`` diffused images; any H, W >= 1.
      t: int or float ``[batch]`` timesteps (or a scalar, broadcast to the batch).
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      float32 ``[batch, H, W, out_channels]``.

    Raises:
      ValueError: `t` is not a scalar or ``[batch]``.
    """
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    t = jnp.asarray(t)
    if t.ndim == 0:
      t = jnp.broadcast_to(t, (x.shape[0],))
    if t.shape != (x.shape[0],):
      raise ValueError(f't must be a scalar or [batch] = [{x.shape[0]}]; got shape '
                       f'{tuple(t.shape)}')
    height, width = x.shape[1:3]
    levels = len(self.channel_mults)
    x = pad_to_multiple(x, 2**(levels - 1)).astype(self.dtype)
    embed_dim = self.embed_dim or 4 * self.base_channels
    emb = timestep_embedding(t, self.base_channels if self.base_channels >= 2 else 2)
    emb = nn.Dense(embed_dim, dtype=self.dtype, name='time_in')(emb)
    emb = nn.Dense(embed_dim, dtype=self.dtype, name='time_out')(nn.silu(emb))
    block = functools.partial(_ResBlock, num_groups=self.num_groups, dropout=self.dropout,
                              dtype=self.dtype)

    h = nn.Conv(self.base_channels, (3, 3), padding=1, dtype=self.dtype,
                param_dtype=jnp.float32, name='in_conv')(x)
    skips = [h]
    for level, mult in enumerate(self.channel_mults):
      for i in range(self.num_res_blocks):
        h = block(self.base_channels * mult, name=f'down_{level}_{i}')(h, emb, train=train)
        skips.append(h)
      if level < levels - 1:
        h = nn.avg_pool(h, (2, 2), strides=(2, 2))
        skips.append(h)
    channels = self.base_channels * self.channel_mults[-1]
    h = block(channels, name='middle_0')(h, emb, train=train)
    h = block(channels, name='middle_1')(h, emb, train=train)
    for level in reversed(range(levels)):
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = block(self.base_channels * self.channel_mults[level],
                  name=f'up_{level}_{i}')(h, emb, train=train)
      if level > 0:
        b, hh, ww, c = h.shape
        h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), method='nearest')
        h = nn.Conv(c, (3, 3), padding=1, dtype=self.dtype, param_dtype=jnp.float32,
                    name=f'upsample_{level}')(h)
    h = nn.silu(nn.GroupNorm(_groups(self.num_groups, h.shape[-1]), dtype=self.dtype,
                             name='out_norm')(h))
    h = nn.Conv(self.out_channels, (3, 3), padding=1, kernel_init=nn.initializers.zeros,
                dtype=self.dtype, param_dtype=jnp.float32, name='out_conv')(h)
    return h[:, :height, :width, :].astype(jnp.float32)


# A tiny variant for tests.
_TinyDiffusionUNet = functools.partial(DiffusionUNet, out_channels=2, base_channels=4,
                                       channel_mults=(1, 2), num_groups=2)
