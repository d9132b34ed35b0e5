"""The image processing behind "implicit data crimes", to reproduce them on purpose.

Public MRI data sets often hold k-space that was never acquired: it was
synthesized from images that had been processed first (Shimron, Tamir, Wang and
Lustig, "Implicit data crimes: machine learning bias arising from misuse of
public data", PNAS 2022). Two such pipelines, as pure host functions on NumPy
arrays:

- zero-padding: a scanner acquires a ``H/f x W/f`` block of k-space and the
  vendor (or a data set's author) zero-pads it to ``H x W`` to display a
  smoother, interpolated image. `zero_pad_kspace` keeps the centre block of a
  fully sampled ``H x W`` k-space and zeros the rest: the same data a
  zero-padded acquisition of padding factor ``f`` would store.
- JPEG: magnitude images are stored lossy-compressed; k-space is later
  synthesized from them. `jpeg_roundtrip` compresses and decodes a magnitude
  image at a JPEG quality, and `synthesize_kspace` turns an image into
  multi-coil k-space through coil maps, ``k_c = F(S_c x)``.

`fdl.mri.audit` detects both marks (`zero_padded`, `conjugate_symmetric`).
"""

from __future__ import annotations

import io

import numpy as np

from fdl.mri.fft import fft2c_host, ifft2c_host


def padded_block(size: int, factor: float) -> slice:
  """The centred index range an acquisition of ``size / factor`` samples fills.

  Args:
    size: the full (padded) number of samples along an axis, >= 1.
    factor: the zero-padding factor, >= 1.

  Returns:
    ``slice(start, start + n)`` with ``n = max(1, round(size / factor))``, placed
    so that the DC sample (index ``size // 2`` on the centered grid) keeps its
    index and the block is as symmetric about it as ``n`` allows.
  """
  n = max(1, min(size, int(round(size / factor))))
  start = size // 2 - n // 2
  return slice(start, start + n)


def zero_pad_kspace(kspace: np.ndarray, factor: float) -> np.ndarray:
  """K-space as a zero-padded acquisition of padding factor `factor` would store it.

  Keeps the centred ``round(H / factor) x round(W / factor)`` block of
  `kspace` and sets everything outside it to exactly zero: the k-space of the
  acquired low-resolution image sinc-interpolated to ``H x W``.

  Args:
    kspace: complex ``[..., H, W]``, centered (DC at ``(H // 2, W // 2)``).
    factor: padding factor, >= 1 (1 returns a copy of `kspace`).

  Returns:
    Array of `kspace`'s shape and dtype.

  Raises:
    ValueError: `factor` < 1 or not a number, or `kspace` not complex [..., H, W].
  """
  if isinstance(factor, bool) or not isinstance(factor, (int, float, np.number)) or (
      not factor >= 1):
    raise ValueError(f"factor must be a number >= 1 (the zero-padding factor); got "
                     f"{factor!r}")
  kspace = np.asarray(kspace)
  if not np.iscomplexobj(kspace) or kspace.ndim < 2:
    raise ValueError(f"kspace must be complex [..., H, W]; got {kspace.dtype} "
                     f"{kspace.shape}")
  rows = padded_block(kspace.shape[-2], float(factor))
  cols = padded_block(kspace.shape[-1], float(factor))
  out = np.zeros_like(kspace)
  out[..., rows, cols] = kspace[..., rows, cols]
  return out


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
  """A magnitude image after 8-bit JPEG compression at `quality` and decoding.

  The image is scaled by its maximum to ``[0, 255]``, rounded to 8 bits (as a
  greyscale JPEG stores it), compressed by Pillow at `quality`, decoded and
  scaled back.

  Args:
    image: real, non-negative ``[H, W]`` (a magnitude image).
    quality: JPEG quality, an int in [1, 100] (Pillow's scale; 95 and above
      disable little of the quantization, lower values discard more detail).

  Returns:
    float32 ``[H, W]`` in the units of `image`.

  Raises:
    ValueError: `quality` outside [1, 100], or `image` not real, finite,
      non-negative 2-D.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top  (only this function)

  if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not (
      1 <= quality <= 100):
    raise ValueError(f"quality must be an int in [1, 100] (JPEG quality); got {quality!r}")
  image = np.asarray(image)
  if (image.ndim != 2 or np.iscomplexobj(image) or not np.all(np.isfinite(image))
      or np.any(image < 0)):
    raise ValueError(f"image must be a real, finite, non-negative [H, W] magnitude image; "
                     f"got {image.dtype} {image.shape}")
  peak = float(image.max())
  if peak == 0:
    return np.zeros(image.shape, np.float32)
  pixels = np.clip(np.round(image / peak * 255.0), 0, 255).astype(np.uint8)
  buffer = io.BytesIO()
  Image.fromarray(pixels, mode="L").save(buffer, format="JPEG", quality=int(quality))
  decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("L"))
  return (decoded.astype(np.float64) * (peak / 255.0)).astype(np.float32)


def synthesize_kspace(image: np.ndarray, maps: np.ndarray) -> np.ndarray:
  """Multi-coil k-space of an image, ``k_c = F(S_c x)``, with no noise.

  Args:
    image: real or complex ``[S, H, W]``.
    maps: complex ``[S, C, H, W]`` coil sensitivities.

  Returns:
    complex64 ``[S, C, H, W]``, centered orthonormal FFT as `fdl.mri.fft2c`.
  """
  image, maps = np.asarray(image), np.asarray(maps)
  if image.ndim != 3 or maps.ndim != 4 or maps.shape[:1] + maps.shape[2:] != image.shape:
    raise ValueError(f"image must be [S, H, W] and maps [S, C, H, W] with the same S, H, "
                     f"W; got image {image.shape}, maps {maps.shape}")
  coil_images = maps.astype(np.complex128) * image[:, None]
  return fft2c_host(coil_images).astype(np.complex64)


def coil_combine(kspace: np.ndarray, maps: np.ndarray) -> np.ndarray:
  """The SENSE coil combination ``x = sum_c conj(S_c) F^-1(k_c)``, complex128 ``[S, H, W]``.

  The image a scanner's reconstruction would export (before its magnitude is
  taken), with maps normalized to ``sum_c |S_c|^2 = 1``.
  """
  kspace, maps = np.asarray(kspace), np.asarray(maps)
  if kspace.shape != maps.shape or kspace.ndim != 4:
    raise ValueError(f"kspace and maps must both be [S, C, H, W]; got {kspace.shape} and "
                     f"{maps.shape}")
  coil_images = ifft2c_host(kspace.astype(np.complex128))
  return np.sum(np.conj(maps) * coil_images, axis=1)
