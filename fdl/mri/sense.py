"""The multi-coil SENSE forward model and its adjoint, as pure functions.

  y = A x = M F S x      image x [B, H, W] -> k-space y [B, C, H, W]
  A^H y  = sum_c conj(S_c) F^H (M y_c)
  A^H A x = sum_c conj(S_c) F^H (M^2 F (S_c x))

S are the coil sensitivity maps ``[B, C, H, W]``, F the centered orthonormal
2-D FFT (`fft2c`), M a real sampling mask (or density weights) broadcastable to
``[B, C, H, W]`` — ``[B, 1, 1, W]`` for Cartesian line masks, ``[B, 1, H, W]``
for 2-D masks. Every argument is explicit; there is no hidden state.

References:
  K. P. Pruessmann et al., "SENSE: Sensitivity encoding for fast MRI",
  Magn. Reson. Med. 42 (1999).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fdl.mri.fft import fft2c, ifft2c


def _is_traced(x) -> bool:
  return isinstance(x, jax.core.Tracer)


def check_kspace(kspace) -> None:
  """Validates multi-coil k-space: complex ``[batch, coils, H, W]``, finite.

  The finiteness check needs values, so it is skipped under tracing.

  Raises:
    ValueError: naming `kspace`, what was expected and what came.
  """
  shape = tuple(np.shape(kspace))
  dtype = jnp.result_type(kspace)
  if len(shape) != 4 or not jnp.issubdtype(dtype, jnp.complexfloating):
    hint = " (add a batch axis: kspace[None])" if len(shape) == 3 else ""
    raise ValueError(f"kspace must be complex64 [batch, coils, H, W]{hint}; "
                     f"got {dtype} {shape}")
  if not _is_traced(kspace):
    # A concrete array closed over by a jitted function would otherwise be
    # staged into the trace, and bool() of a tracer fails.
    with jax.ensure_compile_time_eval():
      finite = bool(jnp.all(jnp.isfinite(kspace)))
    if not finite:
      raise ValueError("kspace contains NaN or Inf values")


def _check_complex(name: str, x, rank: int, layout: str):
  shape = tuple(np.shape(x))
  dtype = jnp.result_type(x)
  if len(shape) != rank or not jnp.issubdtype(dtype, jnp.complexfloating):
    raise ValueError(f"{name} must be complex64 {layout}; got {dtype} {shape}")


def check_mask(mask, target_shape, name="mask") -> None:
  """Validates a real mask that must broadcast to `target_shape` (k-space)."""
  mask_shape = tuple(np.shape(mask))
  dtype = jnp.result_type(mask)
  if jnp.issubdtype(dtype, jnp.complexfloating):
    raise ValueError(f"{name} must be real (0/1 or weights); got {dtype}")
  try:
    out = np.broadcast_shapes(mask_shape, target_shape)
  except ValueError:
    out = None
  if out != tuple(target_shape):
    raise ValueError(
        f"{name} of shape {mask_shape} does not broadcast to k-space "
        f"{tuple(target_shape)} [batch, coils, H, W]; use [batch, 1, 1, W] for "
        "line masks or [batch, 1, H, W] for 2-D masks")


def check_sense_args(*, image=None, kspace=None, maps, mask) -> None:
  """Validates SENSE operator arguments (shapes, dtypes, coil counts).

  Raises:
    ValueError: naming the argument, what was expected and what came.
  """
  _check_complex("maps", maps, 4, "[batch, coils, H, W]")
  b, c, h, w = np.shape(maps)
  if image is not None:
    _check_complex("image", image, 3, "[batch, H, W]")
    if tuple(np.shape(image)) != (b, h, w):
      raise ValueError(f"image {tuple(np.shape(image))} must be [batch, H, W] = "
                       f"{(b, h, w)} to match maps {tuple(np.shape(maps))}")
  if kspace is not None:
    check_kspace(kspace)
    if np.shape(kspace)[1] != c:
      raise ValueError(f"kspace has {np.shape(kspace)[1]} coils but maps have {c}")
    if tuple(np.shape(kspace)) != (b, c, h, w):
      raise ValueError(f"kspace {tuple(np.shape(kspace))} and maps "
                       f"{tuple(np.shape(maps))} must have the same shape")
  check_mask(mask, (b, c, h, w))


def sense_forward(image: jax.Array, maps: jax.Array, mask: jax.Array) -> jax.Array:
  """A x = M F (S x): an image to its sampled multi-coil k-space.

  Args:
    image: complex64 ``[B, H, W]``.
    maps: complex64 coil sensitivities ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.

  Returns:
    complex64 k-space ``[B, C, H, W]`` (zero where the mask is 0).

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.ones((1, 4, 4), jnp.complex64)
    >>> maps = jnp.ones((1, 2, 4, 4), jnp.complex64) / jnp.sqrt(2.0)
    >>> sense_forward(x, maps, jnp.ones((1, 1, 1, 4))).shape
    (1, 2, 4, 4)
  """
  check_sense_args(image=image, maps=maps, mask=mask)
  return mask * fft2c(maps * image[:, None])


def sense_adjoint(kspace: jax.Array, maps: jax.Array, mask: jax.Array) -> jax.Array:
  """A^H y = sum_c conj(S_c) F^H (M y_c): k-space to a coil-combined image.

  Args:
    kspace: complex64 ``[B, C, H, W]``.
    maps: complex64 ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.

  Returns:
    complex64 image ``[B, H, W]``.
  """
  check_sense_args(kspace=kspace, maps=maps, mask=mask)
  return jnp.sum(jnp.conj(maps) * ifft2c(mask * kspace), axis=1)


def sense_normal(image: jax.Array, maps: jax.Array, mask: jax.Array) -> jax.Array:
  """A^H A x, the normal operator (Hermitian, positive semi-definite).

  Args:
    image: complex64 ``[B, H, W]``.
    maps: complex64 ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.

  Returns:
    complex64 ``[B, H, W]``.
  """
  check_sense_args(image=image, maps=maps, mask=mask)
  k = mask * fft2c(maps * image[:, None])
  return jnp.sum(jnp.conj(maps) * ifft2c(mask * k), axis=1)
