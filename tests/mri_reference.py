"""Float64 NumPy references and random inputs shared by the MRI tests."""

import numpy as np

_AXES = (-2, -1)


def crandn(rng, *shape):
  """Complex64 standard normal (real and imaginary parts each N(0, 1))."""
  return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def np_fft2c(x):
  """Centered orthonormal 2-D FFT over the last two axes, in NumPy."""
  return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=_AXES), axes=_AXES,
                                     norm="ortho"), axes=_AXES)


def np_ifft2c(k):
  """Centered orthonormal inverse 2-D FFT over the last two axes, in NumPy."""
  return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=_AXES), axes=_AXES,
                                      norm="ortho"), axes=_AXES)
