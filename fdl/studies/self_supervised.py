"""Supervised vs self-supervised (SSDU, K-band) MoDL on the same data and test slices.

The library side of ``experiments/self_supervised.py``. `compare_supervision` trains one
`fdl.tasks.reconstruction.train_and_evaluate` run per ``config.supervision`` mode (the
objectives are `fdl.tasks.supervision`'s) with the same seed, hence the same volumes,
split, coil maps and test masks, and scores them on the same sealed test slices next to
the classical baselines.
"""

from __future__ import annotations

import os
import time

import ml_collections
import numpy as np

from fdl import config_files, models
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.mri import metrics as mri_metrics
from fdl.studies import harness
from fdl.tasks import reconstruction
from fdl.tasks.supervision import SUPERVISIONS
from fdl.train.metric_writer import is_writer

CLASSICAL = evaluation.CLASSICAL
LABELS = {"supervised": "MoDL supervised", "ssdu": "MoDL SSDU", "kband": "MoDL K-band",
          "zero_filled": "zero-filled", "cg_sense": "CG-SENSE", "cs_wavelet": "CS (L1-Haar)"}

def _method_config(config: ml_collections.ConfigDict, supervision: str
                   ) -> ml_collections.ConfigDict:
  variant = ml_collections.ConfigDict(config.to_dict())
  variant.supervision = supervision
  return variant


def compare_supervision(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.methods`` (supervised, ssdu, kband) on the same data; tests them.

  Each method is one `train_and_evaluate` run in ``workdir/<method>`` (same seed: the
  same volumes, split and test masks; `fdl.studies.harness.run_study`). Writes
  ``summary.json`` (``results``: one entry per method, the classical ones from the
  same test slices included, with test ``nmse``, ``psnr``, ``ssim`` and their
  standard deviations over slices),
  ``table.txt`` and ``reconstructions.png`` (test slices, every method).

  Returns:
    The summary (or ``{"interrupted": True, ...}``).
  """
  config = config_files.resolve_smoke(config, "self_supervised")
  for method in config.methods:
    if method not in SUPERVISIONS:
      raise ValueError(f"config.methods must be drawn from {SUPERVISIONS}; got "
                       f"{tuple(config.methods)}")
  start = time.perf_counter()
  subruns = [harness.reconstruction_run(m, _method_config(config, m))
             for m in config.methods]
  return harness.run_study(config, workdir, subruns,
                           lambda runs: _summarize(config, workdir, runs, start))


def _summarize(config: ml_collections.ConfigDict, workdir: str, runs: dict,
               start: float) -> dict:
  """The comparison of the finished runs: table, figure and summary."""
  first = runs[config.methods[0]]["test"]
  results = [_scores(name, first[name]) for name in CLASSICAL]
  results += [_scores(method, runs[method]["test"]["model"]) for method in config.methods]
  # Same seed, same test slices and masks: every run's classical scores must agree.
  consistent = all(np.isclose(runs[m]["test"][c]["ssim"], first[c]["ssim"], rtol=1e-5)
                   for m in config.methods for c in CLASSICAL)
  summary = {
      "results": results,
      "test_slices": first["num_slices"], "test_volumes": first["num_volumes"],
      "acceleration": float(config.acceleration), "mask": config.mask,
      "classical_scores_agree_across_runs": bool(consistent),
      "runs": {m: {k: runs[m].get(k) for k in (
          "supervision", "model_selection", "val_ssim", "val_loss", "best_epoch",
          "epochs_run", "num_params", "train_seconds_this_run", "ssdu", "kband")}
               for m in config.methods},
      "seconds": time.perf_counter() - start,
  }
  for m in config.methods:
    if m == "supervised":
      summary["runs"][m]["supervision"] = "supervised"
      summary["runs"][m]["model_selection"] = "val/ssim against the fully sampled reference"
    summary["runs"][m] = {k: v for k, v in summary["runs"][m].items() if v is not None}
  summary["table"] = format_table(results)
  if is_writer():
    _plot(config, workdir, os.path.join(workdir, "reconstructions.png"))
    with open(os.path.join(workdir, "table.txt"), "w", encoding="utf-8") as f:
      f.write(summary["table"] + "\n")
  summary["seconds"] = time.perf_counter() - start
  return summary


def report(summary: dict) -> str:
  """What ``experiments/self_supervised.py`` prints: the test table."""
  return (f"test ({summary['test_slices']} slices of {summary['test_volumes']} volumes), "
          f"{summary['seconds']:.0f} s:\n{summary['table']}")


def _scores(method: str, entry: dict) -> dict:
  out = {"method": method, "label": LABELS.get(method, method)}
  for name in evaluation.SCORES:
    out[name] = entry[name]
    out[f"{name}_std"] = entry[f"{name}_std"]
  return out


def format_table(results: list[dict]) -> str:
  """The test scores as a plain-text table (mean ± std over test slices)."""
  lines = [f"{'method':<17} {'NMSE':>17} {'PSNR (dB)':>15} {'SSIM':>15}"]
  for r in results:
    lines.append(f"{r['label']:<17} {r['nmse']:.4f} ± {r['nmse_std']:.4f}"
                 f"  {r['psnr']:6.2f} ± {r['psnr_std']:4.2f}"
                 f"  {r['ssim']:.4f} ± {r['ssim_std']:.4f}")
  return "\n".join(lines)


def _plot(config: ml_collections.ConfigDict, workdir: str, path: str) -> None:
  """Test slices reconstructed by every method (after scoring: for the figure only)."""
  pipeline = reconstruction.make_pipeline(config)
  volume = next(iter(pipeline.test_volumes()))
  picks = np.linspace(0, volume["target"].shape[0] - 1,
                      min(config.figure_slices, volume["target"].shape[0])).astype(int)
  args = [volume[k][picks] for k in ("kspace", "mask", "maps")]
  images, _ = evaluation.classical_reconstructions(config, *args)
  shown = {LABELS[m]: images[m] for m in ("zero_filled", "cg_sense", "cs_wavelet")}
  for method in config.methods:
    model, variables, _ = reconstruction.load_trained(os.path.join(workdir, method))
    shown[LABELS[method]] = models.reconstruct(model, variables, *args,
                                               batch_size=config.batch_size)
  target = volume["target"][picks]
  shown = {k: np.asarray(mri_metrics.center_crop(v, target.shape[-2:]))
           for k, v in shown.items()}
  figures.plot_reconstruction_grid(
      path, target, shown,
      title=f"{float(config.acceleration):g}x {config.mask} mask, test slices of "
            f"{volume['name']}; scores: that slice")
