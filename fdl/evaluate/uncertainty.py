"""Uncertainty of learned MRI reconstructions, and a hallucination probe.

Two estimators of a per-pixel predictive distribution, each returning a mean
and a standard-deviation map (float32 ``[S, H, W]``) of the magnitude image:

* `mc_dropout` (Gal & Ghahramani 2016): the model is applied with
  ``train=True`` ``T`` times, each with its own dropout draw; the spread of
  the draws is the model's (epistemic) uncertainty as dropout sees it.
* `ensemble` (Lakshminarayanan et al. 2017): ``K`` independently trained
  models (e.g. `fdl.tasks.reconstruction.load_trained` of runs with different
  seeds); the spread of their reconstructions.

Neither is the error. Whether the std says where the error is, is measured by
`error_std_correlation` (Pearson between ``|mean - target|`` and ``std`` over
the pixels of the object) and by `calibration` (pixels binned by predicted
std; for a calibrated Gaussian ``E|err| = std sqrt(2 / pi)`` and ``|err| <=
std`` for 68.3 % of pixels).

The hallucination probe (`insert_lesion`, `lesion_probe`) puts a structure
the model never saw in training (a small disc of uniform intensity with a
sharp edge; the training phantoms are smooth-textured ellipses) into fully
sampled test k-space, consistently through the coil maps, and asks whether
the reconstruction of the under-sampled data keeps it, removes it, or adds
structure elsewhere, and whether the std map rises where it does.

References:
  Y. Gal, Z. Ghahramani, "Dropout as a Bayesian approximation", ICML 2016.
  B. Lakshminarayanan, A. Pritzel, C. Blundell, "Simple and scalable
  predictive uncertainty estimation using deep ensembles", NeurIPS 2017.
  V. Antun et al., "On instabilities of deep learning in image
  reconstruction", PNAS 117 (2020) 30088-30095.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fdl import models
from fdl.models.reconstruct import check_recon_inputs
from fdl.mri.fft import fft2c_host, ifft2c_host

GAUSSIAN_WITHIN_1_STD = math.erf(1 / math.sqrt(2))  # 0.6827
GAUSSIAN_WITHIN_2_STD = math.erf(2 / math.sqrt(2))  # 0.9545
MEAN_ABS_PER_STD = math.sqrt(2 / math.pi)  # E|e| / sigma for e ~ N(0, sigma^2)


# --- the two estimators ------------------------------------------------------------


def _host_inputs(model, kspace, mask, maps):
  """Checked host arrays ``kspace [S, C, H, W]``, ``mask [S, ...]``, ``maps`` or None."""
  kspace = np.asarray(jax.device_get(kspace))
  if kspace.ndim != 4 or not np.iscomplexobj(kspace):
    raise ValueError("kspace must be complex64 [slices, coils, H, W]; got "
                     f"{kspace.dtype} {kspace.shape}")
  kspace = kspace.astype(np.complex64)
  mask = np.asarray(jax.device_get(mask))
  if np.iscomplexobj(mask) or mask.ndim != 4:
    raise ValueError("mask must be real [slices or 1, 1, 1 or H, W]; got "
                     f"{mask.dtype} {mask.shape}")
  try:
    np.broadcast_shapes(mask.shape, kspace.shape)
  except ValueError:
    raise ValueError(f"mask of shape {mask.shape} does not broadcast to kspace of shape "
                     f"{kspace.shape}") from None
  mask = np.ascontiguousarray(np.broadcast_to(mask.astype(np.float32),
                                              kspace.shape[:1] + mask.shape[1:]))
  if maps is not None:
    maps = np.asarray(jax.device_get(maps)).astype(np.complex64)
  check_recon_inputs(kspace, mask, maps,
                     needs_maps=bool(getattr(model, "needs_maps", False)),
                     model_name=type(model).__name__)
  return kspace * mask, mask, maps


@functools.lru_cache(maxsize=16)
def _mc_sampler(model: nn.Module, num_samples: int, ddof: int):
  """One jitted sampler per (model, T, ddof); jax caches it per input shape."""

  def one_slice(variables, kspace, mask, maps, key):
    maps = None if maps is None else maps[None]
    out = model.apply(variables, kspace[None], mask[None], maps, train=True,
                      rngs={"dropout": key})
    return out[0].astype(jnp.float32)

  def sample(variables, kspace, mask, maps, key, slice_ids):
    slice_keys = jax.vmap(jax.random.fold_in, (None, 0))(key, slice_ids)
    forward = jax.vmap(one_slice, (None, 0, 0, 0, 0))

    def welford(carry, i):
      # Running mean and sum of squared deviations: no cancellation in float32.
      mean, sq_dev = carry
      draw = forward(variables, kspace, mask, maps,
                     jax.vmap(jax.random.fold_in, (0, None))(slice_keys, i))
      delta = draw - mean
      mean = mean + delta / (i + 1).astype(jnp.float32)
      return (mean, sq_dev + delta * (draw - mean)), None

    shape = kspace.shape[:1] + kspace.shape[2:]
    zeros = jnp.zeros(shape, jnp.float32)
    (mean, sq_dev), _ = jax.lax.scan(welford, (zeros, zeros),
                                     jnp.arange(num_samples, dtype=jnp.uint32))
    return mean, jnp.sqrt(sq_dev / (num_samples - ddof))

  return jax.jit(sample)


def _check_count(name: str, value, ddof: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or (
      value < ddof + 1):
    raise ValueError(f"{name} must be an int >= {ddof + 1} (ddof={ddof}); got {value!r}")
  return int(value)


def _check_ddof(ddof) -> int:
  if ddof not in (0, 1):
    raise ValueError(f"ddof must be 0 (population std) or 1 (sample std); got {ddof!r}")
  return int(ddof)


def mc_dropout(model: nn.Module, variables, kspace, mask, maps=None, *, key,
               num_samples: int, batch_size: int = 8, ddof: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
  """Monte-Carlo dropout: mean and std of ``T`` stochastic reconstructions.

  Draw ``t`` of slice ``s`` is ``model.apply(variables, ..., train=True,
  rngs={"dropout": fold_in(fold_in(key, s), t)})`` on that slice alone, so a
  slice's draws do not depend on the other slices or on `batch_size`. The
  ``T`` draws run inside one jitted `jax.lax.scan` (compiled once per model,
  ``T`` and input shape, and cached), accumulating the mean and the squared
  deviations by Welford's update in float32.

  ``train=True`` must change nothing but dropout: models with batch
  statistics (``"batch_stats"`` in `variables`) are refused. A model with
  dropout rate 0 gives std 0.

  Args:
    model: a reconstruction model (`fdl.models.reconstruct`'s interface) with
      dropout, e.g. ``ReconUNet(dropout=0.1)``.
    variables: its variables, e.g. ``{"params": params}``.
    kspace: complex ``[S, C, H, W]``; multiplied by `mask` here.
    mask: real, ``[S or 1, 1, 1, W]`` or ``[S or 1, 1, H, W]``.
    maps: complex ``[S, C, H, W]`` or None (models that need no maps).
    key: a `jax.random` key.
    num_samples: ``T``, the number of draws (>= 2 for ``ddof=1``).
    batch_size: slices per compiled call (bounds memory); the result does not
      depend on it.
    ddof: 1 (default): sample std ``sqrt(sum (x - mean)^2 / (T - 1))``;
      0: population std.

  Returns:
    ``(mean, std)``, float32 NumPy ``[S, H, W]`` each.

  Raises:
    ValueError: bad shapes or dtypes (named), ``batch_stats`` in `variables`,
      too few samples, a bad `batch_size` or `ddof`.
  """
  ddof = _check_ddof(ddof)
  num_samples = _check_count("num_samples", num_samples, ddof)
  batch_size = _check_count("batch_size", batch_size, 0)
  if "batch_stats" in variables:
    raise ValueError("mc_dropout applies the model with train=True; variables hold "
                     "'batch_stats', so train=True would also switch batch norm to "
                     "batch statistics. Use a model without batch norm.")
  kspace, mask, maps = _host_inputs(model, kspace, mask, maps)
  sampler = _mc_sampler(model, num_samples, ddof)
  num_slices = kspace.shape[0]
  chunk = min(batch_size, num_slices)
  outputs = []
  for start in range(0, num_slices, chunk):
    stop = min(start + chunk, num_slices)
    # The last chunk is padded with copies of its last slice (one compilation);
    # their draws are dropped.
    ids = np.minimum(np.arange(start, start + chunk), num_slices - 1).astype(np.uint32)
    inputs = [None if x is None else x[ids] for x in (kspace, mask, maps)]
    mean, std = sampler(variables, *jax.device_put(inputs), key, jax.device_put(ids))
    outputs.append((mean, std, stop - start))
  mean = np.concatenate([np.asarray(m)[:n] for m, _, n in outputs])
  std = np.concatenate([np.asarray(s)[:n] for _, s, n in outputs])
  return mean.astype(np.float32), std.astype(np.float32)


def ensemble(members: Sequence[tuple[nn.Module, Any]], kspace, mask, maps=None, *,
             batch_size: int = 8, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
  """Deep ensemble: mean and std of the members' reconstructions.

  Each member runs `fdl.models.reconstruct` (``train=False``; compiled once
  per model and shape); the statistics are taken in float64 on the host, so
  identical members give a std of exactly 0.

  Args:
    members: ``K`` pairs ``(model, variables)``, e.g. from
      `fdl.tasks.reconstruction.load_trained` of runs with different seeds.
    kspace, mask, maps: as `mc_dropout`.
    batch_size: slices per forward pass.
    ddof: 1 (default, sample std over the ``K`` members) or 0.

  Returns:
    ``(mean, std)``, float32 NumPy ``[S, H, W]`` each.

  Raises:
    ValueError: fewer than ``ddof + 1`` members, or bad inputs (named).
  """
  ddof = _check_ddof(ddof)
  members = list(members)
  _check_count("len(members)", len(members), ddof)
  images = []
  for model, variables in members:
    kspace_in, mask_in, maps_in = _host_inputs(model, kspace, mask, maps)
    images.append(models.reconstruct(model, variables, kspace_in, mask_in, maps_in,
                                     batch_size=batch_size))
  stack = np.stack(images).astype(np.float64)
  return (stack.mean(0).astype(np.float32),
          stack.std(0, ddof=ddof).astype(np.float32))


# --- how well the std tells the error ----------------------------------------------


def fill_holes(mask: np.ndarray) -> np.ndarray:
  """`mask` ``[..., H, W]`` plus every pixel not connected (4-neighbours) to the border.

  >>> ring = np.pad(np.pad(np.zeros((1, 1), bool), 1, constant_values=True), 1)
  >>> fill_holes(ring).astype(int)[1:4, 1:4]
  array([[1, 1, 1],
         [1, 1, 1],
         [1, 1, 1]])
  """
  mask = np.asarray(mask, bool)
  free = ~mask
  reach = np.zeros_like(mask)
  reach[..., 0, :], reach[..., -1, :] = free[..., 0, :], free[..., -1, :]
  reach[..., :, 0], reach[..., :, -1] = free[..., :, 0], free[..., :, -1]
  while True:  # grow the background reached from the border, one pixel a pass
    grown = reach.copy()
    grown[..., 1:, :] |= reach[..., :-1, :]
    grown[..., :-1, :] |= reach[..., 1:, :]
    grown[..., :, 1:] |= reach[..., :, :-1]
    grown[..., :, :-1] |= reach[..., :, 1:]
    grown &= free
    if np.array_equal(grown, reach):
      return ~reach
    reach = grown


def object_region(target, rel_threshold: float = 0.05) -> np.ndarray:
  """The object: ``target > rel_threshold * max(target)``, holes filled.

  Dark structures inside the object (signal voids) count as object: errors
  there matter as much as anywhere in the anatomy.

  Args:
    target: float ``[..., H, W]`` magnitude reference (one volume: the
      maximum is the volume's).
    rel_threshold: fraction of the maximum, in [0, 1).

  Returns:
    bool NumPy array of `target`'s shape.
  """
  target = np.asarray(target)
  if not 0 <= rel_threshold < 1:
    raise ValueError(f"rel_threshold must be in [0, 1); got {rel_threshold!r}")
  return fill_holes(target > rel_threshold * target.max())


def _pixels(mean, std, target, mask) -> tuple[np.ndarray, np.ndarray]:
  """``|mean - target|`` and ``std`` at the pixels of `mask`, float64."""
  mean, std, target = (np.asarray(x, np.float64) for x in (mean, std, target))
  mask = np.asarray(mask, bool)
  for name, x in (("std", std), ("target", target), ("object_mask", mask)):
    if x.shape != mean.shape:
      raise ValueError(f"{name} must have mean's shape {mean.shape}; got {x.shape}")
  if not mask.any():
    raise ValueError("object_mask selects no pixel")
  return np.abs(mean - target)[mask], std[mask]


def error_std_correlation(mean, std, target, object_mask) -> float:
  """Pearson correlation of ``|mean - target|`` and ``std`` over the object's pixels.

  Args:
    mean: float ``[S, H, W]`` (or any shape) reconstruction.
    std: its per-pixel standard deviation, same shape.
    target: the reference, same shape.
    object_mask: bool, same shape; the pixels that count.

  Returns:
    The coefficient in [-1, 1] (float64), NaN when either is constant.
  """
  error, spread = _pixels(mean, std, target, object_mask)
  error, spread = error - error.mean(), spread - spread.mean()
  denom = math.sqrt(float(np.sum(error * error)) * float(np.sum(spread * spread)))
  return float(np.sum(error * spread) / denom) if denom > 0 else float("nan")


def calibration(mean, std, target, object_mask, *, num_bins: int = 10,
                coverage_levels: Sequence[float] = (0.5, 1.0, 1.5, 2.0, 2.5, 3.0)
                ) -> dict:
  """Calibration of the std as a Gaussian error bar, over the object's pixels.

  Pixels are sorted by predicted std and split into `num_bins` bins of equal
  count (ties split in a fixed order). Per bin: the mean and RMS predicted
  std, the observed mean ``|err|`` and RMSE, and the mean ``|err|`` that a
  calibrated Gaussian predicts, ``mean(std) * sqrt(2 / pi)``. Overall: the
  fraction of pixels with ``|err| <= k std`` for each `coverage_levels` ``k``
  next to the Gaussian's ``erf(k / sqrt 2)`` (0.683 at 1, 0.954 at 2), and
  ``rmse / rms_std`` (1 if calibrated; > 1: the std is too small).

  Args:
    mean, std, target, object_mask: as `error_std_correlation`.
    num_bins: number of bins (>= 1, at most the number of pixels).
    coverage_levels: the ``k`` of the coverage table (> 0).

  Returns:
    A JSON-able dict: ``num_pixels``, ``bins`` (a list of dicts with
    ``std_low``, ``std_high``, ``mean_std``, ``rms_std``,
    ``expected_mean_abs_error``, ``mean_abs_error``, ``rmse``, ``count``),
    ``within_1_std``, ``within_2_std``, ``expected_within_1_std``,
    ``expected_within_2_std``, ``coverage`` (``{"k": [...], "observed":
    [...], "gaussian": [...]}``), ``rmse``, ``rms_std``, ``rmse_over_rms_std``.
  """
  error, spread = _pixels(mean, std, target, object_mask)
  if isinstance(num_bins, bool) or not isinstance(num_bins, (int, np.integer)) or not (
      1 <= num_bins <= error.size):
    raise ValueError(f"num_bins must be an int in [1, {error.size}] (the object's "
                     f"pixels); got {num_bins!r}")
  levels = [float(k) for k in coverage_levels]
  if not levels or min(levels) <= 0:
    raise ValueError(f"coverage_levels must be non-empty and > 0; got {coverage_levels!r}")
  order = np.argsort(spread, kind="stable")
  bins = []
  for part in np.array_split(order, int(num_bins)):
    e, s = error[part], spread[part]
    bins.append({"std_low": float(s.min()), "std_high": float(s.max()),
                 "mean_std": float(s.mean()), "rms_std": float(np.sqrt(np.mean(s * s))),
                 "expected_mean_abs_error": float(s.mean() * MEAN_ABS_PER_STD),
                 "mean_abs_error": float(e.mean()),
                 "rmse": float(np.sqrt(np.mean(e * e))), "count": int(part.size)})
  rmse = float(np.sqrt(np.mean(error * error)))
  rms_std = float(np.sqrt(np.mean(spread * spread)))
  return {
      "num_pixels": int(error.size),
      "bins": bins,
      "within_1_std": float(np.mean(error <= spread)),
      "within_2_std": float(np.mean(error <= 2 * spread)),
      "expected_within_1_std": GAUSSIAN_WITHIN_1_STD,
      "expected_within_2_std": GAUSSIAN_WITHIN_2_STD,
      "coverage": {"k": levels,
                   "observed": [float(np.mean(error <= k * spread)) for k in levels],
                   "gaussian": [math.erf(k / math.sqrt(2)) for k in levels]},
      "rmse": rmse,
      "rms_std": rms_std,
      "rmse_over_rms_std": rmse / rms_std if rms_std > 0 else float("inf"),
  }


# --- the hallucination probe ---------------------------------------------------------


def disc_mask(shape: Sequence[int], center: Sequence[float], radius: float) -> np.ndarray:
  """Pixels whose centres lie within `radius` of `center` (row, column).

  >>> disc_mask((5, 5), (2, 2), 1).astype(int)
  array([[0, 0, 0, 0, 0],
         [0, 0, 1, 0, 0],
         [0, 1, 1, 1, 0],
         [0, 0, 1, 0, 0],
         [0, 0, 0, 0, 0]])
  """
  height, width = (int(d) for d in shape)
  if not radius > 0:
    raise ValueError(f"radius must be > 0 pixels; got {radius!r}")
  rows, cols = np.mgrid[:height, :width]
  return (rows - center[0]) ** 2 + (cols - center[1]) ** 2 <= radius ** 2


def _erode(mask: np.ndarray, radius: float) -> np.ndarray:
  """Pixels ``p`` of `mask` [H, W] whose whole disc of `radius` lies in `mask`."""
  reach = int(math.ceil(radius))
  padded = np.pad(mask, reach, constant_values=False)
  height, width = mask.shape
  out = np.ones_like(mask)
  for dy in range(-reach, reach + 1):
    for dx in range(-reach, reach + 1):
      if dy * dy + dx * dx <= radius * radius:
        out &= padded[reach + dy:reach + dy + height, reach + dx:reach + dx + width]
  return out


def lesion_center(inside: np.ndarray, radius: float, *, margin: float = 2.0,
                  prefer: Sequence[float] = (0.4, 0.6)) -> tuple[int, int]:
  """A lesion centre whose disc (plus `margin` pixels) lies inside the object.

  Args:
    inside: bool ``[H, W]``, the object (e.g. `object_region` of one slice).
    radius: the lesion's radius, pixels.
    margin: extra pixels of object required around the disc (room for the
      ring that `lesion_probe` compares against).
    prefer: the wanted position as fractions of ``(H, W)``; the admissible
      pixel nearest to it is chosen.

  Returns:
    ``(row, column)``.

  Raises:
    ValueError: no pixel of the object admits the disc.
  """
  inside = np.asarray(inside, bool)
  if inside.ndim != 2:
    raise ValueError(f"inside must be a bool [H, W] mask; got shape {inside.shape}")
  candidates = np.argwhere(_erode(inside, radius + margin))
  if not len(candidates):
    raise ValueError(f"no pixel of the object is {radius + margin:g} pixels (radius "
                     f"{radius:g} + margin {margin:g}) from its edge; use a smaller lesion")
  want = np.asarray(prefer, np.float64) * np.asarray(inside.shape)
  best = candidates[np.argmin(np.sum((candidates - want) ** 2, axis=1))]
  return int(best[0]), int(best[1])


def insert_lesion(kspace, maps, target, disc, value: float
                  ) -> tuple[np.ndarray, np.ndarray]:
  """Replaces the object inside `disc` by a uniform disc of magnitude `value`.

  With ``x = sum_c conj(S_c) F^H k_c``, the SENSE combination of the fully
  sampled k-space (``sum_c |S_c|^2 = 1``), and ``theta`` the phase of ``x``
  summed over the disc (the object's local phase; 0 where that sum is 0),
  the combined image becomes ``x' = value exp(i theta)`` inside the disc and
  stays ``x`` outside:

    d = (value exp(i theta) - x) [disc],   k'_c = k_c + F(S_c d),
    target' = value inside the disc, target outside.

  The lesion is added to the measured k-space through the coil maps, so the
  coils see one changed object and the noise outside the disc is kept; in
  the disc the combined image is exactly the uniform disc (its sharp edge and
  flat, texture-free inside are what no training phantom has).

  Args:
    kspace: complex ``[S, C, H, W]``, fully sampled.
    maps: complex ``[S, C, H, W]`` coil maps (the true ones where known).
    target: float ``[S, H, W]`` magnitude reference.
    disc: bool ``[H, W]`` (every slice) or ``[S, H, W]``.
    value: the lesion's magnitude (above the surroundings: bright; 0: a void).

  Returns:
    ``(kspace', target')``: complex64 ``[S, C, H, W]``, float32 ``[S, H, W]``.

  Raises:
    ValueError: shapes that do not match (named), or ``value < 0``.
  """
  kspace = np.asarray(kspace)
  maps = np.asarray(maps)
  target = np.asarray(target, np.float64)
  if kspace.ndim != 4 or not np.iscomplexobj(kspace):
    raise ValueError(f"kspace must be complex [S, C, H, W]; got {kspace.dtype} "
                     f"{kspace.shape}")
  if maps.shape != kspace.shape:
    raise ValueError(f"maps must have kspace's shape {kspace.shape}; got {maps.shape}")
  if target.shape != kspace.shape[:1] + kspace.shape[2:]:
    raise ValueError(f"target must be [S, H, W] = {kspace.shape[:1] + kspace.shape[2:]}; "
                     f"got {target.shape}")
  disc = np.broadcast_to(np.asarray(disc, bool), target.shape)
  if not value >= 0:
    raise ValueError(f"value must be a magnitude >= 0; got {value!r}")
  maps = maps.astype(np.complex128)
  combined = np.sum(np.conj(maps) * ifft2c_host(kspace.astype(np.complex128)), axis=1)
  local = np.sum(np.where(disc, combined, 0), axis=(-2, -1), keepdims=True)
  phase = np.where(np.abs(local) > 0, np.exp(1j * np.angle(local)), 1.0)
  lesion = np.where(disc, float(value) * phase - combined, 0)
  new_kspace = kspace + fft2c_host(maps * lesion[:, None])
  new_target = np.where(disc, float(value), target)
  return new_kspace.astype(np.complex64), new_target.astype(np.float32)


def lesion_rings(shape: Sequence[int], center: Sequence[float], radius: float, *,
                 gap: float = 1.0, width: float | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
  """The disc and the ring around it that `lesion_probe` compares.

  Returns:
    ``(disc, ring)``, bool ``[H, W]``: ``d <= radius`` and
    ``radius + gap < d <= radius + gap + width`` (`width` default: `radius`).
  """
  width = radius if width is None else width
  disc = disc_mask(shape, center, radius)
  ring = disc_mask(shape, center, radius + gap + width) & ~disc_mask(
      shape, center, radius + gap)
  return disc, ring


def lesion_probe(*, reference, reference_lesion, recon, recon_lesion, std, std_lesion,
                 disc, ring, outside=None) -> dict:
  """Whether a reconstruction keeps, removes or spreads an inserted lesion.

  All images are float ``[S, H, W]`` (one lesion per slice); `disc` and
  `ring` bool ``[S, H, W]`` or ``[H, W]``. With ``C(x) = mean_disc(x) -
  mean_ring(x)`` per slice:

  * ``reference_contrast``: ``C(reference_lesion) - C(reference)``, the
    lesion's true contrast;
  * ``recon_contrast``: ``C(recon_lesion) - C(recon)``, what of it the
    reconstruction shows (the lesion-free reconstruction is subtracted, so a
    bias of the model at that place does not count as the lesion);
  * ``kept_fraction``: their ratio (1: kept, 0: removed, < 0: inverted);
  * ``lesion_error``: mean ``|recon_lesion - reference_lesion|`` in the disc;
  * ``spill``: max over `outside` pixels (default: beyond the ring) of
    ``|recon_lesion - recon|`` over ``|reference_contrast|``: structure the
    lesion made appear elsewhere (aliasing copies not undone; 0 for the
    reference);
  * ``std_disc``, ``std_ring`` (means of `std_lesion` there), their ratio
    ``std_disc_over_ring``, and ``std_disc_without_lesion`` (mean of `std`
    in the disc), so the rise of the uncertainty is visible.

  Returns:
    A JSON-able dict: each quantity above as the mean over slices, and under
    ``per_slice`` as lists.
  """
  images = [np.asarray(x, np.float64) for x in
            (reference, reference_lesion, recon, recon_lesion, std, std_lesion)]
  shape = images[0].shape
  if len(shape) != 3 or any(x.shape != shape for x in images):
    raise ValueError("reference, reference_lesion, recon, recon_lesion, std and "
                     f"std_lesion must all be [S, H, W] of one shape; got "
                     f"{[x.shape for x in images]}")
  ref, ref_les, rec, rec_les, std, std_les = images
  disc = np.broadcast_to(np.asarray(disc, bool), shape)
  ring = np.broadcast_to(np.asarray(ring, bool), shape)
  if outside is None:
    grown = disc | ring
    reach = np.zeros_like(grown)
    for s in range(shape[0]):  # the ring's outer edge, one pixel further
      reach[s] = ~_erode(~grown[s], 1.0)
    outside = ~reach
  outside = np.broadcast_to(np.asarray(outside, bool), shape)
  rows = []
  for s in range(shape[0]):
    d, r, o = disc[s], ring[s], outside[s]
    if not d.any() or not r.any():
      raise ValueError(f"slice {s}: disc and ring must each hold at least one pixel")

    def contrast(x):
      return float(x[d].mean() - x[r].mean())

    true = contrast(ref_les[s]) - contrast(ref[s])
    seen = contrast(rec_les[s]) - contrast(rec[s])
    change = np.abs(rec_les[s] - rec[s])
    rows.append({
        "reference_contrast": true,
        "recon_contrast": seen,
        "kept_fraction": seen / true if true != 0 else float("nan"),
        "lesion_error": float(np.abs(rec_les[s] - ref_les[s])[d].mean()),
        "spill": float(change[o].max() / abs(true)) if o.any() and true else 0.0,
        "std_disc": float(std_les[s][d].mean()),
        "std_ring": float(std_les[s][r].mean()),
        "std_disc_without_lesion": float(std[s][d].mean()),
    })
    rows[-1]["std_disc_over_ring"] = (rows[-1]["std_disc"] / rows[-1]["std_ring"]
                                      if rows[-1]["std_ring"] > 0 else float("inf"))
  out = {k: float(np.mean([row[k] for row in rows])) for k in rows[0]}
  out["per_slice"] = {k: [row[k] for row in rows] for k in rows[0]}
  return out
