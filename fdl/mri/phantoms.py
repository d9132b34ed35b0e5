"""Image phantoms for MRI simulation: Shepp-Logan and random ellipse heads.

Coordinates (shared with `fdl.mri.coil_models`): the field of view is
normalized to ``[-1, 1)`` on each axis. ``x`` grows to the right along the
columns (axis -1), ``y`` grows *upward* (row 0 is the top of the image, as
displayed), and the origin sits on pixel ``(H // 2, W // 2)``, the same pixel
that holds DC in the centered FFT convention of `fdl.mri.fft`. Pixel pitch is
``2 / H`` vertically and ``2 / W`` horizontally, so a non-square matrix has
non-square pixels and the object still fills the field of view.

Phantoms are generated on the host in float64 NumPy and returned as NumPy
arrays; they are data, not traced computations.
"""

from __future__ import annotations

from typing import Sequence

import jax
import numpy as np

# Toft's modified Shepp-Logan head: (intensity, semi-axis a (x), semi-axis b (y),
# centre x0, centre y0, rotation phi in degrees, counter-clockwise). Toft raised
# the contrast of the original table so that the inner structures are visible.
#
# References:
#   P. A. Toft, "The Radon Transform: Theory and Implementation", PhD thesis,
#   Technical University of Denmark (1996), table 3.2.
#   L. A. Shepp and B. F. Logan, "The Fourier reconstruction of a head section",
#   IEEE Trans. Nucl. Sci. 21 (1974).
MODIFIED_SHEPP_LOGAN_ELLIPSES = (
    (1.00, 0.6900, 0.9200, 0.00, 0.0000, 0.0),
    (-0.80, 0.6624, 0.8740, 0.00, -0.0184, 0.0),
    (-0.20, 0.1100, 0.3100, 0.22, 0.0000, -18.0),
    (-0.20, 0.1600, 0.4100, -0.22, 0.0000, 18.0),
    (0.10, 0.2100, 0.2500, 0.00, 0.3500, 0.0),
    (0.10, 0.0460, 0.0460, 0.00, 0.1000, 0.0),
    (0.10, 0.0460, 0.0460, 0.00, -0.1000, 0.0),
    (0.10, 0.0460, 0.0230, -0.08, -0.6050, 0.0),
    (0.10, 0.0230, 0.0230, 0.00, -0.6060, 0.0),
    (0.10, 0.0230, 0.0460, 0.06, -0.6050, 0.0),
)


