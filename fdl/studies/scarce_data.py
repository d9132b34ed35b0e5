"""The scarce-data experiment: pretrain, then fine-tune on N slices, against scratch.

`run(config, workdir)` does, with `fdl.tasks.reconstruction.train_and_evaluate`
for every training run (one sub-directory each):

1. ``pretrain``: a model trained on plenty of data of a SOURCE distribution
   (``config.pretrain``: e.g. 8-coil k-space at 30 dB).
2. For each N in ``config.train_sizes``, on the first N training slices of a
   TARGET distribution (``config.target``: e.g. 4 coils at 20 dB, other
   phantoms), the arms of ``config.methods``:

   * ``scratch``: random init;
   * ``finetune``: init from the pretrained run (`fdl.train.transfer`,
     ``init_from``; ``config.freeze`` patterns kept fixed), learning rate
     ``config.finetune_learning_rate``;
   * ``scratch_augment``: random init with ``config.augment``
     (`fdl.data.recon_augment`).

   Every arm of every N gets the same number of optimizer steps
   (``config.steps``, rounded up to whole epochs), the same validation
   volumes (model selection by validation SSIM) and the same sealed test
   volumes of the target distribution.
3. ``pretrained (no fine-tuning)``: the pretrained model tested as it is on the
   target test volumes (N = 0), next to the classical methods (zero-filled,
   CG-SENSE, CS) on the same slices.

Writes ``summary.json`` (``results``: one row per N and method with ``nmse``,
``psnr``, ``ssim`` and their standard deviations over test slices;
``reference``: the N = 0 rows) and ``ssim_vs_n.png``. Finished runs whose
resolved config is unchanged are read back, not retrained (`fdl.studies.harness`). With
``config.compilation_cache``, XLA's persistent compilation cache lives in
``workdir/jax_cache``.
"""

from __future__ import annotations

import math
import os
import time

import ml_collections
import numpy as np

from fdl import config_files
from fdl.evaluate import figures
from fdl.evaluate import reconstruction as evaluation
from fdl.studies import harness
from fdl.tasks import reconstruction
from fdl.train.metric_writer import is_writer

METHODS = ("scratch", "finetune", "scratch_augment")
LABELS = {"scratch": "from scratch", "finetune": "fine-tuned (pretrained init)",
          "scratch_augment": "from scratch + augmentation",
          "pretrained": "pretrained, no fine-tuning", "zero_filled": "zero-filled",
          "cg_sense": "CG-SENSE", "cs_wavelet": "CS (L1-Haar)"}
SCORES = ("nmse", "psnr", "ssim")
# Keys of config.pretrain / config.target that describe data and training size.
DISTRIBUTION_KEYS = ("seed", "num_volumes", "slices_per_volume", "num_coils", "snr_db",
                     "phantom", "val_volumes", "test_volumes")


def _check(config: ml_collections.ConfigDict) -> None:
  sizes = tuple(config.train_sizes)
  if not sizes or any(isinstance(n, bool) or not isinstance(n, int) or n < 1
                      for n in sizes):
    raise ValueError(f"config.train_sizes must be ints >= 1; got {sizes}")
  unknown = set(config.methods) - set(METHODS)
  if unknown or not config.methods:
    raise ValueError(f"config.methods must be a non-empty subset of {METHODS}; got "
                     f"{tuple(config.methods)}")
  if int(config.steps) < 1:
    raise ValueError(f"config.steps must be >= 1; got {config.steps!r}")
  for name in ("pretrain", "target"):
    extra = set(config[name]) - set(DISTRIBUTION_KEYS) - {"num_epochs"}
    if extra:
      raise ValueError(f"config.{name} has unknown keys {sorted(extra)}; allowed: "
                       f"{sorted(DISTRIBUTION_KEYS + ('num_epochs',))}")


