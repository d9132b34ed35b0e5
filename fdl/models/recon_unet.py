"""The U-Net reconstruction baseline: a normalized U-Net on the zero-filled image.

Two inputs (``input_mode``):

* ``"complex"``: the zero-filled SENSE-combined image ``A^H y = sum_c conj(S_c) F^H (M y_c)``
  (needs coil maps), refined as a complex image (2 channels) by a
  :class:`~fdl.models.norm_unet.NormUNet`; the output is its magnitude.
* ``"rss"``: the root-sum-of-squares of the zero-filled coil images,
  ``sqrt(sum_c |F^H (M y_c)|^2)``, refined as a real image (1 channel), as fastMRI's U-Net
  baseline (Zbontar et al. 2018); coil maps are ignored. The output is the U-Net's (it is
  not clipped at zero).

Because the NormUNet undoes its normalization, the model is scale-equivariant:
``ReconUNet(a y) = a ReconUNet(y)`` for ``a > 0``.

References:
  J. Zbontar et al., "fastMRI: An open dataset and benchmarks for accelerated MRI",
  arXiv:1811.08839 (2018).

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = ReconUNet(base_channels=4, num_pools=2, input_mode="rss")
  >>> kspace = jax.ShapeDtypeStruct((2, 3, 13, 10), jnp.complex64)
  >>> mask = jax.ShapeDtypeStruct((2, 1, 1, 10), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> image, _ = jax.eval_shape(init, jax.random.key(0), kspace, mask)  # shapes only
  >>> image.shape, image.dtype
  ((2, 13, 10), dtype('float32'))
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdl.models import _checks
from fdl.models.norm_unet import NormUNet
from fdl.models.reconstruct import check_recon_inputs
from fdl.mri.coils import rss
from fdl.mri.fft import ifft2c
from fdl.mri.sense import sense_adjoint

INPUT_MODES = ("complex", "rss")


class ReconUNet(nn.Module):
  """U-Net on the zero-filled image (see the module docstring).

  With the defaults it has 7,756,418 parameters (a fastMRI U-Net of 32 channels and 4 pools,
  2 channels in and out); with ``input_mode="rss"`` (1 in, 1 out), 7,756,097.

  Attributes:
    base_channels: channels of the U-Net's first level.
    num_pools: U-Net down-/up-sampling levels, >= 1.
    dropout: channel-wise dropout inside the U-Net, in [0, 1).
    input_mode: ``"complex"`` (SENSE-combined image; needs maps) or ``"rss"``.
  """

  base_channels: int = 32  # U-Net first-level channels.
  num_pools: int = 4  # U-Net levels.
  dropout: float = 0.0  # U-Net channel-wise dropout.
  input_mode: str = "complex"  # "complex" (needs maps) or "rss" (maps ignored).

  def __post_init__(self):
    _checks.check_positive("base_channels", self.base_channels)
    _checks.check_positive("num_pools", self.num_pools)
    _checks.check_rate("dropout", self.dropout)
    _checks.check_choice("input_mode", self.input_mode, INPUT_MODES)
    super().__post_init__()

  @property
  def needs_maps(self) -> bool:
    """Whether ``__call__`` reads coil maps (only the ``"complex"`` input does)."""
    return self.input_mode == "complex"

  @nn.compact
  def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    """Reconstructs magnitude images.

    Args:
      kspace: complex64 ``[B, C, H, W]``; only entries where ``mask`` is nonzero are read.
      mask: real, broadcastable to ``[B, C, H, W]``.
      maps: complex64 ``[B, C, H, W]`` with ``sum_c |S_c|^2 = 1``; required for
        ``input_mode="complex"``, ignored for ``"rss"``.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      float32 ``[B, H, W]``.

    Raises:
      ValueError: bad shapes or dtypes, or ``maps`` missing in ``"complex"`` mode.
    """
    check_recon_inputs(kspace, mask, maps, needs_maps=self.needs_maps,
                       model_name=f'ReconUNet(input_mode="{self.input_mode}")')
    net = NormUNet(self.base_channels, self.num_pools, self.dropout, name="norm_unet")
    if self.input_mode == "complex":
      image = sense_adjoint(kspace, maps, mask)
      return jnp.abs(net(image, train=train)).astype(jnp.float32)
    image = rss(ifft2c(mask * kspace))
    return net(image, train=train)
