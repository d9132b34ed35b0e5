"""Classical reconstructions of under-sampled multi-coil k-space, side by side.

For each acceleration: a Cartesian line mask (fastMRI semantics, one mask per
volume), then zero-filled (RSS), CG-SENSE and compressed sensing (L1-Haar,
FISTA), scored against the fully sampled reference with NMSE / PSNR / SSIM per
slice (fastMRI definitions, data range = the volume's reference maximum).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import config_files, mri
from fdl.evaluate import reconstruction as evaluation
from fdl.mri import coils
from fdl.studies import harness
from fdl.train.metric_writer import is_writer

METHODS = evaluation.CLASSICAL


def load_volume(config: ml_collections.ConfigDict) -> dict:
  """Fully sampled k-space ``[S, C, H, W]``, reference magnitude and true maps.

  k-space is scaled so that the reference's maximum is 1, which makes the CS
  weight `cs_lambda` comparable across data sets.
  """
  if config.files:
    kspace = np.concatenate([mri.read_fastmri(p)["kspace"] for p in config.files])
    maps = None
    reference = np.asarray(coils.rss(mri.ifft2c(kspace)))
    source = {"files": list(config.files)}
  else:
    sim = mri.simulate(jax.random.PRNGKey(config.seed), num_slices=config.num_slices,
                       shape=tuple(config.shape), num_coils=config.num_coils,
                       snr_db=config.snr_db, phantom=config.phantom)
    kspace, maps = np.asarray(sim["kspace"]), np.asarray(sim["maps"])
    reference = np.asarray(sim["target"])
    source = {"simulated": {k: config[k] for k in
                            ("seed", "num_slices", "shape", "num_coils", "snr_db",
                             "phantom")}}
  scale = 1.0 / float(reference.max())
  return {"kspace": (kspace * scale).astype(np.complex64), "maps": maps,
          "reference": (reference * scale).astype(np.float32), "source": source}


def make_mask(config, acceleration: int, center_fraction: float, num_cols: int):
  """One line mask for the whole volume, ``[1, 1, 1, W]``."""
  key = jax.random.fold_in(jax.random.PRNGKey(config.seed), acceleration)
  fn = {"equispaced": mri.equispaced_mask, "random": mri.random_mask}[config.mask]
  return np.asarray(fn(key, num_cols, acceleration, center_fraction)).reshape(1, 1, 1, -1)


def reconstruct(config, kspace, mask, maps) -> tuple[dict[str, np.ndarray], dict[str, float]]:
  """Magnitude images ``[S, H, W]`` per method of fully sampled `kspace` under `mask`, and seconds."""
  return evaluation.classical_reconstructions(config, kspace * mask, mask, maps, METHODS)


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs every acceleration and method; writes summary.json and figures.

  One study without sub-runs (`fdl.studies.harness.run_study`): the config is
  checked against the workdir's ``config.json``, then everything is computed.
  """
  config = config_files.resolve_smoke(config, "mri_classical")
  if config.maps not in ("estimate", "true"):
    raise ValueError(f"config.maps must be 'estimate' or 'true'; got {config.maps!r}")
  if len(config.center_fractions) != len(config.accelerations):
    raise ValueError("config.center_fractions needs one value per acceleration; "
                     f"got {config.center_fractions} for {config.accelerations}")
  if config.mask not in ("equispaced", "random"):
    raise ValueError(f"config.mask must be 'equispaced' or 'random'; got {config.mask!r}")
  return harness.run_study(config, workdir, [], lambda _: _compute(config, workdir))


def _compute(config: ml_collections.ConfigDict, workdir: str) -> dict:
  volume = load_volume(config)
  if config.maps == "true" and volume["maps"] is None:
    raise ValueError("config.maps='true' needs simulated data (files have no maps)")
  kspace, reference = volume["kspace"], volume["reference"]
  results = {}
  for acceleration, fraction in zip(config.accelerations, config.center_fractions):
    mask = make_mask(config, acceleration, fraction, kspace.shape[-1])
    if config.maps == "true":
      maps = volume["maps"]
    else:
      maps = coils.estimate_maps(jnp.asarray(kspace * mask),
                                 calib_size=min(config.calib_size,
                                                mri.num_low_frequencies(
                                                    kspace.shape[-1], fraction)),
                                 kernel_size=config.kernel_size)
    images, seconds = reconstruct(config, kspace, mask, maps)
    scores = {}
    for method, image in images.items():
      per_slice = mri.slice_metrics(reference, image,
                                    data_range=float(reference.max()))
      scores[method] = {name: {"mean": float(np.mean(v)), "std": float(np.std(v))}
                        for name, v in per_slice.items()}
      scores[method]["seconds"] = seconds[method]
    results[f"{acceleration}x"] = {
        "acceleration": acceleration, "center_fraction": fraction,
        "achieved_acceleration": float(mask.size / mask.sum()), "methods": scores}
    if is_writer():
      plot_reconstructions(os.path.join(workdir, f"reconstructions_{acceleration}x.png"),
                           reference, images, scores, acceleration)
  return {"data": volume["source"], "kspace_shape": list(kspace.shape),
          "maps": config.maps, "results": results}


def report(summary: dict) -> str:
  """What ``experiments/mri_classical.py`` prints: the data and the table."""
  return (f"k-space {summary['kspace_shape']} [slices, coils, H, W], maps: "
          f"{summary['maps']}\n" + format_table(summary))


def format_table(summary: dict) -> str:
  """The results as a plain-text table (mean ± std over slices)."""
  lines = [f"{'accel':>6} {'method':<12} {'NMSE':>17} {'PSNR (dB)':>15} {'SSIM':>15}"]
  for name, result in summary["results"].items():
    for method, s in result["methods"].items():
      lines.append(
          f"{name:>6} {method:<12} {s['nmse']['mean']:.4f} ± {s['nmse']['std']:.4f}"
          f"  {s['psnr']['mean']:6.2f} ± {s['psnr']['std']:4.2f}"
          f"  {s['ssim']['mean']:.4f} ± {s['ssim']['std']:.4f}")
  return "\n".join(lines)


def plot_reconstructions(path, reference, images, scores, acceleration,
                         slice_index: int | None = None) -> None:
  """Reference, each reconstruction and its error map, for one slice."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  s = reference.shape[0] // 2 if slice_index is None else slice_index
  vmax = float(reference[s].max())
  cols = 1 + len(images)
  fig, axes = plt.subplots(2, cols, figsize=(3.2 * cols, 6.4))
  axes[0, 0].imshow(reference[s], cmap="gray", vmin=0, vmax=vmax)
  axes[0, 0].set_title("reference (fully sampled)")
  axes[1, 0].axis("off")
  for j, (method, image) in enumerate(images.items(), start=1):
    axes[0, j].imshow(image[s], cmap="gray", vmin=0, vmax=vmax)
    sc = scores[method]
    axes[0, j].set_title(f"{method}\nmean of all slices: PSNR {sc['psnr']['mean']:.1f} dB, "
                         f"SSIM {sc['ssim']['mean']:.3f}", fontsize=9)
    axes[1, j].imshow(np.abs(image[s] - reference[s]), cmap="magma", vmin=0,
                      vmax=0.25 * vmax)
    axes[1, j].set_title("|error| (x4 contrast)", fontsize=9)
  for ax in axes.ravel():
    ax.set_xticks([])
    ax.set_yticks([])
  fig.suptitle(f"{acceleration}x Cartesian under-sampling; images: slice {s}")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
