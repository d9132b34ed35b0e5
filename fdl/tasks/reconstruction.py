"""Learned MRI reconstruction end to end: data, model, `fit`, one sealed test.

`train_and_evaluate(config, workdir)` is what `experiments/mri_recon.py` calls.
Training sees the training and validation volumes only; the state with the best
validation SSIM is then evaluated once on the test volumes, next to the
classical reconstructions (zero-filled, CG-SENSE, compressed sensing) of the
same under-sampled k-space. Scores follow fastMRI: magnitude images, centre
cropped to the reconstruction size, ``data_range`` the target volume's maximum.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from fdl import config_files, data, models
from fdl.evaluate import figures
from fdl.train import mesh as mesh_lib
from fdl.evaluate.reconstruction import METHODS, evaluate_test
from fdl.tasks import supervision
from fdl.train import transfer
from fdl.train.checkpoint import Checkpointer
from fdl.train.early_stopping import EarlyStopping
from fdl.train.loop import fit
from fdl.train.metric_writer import is_writer, read_jsonl, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import create_train_state, num_params
from fdl.losses import reconstruction_loss
from fdl.train.step import make_eval_step, make_train_step

RECON_MODELS = ("unet", "modl", "varnet")
INPUT_KEYS = ("kspace", "mask", "maps")  # the models' positional inputs


def create_model(config: ml_collections.ConfigDict):
  """The reconstruction network named by ``config.model``, with its settings."""
  if config.model not in RECON_MODELS:
    raise ValueError(f"config.model must be one of {RECON_MODELS}; got {config.model!r}")
  settings = config[config.model].to_dict()
  name = {"unet": "recon_unet", "modl": "modl", "varnet": "varnet"}[config.model]
  return models.create_model(name, **settings)


def _check_config(config: ml_collections.ConfigDict) -> None:
  for key in ("num_epochs", "batch_size"):
    if int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1; got {config[key]!r}")
  if not float(config.acceleration) >= 1:
    raise ValueError(f"config.acceleration must be >= 1 (the under-sampling factor); "
                     f"got {config.acceleration!r}")
  if config.model not in RECON_MODELS:
    raise ValueError(f"config.model must be one of {RECON_MODELS}; got {config.model!r}")
  if config.early_stopping_patience < 0:
    raise ValueError("config.early_stopping_patience must be >= 0 (0: off); "
                     f"got {config.early_stopping_patience!r}")
  freeze = config.get("freeze") or ()
  if isinstance(freeze, str) or not all(isinstance(p, str) for p in freeze):
    raise ValueError("config.freeze must be a tuple of parameter-path patterns "
                     f"(globs, or 're:' regexes); got {freeze!r}")
  if not isinstance(config.get("init_from") or "", str):
    raise ValueError("config.init_from must be a finished run's workdir or ''; got "
                     f"{config.get('init_from')!r}")


def load_volumes(config: ml_collections.ConfigDict) -> list[data.Volume]:
  """The fully sampled volumes the config names, before the split (`make_pipeline`).

  ``config.dataset="anatomy"`` synthesizes the volumes from brain templates with
  ``config.anatomy`` (`fdl.data.anatomy_volumes`: templates and contrasts), its test
  volumes being ``config.test_volumes`` volumes of other anatomies.
  """
  anatomy = None
  if config.dataset == "anatomy":
    anatomy = dict((config.get("anatomy") or ml_collections.ConfigDict()).to_dict(),
                   test_volumes=int(config.test_volumes))
  return data.load_volumes(
      config.dataset, seed=config.seed, num_volumes=config.num_volumes,
      slices_per_volume=config.slices_per_volume, shape=tuple(config.shape),
      num_coils=config.num_coils, snr_db=config.snr_db, phantom=config.phantom,
      center_fraction=config.center_fraction,
      # Data crimes on purpose (experiments/data_crimes.py); off by default.
      processing={"zero_pad_factor": config.get("zero_pad_factor", 1.0),
                  "jpeg_quality": config.get("jpeg_quality", 0)},
      anatomy=anatomy)


def make_pipeline(config: ml_collections.ConfigDict) -> data.ReconPipeline:
  """Loads the volumes named by the config (`load_volumes`) and splits them by volume."""
  volumes = load_volumes(config)
  return data.ReconPipeline(
      volumes, val_volumes=config.val_volumes, test_volumes=config.test_volumes,
      mask_type=config.mask, acceleration=config.acceleration,
      center_fraction=config.center_fraction, batch_size=config.batch_size,
      seed=config.seed, maps=config.maps, calib_size=config.calib_size,
      kernel_size=config.kernel_size, process_index=jax.process_index(),
      process_count=jax.process_count(),
      # Scarce data and augmentation (experiments/scarce_data.py); off by default.
      train_slices=config.get("train_slices") or None,
      augment=_augment_settings(config))


def _augment_settings(config: ml_collections.ConfigDict) -> dict | None:
  """``config.augment`` as `ReconPipeline` takes it: None when off or absent."""
  settings = config.get("augment")
  if settings is None:
    return None
  settings = settings.to_dict() if hasattr(settings, "to_dict") else dict(settings)
  return settings if settings.get("enabled", True) else None


def audit_warnings(pipeline: data.ReconPipeline) -> list[str]:
  """Warnings for volumes whose k-space carries marks of processing (`fdl.mri.audit`)."""
  audit = pipeline.provenance["audit"]
  if not audit["flagged"]:
    return []
  total = sum(len(v) for v in pipeline.provenance["volumes"].values())
  return [f"data audit: {len(audit['flagged'])} of {total} volumes carry marks of "
          f"processing ({', '.join(audit['flags'])}: "
          f"{', '.join(sorted(audit['flagged']))}); scores on such data overstate what "
          "raw k-space would give (Shimron et al., PNAS 2022)"]


def example_inputs(pipeline: data.ReconPipeline) -> tuple[jax.ShapeDtypeStruct, ...]:
  """Shapes and dtypes of one example's ``(kspace, mask, maps)``, batch 1."""
  height, width = pipeline.image_shape
  coils = (1, pipeline.num_coils, height, width)
  return (jax.ShapeDtypeStruct(coils, jnp.complex64),
          jax.ShapeDtypeStruct((1,) + tuple(pipeline.mask_shape), jnp.float32),
          jax.ShapeDtypeStruct(coils, jnp.complex64))


