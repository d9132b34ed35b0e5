"""Why non-linearity: a linear classifier and a small MLP on points no line separates.

Both models go through the same training core (`fdl.train`): same optimizer,
schedule, batches and early stopping on the validation loss. Accuracy is reported
on held-out test points that neither training nor early stopping saw.
"""

from __future__ import annotations

import json
import os
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import config_files, data, models, train
from fdl.studies import harness
from fdl.train.metric_writer import is_writer

MODEL_NAMES = ("linear", "mlp")
# Config keys a rerun in the same workdir may change (besides the harmless ones).
RESUMABLE_CHANGES = ("num_epochs", "early_stopping_patience")


def _build_model(name: str, config: ml_collections.ConfigDict):
  if name == "linear":
    return models.MLP(hidden=(), num_classes=2)
  return models.MLP(hidden=tuple(config.mlp.hidden), num_classes=2,
                    activation=config.mlp.activation, dropout=config.mlp.dropout)


def train_one(name: str, config: ml_collections.ConfigDict, splits: dict,
              workdir: str | None) -> dict:
  """Trains one model on ``splits["train"]`` in `workdir`; returns its state and metrics."""
  model = _build_model(name, config)
  steps_per_epoch = len(splits["train"]["label"]) // config.batch_size
  schedule = train.make_schedule(
      config.schedule, learning_rate=config.learning_rate,
      total_steps=config.num_epochs * steps_per_epoch,
      warmup_steps=config.warmup_steps)
  tx = train.make_optimizer(config.optimizer, schedule,
                            weight_decay=config.weight_decay)
  state = train.create_train_state(model, tx, (1, 2), seed=config.seed)
  loss = train.classification_loss()
  train_step = train.make_train_step(loss, learning_rate=schedule,
                                     l1=config.l1, l2=config.l2)
  eval_step = train.make_eval_step(loss)
  start = time.perf_counter()
  result = train.fit(
      state, train_step,
      lambda epoch: data.epoch_batches(splits["train"], config.batch_size,
                                       seed=config.seed, epoch=epoch),
      num_epochs=config.num_epochs, eval_step=eval_step,
      val_data=[splits["val"]],
      workdir=workdir,
      early_stopping=train.EarlyStopping(
          metric="val/loss", patience=config.early_stopping_patience),
      log_every=config.log_every, progress=config.progress)
  seconds = time.perf_counter() - start
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}
  # The test split is evaluated once, after training, with the restored best state.
  test = train.evaluate(result.state, eval_step, [splits["test"]], prefix="test/")
  return {
      "state": result.state,
      "test_accuracy": test["test/accuracy"],
      "val_accuracy": result.history[result.best_epoch]["val/accuracy"],
      "best_epoch": result.best_epoch,
      "epochs_run": result.epochs_run,
      "num_params": train.num_params(result.state.params),
      "train_seconds": seconds,
  }


def check_config(config: ml_collections.ConfigDict, num_train: int) -> None:
  """Fails fast, before any training, on values that would fail later."""
  if not 1 <= config.batch_size <= num_train:
    raise ValueError(
        f"config.batch_size must be in [1, {num_train}] (the training split); "
        f"got {config.batch_size}")
  if config.num_epochs < 1:
    raise ValueError(f"config.num_epochs must be >= 1; got {config.num_epochs}")
  for name in MODEL_NAMES:
    _build_model(name, config)  # validates activation, widths, dropout
  train.make_optimizer(config.optimizer, config.learning_rate,
                       weight_decay=config.weight_decay)
  train.make_schedule(config.schedule, learning_rate=config.learning_rate,
                      total_steps=config.num_epochs, warmup_steps=0)


def make_splits(config: ml_collections.ConfigDict) -> dict:
  """Deterministic, disjoint train / val / test splits of the toy data set."""
  x, y = data.make_toy_dataset(config.dataset, config.num_points,
                               noise=config.noise, seed=config.seed)
  index = data.split_indices(len(y), config.split, seed=config.seed)
  return {name: {"image": x[i], "label": y[i]}
          for name, i in zip(("train", "val", "test"), index)}


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains both models, writes ``summary.json`` and the decision-boundary figure.

  Each model is a sub-run in ``workdir/<name>`` (`fdl.studies.harness.run_study`).

  Returns:
    The summary dict; ``linear_accuracy`` and ``mlp_accuracy`` are test-split
    accuracies in [0, 1]. If a signal interrupted training, only
    ``{"interrupted": True, "signal": n, "subrun": name}``: nothing is reported,
    and running again with the same `workdir` resumes.
  """
  config = config_files.resolve_smoke(config, "nonlinearity")
  splits = make_splits(config)
  check_config(config, len(splits["train"]["label"]))
  subruns = [harness.SubRun(name, run=lambda d, name=name: train_one(name, config,
                                                                     splits, d))
             for name in MODEL_NAMES]

  def summarize(results: dict) -> dict:
    summary = {
        "dataset": config.dataset,
        "split_sizes": {k: int(len(v["label"])) for k, v in splits.items()},
        "linear_accuracy": results["linear"]["test_accuracy"],
        "mlp_accuracy": results["mlp"]["test_accuracy"],
        "num_devices": jax.device_count(),
    }
    for name, r in results.items():
      summary[name] = {k: v for k, v in r.items() if k != "state"}
    figure = os.path.join(workdir, "decision_boundaries.png")
    if is_writer():
      plot_decision_boundaries(figure, splits["test"],
                               {n: r["state"] for n, r in results.items()},
                               {n: r["test_accuracy"] for n, r in results.items()})
    summary["figure"] = figure
    return summary

  # A rerun may change the training length: `fit` resumes each model from its
  # checkpoint and trains on to the new length.
  return harness.run_study(config, workdir, subruns, summarize,
                           harmless=config_files.HARMLESS + RESUMABLE_CHANGES)


def report(summary: dict) -> str:
  """What ``experiments/nonlinearity.py`` prints: both test accuracies."""
  return json.dumps({k: round(summary[k], 4) if isinstance(summary[k], float)
                     else summary[k] for k in
                     ("dataset", "linear_accuracy", "mlp_accuracy", "figure")}, indent=2)


def plot_decision_boundaries(path: str, points: dict, states: dict,
                             accuracies: dict, resolution: int = 200) -> None:
  """Draws each model's P(class 1) over the plane with the test points on top."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  x, y = points["image"], points["label"]
  lo, hi = x.min(0) - 0.5, x.max(0) + 0.5
  gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution),
                       np.linspace(lo[1], hi[1], resolution))
  grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
  fig, axes = plt.subplots(1, len(states), figsize=(5 * len(states), 4.4),
                           squeeze=False)
  for ax, (name, state) in zip(axes[0], states.items()):
    logits = train.predict(state, grid)
    prob = np.asarray(jax.nn.softmax(jnp.asarray(logits))[:, 1]).reshape(gx.shape)
    ax.contourf(gx, gy, prob, levels=np.linspace(0, 1, 11), cmap="RdBu_r",
                alpha=0.6)
    ax.contour(gx, gy, prob, levels=[0.5], colors="k", linewidths=1.5)
    ax.scatter(x[:, 0], x[:, 1], c=y, cmap="RdBu_r", edgecolors="k", s=14,
               linewidths=0.4)
    ax.set_title(f"{name}: test accuracy {accuracies[name]:.1%}")
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
  fig.suptitle("Decision boundary (black: P(class 1) = 0.5) on held-out points")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