def image_grid(shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """Normalized pixel coordinates of an ``[H, W]`` image.

  Args:
    shape: ``(H, W)``, each >= 1.

  Returns:
    ``(x, y)``, float64 ``[H, W]`` each: ``x[i, j] = (j - W // 2) * 2 / W``
    and ``y[i, j] = (H // 2 - i) * 2 / H``, both in ``[-1, 1)`` (unitless,
    field of view = 2).

  Examples:
    >>> x, y = image_grid((4, 4))
    >>> x[0].tolist(), y[:, 0].tolist()
    ([-1.0, -0.5, 0.0, 0.5], [1.0, 0.5, 0.0, -0.5])
  """
  h, w = _check_shape(shape)
  cols = (np.arange(w) - w // 2) * (2.0 / w)
  rows = (h // 2 - np.arange(h)) * (2.0 / h)
  return np.meshgrid(cols, rows, indexing="xy")


def ellipses_image(shape: Sequence[int], ellipses) -> np.ndarray:
  """Sum of uniform ellipses, each added where a pixel centre lies inside it.

  Args:
    shape: ``(H, W)``.
    ellipses: rows of ``(intensity, a, b, x0, y0, phi_degrees)`` in the
      normalized coordinates of `image_grid`; ``a`` is the semi-axis along x
      before the counter-clockwise rotation by ``phi``.

  Returns:
    float64 ``[H, W]``.
  """
  x, y = image_grid(shape)
  image = np.zeros(x.shape)
  for intensity, a, b, x0, y0, phi in np.asarray(ellipses, np.float64).reshape(-1, 6):
    c, s = np.cos(np.deg2rad(phi)), np.sin(np.deg2rad(phi))
    # Rotate the offsets by -phi into the ellipse's own axes.
    u = (x - x0) * c + (y - y0) * s
    v = -(x - x0) * s + (y - y0) * c
    image += intensity * ((u / a) ** 2 + (v / b) ** 2 <= 1.0)
  return image


def shepp_logan(shape: Sequence[int] = (128, 128)) -> np.ndarray:
  """Toft's modified Shepp-Logan head phantom, real-valued, at any matrix size.

  Values: 1.0 skull, 0.2 brain, 0.0 the two dark ventricles, 0.3 the small
  ellipses (0.4 where two of them overlap), 0.0 outside. The head spans ``[-0.69, 0.69]``
  horizontally and ``[-0.92, 0.92]`` vertically of the ``[-1, 1)`` field of
  view (see `image_grid`).

  Args:
    shape: ``(H, W)``; odd and non-square sizes are allowed.

  Returns:
    complex64 ``[H, W]`` with zero imaginary part.

  Examples:
    >>> img = shepp_logan((64, 48))
    >>> img.shape, img.dtype
    ((64, 48), dtype('complex64'))
    >>> round(float(img[32, 24].real), 3)  # the centre pixel is brain matter
    0.2
  """
  return ellipses_image(shape, MODIFIED_SHEPP_LOGAN_ELLIPSES).astype(np.complex64)


def random_phantom(key, shape: Sequence[int] = (128, 128), *,
                   num_ellipses: int = 12, texture_amplitude: float = 0.05,
                   max_phase: float = np.pi / 2) -> np.ndarray:
  """A random head-like complex image: ellipses, smooth texture, smooth phase.

  The magnitude is a skull ring (random outer ellipse with a thin brighter
  rim) filled with ``num_ellipses`` random ellipses (centres inside the
  head, semi-axes 0.03-0.35 log-uniform, any angle, additive intensity in
  ``[-0.25, 0.35]``), clipped at 0 and multiplied inside the head by
  ``1 + texture_amplitude * t`` where ``t`` is unit-variance Gaussian noise
  low-pass filtered to about 6 cycles per field of view. The phase is a
  random polynomial of degree 2 in ``(x, y)`` whose absolute value stays
  below ``max_phase`` radians over the field of view, as from B0
  inhomogeneity and coil phase.

  Args:
    key: a `jax.random` key (typed or raw ``uint32[2]``), an ``int`` seed
      or a `numpy.random.Generator`. The same key gives the same bytes.
    shape: ``(H, W)``, odd and non-square allowed.
    num_ellipses: number of inner random ellipses (>= 0).
    texture_amplitude: relative amplitude of the texture (>= 0).
    max_phase: bound of the background phase, radians (>= 0).

  Returns:
    complex64 ``[H, W]``; magnitude >= 0 and of order 1, zero outside the
    head.

  Examples:
    >>> import jax
    >>> img = random_phantom(jax.random.key(0), (33, 40))
    >>> img.shape, img.dtype
    ((33, 40), dtype('complex64'))
    >>> bool((random_phantom(jax.random.key(0), (33, 40)) == img).all())
    True
  """
  h, w = _check_shape(shape)
  if num_ellipses < 0 or texture_amplitude < 0 or max_phase < 0:
    raise ValueError("num_ellipses, texture_amplitude and max_phase must be >= 0; got "
                     f"{num_ellipses}, {texture_amplitude}, {max_phase}")
  rng = numpy_rng(key)
  x, y = image_grid((h, w))

  # Skull: an outer ellipse of intensity 1 and an inner one of -0.8 leave a
  # bright rim of intensity 1 around a 0.2 background, as in Shepp-Logan.
  a_out, b_out = rng.uniform(0.6, 0.8), rng.uniform(0.75, 0.92)
  phi_out = rng.uniform(-15.0, 15.0)
  rim = rng.uniform(0.03, 0.06)
  a_in, b_in = a_out - rim, b_out - rim
  rows = [(1.0, a_out, b_out, 0.0, 0.0, phi_out), (-0.8, a_in, b_in, 0.0, 0.0, phi_out)]
  for _ in range(num_ellipses):
    # Centres uniform in the inner head: polar sampling with sqrt radius.
    rad, ang = np.sqrt(rng.uniform()) * 0.75, rng.uniform(0, 2 * np.pi)
    cx, cy = rad * a_in * np.cos(ang), rad * b_in * np.sin(ang)
    sa, sb = np.exp(rng.uniform(np.log(0.03), np.log(0.35), size=2))
    rows.append((rng.uniform(-0.25, 0.35), sa, sb, cx, cy, rng.uniform(0, 180)))
  magnitude = np.clip(ellipses_image((h, w), rows), 0.0, None)
  head = ellipses_image((h, w), rows[:1]) > 0

  texture = _lowpass_noise(rng, (h, w), cycles=6.0)
  # Inner ellipses may poke out of the skull; the head outline bounds the object.
  magnitude = np.clip(magnitude * (1.0 + texture_amplitude * texture), 0.0, None) * head

  coefs = rng.standard_normal(6)
  monomials = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y])
  phase = np.tensordot(coefs, monomials, axes=1)
  peak = np.abs(phase).max()
  phase = phase * (max_phase / peak) if peak > 0 else phase
  return (magnitude * np.exp(1j * phase)).astype(np.complex64)


def numpy_rng(key) -> np.random.Generator:
  """A NumPy generator seeded deterministically from a `jax.random` key.

  Args:
    key: typed `jax.random` key, raw ``uint32[2]`` key, ``int`` seed, or a
      `numpy.random.Generator` (returned unchanged).

  Returns:
    `numpy.random.Generator` (PCG64).
  """
  if isinstance(key, np.random.Generator):
    return key
  if isinstance(key, (int, np.integer)):
    return np.random.default_rng(int(key))
  key = jax.numpy.asarray(key)
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  return np.random.default_rng(np.asarray(key, np.uint32).ravel().tolist())


def _lowpass_noise(rng: np.random.Generator, shape, cycles: float) -> np.ndarray:
  """Unit-variance Gaussian noise with a Gaussian spectrum of ``cycles`` per FOV."""
  h, w = shape
  noise = rng.standard_normal((h, w))
  fy = np.fft.fftfreq(h) * h  # cycles per field of view
  fx = np.fft.fftfreq(w) * w
  gain = np.exp(-0.5 * (fy[:, None] ** 2 + fx[None, :] ** 2) / cycles ** 2)
  smooth = np.fft.ifft2(np.fft.fft2(noise) * gain).real
  std = smooth.std()
  return smooth / std if std > 0 else smooth


def _check_shape(shape) -> tuple[int, int]:
  shape = tuple(int(s) for s in shape)
  if len(shape) != 2 or min(shape) < 1:
    raise ValueError(f"shape must be (H, W) with H, W >= 1; got {shape}")
  return shape
