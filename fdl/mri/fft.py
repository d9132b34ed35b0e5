"""Centered, orthonormal 2-D Fourier transforms over the last two axes.

The MRI convention: the DC sample sits at index ``(H // 2, W // 2)`` of k-space
and of the image, so both are "centered"; the transform is unitary
(``norm="ortho"``), so ``ifft2c(fft2c(x)) == x`` and Parseval holds,
``||fft2c(x)|| == ||x||``.

  fft2c(x)  = fftshift(fft2(ifftshift(x))) / sqrt(H W)
  ifft2c(k) = fftshift(ifft2(ifftshift(k))) * sqrt(H W) / (H W)

For even H and W both shifts are a modulation instead: with the checkerboard
``c[m, n] = (-1)^(m + n)``,

  fftshift(fft2(ifftshift(x))) = (-1)^(H/2 + W/2) c * fft2(c * x)

(the same for ``ifft2``), because shifting by half the length multiplies the other
domain by ``(-1)^index``. The products fuse into the neighbouring elementwise work
(coil maps, masks), where the shifts are copies of the whole array, which XLA:CPU runs
at about 2 GB/s (``benchmarks/NOTES.md``). Odd sizes use the shifts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_AXES = (-2, -1)


def fft2c(x: jax.Array) -> jax.Array:
  """Centered orthonormal 2-D FFT over the last two axes.

  Args:
    x: complex array ``[..., H, W]`` (real input is promoted to complex64).

  Returns:
    k-space ``[..., H, W]``, complex64 (complex128 for complex128 input).

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.zeros((4, 4), jnp.complex64).at[2, 2].set(1.0)  # centred impulse
    >>> k = fft2c(x)
    >>> bool(jnp.allclose(k, 0.25))  # flat spectrum of unit norm
    True
  """
  x = _as_complex(x)
  if _even(x):
    before, after = _modulations(x)
    return after * jnp.fft.fft2(before * x, axes=_AXES, norm="ortho")
  shifted = jnp.fft.ifftshift(x, axes=_AXES)
  return jnp.fft.fftshift(jnp.fft.fft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def ifft2c(k: jax.Array) -> jax.Array:
  """Centered orthonormal inverse 2-D FFT over the last two axes.

  Args:
    k: complex k-space ``[..., H, W]`` with DC at ``(H // 2, W // 2)``.

  Returns:
    Image ``[..., H, W]`` of the same complex dtype.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(12.0).reshape(3, 4).astype(jnp.complex64)
    >>> bool(jnp.allclose(ifft2c(fft2c(x)), x, atol=1e-5))
    True
  """
  k = _as_complex(k)
  if _even(k):
    before, after = _modulations(k)
    return after * jnp.fft.ifft2(before * k, axes=_AXES, norm="ortho")
  shifted = jnp.fft.ifftshift(k, axes=_AXES)
  return jnp.fft.fftshift(jnp.fft.ifft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def _even(x) -> bool:
  return x.shape[-2] % 2 == 0 and x.shape[-1] % 2 == 0


def _modulations(x) -> tuple[jax.Array, jax.Array]:
  """The checkerboard ``c`` and ``(-1)^(H/2 + W/2) c``, ``[H, W]`` in x's real dtype."""
  h, w = x.shape[-2:]
  real = jnp.finfo(x.dtype).dtype
  parity = (jnp.arange(h)[:, None] + jnp.arange(w)[None, :]) % 2
  checker = (1 - 2 * parity).astype(real)
  sign = -1 if (h // 2 + w // 2) % 2 else 1
  return checker, checker * sign


def _as_complex(x) -> jax.Array:
  x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"x must have at least 2 axes [..., H, W]; got shape {x.shape}")
  if not jnp.iscomplexobj(x):
    x = x.astype(jnp.complex128 if x.dtype == jnp.float64 else jnp.complex64)
  return x


def fft2c_host(x: np.ndarray) -> np.ndarray:
  """`fft2c` in NumPy, for host data (simulation, processing, audits, augmentation).

  Args:
    x: array ``[..., H, W]``.

  Returns:
    Centered orthonormal k-space ``[..., H, W]`` in NumPy's FFT dtype
    (complex64 for float32 / complex64 input, else complex128).
  """
  shifted = np.fft.ifftshift(x, axes=_AXES)
  return np.fft.fftshift(np.fft.fft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)


def ifft2c_host(k: np.ndarray) -> np.ndarray:
  """`ifft2c` in NumPy, for host data; dtypes as `fft2c_host`."""
  shifted = np.fft.ifftshift(k, axes=_AXES)
  return np.fft.fftshift(np.fft.ifft2(shifted, axes=_AXES, norm="ortho"), axes=_AXES)