def base_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A copy of ``config.recon`` (shrunk with the study's smoke), without progress bars."""
  recon = ml_collections.ConfigDict(config.recon.to_dict())
  recon.progress = False
  return recon


def pretrain_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The source-distribution run: the base config with ``config.pretrain``."""
  recon = base_config(config)
  recon.update(config.pretrain.to_dict())
  return recon


def run_config(config: ml_collections.ConfigDict, n: int, method: str,
               pretrain_dir: str, steps_per_epoch: int) -> ml_collections.ConfigDict:
  """The config of one arm on N target slices (see the module docstring)."""
  recon = base_config(config)
  recon.update({k: v for k, v in config.target.to_dict().items() if k != "num_epochs"})
  recon.train_slices = int(n)
  recon.num_epochs = max(int(config.min_epochs),
                         math.ceil(int(config.steps) / steps_per_epoch))
  if method == "finetune":
    recon.init_from = os.path.abspath(pretrain_dir)
    recon.freeze = tuple(config.freeze)
    recon.learning_rate = float(config.finetune_learning_rate)
  if method == "scratch_augment":
    recon.augment = ml_collections.ConfigDict({**config.augment.to_dict(),
                                               "enabled": True})
  return recon


def _zero_shot(config: ml_collections.ConfigDict, pretrain_dir: str) -> dict:
  """The pretrained model and the classical methods on the target test slices."""
  model, variables, _ = reconstruction.load_trained(pretrain_dir)
  # Any N gives the same test split (train_slices only trims the training split).
  target = run_config(config, max(config.train_sizes), "scratch", pretrain_dir, 1)
  pipeline = reconstruction.make_pipeline(target)
  test, _ = evaluation.evaluate_test(target, model, variables,
                                         pipeline.test_volumes())
  return test


def steps_per_epoch(config: ml_collections.ConfigDict, n: int) -> int:
  """Optimizer steps per epoch on N training slices (the last partial batch dropped)."""
  batch = int(base_config(config).batch_size)
  if n < batch:
    raise ValueError(f"train size {n} is below the batch size {batch}: lower "
                     "config.recon.batch_size or raise config.train_sizes")
  return n // batch


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Runs the experiment (module docstring) into `workdir` (`harness.run_study`).

  Returns:
    The summary (also in ``summary.json``), or ``{"interrupted": True, ...}``.
  """
  config = config_files.resolve_smoke(config, "scarce_data")
  _check(config)
  start = time.perf_counter()
  pretrain_dir = os.path.join(workdir, "pretrain")
  arms = {f"n{n:04d}_{method}": (int(n), method)
          for n in config.train_sizes for method in config.methods}
  subruns = [harness.reconstruction_run("pretrain", pretrain_config(config),
                                        describe="source distribution")]
  for name, (n, method) in arms.items():
    subruns.append(harness.reconstruction_run(
        name, run_config(config, n, method, pretrain_dir, steps_per_epoch(config, n)),
        describe=f"N={n}, {LABELS[method]}",
        report=lambda s, n=n, method=method: format_rows([_row(n, method, s)])))

  def summarize(summaries: dict) -> dict:
    pretrained = summaries["pretrain"]
    results, runs = [], []
    for name, (n, method) in arms.items():
      summary = summaries[name]
      results.append(_row(n, method, summary))
      runs.append({"n": n, "method": method, "workdir": name,
                   "steps": summary["epochs_run"] * summary["steps_per_epoch"],
                   "epochs_run": summary["epochs_run"],
                   "best_epoch": summary["best_epoch"], "val_ssim": summary["val_ssim"],
                   "train_slices": summary["data"]["slices"]["train"],
                   "train_seconds_this_run": summary["train_seconds_this_run"],
                   **({"transfer": {k: v for k, v in summary["transfer"].items()
                                    if k.startswith("num_") or k == "frozen"}}
                      if "transfer" in summary else {})})
    test = _zero_shot(config, pretrain_dir)
    reference = [{"n": 0, "method": "pretrained", **_scores(test["model"])}]
    reference += [{"n": 0, "method": m, **_scores(test[m])}
                  for m in ("zero_filled", "cg_sense", "cs_wavelet")]
    base = base_config(config)
    out = {
        "results": results,
        "reference": reference,
        "runs": runs,
        "pretrain": {"workdir": "pretrain", "val_ssim": pretrained["val_ssim"],
                     "source_test": _scores(pretrained["test"]["model"]),
                     "train_slices": pretrained["data"]["slices"]["train"],
                     "epochs_run": pretrained["epochs_run"],
                     "train_seconds_this_run": pretrained["train_seconds_this_run"]},
        "source": config.pretrain.to_dict(),
        "target": config.target.to_dict(),
        "model": base.model, "acceleration": float(base.acceleration), "mask": base.mask,
        "shape": list(base.shape),
        "num_test_slices": test["num_slices"],
        "seconds": time.perf_counter() - start,
    }
    if is_writer():
      plot(results, reference, os.path.join(workdir, "ssim_vs_n.png"),
           title=_title(config, base, test["num_slices"]),
           num_test_slices=test["num_slices"])
    return out

  return harness.run_study(config, workdir, subruns, summarize)


def report(summary: dict) -> str:
  """What ``experiments/scarce_data.py`` prints at the end: the whole table."""
  return (format_rows(summary["reference"] + summary["results"])
          + f"\ndone in {summary['seconds']:.0f} s ({summary['num_test_slices']} test "
          "slices)")


def _row(n: int, method: str, summary: dict) -> dict:
  return {"n": n, "method": method, **_scores(summary["test"]["model"])}


def _scores(entry: dict) -> dict:
  return {**{k: entry[k] for k in SCORES}, **{f"{k}_std": entry[f"{k}_std"]
                                              for k in SCORES}}


def _title(config, base, num_test) -> str:
  src, tgt = config.pretrain, config.target
  return (f"{base.model} at {float(base.acceleration):g}x: pretrained on "
          f"{src.num_coils} coils / {src.snr_db:g} dB, tested on {tgt.num_coils} coils / "
          f"{tgt.snr_db:g} dB ({num_test} test slices)")


def format_rows(rows: list[dict]) -> str:
  """Rows of `results` / `reference` as a plain-text table."""
  lines = [f"{'N':>4}  {'method':<30} {'NMSE':>8} {'PSNR':>7} {'SSIM':>7}"]
  for r in rows:
    lines.append(f"{r['n']:>4}  {LABELS[r['method']]:<30} {r['nmse']:8.4f} "
                 f"{r['psnr']:7.2f} {r['ssim']:7.4f}")
  return "\n".join(lines)


def plot(results: list[dict], reference: list[dict], path: str, title: str = "",
         num_test_slices: int | None = None) -> None:
  """Test SSIM against N (log axis) per method; the N = 0 rows as horizontal lines.

  Error bars are the standard error of the mean over the test slices (std /
  sqrt(num_test_slices)); without `num_test_slices`, the std. The y axis
  spans the learned methods; reference lines below it are listed in a note.
  """
  plt = figures.pyplot()

  spread = 1.0 / np.sqrt(num_test_slices) if num_test_slices else 1.0
  fig, ax = plt.subplots(figsize=(7, 4.8))
  methods = list(dict.fromkeys(r["method"] for r in results))
  for k, method in enumerate(methods):
    rows = sorted((r for r in results if r["method"] == method), key=lambda r: r["n"])
    # A small multiplicative offset per method keeps the error bars apart.
    shift = 1.0 + 0.04 * (k - (len(methods) - 1) / 2)
    ax.errorbar([r["n"] * shift for r in rows], [r["ssim"] for r in rows],
                yerr=[r["ssim_std"] * spread for r in rows], fmt="o-", capsize=3,
                color=f"C{k}", label=LABELS[method])
  lows = [r["ssim"] - r["ssim_std"] * spread for r in results]
  highs = [r["ssim"] + r["ssim_std"] * spread for r in results]
  shown = [r for r in reference if r["method"] == "pretrained"]
  lows += [r["ssim"] for r in shown]
  highs += [r["ssim"] for r in shown]
  margin = 0.15 * (max(highs) - min(lows))
  bottom, top = min(lows) - margin, max(highs) + margin
  for r in shown:
    ax.axhline(r["ssim"], color="k", ls="--", lw=1.2, label=LABELS[r["method"]])
  below = [f"{LABELS[r['method']]} {r['ssim']:.3f}" for r in reference
           if r["method"] != "pretrained" and r["ssim"] < bottom]
  if below:
    ax.text(0.99, 0.02, "below the axis: " + ", ".join(below), transform=ax.transAxes,
            ha="right", va="bottom", fontsize=7, color="0.35")
  ax.set_ylim(bottom, top)
  ax.set_xscale("log")
  sizes = sorted({r["n"] for r in results})
  ax.set_xticks(sizes)
  ax.set_xticklabels([str(n) for n in sizes])
  ax.minorticks_off()
  ax.set_xlabel("N: training slices of the target distribution")
  ax.set_ylabel("test SSIM" + (f" (mean ± s.e. over {num_test_slices} test slices)"
                               if num_test_slices else " (mean ± std over test slices)"))
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="lower right", bbox_to_anchor=(1.0, 0.07))
  ax.set_title(title, fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
