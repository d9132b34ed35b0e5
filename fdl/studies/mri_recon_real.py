"""Trained reconstruction networks applied to a real, acquired brain slice.

The networks of `fdl.tasks.reconstruction` learn from simulated anatomy. This
applies them, unchanged, to real 8-channel brain k-space (Lustig's ESPIRiT demo
data, ``../shared/data/mri/lustig_brain_alias_8ch.npz``), retrospectively
under-sampled with the mask family and acceleration each network was trained
for, and scores them next to zero-filled and CG-SENSE.

The published array is zero-padded from 168 acquired columns to 256; the
padding is removed (k-space cropped to the acquired columns) so that the
reference is the image the scanner measured, not an interpolation of it.
Normalization is the training pipeline's (`fdl.data.mri_volumes`): scale by
the inverse maximum of the RSS image of the centre k-space columns.
"""

from __future__ import annotations

import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fdl import models
from fdl.data.mri_volumes import center_rss_max
from fdl.mri import coils, masks, metrics
from fdl.mri.fft import ifft2c
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.tasks import reconstruction
from fdl.train.metric_writer import write_json

DEFAULT_DATA = os.path.join("..", "shared", "data", "mri", "lustig_brain_alias_8ch.npz")


def load_acquired_slice(path: str) -> np.ndarray:
  """Complex64 k-space ``[1, C, H, W_acquired]``: the columns that hold data.

  Raises:
    FileNotFoundError / ValueError: naming `path` and what was expected.
  """
  if not os.path.exists(path):
    raise FileNotFoundError(f"real k-space file {path!r} not found")
  with np.load(path) as npz:
    if "kspace" not in npz:
      raise ValueError(f"{path}: expected an array 'kspace' [coils, H, W]; got "
                       f"{sorted(npz.files)}")
    kspace = np.asarray(npz["kspace"], np.complex64)
  if kspace.ndim != 3:
    raise ValueError(f"{path}: kspace must be [coils, H, W]; got {kspace.shape}")
  acquired = np.flatnonzero(np.abs(kspace).sum(axis=(0, 1)) > 0)
  kspace = kspace[:, :, acquired.min():acquired.max() + 1]
  return kspace[None]


def _line_mask(config, num_cols: int) -> np.ndarray:
  """The run's mask family at its acceleration, one fixed draw, ``[1, 1, 1, W]``."""
  key = jax.random.PRNGKey(config.seed)
  make = {"equispaced": masks.equispaced_mask, "random": masks.random_mask}
  if config.mask not in make:
    raise ValueError(f"real-data evaluation supports line masks; the run used "
                     f"{config.mask!r}")
  mask = make[config.mask](key, num_cols, config.acceleration, config.center_fraction)
  return np.asarray(mask, np.float32).reshape(1, 1, 1, -1)


_DATASETS = {"simulated": "simulated phantoms", "anatomy": "synthesized anatomy"}


def _trained_on(configs) -> str:
  """What the runs were trained on, in words (for the figure's title)."""
  names = []
  for config in configs:
    name = _DATASETS.get(config.get("dataset", "simulated"), "fastMRI files")
    if name not in names:
      names.append(name)
  return " or ".join(names)


def evaluate_on_real(workdirs: Sequence[str], out_dir: str,
                     data_path: str = DEFAULT_DATA) -> dict:
  """Scores each trained run on the real slice; writes a figure and a summary.

  Runs must share the acceleration, mask family and centre fraction (one
  under-sampled slice for all of them).

  Returns:
    ``{"acceleration", "kspace_shape", "methods": {name: {nmse, psnr, ssim}}}``.
  """
  if not workdirs:
    raise ValueError("workdirs must name at least one trained run")
  os.makedirs(out_dir, exist_ok=True)
  trained = [reconstruction.load_trained(w) for w in workdirs]
  first = trained[0][2]
  for (_, _, config), workdir in zip(trained, workdirs):
    same = (config.mask, float(config.acceleration), config.center_fraction)
    if same != (first.mask, float(first.acceleration), first.center_fraction):
      raise ValueError(f"{workdir}: mask settings {same} differ from the first run's "
                       f"{(first.mask, float(first.acceleration), first.center_fraction)}")

  full = load_acquired_slice(data_path)
  full = full / center_rss_max(full, first.center_fraction)
  reference = np.asarray(coils.rss(ifft2c(jnp.asarray(full))))
  mask = _line_mask(first, full.shape[-1])
  kspace = (full * mask).astype(np.complex64)
  calib = min(first.calib_size, masks.num_low_frequencies(full.shape[-1],
                                                          first.center_fraction))
  maps = np.asarray(coils.estimate_maps(jnp.asarray(kspace), calib_size=calib,
                                        kernel_size=first.kernel_size))

  classical, _ = evaluation.classical_reconstructions(first, kspace, mask, maps,
                                                     ("zero_filled", "cg_sense"))
  images = {"zero-filled": classical["zero_filled"], "CG-SENSE": classical["cg_sense"]}
  for (model, variables, config), workdir in zip(trained, workdirs):
    images[f"{config.model} ({os.path.basename(os.path.normpath(workdir))})"] = (
        models.reconstruct(model, variables, kspace, mask, maps))
  data_range = float(reference.max())
  scores = {}
  for name, image in images.items():
    s = metrics.slice_metrics(reference, image, data_range=data_range)
    scores[name] = {k: float(v[0]) for k, v in s.items()}
  figures.plot_reconstruction_grid(
      os.path.join(out_dir, "real_brain.png"), reference, images,
      title=f"real 8-coil brain, {float(first.acceleration):g}x {first.mask}: "
            f"networks trained on {_trained_on(c for _, _, c in trained)} only")
  summary = {"data": data_path, "kspace_shape": list(full.shape),
             "acceleration": float(first.acceleration), "mask": first.mask,
             "achieved_acceleration": float(mask.size / mask.sum()),
             "workdirs": list(workdirs), "methods": scores}
  write_json(os.path.join(out_dir, "summary.json"), summary)
  return summary


def report(summary: dict) -> str:
  """What ``experiments/mri_recon_real.py`` prints: the scores of every method."""
  lines = [f"real k-space {summary['kspace_shape']}, {summary['acceleration']:g}x "
           f"{summary['mask']} (achieved {summary['achieved_acceleration']:.2f}x)",
           f"{'method':<28} {'NMSE':>8} {'PSNR':>7} {'SSIM':>7}"]
  for name, s in summary["methods"].items():
    lines.append(f"{name:<28} {s['nmse']:8.4f} {s['psnr']:7.2f} {s['ssim']:7.4f}")
  return "\n".join(lines)
