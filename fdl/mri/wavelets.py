"""Orthonormal multi-level 2-D Haar wavelet transform over the last two axes.

One level maps each 2 x 2 block ``[[a, b], [c, d]]`` to

  LL = (a + b + c + d) / 2,  LH = (a - b + c - d) / 2,
  HL = (a + b - c - d) / 2,  HH = (a - b - c + d) / 2,

an orthogonal change of basis; further levels transform the LL band again.
Coefficients are packed in the usual (Mallat) layout in one array: the
coarsest LL band in the top-left corner, each level's detail bands around it.
Images whose sides are not multiples of ``2**levels`` are zero-padded at the
bottom/right first, so `haar_forward` is an isometry ``W`` from ``[H, W]`` to
the padded shape and ``haar_inverse`` is its adjoint (and left inverse):
``W^T W = I``.

References:
  A. Haar, "Zur Theorie der orthogonalen Funktionensysteme", Math. Ann. 69
  (1910); S. Mallat, "A theory for multiresolution signal decomposition: the
  wavelet representation", IEEE TPAMI 11 (1989).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

_SQRT_HALF = float(np.sqrt(0.5))


def padded_shape(shape: tuple[int, int], levels: int) -> tuple[int, int]:
  """The ``(H, W)`` rounded up to multiples of ``2**levels``.

  Examples:
    >>> padded_shape((10, 17), 3)
    (16, 24)
  """
  step = 2 ** levels
  return tuple(-(-int(n) // step) * step for n in shape)


def _check_levels(shape, levels):
  if not isinstance(levels, (int, np.integer)) or levels < 0:
    raise ValueError(f"levels must be an int >= 0; got {levels!r}")
  if len(shape) < 2:
    raise ValueError(f"x must have at least 2 axes [..., H, W]; got shape {tuple(shape)}")


def _analysis_1d(x, axis):
  even = jax.lax.slice_in_dim(x, 0, None, 2, axis)
  odd = jax.lax.slice_in_dim(x, 1, None, 2, axis)
  return jnp.concatenate([(even + odd) * _SQRT_HALF, (even - odd) * _SQRT_HALF], axis)


def _synthesis_1d(c, axis):
  n = c.shape[axis] // 2
  low = jax.lax.slice_in_dim(c, 0, n, axis=axis)
  high = jax.lax.slice_in_dim(c, n, 2 * n, axis=axis)
  even, odd = (low + high) * _SQRT_HALF, (low - high) * _SQRT_HALF
  # Interleave even/odd samples back along `axis`.
  both = jnp.stack([even, odd], axis=axis + 1 if axis >= 0 else axis)
  return both.reshape(c.shape)


def haar_forward(x: jax.Array, levels: int) -> jax.Array:
  """Orthonormal 2-D Haar analysis ``W x`` over the last two axes.

  Args:
    x: real or complex ``[..., H, W]``.
    levels: number of decomposition levels (0 is the identity, after padding).

  Returns:
    Coefficients ``[..., H', W']`` (``padded_shape((H, W), levels)``), Mallat
    layout, dtype of `x`; ``||W x|| = ||x||``.

  Examples:
    >>> import jax.numpy as jnp
    >>> jnp.round(haar_forward(jnp.ones((2, 2)), 1), 5)  # all energy in LL
    Array([[2., 0.],
           [0., 0.]], dtype=float32)
  """
  x = jnp.asarray(x)
  _check_levels(x.shape, levels)
  return _haar_forward(x, int(levels))


@functools.partial(jax.jit, static_argnums=1)
def _haar_forward(x, levels):
  h, w = x.shape[-2:]
  ph, pw = padded_shape((h, w), levels)
  pad = [(0, 0)] * (x.ndim - 2) + [(0, ph - h), (0, pw - w)]
  c = jnp.pad(x, pad)
  for level in range(levels):
    bh, bw = ph >> level, pw >> level
    band = c[..., :bh, :bw]
    band = _analysis_1d(_analysis_1d(band, -2), -1)
    c = c.at[..., :bh, :bw].set(band)
  return c


def haar_inverse(coeffs: jax.Array, levels: int, shape: tuple[int, int] | None = None
                 ) -> jax.Array:
  """Haar synthesis ``W^T c``, the adjoint and left inverse of `haar_forward`.

  Args:
    coeffs: ``[..., H', W']`` with both sides multiples of ``2**levels``.
    levels: number of levels used by `haar_forward`.
    shape: the original ``(H, W)`` to crop to; ``None`` keeps ``(H', W')``.

  Returns:
    Image ``[..., H, W]`` of the dtype of `coeffs`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(15.0).reshape(3, 5)
    >>> bool(jnp.allclose(haar_inverse(haar_forward(x, 2), 2, x.shape), x, atol=1e-5))
    True
  """
  c = jnp.asarray(coeffs)
  _check_levels(c.shape, levels)
  ph, pw = c.shape[-2:]
  if ph % (2 ** levels) or pw % (2 ** levels):
    raise ValueError(f"coeffs sides {(ph, pw)} must be multiples of 2**levels = {2 ** levels}")
  if shape is not None:
    shape = (int(shape[0]), int(shape[1]))
    if shape[0] > ph or shape[1] > pw:
      raise ValueError(f"shape {shape} is larger than coeffs {(ph, pw)}")
  return _haar_inverse(c, int(levels), shape)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _haar_inverse(c, levels, shape):
  ph, pw = c.shape[-2:]
  for level in reversed(range(levels)):
    bh, bw = ph >> level, pw >> level
    band = c[..., :bh, :bw]
    band = _synthesis_1d(_synthesis_1d(band, -1), -2)
    c = c.at[..., :bh, :bw].set(band)
  if shape is not None:
    c = c[..., :shape[0], :shape[1]]
  return c
