"""End-to-end variational network (E2E-VarNet): learned coil maps and k-space cascades.

E2E-VarNet (Sriram et al. 2020) needs no precomputed coil maps. A sensitivity network
estimates them from the auto-calibration (ACS) region of the measured k-space ``y``:

  S = N_sens(F^H (M_acs y)) / rss(N_sens(F^H (M_acs y)))        (so sum_c |S_c|^2 = 1)

where ``M_acs = acs_mask(M)`` keeps the contiguous sampled block around the k-space centre
and ``N_sens`` is a :class:`~fdl.models.norm_unet.NormUNet` applied to each coil image
separately. Then, from ``k_0 = M y``, each of the ``T`` cascades (own weights each) updates
the k-space estimate

  k_{t+1} = k_t - eta_t M (k_t - y) - F(S N_t(sum_c conj(S_c) F^H k_t))

with a learned scalar ``eta_t`` (initially 1) and a NormUNet ``N_t``; in the paper's terms
that is ``k - eta DC(k) - sens_expand(N_t(sens_reduce(k)))``. The output is the
root-sum-of-squares image ``rss(F^H k_T)``.

References:
  A. Sriram et al., "End-to-end variational networks for accelerated MRI reconstruction",
  MICCAI 2020 (arXiv:2004.06688).

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = VarNet(num_cascades=2, channels=4, pools=2, sens_channels=2, sens_pools=1)
  >>> kspace = jax.ShapeDtypeStruct((2, 3, 13, 10), jnp.complex64)
  >>> mask = jax.ShapeDtypeStruct((2, 1, 1, 10), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> image, variables = jax.eval_shape(init, jax.random.key(0), kspace, mask)
  >>> image.shape, image.dtype, sorted(variables["params"])
  ((2, 13, 10), dtype('float32'), ['cascade_0', 'cascade_1', 'sens_net'])
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdl.models import _checks
from fdl.models.norm_unet import NormUNet
from fdl.models.reconstruct import check_recon_inputs
from fdl.mri.coils import rss
from fdl.mri.fft import fft2c, ifft2c


def _outward_run(sampled: jax.Array, axis: int) -> jax.Array:
  """1 where ``sampled`` is 1 all the way from the centre index ``n // 2`` along ``axis``."""
  n = sampled.shape[axis]
  centre = n // 2
  after = jnp.cumprod(jax.lax.slice_in_dim(sampled, centre, n, axis=axis), axis=axis)
  before = jax.lax.slice_in_dim(sampled, 0, centre + 1, axis=axis)
  before = jnp.flip(jnp.cumprod(jnp.flip(before, axis), axis=axis), axis)
  return jnp.concatenate([jax.lax.slice_in_dim(before, 0, centre, axis=axis), after],
                         axis=axis)


def acs_mask(mask: jax.Array) -> jax.Array:
  """The auto-calibration region of a sampling mask: its sampled block around the centre.

  A k-space point ``p`` belongs to it iff every point of the axis-aligned rectangle spanned
  by the centre ``(H // 2, W // 2)`` and ``p`` is sampled (``mask > 0``). For a line mask
  ``[..., 1, W]`` that is the contiguous run of sampled columns through the centre column;
  for a 2-D mask ``[..., H, W]`` with a fully sampled centre rectangle it is that rectangle
  (a fully sampled centre disc gives the disc). It is computed with static shapes (jit-able):
  a cumulative product outward from the centre along H, then along W. An axis of size 1
  (a broadcast axis) is left as it is.

  Args:
    mask: real ``[..., H or 1, W or 1]``, e.g. ``[B, 1, 1, W]`` or ``[B, 1, H, W]``; 0
      means not sampled.

  Returns:
    float32 of 0/1, shaped like ``mask``; all zero where the centre is not sampled.

  Examples:
    >>> import jax.numpy as jnp
    >>> acs_mask(jnp.array([[1, 0, 1, 1, 1, 0, 1]], jnp.float32))  # centre index 3
    Array([[0., 0., 1., 1., 1., 0., 0.]], dtype=float32)
  """
  mask = jnp.asarray(mask)
  if mask.ndim < 2 or jnp.issubdtype(mask.dtype, jnp.complexfloating):
    raise ValueError(f"mask must be real with at least 2 axes [..., H, W]; got {mask.dtype} "
                     f"{mask.shape}")
  sampled = (mask > 0).astype(jnp.float32)
  return _outward_run(_outward_run(sampled, -2), -1)


def sens_expand(image: jax.Array, maps: jax.Array) -> jax.Array:
  """``F(S x)``: an image ``[B, H, W]`` to full multi-coil k-space ``[B, C, H, W]``."""
  return fft2c(maps * image[:, None])


def sens_reduce(kspace: jax.Array, maps: jax.Array) -> jax.Array:
  """``sum_c conj(S_c) F^H k_c``: multi-coil k-space ``[B, C, H, W]`` to an image ``[B, H, W]``."""
  return jnp.sum(jnp.conj(maps) * ifft2c(kspace), axis=1)


def data_consistency(kspace: jax.Array, measured: jax.Array, mask: jax.Array) -> jax.Array:
  """``M (k - y)``: the gradient of ``0.5 ||M k - y||^2`` for a 0/1 mask and ``y = M y``."""
  return mask * (kspace - measured)


