"""Figures of a run: learning curves, confusion matrices, reconstructions (matplotlib, Agg)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def pyplot():
  """`matplotlib.pyplot` on the Agg backend (files only; no display needed)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt



def save_image_grid(fig, axes, path: str, title: str = "", *, fontsize: float = 9,
                    dpi: int = 100) -> None:
  """Finishes a grid of image panels: no ticks, the title above, saved, closed."""
  plt = pyplot()
  for ax in np.ravel(axes):
    ax.set_xticks([])
    ax.set_yticks([])
  if title:
    fig.suptitle(title, fontsize=fontsize)
  # Leave the top strip to the title instead of letting it cover the first row.
  fig.tight_layout(rect=(0, 0, 1, 0.96 if title else 1))
  fig.savefig(path, dpi=dpi)
  plt.close(fig)


def plot_learning_curves(history: Sequence[dict], path: str,
                         metrics: Sequence[str] = ("loss", "accuracy")) -> None:
  """Train and validation curves per epoch, one panel per metric.

  Args:
    history: `FitResult.history`: dicts with ``epoch`` (0-based), ``train/<m>``
      and ``val/<m>``.
    path: output PNG.
    metrics: metric names without prefix.
  """
  plt = pyplot()
  epochs = np.asarray([h["epoch"] for h in history]) + 1
  fig, axes = plt.subplots(1, len(metrics), figsize=(5.5 * len(metrics), 4),
                           squeeze=False)
  for ax, name in zip(axes[0], metrics):
    for split, style in (("train", "-o"), ("val", "-s")):
      key = f"{split}/{name}"
      values = [h.get(key, np.nan) for h in history]
      if not np.all(np.isnan(values)):
        ax.plot(epochs, values, style, markersize=3, label=split)
    ax.set_xlabel("epoch")
    ax.set_ylabel(name)
    ax.grid(alpha=0.3)
    ax.legend()
  axes[0][0].set_title("train: mean over the epoch's steps; val: after the epoch",
                       fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray,
                     num_classes: int) -> np.ndarray:
  """Counts ``[true class, predicted class]`` as an int64 ``[C, C]`` matrix."""
  labels = np.asarray(labels, np.int64)
  predictions = np.asarray(predictions, np.int64)
  if labels.shape != predictions.shape:
    raise ValueError(f"labels {labels.shape} and predictions "
                     f"{predictions.shape} must have the same shape")
  matrix = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(matrix, (labels, predictions), 1)
  return matrix


def plot_confusion_matrix(matrix: np.ndarray, class_names: Sequence[str],
                          path: str, title: str = "") -> None:
  """Row-normalized confusion matrix with the counts written in each cell."""
  plt = pyplot()
  matrix = np.asarray(matrix)
  n = len(class_names)
  rows = matrix.sum(1, keepdims=True)
  fraction = matrix / np.maximum(rows, 1)
  size = max(4.5, 0.55 * n + 2)
  fig, ax = plt.subplots(figsize=(size, size * 0.9))
  image = ax.imshow(fraction, cmap="Blues", vmin=0, vmax=1)
  if n <= 20:
    for i in range(n):
      for j in range(n):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                color="white" if fraction[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), class_names, fontsize=8)
  ax.set_xlabel("predicted")
  ax.set_ylabel("true")
  accuracy = np.trace(matrix) / max(matrix.sum(), 1)
  ax.set_title(f"{title} accuracy {accuracy:.2%} (n={matrix.sum()})".strip())
  fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of the true class")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_reconstruction_grid(path: str, reference: np.ndarray,
                             images: dict[str, np.ndarray], *, title: str = "",
                             error_contrast: float = 4.0) -> None:
  """Reference and reconstructions of a few slices, each over its error map.

  Two rows per slice: the images (grey, scaled to the reference's maximum),
  then ``|image - reference|`` (x `error_contrast`). Each reconstruction is
  titled with that slice's PSNR and SSIM (``data_range`` = the slice's
  reference maximum).

  Args:
    path: output PNG.
    reference: float ``[N, H, W]`` magnitude references.
    images: method label -> float ``[N, H, W]`` magnitude reconstructions.
    title: figure title.
    error_contrast: how much the error maps are brightened.
  """
  from fdl.mri.metrics import slice_metrics  # pylint: disable=g-import-not-at-top
  plt = pyplot()
  reference = np.asarray(reference, np.float32)
  num_slices, cols = reference.shape[0], 1 + len(images)
  fig, axes = plt.subplots(2 * num_slices, cols, figsize=(2.6 * cols, 5.4 * num_slices),
                           squeeze=False)
  for i in range(num_slices):
    vmax = float(reference[i].max())
    row, err_row = axes[2 * i], axes[2 * i + 1]
    row[0].imshow(reference[i], cmap="gray", vmin=0, vmax=vmax)
    row[0].set_title("reference", fontsize=9)
    err_row[0].axis("off")
    for j, (label, image) in enumerate(images.items(), start=1):
      image = np.asarray(image[i], np.float32)
      scores = slice_metrics(reference[i:i + 1], image[None])
      row[j].imshow(image, cmap="gray", vmin=0, vmax=vmax)
      row[j].set_title(f"{label}\nPSNR {float(scores['psnr'][0]):.1f} dB, "
                       f"SSIM {float(scores['ssim'][0]):.3f}", fontsize=8)
      err_row[j].imshow(np.abs(image - reference[i]), cmap="magma", vmin=0,
                        vmax=vmax / error_contrast)
      err_row[j].set_title(f"|error| (x{error_contrast:g})", fontsize=8)
  save_image_grid(fig, axes, path, title, fontsize=10)
