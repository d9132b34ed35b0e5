"""fastMRI image-quality metrics (NMSE, PSNR, SSIM) in ``jax.numpy``.

Inputs are real magnitude images, ``target`` first as in fastMRI's
``evaluate.py``: one slice ``[H, W]`` or a volume ``[slices, H, W]``. On a
volume, fastMRI scores

  NMSE = ||target - pred||^2 / ||target||^2          over the whole volume,
  PSNR = 20 log10(L) - 10 log10(mean((target - pred)^2))   over the volume,
  SSIM = mean over slices of SSIM(target_s, pred_s; L),

with ONE dynamic range ``L = max(target)`` of the whole volume, after
cropping both to the same centre region (`center_crop`). SSIM is the
definition of `fdl.losses.ssim` (7 x 7 uniform window, K1 = 0.01,
K2 = 0.03, sample covariance, valid region), which this module reuses.

`nmse`, `psnr` and `ssim` return float32 scalars and are `jax.jit`-able;
`slice_metrics` scores every slice on its own, `volume_metrics` returns the
fastMRI numbers for one volume as Python floats.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fdl import losses as _losses

__all__ = [
    "center_crop",
    "nmse",
    "psnr",
    "slice_metrics",
    "ssim",
    "volume_metrics",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike

_WIN_SIZE = 7  # fastMRI / skimage SSIM window


def _describe(x: Array) -> str:
  return f"{jnp.dtype(x.dtype).name} {tuple(x.shape)}"


def _check_images(target: ArrayLike, pred: ArrayLike, *, ranks=(2, 3),
                  layout: str = "[H, W] or [slices, H, W]",
                  min_size: int = 1) -> tuple[Array, Array]:
  """Static checks at the boundary; returns float (>= float32) arrays."""
  target, pred = jnp.asarray(target), jnp.asarray(pred)
  for name, arr in (("target", target), ("pred", pred)):
    if jnp.issubdtype(arr.dtype, jnp.complexfloating):
      raise ValueError(f"{name} must be real magnitude images {layout}; got "
                       f"{_describe(arr)} (take jnp.abs of complex images first)")
  if target.ndim not in ranks:
    raise ValueError(f"target must be real magnitude images {layout}; "
                     f"got {_describe(target)}")
  if pred.shape != target.shape:
    raise ValueError(f"pred must have the shape of target; got pred "
                     f"{_describe(pred)} and target {_describe(target)}")
  height, width = target.shape[-2:]
  if height < min_size or width < min_size:
    raise ValueError(f"target images must be at least {min_size} x {min_size} "
                     f"for SSIM's {_WIN_SIZE} x {_WIN_SIZE} window; got "
                     f"{_describe(target)}")
  dtype = jnp.promote_types(jnp.result_type(target.dtype, pred.dtype), jnp.float32)
  return target.astype(dtype), pred.astype(dtype)


def _check_data_range(data_range, target: Array, batch: tuple[int, ...] = ()
                      ) -> Array:
  if isinstance(data_range, (int, float, np.integer, np.floating)) \
      and not data_range > 0:
    raise ValueError(f"data_range must be positive; got {data_range!r}")
  data_range = jnp.asarray(data_range)
  if jnp.issubdtype(data_range.dtype, jnp.complexfloating) \
      or data_range.shape not in ((), batch):
    allowed = "a real scalar" + (f" or [{batch[0]}]" if batch else "")
    raise ValueError(f"data_range must be {allowed}; got {_describe(data_range)}")
  return data_range.astype(target.dtype)


def nmse(target: ArrayLike, pred: ArrayLike) -> Array:
  """Normalised mean squared error ``||target - pred||^2 / ||target||^2``.

  Sums run over every element, so a volume gives fastMRI's volume NMSE.

  Args:
    target: real reference image ``[H, W]`` or volume ``[slices, H, W]``.
    pred: real reconstruction, same shape.

  Returns:
    float32 scalar (0 for a perfect reconstruction; inf/NaN for an all-zero
    target).

  Raises:
    ValueError: complex inputs, a rank other than 2 or 3, or mismatched
      shapes.

  Examples:
    >>> import jax.numpy as jnp
    >>> t = jnp.ones((8, 8))
    >>> round(float(nmse(t, 0.9 * t)), 6)  # (0.1)^2
    0.01
  """
  target, pred = _check_images(target, pred)
  return jnp.sum(jnp.square(target - pred)) / jnp.sum(jnp.square(target))


def psnr(target: ArrayLike, pred: ArrayLike, data_range: ArrayLike | None = None
         ) -> Array:
  """Peak signal-to-noise ratio in dB, ``20 log10(L) - 10 log10(MSE)``.

  ``MSE`` is the mean over every element (a volume gives fastMRI's volume
  PSNR); ``L = data_range`` defaults to ``max(target)``, as in fastMRI's
  ``evaluate.psnr`` (= ``skimage.metrics.peak_signal_noise_ratio(target,
  pred, data_range=target.max())``).

  Args:
    target: real reference image ``[H, W]`` or volume ``[slices, H, W]``.
    pred: real reconstruction, same shape.
    data_range: dynamic range ``L``, a positive scalar; default
      ``target.max()``.

  Returns:
    float32 scalar in dB (inf for a perfect reconstruction).

  Raises:
    ValueError: complex inputs, a rank other than 2 or 3, mismatched shapes,
      or a non-positive or non-scalar ``data_range``.

  Examples:
    >>> import jax.numpy as jnp
    >>> t = jnp.zeros((8, 8)).at[0, 0].set(1.0)
    >>> round(float(psnr(t, t + 0.01)), 3)  # MSE = 1e-4, L = 1
    40.0
  """
  target, pred = _check_images(target, pred)
  data_range = (jnp.max(target) if data_range is None
                else _check_data_range(data_range, target))
  mse = jnp.mean(jnp.square(target - pred))
  return 20.0 * jnp.log10(data_range) - 10.0 * jnp.log10(mse)


def ssim(target: ArrayLike, pred: ArrayLike, data_range: ArrayLike | None = None
         ) -> Array:
  """Structural similarity, fastMRI's ``evaluate.ssim`` (mean over slices).

  For a volume, every slice is scored with the SAME ``L = data_range``
  (default: the maximum of the whole target volume) and the slice scores are
  averaged. Per slice this is `fdl.losses.ssim` with a 7 x 7 uniform window,
  K1 = 0.01, K2 = 0.03 and sample covariance over the valid region, equal to
  ``skimage.metrics.structural_similarity(target, pred, data_range=L,
  win_size=7, K1=0.01, K2=0.03, gaussian_weights=False,
  use_sample_covariance=True)``.

  Args:
    target: real reference image ``[H, W]`` or volume ``[slices, H, W]``,
      with ``H, W >= 7``.
    pred: real reconstruction, same shape.
    data_range: dynamic range ``L``, a positive scalar; default
      ``target.max()`` over the whole input.

  Returns:
    float32 scalar, 1 for identical images.

  Raises:
    ValueError: complex inputs, a rank other than 2 or 3, mismatched shapes,
      images smaller than 7 x 7, or a non-positive or non-scalar
      ``data_range``.

  Examples:
    >>> import jax.numpy as jnp
    >>> t = jnp.arange(9 * 10, dtype=jnp.float32).reshape(9, 10) % 5
    >>> round(float(ssim(t, t)), 6)
    1.0
    >>> bool(ssim(t, t + 1.0) < 1.0)
    True
  """
  target, pred = _check_images(target, pred, min_size=_WIN_SIZE)
  data_range = (jnp.max(target) if data_range is None
                else _check_data_range(data_range, target))
  if target.ndim == 2:
    target, pred = target[None], pred[None]
  # fdl.losses.ssim takes (pred, target) with a leading batch axis; the
  # slices are that batch.
  per_slice = _losses.ssim(pred, target, data_range=data_range, win_size=_WIN_SIZE,
                           k1=0.01, k2=0.03)
  return jnp.mean(per_slice)


def slice_metrics(target: ArrayLike, pred: ArrayLike,
                  data_range: ArrayLike | None = None) -> dict[str, Array]:
  """NMSE, PSNR and SSIM of every slice of a volume, each slice on its own.

  Unlike `volume_metrics`, each slice is a separate image: NMSE and MSE are
  normalised per slice and, by default, ``L`` is each slice's own maximum.

  Args:
    target: real reference volume ``[slices, H, W]``, ``H, W >= 7``.
    pred: real reconstruction, same shape.
    data_range: ``L`` for PSNR and SSIM: a positive scalar for all slices,
      or ``[slices]``; default the per-slice ``target`` maximum.

  Returns:
    ``{"nmse": [slices], "psnr": [slices], "ssim": [slices]}``, float32.

  Raises:
    ValueError: as `ssim`, and for a rank other than 3.

  Examples:
    >>> import jax.numpy as jnp
    >>> t = jnp.ones((3, 8, 8)).at[:, 2:5, 3:6].set(2.0)
    >>> {k: v.shape for k, v in slice_metrics(t, 0.9 * t).items()}
    {'nmse': (3,), 'psnr': (3,), 'ssim': (3,)}
  """
  target, pred = _check_images(target, pred, ranks=(3,), layout="[slices, H, W]",
                               min_size=_WIN_SIZE)
  num_slices = target.shape[0]
  if data_range is None:
    data_range = jnp.max(target, axis=(1, 2))
  else:
    data_range = jnp.broadcast_to(
        _check_data_range(data_range, target, (num_slices,)), (num_slices,))
  sq_err = jnp.sum(jnp.square(target - pred), axis=(1, 2))
  mse = sq_err / (target.shape[1] * target.shape[2])
  return {
      "nmse": sq_err / jnp.sum(jnp.square(target), axis=(1, 2)),
      "psnr": 20.0 * jnp.log10(data_range) - 10.0 * jnp.log10(mse),
      "ssim": _losses.ssim(pred, target, data_range=data_range, win_size=_WIN_SIZE,
                           k1=0.01, k2=0.03),
  }


def volume_metrics(target: ArrayLike, pred: ArrayLike,
                   data_range: ArrayLike | None = None) -> dict[str, float]:
  """fastMRI's per-volume NMSE, PSNR and SSIM, as Python floats.

  NMSE and PSNR over the whole volume, SSIM as the mean over slices, all with
  one ``L = data_range`` (default: the maximum of the whole target volume).
  Crop both volumes with `center_crop` first, as fastMRI does; average the
  results over volumes to report a data set.

  Args:
    target: real reference volume ``[slices, H, W]``, ``H, W >= 7``.
    pred: real reconstruction, same shape.
    data_range: positive scalar ``L``; default ``target.max()``.

  Returns:
    ``{"nmse": float, "psnr": float, "ssim": float}``.

  Raises:
    ValueError: as `ssim`, and for a rank other than 3.

  Examples:
    >>> import jax.numpy as jnp
    >>> t = jnp.ones((2, 8, 8)).at[:, 2:5, 3:6].set(2.0)
    >>> m = volume_metrics(t, t)
    >>> m["nmse"], m["ssim"]
    (0.0, 1.0)
  """
  target, pred = _check_images(target, pred, ranks=(3,), layout="[slices, H, W]",
                               min_size=_WIN_SIZE)
  if data_range is None:
    data_range = jnp.max(target)
  return {
      "nmse": float(nmse(target, pred)),
      "psnr": float(psnr(target, pred, data_range)),
      "ssim": float(ssim(target, pred, data_range)),
  }


def center_crop(x: ArrayLike, shape: tuple[int, int]) -> Array:
  """Crops the last two axes to ``shape`` around the centre, as fastMRI does.

  The crop starts at ``((H - h) // 2, (W - w) // 2)``, fastMRI's
  ``center_crop``: for an odd surplus the extra row/column is dropped at the
  end.

  Args:
    x: array ``[..., H, W]`` (NumPy arrays stay NumPy; other inputs become
      jax arrays).
    shape: ``(h, w)`` with ``0 < h <= H`` and ``0 < w <= W``.

  Returns:
    ``x[..., top:top + h, left:left + w]``, same dtype.

  Raises:
    ValueError: ``x`` has fewer than 2 axes, or ``shape`` is not two ints
      that fit inside ``(H, W)``.

  Examples:
    >>> import numpy as np
    >>> center_crop(np.arange(7 * 8).reshape(7, 8), (2, 3))
    array([[18, 19, 20],
           [26, 27, 28]])
  """
  if not isinstance(x, (np.ndarray, jax.Array)):
    x = jnp.asarray(x)
  if x.ndim < 2:
    raise ValueError(f"x must have at least 2 axes [..., H, W]; got shape {x.shape}")
  height, width = x.shape[-2:]
  try:
    h, w = shape
  except (TypeError, ValueError):
    h = w = None
  if (not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
              for v in (h, w)) or not (0 < h <= height and 0 < w <= width)):
    raise ValueError(f"shape must be two ints (h, w) with 0 < h <= {height} and "
                     f"0 < w <= {width}; got {shape!r}")
  top, left = (height - h) // 2, (width - w) // 2
  return x[..., top:top + h, left:left + w]
