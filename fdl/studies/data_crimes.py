"""The "implicit data crimes" experiment: processed data make every method look better.

Shimron, Tamir, Wang and Lustig ("Implicit data crimes: machine learning bias
arising from misuse of public data", PNAS 2022) showed that reconstruction
methods trained and evaluated on k-space synthesized from processed images
(zero-padded, JPEG-compressed) score better the more the data were processed,
although nothing about the method improved: the processing removed exactly the
high-frequency content that under-sampling makes hard to recover.

`run(config, workdir)` reproduces that on simulated data. For every setting
(a zero-padding factor, or a JPEG quality of the magnitude images k-space is
synthesized from; `fdl.data.process_simulation`), it trains and tests a learned
model with `fdl.tasks.reconstruction.train_and_evaluate` on data processed that
way, next to CS (and zero-filled, CG-SENSE) on the same test slices, each scored
against the matching processed reference. It writes ``summary.json`` with
``results`` (one entry per setting and method: ``zero_pad_factor`` or
``jpeg_quality``, ``method``, ``nmse``, ``psnr``, ``ssim``) and
``data_crimes.png`` (SSIM and NMSE against the processing).
"""

from __future__ import annotations

import os
import time

import ml_collections

from fdl import config_files
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.studies import harness
from fdl.train.metric_writer import is_writer

SERIES = ("zero_pad_factor", "jpeg_quality")
METHOD_LABELS = {"zero_filled": "zero-filled", "cg_sense": "CG-SENSE",
                 "cs_wavelet": "CS (L1-Haar)", "model": "learned"}


def settings(config: ml_collections.ConfigDict) -> list[dict]:
  """The processing settings of a run: ``[{"zero_pad_factor": f}, ..., {"jpeg_quality": q}, ...]``.

  Raises:
    ValueError: a factor < 1, a quality outside [1, 100], or no setting at all.
  """
  out = []
  for factor in config.zero_pad_factors:
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
      raise ValueError(f"config.zero_pad_factors must hold numbers >= 1 (1: raw); got "
                       f"{factor!r} in {tuple(config.zero_pad_factors)}")
    out.append({"zero_pad_factor": float(factor)})
  for quality in config.jpeg_qualities:
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
      raise ValueError(f"config.jpeg_qualities must hold ints in [1, 100]; got "
                       f"{quality!r} in {tuple(config.jpeg_qualities)}")
    out.append({"jpeg_quality": int(quality)})
  if not out:
    raise ValueError("config.zero_pad_factors and config.jpeg_qualities are both empty: "
                     "nothing to run")
  return out


def setting_name(setting: dict) -> str:
  """Sub-directory name of a setting: ``zero_pad_1.5`` or ``jpeg_50``."""
  if "zero_pad_factor" in setting:
    return f"zero_pad_{setting['zero_pad_factor']:g}"
  return f"jpeg_{setting['jpeg_quality']}"


