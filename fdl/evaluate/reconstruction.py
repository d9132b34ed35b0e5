"""The sealed test of MRI reconstruction: classical baselines, fastMRI scores, one evaluation.

Every experiment that reconstructs MRI (the task's test, the classical comparison, the
real-brain check, the studies) scores through here, so a method is computed and scored
one way. Images are magnitudes ``[S, H, W]``; scores are fastMRI's (`fdl.mri.metrics`):
NMSE, PSNR (dB) and SSIM, per slice with one data range per volume.
"""

from __future__ import annotations

import time

import jax.numpy as jnp
import numpy as np

from fdl import models
from fdl.mri import metrics as mri_metrics
from fdl.mri import recon

CLASSICAL = ("zero_filled", "cg_sense", "cs_wavelet")
METHODS = CLASSICAL + ("model",)
SCORES = ("nmse", "psnr", "ssim")


def classical_reconstructions(config, kspace, mask, maps, methods: tuple[str, ...] = CLASSICAL
                              ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """The classical baselines of every fdl experiment, on the same under-sampled data.

  Args:
    config: holds ``cg_lambda``, ``cg_iters``, ``cs_lambda`` and ``cs_iters`` (the
      Tikhonov weight and CG iterations of CG-SENSE; the L1-Haar weight and FISTA
      iterations of CS), as every reconstruction config does.
    kspace: under-sampled multi-coil k-space ``[S, C, H, W]`` complex64 (zeros where not
      acquired).
    mask: the sampling mask, broadcastable to `kspace`.
    maps: coil sensitivities ``[S, C, H, W]`` complex64.
    methods: a subset of `CLASSICAL`, in the order wanted.

  Returns:
    ``(images, seconds)``: magnitude images ``[S, H, W]`` float32 per method (zero-filled
    is the root-sum-of-squares image), and each method's wall time in seconds
    (compilation included).
  """
  unknown = [m for m in methods if m not in CLASSICAL]
  if unknown:
    raise ValueError(f"methods must be drawn from {CLASSICAL}; got {tuple(methods)}")
  kspace, mask, maps = jnp.asarray(kspace), jnp.asarray(mask), jnp.asarray(maps)
  runners = {
      "zero_filled": lambda: recon.zero_filled(kspace, mask),
      "cg_sense": lambda: recon.cg_sense(kspace, maps, mask, lam=config.cg_lambda,
                                         num_iters=config.cg_iters),
      "cs_wavelet": lambda: recon.cs_wavelet(kspace, maps, mask, lam=config.cs_lambda,
                                             num_iters=config.cs_iters),
  }
  images, seconds = {}, {}
  for name in methods:
    start = time.perf_counter()
    images[name] = np.abs(np.asarray(runners[name]()))
    seconds[name] = time.perf_counter() - start
  return images, seconds


def score_slices(target: np.ndarray, image: np.ndarray, data_range: float
                 ) -> dict[str, np.ndarray]:
  """fastMRI scores per slice: magnitude, centre crop to `target`, one data range."""
  image = np.asarray(mri_metrics.center_crop(np.asarray(image), target.shape[-2:]))
  scores = mri_metrics.slice_metrics(target, image, data_range=data_range)
  return {k: np.asarray(v, np.float64) for k, v in scores.items()}


def evaluate_test(config, model, variables, volumes) -> tuple[dict, dict]:
  """Scores every method on every test volume.

  Returns:
    ``(test, shown)``: `test` maps each method of `METHODS` to the mean and
    standard deviation over test slices of each score (``nmse``, ``nmse_std``,
    ...), plus ``volume_mean`` (fastMRI's per-volume scores averaged over
    volumes) and ``seconds_per_slice`` (compilation included); `shown` holds images of the first
    test slices for the figure.
  """
  per_slice = {m: {s: [] for s in SCORES} for m in METHODS}
  per_volume = {m: {s: [] for s in SCORES} for m in METHODS}
  seconds = {m: 0.0 for m in METHODS}
  num_slices = 0
  shown: dict[str, list] = {"reference": [], **{m: [] for m in METHODS}}
  for volume in volumes:
    target, data_range = volume["target"], float(volume["data_range"])
    images, spent = classical_reconstructions(config, volume["kspace"],
                                              volume["mask"], volume["maps"])
    start = time.perf_counter()
    images["model"] = models.reconstruct(model, variables, volume["kspace"],
                                         volume["mask"], volume["maps"],
                                         batch_size=config.batch_size)
    spent["model"] = time.perf_counter() - start
    for method, value in spent.items():
      seconds[method] += value
    num_slices += target.shape[0]
    for method, image in images.items():
      cropped = np.asarray(mri_metrics.center_crop(image, target.shape[-2:]))
      for name, values in score_slices(target, cropped, data_range).items():
        per_slice[method][name].extend(values.tolist())
      for name, value in mri_metrics.volume_metrics(target, cropped,
                                                    data_range).items():
        per_volume[method][name].append(value)
    take = config.figure_slices - len(shown["reference"])
    if take > 0:
      picks = np.linspace(0, target.shape[0] - 1, min(take, target.shape[0])).astype(int)
      shown["reference"].extend(target[picks])
      for method, image in images.items():
        shown[method].extend(np.asarray(mri_metrics.center_crop(
            image, target.shape[-2:]))[picks])
  test = {}
  for method in METHODS:
    entry = {}
    for name in SCORES:
      values = np.asarray(per_slice[method][name])
      entry[name] = float(values.mean())
      entry[f"{name}_std"] = float(values.std())
    entry["volume_mean"] = {name: float(np.mean(per_volume[method][name]))
                            for name in SCORES}
    # Wall time including the first call's compilation, on this machine.
    entry["seconds_per_slice"] = seconds[method] / num_slices
    test[method] = entry
  test["num_slices"] = num_slices
  test["num_volumes"] = len(per_volume["model"]["nmse"])
  return test, {k: np.stack(v) for k, v in shown.items()}
