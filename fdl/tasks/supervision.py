"""Training an unrolled reconstruction without fully sampled data: SSDU and K-band.

`fdl.tasks.reconstruction.train_and_evaluate` reads ``config.supervision``:

* ``"supervised"`` (default): the image loss against the fully sampled reference, model
  selection on validation SSIM (unchanged);
* ``"ssdu"`` (Yaman et al. 2020): each training slice has ONE acquired mask ``Omega``
  (its epoch-0 training mask, fixed for the whole run: the data were acquired once),
  split into ``Theta`` (the input: ``kspace * Theta`` with mask ``Theta``) and ``Lambda``
  (the loss: SSDU's normalized L1 + L2 between the output's multi-coil k-space and the
  measurements on ``Lambda``); the split is drawn again every epoch
  (``config.ssdu.resplit_every_epoch``; only acquired points are ever used);
* ``"kband"`` (Wang et al. 2023): each training slice is acquired only inside one band
  (a random orientation fixed per slice); the input is the band under-sampled by that
  epoch's training mask, the loss the band-weighted k-space loss inside the band.

The self-supervised modes never read a fully sampled reference during training or model
selection: their batches carry no ``target``. Model selection is on the validation loss
of the same kind (``val/loss``): SSDU's loss on a held-out ``Lambda`` of each validation
slice's fixed acquisition (fixed split per slice), K-band's weighted loss in a fixed
band per validation slice. The sealed test split is then scored against the fully
sampled references, like every other method (`evaluate_test`).

`make_training` builds the state, steps, data and model selection of a self-supervised
run. `fdl.studies.self_supervised.compare_supervision` trains all three on the same
data and scores them on the same test slices.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import data
from fdl.data.pipeline import Batches
from fdl.losses import StepLoss, weighted_mean
from fdl.mri import self_supervised as mri_ss
from fdl.mri.fft import fft2c
from fdl.train.distributed import process_slice
from fdl.train.early_stopping import EarlyStopping
from fdl.train.state import TrainState
from fdl.train.step import make_eval_step, make_train_step

SUPERVISIONS = ("supervised", "ssdu", "kband")
SELF_SUPERVISED = ("ssdu", "kband")
INPUT_KEYS = ("kspace", "mask", "maps")

# fold_in tags of the self-supervised draws, apart from the pipeline's 0, 1, 2.
_SSDU_TRAIN, _SSDU_VAL, _KBAND_TRAIN, _KBAND_VAL = 11, 12, 13, 14


def check_config(config: ml_collections.ConfigDict) -> str:
  """Validates ``config.supervision`` and its settings; returns the supervision."""
  supervision = config.get("supervision", "supervised")
  if supervision not in SUPERVISIONS:
    raise ValueError(f"config.supervision must be one of {SUPERVISIONS}; got "
                     f"{supervision!r}")
  if supervision == "ssdu":
    settings = config.ssdu
    if not 0 < settings.rho < 1:
      raise ValueError(f"config.ssdu.rho must be in (0, 1); got {settings.rho!r}")
    if settings.selection not in mri_ss.SSDU_SELECTIONS:
      raise ValueError(f"config.ssdu.selection must be one of {mri_ss.SSDU_SELECTIONS}; "
                       f"got {settings.selection!r}")
  if supervision == "kband":
    settings = config.kband
    if not 0 < settings.band_fraction <= 1:
      raise ValueError("config.kband.band_fraction must be in (0, 1]; got "
                       f"{settings.band_fraction!r}")
    if settings.orientations not in mri_ss.BAND_ORIENTATIONS:
      raise ValueError(f"config.kband.orientations must be one of "
                       f"{mri_ss.BAND_ORIENTATIONS}; got {settings.orientations!r}")
    if settings.norm not in ("l1", "l2"):
      raise ValueError(f"config.kband.norm must be 'l1' or 'l2'; got {settings.norm!r}")
  return supervision


# ---------------------------------------------------------------------------
# Losses on the complex output (`fdl.losses.StepLoss`).


def _output_kspace(image: jax.Array, maps: jax.Array) -> jax.Array:
  """``F S x``: the multi-coil k-space ``[B, C, H, W]`` of complex images ``[B, H, W]``."""
  return fft2c(maps * image[:, None])


def ssdu_objective() -> StepLoss:
  """SSDU's loss on the loss set: batch keys ``maps``, ``loss_mask``, ``loss_kspace``.

  Also reports ``loss_set_nmse``, ``||Lambda (y_hat - y)||^2 / ||Lambda y||^2``.
  """

  def loss_fn(image, batch):
    pred = _output_kspace(image, batch["maps"])
    per_example = mri_ss.ssdu_loss(pred, batch["loss_kspace"], batch["loss_mask"])
    residual = batch["loss_mask"] * (pred - batch["loss_kspace"])
    held_out = batch["loss_mask"] * batch["loss_kspace"]
    nmse = (jnp.sum(jnp.abs(residual) ** 2, (1, 2, 3))
            / jnp.maximum(jnp.sum(jnp.abs(held_out) ** 2, (1, 2, 3)), 1e-30))
    return weighted_mean(per_example, batch), {
        "loss_set_nmse": weighted_mean(nmse, batch)}

  return StepLoss(loss_fn)  # no target_key: no fully sampled reference


def kband_objective(norm: str = "l1") -> StepLoss:
  """K-band's weighted band loss: batch keys ``maps``, ``loss_weight``, ``loss_kspace``.

  Also reports ``band_nmse``, the unweighted ``||band (y_hat - y)||^2 / ||band y||^2``.
  """

  def loss_fn(image, batch):
    pred = _output_kspace(image, batch["maps"])
    per_example = mri_ss.kband_loss(pred, batch["loss_kspace"], batch["loss_weight"],
                                    norm=norm)
    band = (batch["loss_weight"] != 0).astype(jnp.float32)
    nmse = (jnp.sum(jnp.abs(band * (pred - batch["loss_kspace"])) ** 2, (1, 2, 3))
            / jnp.maximum(jnp.sum(jnp.abs(band * batch["loss_kspace"]) ** 2, (1, 2, 3)),
                          1e-30))
    return weighted_mean(per_example, batch), {"band_nmse": weighted_mean(nmse, batch)}

  return StepLoss(loss_fn)


# ---------------------------------------------------------------------------
# Data: one acquisition per slice, no fully sampled reference in any batch.


def _acquired(pipeline: data.ReconPipeline, split: str, ids: np.ndarray,
              masks: np.ndarray) -> dict:
  """Slices `ids` of `split` acquired with `masks`, without the fully sampled target.

  `ReconPipeline.train_batches` draws a fresh mask per epoch (augmentation for
  supervised training); a self-supervised run must instead see one fixed acquisition
  per slice (SSDU) or the data of one band (K-band), so the slices are read here with
  masks chosen by this module (`ReconPipeline.acquire`).
  """
  batch = pipeline.acquire(split, ids, masks)
  del batch["target"]
  return batch


def _slice_keys(seed: int, tag: int, epoch: int, ids: np.ndarray) -> jax.Array:
  """One key per slice: ``fold_in(fold_in(fold_in(PRNGKey(seed), tag), epoch), id)``."""
  base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), tag), epoch)
  return _fold_in_all(base, jnp.asarray(ids, jnp.uint32))


@jax.jit
def _fold_in_all(key: jax.Array, ids: jax.Array) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, ids)


def _val_ids(pipeline: data.ReconPipeline) -> Callable[[int], np.ndarray]:
  """Validation slice ids of batch `step` as `ReconPipeline.val_batches` orders them."""
  num_val = int(pipeline.provenance["slices"]["val"])
  rows = process_slice(pipeline.batch_size)

  def ids(step):
    block = np.arange(step * pipeline.batch_size, (step + 1) * pipeline.batch_size)
    return np.minimum(block, num_val - 1)[rows]

  return ids


def _train_ids(pipeline: data.ReconPipeline, epoch: int):
  order, size = pipeline.train_order(epoch), pipeline.batch_size
  rows = process_slice(size)
  for step in range(pipeline.steps_per_epoch):
    yield order[step * size:(step + 1) * size][rows]


def ssdu_data(pipeline: data.ReconPipeline, settings, seed: int):
  """``(train_data(epoch) -> Batches, val_data() -> Batches)`` of SSDU batches.

  Batches hold ``kspace`` (``y * Theta``), ``mask`` (``Theta``), ``maps``,
  ``loss_mask`` (``Lambda``), ``loss_kspace`` (``y * Omega``), ``data_range`` and, in
  validation, ``weight``.
  """
  split = jax.jit(jax.vmap(functools.partial(
      mri_ss.ssdu_split, rho=float(settings.rho), selection=settings.selection,
      std_scale=float(settings.std_scale), center_block=_block(settings.center_block))))

  def assemble(acquired, theta, lam, extra=None):
    kspace = acquired["kspace"]
    return {"kspace": kspace * theta, "mask": theta, "maps": acquired["maps"],
            "loss_mask": lam, "loss_kspace": kspace,
            "data_range": acquired["data_range"], **(extra or {})}

  def train_data(epoch: int) -> Batches:
    split_epoch = epoch if settings.resplit_every_epoch else 0

    def iterate():
      for ids in _train_ids(pipeline, epoch):
        omega = pipeline.train_masks(0, ids)  # the slice's one acquisition
        acquired = _acquired(pipeline, "train", ids, omega)
        theta, lam = (np.asarray(m) for m in split(
            _slice_keys(seed, _SSDU_TRAIN, split_epoch, ids), omega))
        yield assemble(acquired, theta, lam)

    return Batches(iterate, pipeline.steps_per_epoch, description=f"SSDU epoch {epoch}")

  def val_data() -> Batches:
    batches, ids_of = pipeline.val_batches(), _val_ids(pipeline)

    def iterate():
      for step, batch in enumerate(batches):
        ids = ids_of(step)
        theta, lam = (np.asarray(m) for m in split(
            _slice_keys(seed, _SSDU_VAL, 0, ids), batch["mask"]))
        acquired = {k: batch[k] for k in ("kspace", "maps", "data_range")}
        yield assemble(acquired, theta, lam, {"weight": batch["weight"]})

    return Batches(iterate, len(batches), description="SSDU validation")

  return train_data, val_data


def band_width(pipeline: data.ReconPipeline, settings) -> float:
  """The K-band width in k-space samples: ``band_fraction * min(H, W)``."""
  return float(settings.band_fraction) * min(pipeline.image_shape)


def kband_data(pipeline: data.ReconPipeline, settings, seed: int):
  """``(train_data(epoch) -> Batches, val_data() -> Batches)`` of K-band batches.

  Batches hold ``kspace`` (``y * band * M``, M the epoch's under-sampling mask),
  ``mask`` (``band * M``, ``[b, 1, H, W]``), ``maps``, ``loss_weight`` (``band * W``),
  ``loss_kspace`` (``y * band``), ``data_range`` and, in validation, ``weight``.
  """
  shape, width = pipeline.image_shape, band_width(pipeline, settings)
  weights = mri_ss.kband_loss_weights(shape, width, settings.orientations)
  ones = np.ones((pipeline.batch_size, *pipeline.mask_shape), np.float32)

  @jax.jit
  def bands(keys):
    angles = jax.vmap(lambda k: mri_ss.random_band_angles(k, 1, settings.orientations)[0])(
        keys)
    return mri_ss.band_masks(angles, shape, width)

  def assemble(full, maps, band, sampling, data_range, extra=None):
    # `full` exists only here, to cut out the band: nothing outside it leaves.
    band_kspace = full * band
    mask = sampling * band
    return {"kspace": band_kspace * mask, "mask": mask, "maps": maps,
            "loss_weight": band * weights, "loss_kspace": band_kspace,
            "data_range": data_range, **(extra or {})}

  def train_data(epoch: int) -> Batches:
    def iterate():
      for ids in _train_ids(pipeline, epoch):
        full = _acquired(pipeline, "train", ids, ones[:len(ids)])
        band = np.asarray(bands(_slice_keys(seed, _KBAND_TRAIN, 0, ids)))  # per slice
        sampling = pipeline.train_masks(epoch, ids)  # retrospective, inside the band
        yield assemble(full["kspace"], full["maps"], band, sampling, full["data_range"])

    return Batches(iterate, pipeline.steps_per_epoch, description=f"K-band epoch {epoch}")

  def val_data() -> Batches:
    batches, ids_of = pipeline.val_batches(), _val_ids(pipeline)

    def iterate():
      for step, batch in enumerate(batches):
        ids = ids_of(step)
        full = _acquired(pipeline, "val", ids, ones[:len(ids)])
        band = np.asarray(bands(_slice_keys(seed, _KBAND_VAL, 0, ids)))
        yield assemble(full["kspace"], batch["maps"], band, batch["mask"],
                       batch["data_range"], {"weight": batch["weight"]})

    return Batches(iterate, len(batches), description="K-band validation")

  return train_data, val_data


def _block(center_block):
  return tuple(center_block) if isinstance(center_block, (tuple, list)) else int(
      center_block)


# ---------------------------------------------------------------------------
# Building a run.


@dataclasses.dataclass
class Training:
  """What `fit` needs for a self-supervised run, and how it selects its model."""

  state: TrainState
  train_step: Callable
  eval_step: Callable
  train_data: Callable[[int], Batches]
  val_data: Callable[[], Batches]
  early_stopping: EarlyStopping
  model_selection: str


def make_training(config: ml_collections.ConfigDict, pipeline: data.ReconPipeline,
                  model, state: TrainState, *, mesh, learning_rate, patience: int
                  ) -> Training:
  """The steps, data and model selection of an ``ssdu`` or ``kband`` run.

  The state's ``apply_fn`` becomes the model's complex output (``complex_image``),
  since both losses live in k-space; its parameters are the model's, so the trained
  variables reconstruct with `fdl.models.reconstruct` as any other run's.

  Raises:
    ValueError: a bad ``config.supervision`` or settings, or a model without a complex
      output.
  """
  supervision = check_config(config)
  if supervision not in SELF_SUPERVISED:
    raise ValueError(f"make_training builds {SELF_SUPERVISED} runs; got "
                     f"config.supervision={supervision!r}")
  if not hasattr(model, "complex_image"):
    raise ValueError(f"config.supervision={supervision!r} computes its loss in k-space "
                     "and needs a model with a complex output (complex_image), i.e. "
                     f"config.model='modl'; got config.model={config.model!r}")
  state = state.replace(apply_fn=functools.partial(model.apply, method="complex_image"))
  if supervision == "ssdu":
    objective = ssdu_objective()
    train_data, val_data = ssdu_data(pipeline, config.ssdu, config.seed)
    selection = ("val/loss: SSDU loss on a held-out Lambda of each validation slice's "
                 "acquisition (fixed split per slice); no fully sampled reference")
  else:
    objective = kband_objective(config.kband.norm)
    train_data, val_data = kband_data(pipeline, config.kband, config.seed)
    selection = ("val/loss: weighted K-band loss in one fixed band per validation "
                 "slice; no fully sampled reference")
  train_step = make_train_step(objective, mesh=mesh, learning_rate=learning_rate,
                               input_key=INPUT_KEYS)
  eval_step = make_eval_step(objective, mesh=mesh, input_key=INPUT_KEYS)
  return Training(state=state, train_step=train_step, eval_step=eval_step,
                  train_data=train_data, val_data=val_data,
                  early_stopping=EarlyStopping(metric="val/loss", mode="min",
                                               patience=patience, restore_best=True),
                  model_selection=selection)


def summary_entries(config: ml_collections.ConfigDict, pipeline: data.ReconPipeline,
                    training: Training, best: dict) -> dict:
  """What a self-supervised run adds to its ``summary.json``."""
  supervision = config.supervision
  entries = {"supervision": supervision, "model_selection": training.model_selection,
             "val_loss": best["val/loss"]}
  if supervision == "ssdu":
    entries["ssdu"] = config.ssdu.to_dict()
    entries["ssdu"]["acquisition"] = ("one mask per training slice: its epoch-0 "
                                      "training mask, for the whole run")
  else:
    entries["kband"] = dict(config.kband.to_dict(),
                            band_width=band_width(pipeline, config.kband),
                            acquisition="one band per training slice (fixed angle)")
  return entries