def recon_config(config: ml_collections.ConfigDict, setting: dict
                 ) -> ml_collections.ConfigDict:
  """The `train_and_evaluate` config of one setting: ``config.recon`` plus the processing."""
  recon = ml_collections.ConfigDict(config.recon.to_dict())
  recon.zero_pad_factor = float(setting.get("zero_pad_factor", 1.0))
  recon.jpeg_quality = int(setting.get("jpeg_quality", 0))
  return recon


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains and tests every setting (see the module docstring); resumes per setting.

  Args:
    config: ``zero_pad_factors``, ``jpeg_qualities``, ``methods`` (of
      `fdl.evaluate.evaluation.METHODS`), ``smoke`` and ``recon`` (an
      `experiments/configs/mri_recon.py` config; its own ``zero_pad_factor``
      and ``jpeg_quality`` are replaced per setting).
    workdir: one sub-directory per setting (`setting_name`; a finished one is
      reused), then ``summary.json`` and ``data_crimes.png`` here
      (`fdl.studies.harness.run_study`).

  Returns:
    The summary: ``results`` (list of dicts), ``settings`` (per setting: its
    workdir, the audit flags its data raised, epochs, training seconds) and
    ``seconds``. ``{"interrupted": True, "signal": n, ...}`` if a training run
    was interrupted.
  """
  config = config_files.resolve_smoke(config, "data_crimes")
  unknown = set(config.methods) - set(evaluation.METHODS)
  if unknown or not config.methods:
    raise ValueError(f"config.methods must be a non-empty subset of "
                     f"{evaluation.METHODS}; got {tuple(config.methods)}")
  all_settings = {setting_name(s): s for s in settings(config)}
  start = time.perf_counter()

  def rows(setting, summary):
    out = []
    for method in config.methods:
      scores = summary["test"][method]
      out.append({**setting, "method": method,
                  **{k: scores[k] for k in ("nmse", "psnr", "ssim")},
                  **{f"{k}_std": scores[f"{k}_std"] for k in ("nmse", "psnr", "ssim")}})
    return out

  def summarize(runs: dict) -> dict:
    results, records = [], []
    for name, summary in runs.items():
      setting = all_settings[name]
      audit = summary["data"]["audit"]
      records.append({**setting, "workdir": name, "audit_flags": audit["flags"],
                      "audit_zero_pad_factor": sorted(set(audit["zero_pad_factor"].values())),
                      "epochs_run": summary["epochs_run"], "val_ssim": summary["val_ssim"],
                      "train_seconds_this_run": summary["train_seconds_this_run"]})
      results += rows(setting, summary)
    out = {"results": results, "settings": records,
           "num_test_slices": summary["test"]["num_slices"],
           "model": config.recon.model, "acceleration": float(config.recon.acceleration),
           "seconds": time.perf_counter() - start}
    if is_writer():
      plot(results, os.path.join(workdir, "data_crimes.png"),
           title=f"{config.recon.model} and CS at {float(config.recon.acceleration):g}x, "
                 f"each scored against its processed reference")
    return out

  subruns = [harness.reconstruction_run(
      name, recon_config(config, setting),
      report=lambda summary, setting=setting: format_rows(rows(setting, summary)))
             for name, setting in all_settings.items()]
  return harness.run_study(config, workdir, subruns, summarize)


def report(summary: dict) -> str:
  """What ``experiments/data_crimes.py`` prints at the end: every setting's rows."""
  return (f"all settings ({summary['num_test_slices']} test slices each, "
          f"{summary['seconds']:.0f} s):\n" + format_rows(summary["results"]))


def format_rows(results: list[dict]) -> str:
  """Results as a plain-text table, one line per setting and method."""
  lines = [f"{'processing':<16} {'method':<14} {'NMSE':>8} {'PSNR':>7} {'SSIM':>7}"]
  for r in results:
    processing = (f"zero-pad x{r['zero_pad_factor']:g}" if "zero_pad_factor" in r
                  else f"JPEG q={r['jpeg_quality']}")
    lines.append(f"{processing:<16} {METHOD_LABELS[r['method']]:<14} {r['nmse']:8.4f} "
                 f"{r['psnr']:7.2f} {r['ssim']:7.4f}")
  return "\n".join(lines)


def plot(results: list[dict], path: str, title: str = "") -> None:
  """SSIM and NMSE against the zero-padding factor and the JPEG quality.

  Two rows (SSIM, NMSE) and one column per series present; the JPEG axis runs
  from high to low quality, so that processing increases to the right in both.
  """
  plt = figures.pyplot()

  series = [s for s in SERIES if any(s in r for r in results)]
  methods = list(dict.fromkeys(r["method"] for r in results))
  raw = {r["method"]: r for r in results if r.get("zero_pad_factor") == 1.0}
  fig, axes = plt.subplots(2, len(series), figsize=(5 * len(series), 7), squeeze=False)
  for col, key in enumerate(series):
    for n, method in enumerate(methods):
      color = f"C{n}"
      rows = sorted((r for r in results if key in r and r["method"] == method),
                    key=lambda r: r[key])
      x = [r[key] for r in rows]
      for row, metric in enumerate(("ssim", "nmse")):
        axes[row, col].plot(x, [r[metric] for r in rows], "o-", color=color,
                            label=METHOD_LABELS[method])
        if key == "jpeg_quality" and method in raw:
          # JPEG k-space is synthesized from magnitude images: the raw complex
          # data's score is the reference level, not the first point of the curve.
          axes[row, col].axhline(raw[method][metric], color=color, ls=":", lw=1)
    for row, metric in enumerate(("SSIM", "NMSE")):
      ax = axes[row, col]
      ax.set_ylabel(f"test {metric}" + (" (higher is better)" if metric == "SSIM"
                                         else " (lower is better)"))
      ax.grid(alpha=0.3)
      if key == "jpeg_quality":
        ax.invert_xaxis()
        ax.set_xlabel("JPEG quality of the source images (more compression →)")
        if raw:
          ax.set_title("dotted: the same method on raw k-space", fontsize=8)
      else:
        ax.set_xlabel("k-space zero-padding factor (more padding →)")
  axes[0, 0].legend(fontsize=8)
  fig.suptitle(title + "\nthe data got more processed, not the methods better",
               fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