class SensitivityModel(nn.Module):
  """Coil maps from the ACS region: ``S = N(F^H (M_acs y)) / rss`` (see the module docstring).

  Usable alone, e.g. to look at a trained VarNet's maps:
  ``SensitivityModel(8, 4).apply({"params": variables["params"]["sens_net"]}, kspace, mask,
  train=False)``.

  Attributes:
    channels: first-level channels of the NormUNet.
    pools: levels of the NormUNet.
  """

  channels: int = 8  # NormUNet first-level channels.
  pools: int = 4  # NormUNet levels.

  @nn.compact
  def __call__(self, kspace: jax.Array, mask: jax.Array, *, train: bool) -> jax.Array:
    """Estimates normalized coil maps.

    Args:
      kspace: complex64 ``[B, C, H, W]``; only the ACS entries (see :func:`acs_mask`) are
        read.
      mask: real, broadcastable to ``[B, C, H, W]``.
      train: passed to the NormUNet (no dropout here; for the common signature).

    Returns:
      complex64 maps ``[B, C, H, W]`` with ``sum_c |S_c|^2 = 1`` at every pixel where the
      network output is not zero in all coils (there, all-zero maps).
    """
    batch, coils, height, width = kspace.shape
    coil_images = ifft2c(acs_mask(mask) * kspace)
    # Each coil image is refined on its own: coils are folded into the batch.
    refined = NormUNet(self.channels, self.pools, name="norm_unet")(
        coil_images.reshape(batch * coils, height, width), train=train)
    refined = refined.reshape(batch, coils, height, width)
    # A double `where` instead of an eps: the division is exact (maps of unit norm at any
    # data scale), and neither value nor gradient is NaN where all coils are zero.
    sq_norm = jnp.sum(jnp.real(refined * jnp.conj(refined)), axis=1, keepdims=True)
    nonzero = sq_norm > 0
    return jnp.where(nonzero, refined / jnp.sqrt(jnp.where(nonzero, sq_norm, 1.0)), 0.0)


class VarNetCascade(nn.Module):
  """One cascade: ``k - eta M (k - y) - F(S N(sum_c conj(S_c) F^H k_c))``.

  Attributes:
    channels: first-level channels of the NormUNet.
    pools: levels of the NormUNet.
  """

  channels: int = 18  # NormUNet first-level channels.
  pools: int = 4  # NormUNet levels.

  @nn.compact
  def __call__(self, kspace: jax.Array, measured: jax.Array, mask: jax.Array,
               maps: jax.Array, *, train: bool) -> jax.Array:
    """Updates the k-space estimate.

    Args:
      kspace: current estimate ``k``, complex64 ``[B, C, H, W]``.
      measured: measured ``y = M y``, complex64 ``[B, C, H, W]``.
      mask: real, broadcastable to ``[B, C, H, W]``.
      maps: complex64 ``[B, C, H, W]``.
      train: passed to the NormUNet.

    Returns:
      the new estimate, complex64 ``[B, C, H, W]``.
    """
    eta = self.param("dc_weight", nn.initializers.ones, (), jnp.float32)
    refined = NormUNet(self.channels, self.pools, name="norm_unet")(
        sens_reduce(kspace, maps), train=train)
    return (kspace - eta * data_consistency(kspace, measured, mask)
            - sens_expand(refined, maps))


class VarNet(nn.Module):
  """E2E-VarNet (see the module docstring): learned coil maps, then ``T`` cascades.

  With the defaults it has 20,119,610 parameters: 8 cascades of 2,454,339 (a NormUNet and
  ``eta``) and the sensitivity network's 484,898. (The paper's 12 cascades make about 30M.)

  Attributes:
    num_cascades: ``T``, the number of cascades (>= 1), each with its own weights.
    channels: first-level channels of each cascade's NormUNet.
    pools: levels of each cascade's NormUNet.
    sens_channels: first-level channels of the sensitivity NormUNet.
    sens_pools: levels of the sensitivity NormUNet.
  """

  num_cascades: int = 8  # T cascades.
  channels: int = 18  # Cascade NormUNet first-level channels.
  pools: int = 4  # Cascade NormUNet levels.
  sens_channels: int = 8  # Sensitivity NormUNet first-level channels.
  sens_pools: int = 4  # Sensitivity NormUNet levels.

  needs_maps = False  # Not a field: VarNet estimates its own maps (fdl.models.reconstruct).

  def __post_init__(self):
    for field in ("num_cascades", "channels", "pools", "sens_channels", "sens_pools"):
      _checks.check_positive(field, getattr(self, field))
    super().__post_init__()

  @nn.compact
  def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    """Reconstructs RSS magnitude images.

    Args:
      kspace: complex64 ``[B, C, H, W]``, the measured ``y``; only entries where ``mask``
        is nonzero are read.
      mask: real 0/1, broadcastable to ``[B, C, H, W]``: ``[B, 1, 1, W]`` line masks or
        ``[B, 1, H, W]`` 2-D masks; its centre block is the ACS region.
      maps: ignored (VarNet estimates its own), accepted so that every reconstruction model
        has the same signature; checked for shape if given.
      train: passed to the NormUNets (no dropout; for the common signature).

    Returns:
      float32 ``[B, H, W]``.
    """
    check_recon_inputs(kspace, mask, maps, needs_maps=False, model_name="VarNet")
    del maps
    measured = mask * kspace
    maps = SensitivityModel(self.sens_channels, self.sens_pools, name="sens_net")(
        measured, mask, train=train)
    estimate = measured
    for t in range(self.num_cascades):
      estimate = VarNetCascade(self.channels, self.pools, name=f"cascade_{t}")(
          estimate, measured, mask, maps, train=train)
    return rss(ifft2c(estimate)).astype(jnp.float32)
