"""Classical reconstructions from multi-coil k-space: zero-filled, CG-SENSE, CS.

All use the SENSE model of `fdl.mri.sense`, y = A x = M F S x, with k-space
complex64 ``[B, C, H, W]``, maps complex64 ``[B, C, H, W]`` and a real mask
broadcastable to k-space; images are ``[B, H, W]``. Arguments are checked at
the boundary; the iterations run inside one `jax.jit` per static setting.

References:
  K. P. Pruessmann et al., "Advances in sensitivity encoding with arbitrary
  k-space trajectories", Magn. Reson. Med. 46 (2001).
  M. Lustig, D. Donoho, J. M. Pauly, "Sparse MRI: the application of
  compressed sensing for rapid MR imaging", Magn. Reson. Med. 58 (2007).
  A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding algorithm for
  linear inverse problems", SIAM J. Imaging Sci. 2 (2009).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fdl.mri.cg import cg
from fdl.mri.coils import rss
from fdl.mri.fft import ifft2c
from fdl.mri.sense import (check_kspace, check_mask, check_sense_args, sense_adjoint,
                            sense_normal)
from fdl.mri.wavelets import haar_forward, haar_inverse, padded_shape


def _check_nonneg(name, value):
  if not isinstance(value, jax.core.Tracer) and not float(value) >= 0:
    raise ValueError(f"{name} must be >= 0; got {value}")


def zero_filled(kspace: jax.Array, mask: jax.Array | None = None,
                maps: jax.Array | None = None) -> jax.Array:
  """The zero-filled reconstruction: inverse FFT of the sampled k-space.

  Without maps: ``rss(F^H (M y))``, the root-sum-of-squares of the coil
  images (real). With maps: the SENSE adjoint ``A^H y = sum_c conj(S_c)
  F^H (M y_c)``, a complex coil-combined image.

  Args:
    kspace: complex64 ``[B, C, H, W]``; unsampled entries are ignored where
      `mask` is 0.
    mask: real, broadcastable to `kspace`; ``None`` means all ones (k-space
      already zero-filled).
    maps: complex64 coil maps ``[B, C, H, W]`` or ``None``.

  Returns:
    float32 ``[B, H, W]`` (RSS) if `maps` is None, else complex64 ``[B, H, W]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> k = jnp.zeros((1, 2, 4, 4), jnp.complex64).at[:, :, 2, 2].set(4.0)
    >>> zero_filled(k)[0, 0, 0]        # two flat coil images of value 1
    Array(1.4142135, dtype=float32)
  """
  if mask is None:
    mask = jnp.ones((1, 1, 1, 1), jnp.float32)
  if maps is None:
    check_kspace(kspace)
    check_mask(mask, tuple(np.shape(kspace)))
    return rss(ifft2c(jnp.asarray(mask) * kspace))
  check_sense_args(kspace=kspace, maps=maps, mask=mask)
  return sense_adjoint(kspace, maps, mask)


def cg_sense(kspace: jax.Array, maps: jax.Array, mask: jax.Array, *, lam: float = 0.0,
             num_iters: int = 10, tol: float = 0.0, x0: jax.Array | None = None
             ) -> jax.Array:
  """CG-SENSE: solves ``(A^H A + lam I) x = A^H y`` by conjugate gradient.

  This is the minimizer of ``0.5 ||A x - y||^2 + 0.5 lam ||x||^2`` (Tikhonov
  regularized SENSE), approached with `num_iters` CG iterations per batch
  element, starting from `x0` (zeros by default).

  Args:
    kspace: complex64 ``[B, C, H, W]``, the measured y.
    maps: complex64 ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.
    lam: Tikhonov weight ``>= 0`` (same units as A^H A, i.e. 1 ~ identity for
      normalized maps and a full mask).
    num_iters: CG iterations (static: a new value compiles again).
    tol: relative residual tolerance ``||r|| / ||A^H y||`` at which a batch
      element stops (see `fdl.mri.cg`).
    x0: optional complex64 ``[B, H, W]`` initial image.

  Returns:
    complex64 image ``[B, H, W]``.

  References:
    K. P. Pruessmann et al., "Advances in sensitivity encoding with arbitrary
    k-space trajectories", Magn. Reson. Med. 46 (2001).

  Examples:
    >>> import jax.numpy as jnp
    >>> from fdl.mri.sense import sense_forward
    >>> maps = jnp.ones((1, 2, 4, 4), jnp.complex64) / jnp.sqrt(2.0)
    >>> x = jnp.arange(16.0).reshape(1, 4, 4).astype(jnp.complex64)
    >>> mask = jnp.ones((1, 1, 1, 4))
    >>> y = sense_forward(x, maps, mask)
    >>> bool(jnp.allclose(cg_sense(y, maps, mask, num_iters=3), x, atol=1e-4))
    True
  """
  check_sense_args(kspace=kspace, maps=maps, mask=mask, image=x0)
  _check_nonneg("lam", lam)
  if not isinstance(num_iters, (int, np.integer)) or num_iters < 0:
    raise ValueError(f"num_iters must be an int >= 0; got {num_iters!r}")
  if not float(tol) >= 0:
    raise ValueError(f"tol must be >= 0 (relative); got {tol}")
  return _cg_sense(kspace, maps, jnp.asarray(mask), lam, x0, int(num_iters), float(tol))


@functools.partial(jax.jit, static_argnums=(5, 6))
def _cg_sense(kspace, maps, mask, lam, x0, num_iters, tol):
  rhs = sense_adjoint(kspace, maps, mask)
  lam = jnp.asarray(lam, jnp.float32)
  normal = lambda x: sense_normal(x, maps, mask) + lam * x
  return cg(normal, rhs, x0=x0, num_iters=num_iters, tol=tol)


def lipschitz_bound(maps: jax.Array, mask: jax.Array) -> jax.Array:
  """An upper bound on ``||A^H A||`` (per batch element): ``max M^2 * max_r sum_c |S_c|^2``.

  It holds because ``||M F S x||^2 <= max M^2 ||S x||^2`` (F is unitary) and
  ``||S x||^2 = sum_r |x_r|^2 sum_c |S_c(r)|^2``. It equals 1 for maps
  normalized to ``sum_c |S_c|^2 = 1`` and a 0/1 mask with a sampled line.

  Args:
    maps: complex64 ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.

  Returns:
    float32 ``[B]``.

  Examples:
    >>> import jax.numpy as jnp
    >>> lipschitz_bound(jnp.ones((1, 2, 3, 3), jnp.complex64), jnp.ones((1, 1, 1, 3)))
    Array([2.], dtype=float32)
  """
  check_sense_args(maps=maps, mask=mask)
  mask = jnp.asarray(mask, jnp.float32)
  mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)       # [1 or B, ., ., .]
  mask_sq = jnp.max(jnp.square(mask), axis=(1, 2, 3))
  coil_sq = jnp.max(jnp.sum(jnp.abs(maps) ** 2, axis=1), axis=(1, 2))
  return (mask_sq * coil_sq).astype(jnp.float32)


def cs_wavelet(kspace: jax.Array, maps: jax.Array, mask: jax.Array, *, lam: float,
               num_iters: int = 50, levels: int = 4, x0: jax.Array | None = None
               ) -> jax.Array:
  """Compressed-sensing SENSE with an l1 penalty on Haar wavelet coefficients.

  Solves, per batch element, by FISTA (Beck & Teboulle 2009)

    min_z  0.5 ||A C z - y||_2^2 + lam ||W z||_1,     x = C z,

  where A = M F S is the SENSE operator, W the orthonormal multi-level 2-D
  Haar transform (`fdl.mri.wavelets.haar_forward`, applied to the complex
  image, so ``||.||_1`` sums the moduli of complex coefficients, the coarse
  band included), and C crops the ``padded_shape((H, W), levels)`` image to
  ``[H, W]``. For H and W multiples of ``2**levels`` C is the identity and
  the problem is exactly ``min_x 0.5 ||A x - y||^2 + lam ||W x||_1``;
  otherwise the padding pixels are free variables seen only by the penalty.

  The step is ``1 / L`` with ``L = lipschitz_bound(maps, mask)``, a proven
  upper bound on ``||A^H A||`` (1 for normalized maps and a 0/1 mask), so the
  iteration converges without a line search. Because W is orthonormal, the
  proximal step is exact: ``W^T soft(W v, lam / L)`` with the complex soft
  threshold ``soft(c, t) = c max(0, 1 - t / |c|)``. It starts from the
  zero-filled SENSE image ``A^H y`` (or `x0`).

  Args:
    kspace: complex64 ``[B, C, H, W]``, the measured y.
    maps: complex64 ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.
    lam: l1 weight ``>= 0``, in the units of the image (scale it with y).
    num_iters: FISTA iterations (static).
    levels: Haar decomposition levels (static).
    x0: optional complex64 ``[B, H, W]`` initial image.

  Returns:
    complex64 image ``[B, H, W]``.

  References:
    M. Lustig, D. Donoho, J. M. Pauly, "Sparse MRI", Magn. Reson. Med. 58
    (2007); A. Beck, M. Teboulle, "A fast iterative shrinkage-thresholding
    algorithm for linear inverse problems", SIAM J. Imaging Sci. 2 (2009).

  Examples:
    >>> import jax.numpy as jnp
    >>> from fdl.mri.sense import sense_forward
    >>> maps = jnp.ones((1, 1, 8, 8), jnp.complex64)
    >>> x = jnp.zeros((1, 8, 8), jnp.complex64).at[0, 2:6, 2:6].set(1.0)
    >>> y = sense_forward(x, maps, jnp.ones((1, 1, 1, 8)))
    >>> out = cs_wavelet(y, maps, jnp.ones((1, 1, 1, 8)), lam=0.0, num_iters=5)
    >>> bool(jnp.allclose(out, x, atol=1e-5))   # lam = 0, full data: exact
    True
  """
  check_sense_args(kspace=kspace, maps=maps, mask=mask, image=x0)
  _check_nonneg("lam", lam)
  if not isinstance(num_iters, (int, np.integer)) or num_iters < 0:
    raise ValueError(f"num_iters must be an int >= 0; got {num_iters!r}")
  if not isinstance(levels, (int, np.integer)) or levels < 0:
    raise ValueError(f"levels must be an int >= 0; got {levels!r}")
  mask = jnp.asarray(mask)
  lip = lipschitz_bound(maps, mask)
  return _fista(kspace, maps, mask, lam, lip, x0, int(num_iters), int(levels))


@functools.partial(jax.jit, static_argnums=(6, 7))
def _fista(kspace, maps, mask, lam, lip, x0, num_iters, levels):
  b, _, h, w = kspace.shape
  ph, pw = padded_shape((h, w), levels)
  crop = lambda z: z[:, :h, :w]
  pad = lambda x: jnp.pad(x, ((0, 0), (0, ph - h), (0, pw - w)))
  aty = sense_adjoint(kspace, maps, mask)
  # A zero L (no maps or an empty mask) leaves only the penalty: any step works.
  step = (1.0 / jnp.where(lip > 0, lip, 1.0))[:, None, None]
  thresh = jnp.asarray(lam, jnp.float32) * step

  def prox(v):
    c = haar_forward(v, levels)
    mag = jnp.abs(c)
    shrink = jnp.maximum(0.0, 1.0 - thresh / jnp.where(mag > 0, mag, 1.0))
    return haar_inverse(c * shrink, levels)

  def body(_, carry):
    z, z_prev, t = carry
    t_next = 0.5 * (1.0 + jnp.sqrt(1.0 + 4.0 * t * t))
    v = z + ((t - 1.0) / t_next) * (z - z_prev)
    grad = pad(sense_normal(crop(v), maps, mask) - aty)
    z_new = prox(v - step * grad)
    return z_new, z, t_next

  z0 = pad(aty if x0 is None else x0)
  z, _, _ = jax.lax.fori_loop(0, num_iters, body, (z0, z0, jnp.float32(1.0)))
  return crop(z).astype(jnp.complex64)
