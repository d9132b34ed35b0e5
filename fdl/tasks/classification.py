"""Image classification end to end: data, model, `fit`, one sealed test evaluation.

`train_and_evaluate(config, workdir)` is what `experiments/cifar.py` calls. The
training loop sees the training and validation splits only. After training, the
state with the best validation accuracy is evaluated on the test split(s), once;
`summary.json` records which checkpoint that was.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import config_files, data, models
from fdl.evaluate import figures
from fdl.train import mesh as mesh_lib
from fdl.train.early_stopping import EarlyStopping
from fdl.train.loop import fit
from fdl.train.metric_writer import is_writer, read_jsonl, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import TrainState, create_train_state, num_params
from fdl.losses import classification_loss
from fdl.train.step import make_eval_step, make_train_step

CLASSIFIERS = ("mlp", "cnn", "resnet9", "resnet18", "resnet34", "resnet50")
# 32 x 32 classic classifiers; their other fields via config.model_kwargs.
CLASSIFIERS += ("alexnet_cifar", "vgg11_cifar", "vgg16_cifar", "vit_cifar")
# The classifiers with a dropout rate (config.dropout; -1 keeps the model's own default).
DROPOUT_CLASSIFIERS = ("mlp", "cnn", "alexnet_cifar", "vgg11_cifar", "vgg16_cifar",
                       "vit_cifar")
# Metric names a run writes; tests and benchmarks check them.
TRAIN_METRICS = ("train/loss", "train/accuracy", "train/learning_rate",
                 "train/grad_norm", "train/param_norm", "train/steps_per_second")
EVAL_METRICS = ("val/loss", "val/accuracy")


def create_model(config: ml_collections.ConfigDict, num_classes: int):
  """The classifier named by ``config.model`` with the config's settings."""
  if config.model not in CLASSIFIERS:
    raise ValueError(
        f"config.model must be one of {CLASSIFIERS}; got {config.model!r}")
  kwargs: dict[str, Any] = {"num_classes": num_classes}
  if config.bf16:
    kwargs["dtype"] = jnp.bfloat16
  if config.dropout != -1:
    if config.model not in DROPOUT_CLASSIFIERS:
      raise ValueError(f"config.dropout applies to {DROPOUT_CLASSIFIERS} only; "
                       f"{config.model} has none (got {config.dropout}; -1: off)")
    kwargs["dropout"] = config.dropout
  if config.model.startswith("resnet"):
    kwargs["width"] = config.width
  if config.model in ("resnet18", "resnet34", "resnet50"):
    kwargs["stem"] = config.stem
  kwargs.update(config.model_kwargs.to_dict())
  return models.create_model(config.model, **kwargs)


def flip_averaged(apply_fn: Callable) -> Callable:
  """``apply_fn`` whose eval-mode logits average the image and its mirror image.

  Test-time augmentation with horizontal flips: with ``train=False`` the logits are
  ``(f(x) + f(x[:, :, ::-1])) / 2`` for ``x [batch, H, W, C]``; training calls
  (``train=True``) are unchanged. Validation and test both see the averaged logits,
  so a choice made on validation holds for the test.
  """
  def apply(variables, x, *args, train: bool, **kwargs):
    logits = apply_fn(variables, x, *args, train=train, **kwargs)
    if train:
      return logits
    return (logits + apply_fn(variables, x[:, :, ::-1], *args, train=False, **kwargs)) / 2
  return apply


def make_predict_step(mesh):
  """Jitted ``(state, batch) -> (predicted class, label, weight)``, each ``[batch]``.

  Outputs are replicated, so every process holds the whole global batch (labels
  included) whatever slice of it it fed.
  """
  def predict(state: TrainState, batch):
    logits = state.apply_fn(state.variables, batch["image"], train=False)
    weight = batch.get("weight", jnp.ones(logits.shape[:1], jnp.float32))
    return jnp.argmax(logits, axis=-1), batch["label"], weight
  replicated = mesh_lib.replicated(mesh)
  return jax.jit(predict, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                 out_shardings=replicated, compiler_options=models.compiler_options())


def evaluate_test(state, predict_step, batches, mesh, num_classes: int) -> dict:
  """Accuracy and confusion matrix of one pass over test `batches`.

  Padding examples (``weight == 0``) are dropped before counting.
  """
  labels, predictions = [], []
  for batch in batches:
    predicted, label, weight = mesh_lib.to_host(
        predict_step(state, mesh_lib.shard_batch(batch, mesh)))
    keep = weight > 0
    labels.append(label[keep])
    predictions.append(predicted[keep])
  matrix = figures.confusion_matrix(np.concatenate(labels),
                                    np.concatenate(predictions), num_classes)
  return {"accuracy": float(np.trace(matrix) / matrix.sum()),
          "num_examples": int(matrix.sum()),
          "confusion_matrix": matrix.tolist()}


def _check_config(config: ml_collections.ConfigDict) -> None:
  for key in ("num_epochs", "batch_size"):
    if int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1; got {config[key]!r}")
  if config.early_stopping_patience < 0:
    raise ValueError("config.early_stopping_patience must be >= 0 (0: off); "
                     f"got {config.early_stopping_patience!r}")
  if config.model not in CLASSIFIERS:
    raise ValueError(
        f"config.model must be one of {CLASSIFIERS}; got {config.model!r}")


def _schedule_epochs(config) -> int:
  return config.num_epochs if config.schedule_epochs < 0 else config.schedule_epochs


