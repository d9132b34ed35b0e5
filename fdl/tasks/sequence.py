"""Sequence classification: handwritten digits read row by row (or pixel by pixel) by RNNs.

`train_and_evaluate(config, workdir)` is what ``experiments/sequence.py`` calls. The
data are scikit-learn's 1,797 real 8x8 digits (`fdl.data.load_source("digits")`), split
by `fdl.data.make_splits` into train / validation / sealed test (0.70 / 0.15 / 0.15 by
default: 1,259 / 269 / 269), normalized with the training split's mean and std only, and
read as sequences (`read_sequences`):

* ``read="rows"``: T = 8 steps of F = 8 pixels, step t is image row t;
* ``read="pixels"``: T = 64 steps of F = 1 pixel in raster order, step t is pixel
  ``(t // 8, t % 8)``: the same digits, but a 64-step memory task.

One `fdl.models.recurrent.RNNClassifier` per cell in ``config.cells`` ('rnn', 'lstm',
'gru') is trained with the same optimizer, schedule, batches and early stopping on the
validation accuracy, each in ``workdir/<cell>``. Only after every model has finished
training is the test split opened, once, and each model's best-validation state is
evaluated on it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import ml_collections
import numpy as np

from fdl import config_files, data
from fdl.evaluate import figures
from fdl.losses import classification_loss
from fdl.models.recurrent import CELLS, RNNClassifier
from fdl.train.early_stopping import EarlyStopping
from fdl.train.loop import evaluate, fit
from fdl.train.metric_writer import is_writer, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import create_train_state, num_params
from fdl.train.step import make_eval_step, make_train_step

READS = ("rows", "pixels")
INPUT_KEY = "sequence"  # batch key of the [N, T, F] model input
# Metric names each model's run writes (metrics.jsonl); tests check them.
TRAIN_METRICS = ("train/loss", "train/accuracy", "train/learning_rate",
                 "train/grad_norm", "train/param_norm", "train/steps_per_second")
EVAL_METRICS = ("val/loss", "val/accuracy")


def read_sequences(images: np.ndarray, read: str) -> np.ndarray:
  """Reads images ``[N, H, W, C]`` as sequences ``[N, T, F]`` (a reshape of the values).

  Args:
    images: images ``[N, H, W, C]`` of any dtype (normalized float32 in the task).
    read: ``"rows"``: ``T = H``, ``F = W * C``, ``out[n, t] = images[n, t].ravel()``
      (row t, its pixels left to right, channels innermost); ``"pixels"``:
      ``T = H * W``, ``F = C``, ``out[n, t] = images[n, t // W, t % W]`` (raster order).

  Returns:
    ``[N, T, F]`` of the images' dtype.

  Raises:
    ValueError: `read` is not one of `READS`, or `images` is not rank 4.
  """
  if read not in READS:
    raise ValueError(f"read must be one of {READS}; got {read!r}")
  images = np.asarray(images)
  if images.ndim != 4:
    raise ValueError(f"images must be [N, H, W, C] (rank 4); got shape {images.shape}")
  n, h, w, c = images.shape
  if read == "rows":
    return images.reshape(n, h, w * c)
  return images.reshape(n, h * w, c)


@dataclasses.dataclass(frozen=True, eq=False)
class SequenceSplits:
  """Train and validation sequences, and the sealed test images.

  Attributes:
    train, val: ``{"sequence": float32 [N, T, F], "label": int32 [N]}``.
    test: the `fdl.data.SealedTestSplit` (uint8 images), opened once by `evaluate_test`.
    indices: int64 rows of the 1,797 digits in each split, ``train``, ``val``, ``test``.
    stats: the training split's `fdl.data.NormStats` (applied to all three splits).
    read: how images became sequences (`read_sequences`).
    provenance: the source and split record of `fdl.data.make_splits`.
  """

  train: dict
  val: dict
  test: data.SealedTestSplit
  indices: dict
  stats: data.NormStats
  read: str
  provenance: dict

  @property
  def sequence_shape(self) -> tuple[int, int]:
    """``(T, F)`` of one sequence."""
    return tuple(self.train[INPUT_KEY].shape[1:])

  def to_sequences(self, images: np.ndarray) -> np.ndarray:
    """uint8 images ``[N, 8, 8, 1]`` -> normalized float32 sequences ``[N, T, F]``."""
    return read_sequences(data.normalize(images, self.stats), self.read)


def make_sequence_splits(config: ml_collections.ConfigDict) -> SequenceSplits:
  """Deterministic, disjoint train / val / sealed-test splits of the digits, as sequences.

  Same ``config.seed``, same splits. Normalization statistics come from the training
  split alone.
  """
  source = data.load_source("digits")
  splits = data.make_splits(source, val_size=None, val_fraction=config.val_fraction,
                            test_fraction=config.test_fraction, seed=config.seed)
  # make_splits keeps only the test images; the same plan names their rows.
  plan = data.plan_splits(len(source.train_labels), has_test=False, val_size=None,
                          val_fraction=config.val_fraction,
                          test_fraction=config.test_fraction, seed=config.seed)
  assert np.array_equal(plan.train, splits.train_indices)
  stats = data.compute_norm_stats(splits.train_images)
  out = SequenceSplits(train={}, val={}, test=splits.test,
                       indices={"train": splits.train_indices,
                                "val": splits.val_indices, "test": plan.test},
                       stats=stats, read=config.read, provenance=splits.provenance)
  out.train.update({INPUT_KEY: out.to_sequences(splits.train_images),
                    "label": splits.train_labels})
  out.val.update({INPUT_KEY: out.to_sequences(splits.val_images),
                  "label": splits.val_labels})
  return out


def create_model(config: ml_collections.ConfigDict, cell: str,
                 num_classes: int = 10) -> RNNClassifier:
  """The `fdl.models.recurrent.RNNClassifier` of `cell` with the config's sizes."""
  return RNNClassifier(
      num_classes=num_classes, hidden=config.hidden, cell=cell,
      num_layers=config.num_layers, bidirectional=config.bidirectional,
      readout=config.readout)


def check_config(config: ml_collections.ConfigDict, num_train: int | None = None) -> None:
  """Fails fast, before any training, on values that would fail later.

  Raises:
    ValueError: naming the config key, what was expected and what came.
  """
  if config.read not in READS:
    raise ValueError(f"config.read must be one of {READS}; got {config.read!r}")
  cells = tuple(config.cells)
  if not cells or len(set(cells)) != len(cells):
    raise ValueError(f"config.cells must be a non-empty tuple of distinct cells from "
                     f"{CELLS}; got {cells!r}")
  for cell in cells:
    if cell not in CELLS:
      raise ValueError(f"config.cells must hold cells from {CELLS}; "
                       f"got {cell!r} in {cells!r}")
    create_model(config, cell)  # validates hidden, num_layers, readout, ...
  for key in ("num_epochs", "batch_size"):
    if isinstance(config[key], bool) or int(config[key]) != config[key] or config[key] < 1:
      raise ValueError(f"config.{key} must be an integer >= 1; got {config[key]!r}")
  if num_train is not None and config.batch_size > num_train:
    raise ValueError(f"config.batch_size must be in [1, {num_train}] (the training "
                     f"split); got {config.batch_size}")
  if config.early_stopping_patience < 0:
    raise ValueError("config.early_stopping_patience must be >= 0 (0: off); "
                     f"got {config.early_stopping_patience!r}")
  make_optimizer(config.optimizer, config.learning_rate,
                 weight_decay=config.weight_decay)
  make_schedule(config.schedule, learning_rate=config.learning_rate,
                total_steps=config.num_epochs, warmup_steps=0)


def train_one(cell: str, config: ml_collections.ConfigDict, splits: SequenceSplits,
              workdir: str):
  """Trains the `cell` classifier in `workdir` (resuming there); returns its `FitResult`."""
  model = create_model(config, cell)
  steps_per_epoch = len(splits.train["label"]) // config.batch_size
  schedule = make_schedule(config.schedule, learning_rate=config.learning_rate,
                           total_steps=config.num_epochs * steps_per_epoch,
                           warmup_steps=config.warmup_steps)
  tx = make_optimizer(
      config.optimizer, schedule, weight_decay=config.weight_decay,
      grad_clip_norm=config.grad_clip_norm if config.grad_clip_norm > 0 else None)
  state = create_train_state(model, tx, (1,) + splits.sequence_shape, seed=config.seed)
  loss = classification_loss()
  train_step = make_train_step(loss, learning_rate=schedule, input_key=INPUT_KEY)
  eval_step = make_eval_step(loss, input_key=INPUT_KEY)
  patience = config.early_stopping_patience or 10**9
  return fit(
      state, train_step,
      lambda epoch: data.epoch_batches(splits.train, config.batch_size,
                                       seed=config.seed, epoch=epoch),
      num_epochs=config.num_epochs, eval_step=eval_step, val_data=[splits.val],
      workdir=workdir,
      early_stopping=EarlyStopping(metric="val/accuracy", mode="max",
                                   patience=patience, restore_best=True),
      keep_checkpoints=config.keep_checkpoints, log_every=config.log_every,
      progress=config.progress)


def evaluate_test(states: dict, splits: SequenceSplits) -> dict:
  """Opens the sealed test split (once) and scores every model's state on it.

  Args:
    states: cell name -> `fdl.train.TrainState` (the best validation epoch's).
    splits: the run's splits; its test split must not have been opened.

  Returns:
    cell name -> ``{"accuracy", "loss", "num_examples"}`` on the test split.
  """
  images, labels = splits.test.open()
  batch = {INPUT_KEY: splits.to_sequences(images), "label": labels}
  eval_step = make_eval_step(classification_loss(), input_key=INPUT_KEY)
  out = {}
  for name, state in states.items():
    metrics = evaluate(state, eval_step, [batch], prefix="test/")
    out[name] = {"accuracy": metrics["test/accuracy"], "loss": metrics["test/loss"],
                 "num_examples": int(len(labels))}
  return out


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains one classifier per cell, then evaluates the sealed test split once.

  Writes into `workdir`: ``config.json``; per cell ``<cell>/metrics.jsonl``,
  TensorBoard events and ``<cell>/checkpoints/``; then ``learning_curves.png`` and
  ``summary.json``. Running again with the same `workdir` and config resumes.

  Returns:
    The summary dict: ``test_accuracy`` (cell -> accuracy in [0, 1]) and per cell
    ``models[cell]`` with validation accuracy, best epoch, parameter count and training
    seconds. After SIGTERM / Ctrl-C only ``{"interrupted": True, "signal": n,
    "subrun": cell}``, and nothing is evaluated on the test split.

  Raises:
    ValueError: an invalid config value (naming the key), or `workdir` holding a run
      of another config.
  """
  config = config_files.resolve_smoke(config, "sequence")
  check_config(config)
  config_files.check_workdir_config(config, workdir)
  splits = make_sequence_splits(config)
  check_config(config, len(splits.train["label"]))
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())

  results, seconds = {}, {}
  for k, cell in enumerate(config.cells, start=1):
    if is_writer():
      print(f"[{k}/{len(config.cells)}] {cell}", flush=True)
    start = time.perf_counter()
    results[cell] = train_one(cell, config, splits, os.path.join(workdir, cell))
    seconds[cell] = time.perf_counter() - start
    if results[cell].interrupted:
      return {"interrupted": True, "signal": results[cell].signal, "subrun": cell}

  # The one look at the test split, after every choice (epochs, checkpoints) is made.
  tests = evaluate_test({c: r.state for c, r in results.items()}, splits)
  summary = {
      "read": config.read,
      "sequence_shape": list(splits.sequence_shape),
      "split_sizes": {k: int(len(v)) for k, v in splits.indices.items()},
      "test_accuracy": {c: t["accuracy"] for c, t in tests.items()},
      "models": {},
      "num_devices": jax.device_count(),
      "data": splits.provenance,
      "norm_stats": splits.stats.to_dict(),
  }
  for cell, result in results.items():
    best = result.history[result.best_epoch]
    summary["models"][cell] = {
        "test": tests[cell],
        "val_accuracy": best["val/accuracy"],
        "best_epoch": result.best_epoch + 1,
        "evaluated_checkpoint_step": best["step"],
        "epochs_run": result.epochs_run,
        "stopped_early": result.stopped_early,
        "num_params": num_params(result.state.params),
        "train_seconds_this_run": seconds[cell],
    }
  figure = os.path.join(workdir, "learning_curves.png")
  if is_writer():
    plot_learning_curves({c: r.history for c, r in results.items()}, figure,
                         best_epochs={c: r.best_epoch for c, r in results.items()},
                         title=f"digits read by {config.read} "
                               f"(T={splits.sequence_shape[0]}, "
                               f"F={splits.sequence_shape[1]})")
  summary["figure"] = figure
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def report(summary: dict) -> str:
  """What ``experiments/sequence.py`` prints: each model's test and validation accuracy."""
  shown = {"read": summary["read"], "sequence_shape": summary["sequence_shape"],
           "split_sizes": summary["split_sizes"],
           "test_accuracy": {c: round(a, 4) for c, a in summary["test_accuracy"].items()},
           "val_accuracy": {c: round(m["val_accuracy"], 4)
                            for c, m in summary["models"].items()},
           "best_epoch": {c: m["best_epoch"] for c, m in summary["models"].items()},
           "num_params": {c: m["num_params"] for c, m in summary["models"].items()},
           "figure": summary["figure"]}
  return json.dumps(shown, indent=2)


def plot_learning_curves(histories: dict, path: str, *, best_epochs: dict | None = None,
                         title: str = "") -> None:
  """Loss (train solid, val dashed) and validation accuracy per epoch, one line per model.

  Args:
    histories: model name -> `FitResult.history` (dicts with ``epoch``, ``train/loss``,
      ``val/loss``, ``val/accuracy``).
    path: output PNG.
    best_epochs: model name -> 0-based epoch of the state evaluated on the test split,
      marked with a star on the accuracy panel.
    title: the figure's title.
  """
  plt = figures.pyplot()
  fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
  for k, (name, history) in enumerate(histories.items()):
    color = f"C{k}"
    epochs = np.asarray([h["epoch"] for h in history]) + 1
    ax_loss.plot(epochs, [h["train/loss"] for h in history], "-", color=color,
                 label=f"{name} train")
    ax_loss.plot(epochs, [h["val/loss"] for h in history], "--", color=color,
                 label=f"{name} val")
    ax_acc.plot(epochs, [h["val/accuracy"] for h in history], "-o", color=color,
                markersize=3, label=name)
    if best_epochs and best_epochs.get(name) is not None:
      best = history[best_epochs[name]]
      ax_acc.plot(best["epoch"] + 1, best["val/accuracy"], "*", color=color,
                  markersize=13, markeredgecolor="k")
  ax_loss.set_ylabel("cross-entropy")
  ax_loss.set_yscale("log")
  ax_acc.set_ylabel("validation accuracy (star: the state tested)")
  for ax in (ax_loss, ax_acc):
    ax.set_xlabel("epoch")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