def _create_state(config, model, steps_per_epoch: int, specs, mesh=None):
  """The run's optimizer and a fresh state; `load_trained` rebuilds it the same way."""
  schedule = make_schedule(
      config.schedule, learning_rate=config.learning_rate,
      total_steps=config.num_epochs * steps_per_epoch,
      warmup_steps=int(round(config.warmup_epochs * steps_per_epoch)))
  tx = make_optimizer(
      config.optimizer, schedule, weight_decay=config.weight_decay,
      grad_clip_norm=config.grad_clip_norm if config.grad_clip_norm > 0 else None)
  # init_seed >= 0 draws the initial parameters (and the state's RNG) apart from the
  # data's seed: deep-ensemble members share data, split and masks, not weights.
  init_seed = config.get("init_seed", -1)
  state = create_train_state(model, tx, example_inputs=specs,
                             seed=config.seed if init_seed < 0 else int(init_seed),
                             mesh=mesh)
  if config.get("freeze"):
    # Zero updates for the matching parameters (optax.multi_transform).
    state, _ = transfer.freeze_state(state, tuple(config.freeze), mesh=mesh)
  return state, schedule


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains a reconstruction network, evaluates the sealed test volumes once.

  Writes into `workdir`: ``config.json``, ``metrics.jsonl``, TensorBoard
  events, ``checkpoints/``, ``learning_curves.png``, ``reconstructions.png``
  and ``summary.json``. Running again with the same `workdir` resumes.

  Returns:
    The summary dict (or ``{"interrupted": True, "signal": n}`` after SIGTERM /
    Ctrl-C).
  """
  config = config_files.resolve_smoke(config, "mri_recon")
  _check_config(config)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  mesh = mesh_lib.make_mesh()
  pipeline = make_pipeline(config)
  data_warnings = audit_warnings(pipeline)
  for warning in data_warnings:
    if is_writer():
      print(f"warning: {warning}", flush=True)
  model = create_model(config)
  state, schedule = _create_state(config, model, pipeline.steps_per_epoch,
                                  example_inputs(pipeline), mesh)
  # Init order: an existing checkpoint in workdir (fit resumes it and it wins),
  # then config.init_from (a finished run's matching parameters), then scratch.
  transfer_record = None
  if config.get("init_from"):
    state, report = transfer.init_state_from(state, config.init_from, mesh=mesh)
    transfer_record = {"init_from": os.path.abspath(config.init_from),
                       **report.to_dict()}
  if config.get("freeze"):
    transfer_record = dict(transfer_record or {})
    transfer_record["frozen"] = transfer.match_paths(
        transfer.flatten_paths(state.params), tuple(config.freeze))
  patience = config.early_stopping_patience or 10**9
  mode = supervision.check_config(config)
  if mode == "supervised":
    loss = reconstruction_loss(config.loss, ssim_weight=config.ssim_weight)
    train_step = make_train_step(loss, mesh=mesh, learning_rate=schedule,
                                 input_key=INPUT_KEYS)
    eval_step = make_eval_step(loss, mesh=mesh, input_key=INPUT_KEYS)
    train_data, val_data = pipeline.train_batches, pipeline.val_batches
    selection = EarlyStopping(metric="val/ssim", mode="max", patience=patience,
                              restore_best=True)
  else:
    # SSDU / K-band: k-space losses, no fully sampled reference (fdl.tasks.supervision).
    ssl = supervision.make_training(config, pipeline, model, state, mesh=mesh,
                                        learning_rate=schedule, patience=patience)
    state, train_step, eval_step = ssl.state, ssl.train_step, ssl.eval_step
    train_data, val_data, selection = ssl.train_data, ssl.val_data, ssl.early_stopping

  start = time.perf_counter()
  result = fit(
      state, train_step, train_data, num_epochs=config.num_epochs,
      eval_step=eval_step, val_data=val_data, workdir=workdir,
      early_stopping=selection,
      keep_checkpoints=config.keep_checkpoints, log_every=config.log_every,
      progress=config.progress)
  train_seconds = time.perf_counter() - start
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}

  # The one and only look at the test volumes, with the best validation state.
  variables = mesh_lib.to_host(result.state.variables)
  test, shown = evaluate_test(config, model, variables, pipeline.test_volumes())

  best = result.history[result.best_epoch]
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl")) if is_writer() else []
  rates = [r["train/examples_per_second"] for r in records
           if "train/examples_per_second" in r][1:]  # the first includes compiling
  provenance = pipeline.provenance
  summary = {
      "model": config.model,
      "acceleration": float(config.acceleration),
      "mask": config.mask,
      "test": test,
      "val_ssim": best.get("val/ssim"),  # None for self-supervised runs
      "best_epoch": result.best_epoch + 1,
      "evaluated_checkpoint_step": best["step"],
      "epochs_run": result.epochs_run,
      "stopped_early": result.stopped_early,
      "train_loss": result.history[-1]["train/loss"],
      "num_params": num_params(result.state.params),
      # One example's input shapes, for `load_trained`.
      "input_shapes": {k: list(v.shape[1:]) for k, v in
                       zip(INPUT_KEYS, example_inputs(pipeline))},
      "steps_per_epoch": pipeline.steps_per_epoch,
      "examples_per_sec": statistics.median(rates) if rates else None,
      "train_seconds_this_run": train_seconds,
      "num_devices": jax.device_count(),
      "num_processes": jax.process_count(),
      "data": provenance,
      "data_warnings": data_warnings,
  }
  if transfer_record is not None:
    summary["transfer"] = transfer_record
  if mode != "supervised":
    summary.update(supervision.summary_entries(config, pipeline, ssl, best))
  if is_writer():
    figures.plot_learning_curves(result.history,
                                 os.path.join(workdir, "learning_curves.png"),
                                 metrics=("loss", "ssim") if mode == "supervised"
                                 else ("loss",))
    figures.plot_reconstruction_grid(
        os.path.join(workdir, "reconstructions.png"), shown["reference"],
        {_LABELS[m]: shown[m] for m in METHODS},
        title=f"{config.model} at {float(config.acceleration):g}x ({config.mask} "
              f"mask), test slices; scores: that slice")
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def finished_summary(config: ml_collections.ConfigDict, workdir: str) -> dict | None:
  """The summary of a finished run of exactly `config` in `workdir`, else None.

  For experiments made of many runs, which reuse finished ones. None means no
  run there yet, or an unfinished run of this config (`train_and_evaluate`
  resumes it).

  Raises:
    ValueError: `workdir` holds a run of another config (up to
      `fdl.config_files.HARMLESS` keys); `train_and_evaluate` would resume its
      checkpoints under the new config. Names the (dotted) keys that differ.
  """
  config = config_files.resolve_smoke(config, "mri_recon")
  if not os.path.exists(os.path.join(workdir, "config.json")):
    return None
  config_files.check_workdir_config(config, workdir)
  summary_path = os.path.join(workdir, "summary.json")
  if not os.path.exists(summary_path):
    return None
  with open(summary_path, encoding="utf-8") as f:
    return json.load(f)


_LABELS = {"zero_filled": "zero-filled", "cg_sense": "CG-SENSE",
           "cs_wavelet": "CS (L1-Haar)", "model": "model"}


def load_trained(workdir: str) -> tuple[Any, dict, ml_collections.ConfigDict]:
  """The model, its evaluated (best-validation) variables and the config of a run.

  Args:
    workdir: a finished `train_and_evaluate` work directory (with
      ``config.json``, ``summary.json`` and ``checkpoints/``).

  Returns:
    ``(model, variables, config)``; `variables` are host arrays, ready for
    `fdl.models.reconstruct`.
  """
  paths = {name: os.path.join(workdir, name) for name in ("config.json", "summary.json")}
  for name, path in paths.items():
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: is {workdir!r} a finished "
                              f"mri_recon work directory?")
  with open(paths["config.json"], encoding="utf-8") as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(paths["summary.json"], encoding="utf-8") as f:
    summary = json.load(f)
  model = create_model(config)
  shapes = summary["input_shapes"]
  specs = tuple(jax.ShapeDtypeStruct((1, *shapes[k]), dtype) for k, dtype in
                zip(INPUT_KEYS, (jnp.complex64, jnp.float32, jnp.complex64)))
  like, _ = _create_state(config, model, summary["steps_per_epoch"], specs)
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = checkpointer.restore(like, step=summary["evaluated_checkpoint_step"])
  checkpointer.close()
  return model, mesh_lib.to_host(state.variables), config


def format_table(summary: dict) -> str:
  """The test scores as a plain-text table (mean ± std over test slices)."""
  test = summary["test"]
  lines = [f"{'method':<14} {'NMSE':>17} {'PSNR (dB)':>15} {'SSIM':>15}"]
  for method in METHODS:
    s = test[method]
    label = summary["model"] if method == "model" else _LABELS[method]
    lines.append(f"{label:<14} {s['nmse']:.4f} ± {s['nmse_std']:.4f}"
                 f"  {s['psnr']:6.2f} ± {s['psnr_std']:4.2f}"
                 f"  {s['ssim']:.4f} ± {s['ssim_std']:.4f}")
  return "\n".join(lines)


def report(summary: dict) -> str:
  """What ``experiments/mri_recon.py`` prints: the run's numbers and the test table."""
  shown = ("model", "acceleration", "num_params", "best_epoch", "epochs_run",
           "val_ssim", "train_seconds_this_run", "examples_per_sec")
  return "\n".join([json.dumps({k: summary[k] for k in shown}, indent=2),
                    f"test ({summary['test']['num_slices']} slices of "
                    f"{summary['test']['num_volumes']} volumes):",
                    format_table(summary)])
