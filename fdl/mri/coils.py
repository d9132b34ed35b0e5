"""Coil combination and coil-sensitivity estimation, in pure jax.numpy.

  rss(m)[b, r] = sqrt(sum_c |m[b, c, r]|^2)

`estimate_maps` is ESPIRiT with one set of maps: the coil sensitivities are,
per pixel, the dominant eigenvector of an image-space operator built from the
signal subspace of the k-space calibration matrix.

References:
  P. B. Roemer et al., "The NMR phased array", Magn. Reson. Med. 16 (1990).
  M. Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating
  parallel MRI: where SENSE meets GRAPPA", Magn. Reson. Med. 71 (2014).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fdl.mri.fft import ifft2c
from fdl.mri.sense import check_kspace


def rss(coil_images: jax.Array, axis: int = 1) -> jax.Array:
  """Root-sum-of-squares coil combination, sqrt(sum_c |m_c|^2).

  Args:
    coil_images: real or complex coil images, e.g. ``[B, C, H, W]``.
    axis: the coil axis (1 for the ``[B, C, H, W]`` layout).

  Returns:
    Real array without the coil axis, e.g. ``[B, H, W]`` (float32 for
    complex64 input).

  References:
    P. B. Roemer et al., "The NMR phased array", Magn. Reson. Med. 16 (1990).

  Examples:
    >>> import jax.numpy as jnp
    >>> m = jnp.array([3.0, 4.0j], jnp.complex64).reshape(1, 2, 1, 1)
    >>> rss(m)
    Array([[[5.]]], dtype=float32)
  """
  coil_images = jnp.asarray(coil_images)
  mag_sq = jnp.real(coil_images * jnp.conj(coil_images))
  return jnp.sqrt(jnp.sum(mag_sq, axis=axis))


def estimate_maps(kspace: jax.Array, *, calib_size: int = 24, kernel_size: int = 6,
                  threshold: float = 0.02, crop: float = 0.95) -> jax.Array:
  """Coil sensitivity maps by ESPIRiT (one set of maps), batched.

  The method (Uecker et al. 2014), per batch element:

  1. Calibration matrix: every ``kernel_size x kernel_size`` patch of the
     ``calib_size x calib_size`` centre of k-space (all coils stacked) is one
     row, giving ``[(calib_size - kernel_size + 1)^2, C * kernel_size^2]``.
  2. SVD; the right singular vectors ``v_n`` whose singular value exceeds
     ``threshold * s_max`` span the signal subspace (the GRAPPA-like kernels).
  3. The operator ``W = k^-2 sum_patches R^H (sum_n v_n v_n^H) R`` is a
     convolution in k-space, so in image space it is a ``C x C`` Hermitian
     matrix per pixel, ``G(r) = k^-2 sum_n V_n(r) V_n(r)^H`` with
     ``V_n(r) = sum_a v_n[a] exp(2 pi i a.r / N)`` (k = ``kernel_size``).
     ``G`` is computed exactly from the ``(2k-1) x (2k-1)`` autocorrelation of
     the kernels, zero-padded to ``[H, W]`` and inverse-FFT'd.
  4. Coil images satisfy ``G(r) m(r) = m(r)``, so the maps are the per-pixel
     eigenvector of ``G`` with the largest eigenvalue (``jnp.linalg.eigh``).
     They have unit norm, ``sum_c |S_c(r)|^2 = 1``; their phase is made
     relative to the first coil, ``S_c <- S_c conj(S_0) / |S_0|``.
  5. Pixels whose largest eigenvalue is ``<= crop`` (outside the object, or
     where one set of maps cannot explain the data) get all-zero maps.

  Only one set of maps is returned; data with aliasing inside the FOV (where
  ESPIRiT would use two sets) get the dominant one.

  Args:
    kspace: complex64 ``[B, C, H, W]``, centred (DC at ``(H//2, W//2)``), with
      a fully sampled ``calib_size x calib_size`` centre (elsewhere it may be
      under-sampled; only the centre is read).
    calib_size: side of the square calibration region, ``<= min(H, W)``.
    kernel_size: side of the square k-space kernel, ``<= calib_size`` and
      ``2 * kernel_size - 1 <= min(H, W)``.
    threshold: relative singular-value threshold in ``[0, 1)``.
    crop: eigenvalue threshold in ``[0, 1)`` below which maps are zeroed.

  Returns:
    complex64 maps ``[B, C, H, W]``, with ``sum_c |S_c|^2`` = 1 where the
    eigenvalue exceeds `crop` and 0 elsewhere.

  Raises:
    ValueError: for real or non-4-D k-space, non-finite values, or sizes that
      do not fit (each message names the argument).

  References:
    M. Uecker et al., "ESPIRiT — an eigenvalue approach to autocalibrating
    parallel MRI: where SENSE meets GRAPPA", Magn. Reson. Med. 71 (2014).

  Examples:
    >>> import jax.numpy as jnp
    >>> from fdl.mri.fft import fft2c
    >>> yy, xx = jnp.mgrid[-16:16, -16:16] / 16.0
    >>> obj = (xx**2 + yy**2 < 0.6).astype(jnp.complex64)
    >>> coils = jnp.stack([1 + 0.5 * xx, 1 - 0.5 * xx + 0.3j * yy])
    >>> k = fft2c(obj * coils)[None]                 # [1, 2, 32, 32]
    >>> maps = estimate_maps(k, calib_size=12, kernel_size=4)
    >>> round(float(jnp.sum(jnp.abs(maps[0, :, 16, 16]) ** 2)), 4)
    1.0
  """
  check_kspace(kspace)
  _, _, h, w = np.shape(kspace)
  if not isinstance(calib_size, (int, np.integer)) or not 1 <= calib_size <= min(h, w):
    raise ValueError(f"calib_size must be an int in [1, min(H, W)] = [1, {min(h, w)}]; "
                     f"got {calib_size!r} for kspace {tuple(np.shape(kspace))}")
  # One patch position (kernel_size == calib_size) gives a rank-1 calibration
  # matrix and meaningless maps: ask for at least two per axis.
  if not isinstance(kernel_size, (int, np.integer)) or not 1 <= kernel_size < calib_size:
    raise ValueError(f"kernel_size must be an int in [1, calib_size={calib_size}); "
                     f"got {kernel_size!r} (fewer centre lines than the kernel needs?)")
  if 2 * kernel_size - 1 > min(h, w):
    raise ValueError(f"kernel_size {kernel_size} too large for the image: need "
                     f"2 * kernel_size - 1 <= min(H, W) = {min(h, w)}")
  if not 0.0 <= threshold < 1.0:
    raise ValueError(f"threshold must be in [0, 1) (relative to s_max); got {threshold}")
  if not 0.0 <= crop < 1.0:
    raise ValueError(f"crop must be in [0, 1) (an eigenvalue); got {crop}")
  return _espirit(jnp.asarray(kspace), int(calib_size), int(kernel_size),
                  jnp.float32(threshold), jnp.float32(crop))


@functools.partial(jax.jit, static_argnums=(1, 2))
def _espirit(kspace, calib_size, kernel_size, threshold, crop):
  b, c, h, w = kspace.shape
  k = kernel_size
  r0, c0 = h // 2 - calib_size // 2, w // 2 - calib_size // 2
  calib = kspace[:, :, r0:r0 + calib_size, c0:c0 + calib_size]

  # Calibration matrix [B, P, C*k*k]: one row per patch position.
  n = calib_size - k + 1
  idx = jnp.arange(n)[:, None] + jnp.arange(k)[None, :]          # [n, k]
  patches = calib[:, :, idx[:, None, :, None], idx[None, :, None, :]]  # [B,C,n,n,k,k]
  mat = jnp.transpose(patches, (0, 2, 3, 1, 4, 5)).reshape(b, n * n, c * k * k)

  # Rows of mat are patches p^T = sum_n u s v_n^H conj'd, i.e. the patches lie
  # in the span of the rows of vh (as plain vectors): those are the kernels.
  _, s, vh = jnp.linalg.svd(mat, full_matrices=False)
  keep = (s > threshold * s[:, :1]).astype(vh.real.dtype)         # [B, N]
  kernels = vh.reshape(b, -1, c, k, k)                            # [B, N, C, k, k]

  # V_n(r) on an L x L grid, L = 2k - 1: enough to hold the autocorrelation
  # sum_n V_n V_n^H (offsets -(k-1)..k-1) without circular aliasing.
  big = 2 * k - 1
  padded = jnp.zeros(kernels.shape[:3] + (big, big), kernels.dtype)
  padded = padded.at[..., :k, :k].set(kernels)
  v_img = jnp.fft.ifft2(padded) * (big * big)                     # sum_a v[a] e^{+2pi i a.r/L}
  gram = jnp.einsum("bn,bncxy,bndxy->bcdxy", keep, v_img, jnp.conj(v_img))
  # Autocorrelation coefficients K[delta], delta = 0 at the centre index k - 1.
  coeffs = jnp.fft.fftshift(jnp.fft.fft2(gram) / (big * big), axes=(-2, -1))

  # Place K[delta] at k-space frequency delta of the full grid: G(r) is then
  # the trigonometric polynomial sum_delta K[delta] e^{2 pi i delta.r / N}.
  full = jnp.zeros((b, c, c, h, w), coeffs.dtype)
  full = full.at[..., h // 2 - (k - 1):h // 2 + k, w // 2 - (k - 1):w // 2 + k].set(coeffs)
  op = ifft2c(full) * (np.sqrt(h * w) / (k * k))                   # [B, C, C, H, W]
  op = jnp.transpose(op, (0, 3, 4, 1, 2))                          # [B, H, W, C, C]
  op = 0.5 * (op + jnp.conj(jnp.swapaxes(op, -1, -2)))             # exact Hermitian

  eigvals, eigvecs = jnp.linalg.eigh(op)
  lead_val = eigvals[..., -1]                                      # [B, H, W]
  maps = jnp.moveaxis(eigvecs[..., :, -1], -1, 1)                  # [B, C, H, W]

  # Eigenvectors carry an arbitrary phase per pixel; relative to coil 0 it is
  # smooth, as physical sensitivities are.
  ref = maps[:, :1]
  mag = jnp.abs(ref)
  phase = jnp.where(mag > 0, jnp.conj(ref) / jnp.where(mag > 0, mag, 1.0), 1.0)
  maps = maps * phase
  maps = jnp.where((lead_val > crop)[:, None], maps, 0.0)
  return maps.astype(jnp.complex64)