def _warn_if_schedule_changes(config, previous_path: str) -> None:
  """Resuming with a longer run changes a schedule tied to num_epochs; say so."""
  if not (os.path.exists(previous_path) and is_writer()):
    return
  with open(previous_path, encoding="utf-8") as f:
    previous = json.load(f)
  before = previous.get("schedule_epochs", -1)
  before = previous.get("num_epochs") if before is None or before < 0 else before
  if config.schedule != "constant" and before != _schedule_epochs(config):
    print(f"warning: resuming in a work directory whose learning-rate schedule "
          f"spanned {before} epochs; it now spans {_schedule_epochs(config)}. The "
          "result will differ from a single run; set --config.schedule_epochs "
          f"to {before} to keep the old schedule.", flush=True)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a classifier, evaluates the sealed test split once, writes a report.

  Writes into `workdir`: ``config.json``, ``metrics.jsonl``, TensorBoard
  events, ``checkpoints/``, ``learning_curves.png``, ``confusion_matrix.png``
  and ``summary.json``. Running again with the same `workdir` resumes.

  Returns:
    The summary dict (or ``{"interrupted": True, "signal": n}`` after SIGTERM /
    Ctrl-C).
  """
  config = config_files.resolve_smoke(config, "cifar")
  _check_config(config)
  os.makedirs(workdir, exist_ok=True)
  _warn_if_schedule_changes(config, os.path.join(workdir, "config.json"))
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  mesh = mesh_lib.make_mesh()

  source = data.load_source(config.dataset, data_dir=config.data_dir,
                            train_file=config.train_file,
                            test_file=config.test_file, seed=config.seed)
  splits = data.make_splits(source, val_size=config.val_size,
                            val_fraction=config.val_fraction,
                            test_fraction=config.test_fraction, seed=config.seed)
  augmentation = (data.AugmentConfig(**config.augmentation.to_dict())
                  if config.augment else data.AugmentConfig.off())
  pipeline = data.ClassificationPipeline(
      splits, batch_size=config.batch_size, seed=config.seed,
      augmentation=augmentation, num_workers=config.data_workers)

  model = create_model(config, pipeline.num_classes)
  steps_per_epoch = pipeline.steps_per_epoch
  schedule_epochs = _schedule_epochs(config)
  schedule = make_schedule(
      config.schedule, learning_rate=config.learning_rate,
      total_steps=schedule_epochs * steps_per_epoch,
      warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)))
  tx = make_optimizer(
      config.optimizer, schedule, momentum=config.momentum,
      weight_decay=config.weight_decay,
      grad_clip_norm=config.grad_clip_norm if config.grad_clip_norm > 0 else None)
  state = create_train_state(model, tx, (1,) + tuple(pipeline.input_shape),
                             seed=config.seed, mesh=mesh)
  if config.get("test_time_flip", False):
    state = state.replace(apply_fn=flip_averaged(state.apply_fn))
  loss = classification_loss(label_smoothing=config.label_smoothing)
  train_step = make_train_step(loss, mesh=mesh, learning_rate=schedule,
                               l1=config.l1, l2=config.l2)
  eval_step = make_eval_step(loss, mesh=mesh)
  patience = config.early_stopping_patience or 10**9

  start = time.perf_counter()
  result = fit(
      state, train_step, pipeline.train_batches, num_epochs=config.num_epochs,
      eval_step=eval_step, val_data=pipeline.eval_batches, workdir=workdir,
      early_stopping=EarlyStopping(metric="val/accuracy", mode="max",
                                   patience=patience, restore_best=True),
      keep_checkpoints=config.keep_checkpoints, log_every=config.log_every,
      progress=config.progress)
  train_seconds = time.perf_counter() - start
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}

  # The one and only look at the test split(s), with the best validation state.
  predict_step = make_predict_step(mesh)
  tests = {}
  for name, batches in data.sealed_test_batches(
      source, splits, pipeline, config.extra_test_files):
    tests[name] = evaluate_test(result.state, predict_step, batches, mesh,
                                pipeline.num_classes)
  main_test = next(iter(tests))

  best = result.history[result.best_epoch]
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl")) if is_writer() else []
  rates = [r["train/examples_per_second"] for r in records
           if "train/examples_per_second" in r][1:]  # the first includes compiling
  summary = {
      "train_loss": result.history[-1]["train/loss"],
      "val_accuracy": best["val/accuracy"],
      "test_accuracy": tests[main_test]["accuracy"],
      "test_split": main_test,
      "tests": {k: {"accuracy": v["accuracy"], "num_examples": v["num_examples"]}
                for k, v in tests.items()},
      "best_epoch": result.best_epoch + 1,
      "evaluated_checkpoint_step": best["step"],
      "epochs_run": result.epochs_run,
      "stopped_early": result.stopped_early,
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "num_params": num_params(result.state.params),
      "examples_per_sec": statistics.median(rates) if rates else None,
      "train_seconds_this_run": train_seconds,
      "model": config.model,
      "data": pipeline.provenance,
  }
  if is_writer():
    figures.plot_learning_curves(result.history,
                                 os.path.join(workdir, "learning_curves.png"))
    figures.plot_confusion_matrix(
        np.asarray(tests[main_test]["confusion_matrix"]), pipeline.class_names,
        os.path.join(workdir, "confusion_matrix.png"),
        title=f"test ({main_test}):")
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def report(summary: dict) -> str:
  """What ``experiments/cifar.py`` prints: the test and training numbers."""
  shown = ("test_accuracy", "test_split", "tests", "val_accuracy", "best_epoch",
           "epochs_run", "train_loss", "examples_per_sec", "num_params")
  return json.dumps({k: summary[k] for k in shown}, indent=2)
