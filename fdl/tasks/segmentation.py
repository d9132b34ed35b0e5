"""Brain tissue segmentation end to end: synthesized data, U-Net, `fit`, one sealed test.

`train_and_evaluate(config, workdir)` is what `experiments/segmentation.py` calls.

Data (`make_data`): slices synthesized from anatomical label templates by
`fdl.data.synthesis.synthesize_slices` (labels 0 background, 1 CSF, 2 GM, 3 WM,
exactly aligned with the image). Training and validation volumes come from the
MNI152 template (each volume its own deformations, contrasts drawn per slice
from ``config.contrast``); the sealed test volumes from other anatomies,
colin27 and the ITK head, at a fixed contrast (``config.test_contrast``). So the
test measures generalization to new anatomy.

What the segmenter sees (``config.input``), ``[N, H, W, 1]`` float32, each
slice divided by its 99th percentile:

- ``"fully_sampled"``: the magnitude of the fully sampled image (the synthesis'
  ``target``);
- ``"zero_filled"``: the RSS of the zero-filled coil images of k-space under-
  sampled at ``config.acceleration`` (`fdl.mri.masks`, one mask per slice,
  fixed by the seed, the volume and the slice).
- ``"kspace"``: the under-sampled k-space itself (same masks), with the coil maps:
  the network is `fdl.models.ReconSegmenter`, a MoDL followed by the segmenter,
  trained end to end (``config.joint``; the K2S study's part (d)). Its k-space is
  scaled as `fdl.tasks.reconstruction` scales its training data (by the inverse
  maximum of the RSS image of the centre lines, per volume), and its loss adds
  ``config.joint.recon_weight`` times the L1 distance of the reconstruction to the
  fully sampled magnitude (`fdl.losses.joint_loss`). ``config.joint.init_recon`` and
  ``init_segmenter`` name finished MoDL / segmenter work directories whose weights
  start the training (fine-tuning), or are empty (random initialization).

Training minimizes `fdl.losses.segmentation_loss` (``config.loss``: soft Dice,
cross-entropy or their sum); the state with the best validation mean Dice
(``val/dice``, hard Dice of the argmax) is evaluated once on the test volumes.

Scores (`score_volumes`): the slices of a volume are spread over a slab, not
contiguous, so distances are in-plane: each slice is scored in 2-D by
`fdl.evaluate.segmentation.score_segmentation` with its pixel size in mm (the
synthesis' ``pixel_size_mm``, square pixels); a volume's Dice and volume
difference pool its slices (counts), its HD95 per class is the mean over the
slices where it is finite. The test numbers are means over test volumes.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from fdl import config_files, models
from fdl.evaluate import figures
from fdl.evaluate import segmentation as seg_eval
from fdl.losses import (SEGMENTATION_LOSSES, joint_loss, reconstruction_loss,
                        segmentation_loss)
from fdl.train import mesh as mesh_lib
from fdl.train.checkpoint import Checkpointer
from fdl.train.early_stopping import EarlyStopping
from fdl.train.loop import fit
from fdl.train.metric_writer import is_writer, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import create_train_state, num_params
from fdl.train.step import make_eval_step, make_train_step

INPUTS = ("fully_sampled", "zero_filled", "kspace")
TISSUE_NAMES = ("background", "CSF", "GM", "WM")
LESION_NAMES = ("background", "lesion")
# The classes of each label set (label value = index).
LABEL_SETS = {"tissues": TISSUE_NAMES, "lesions": LESION_NAMES}
MASKS = ("equispaced", "random")
# Metric names a run writes; tests check them.
TRAIN_METRICS = ("train/loss", "train/dice", "train/learning_rate", "train/grad_norm")
# The joint network's model inputs, in call order (`fdl.models.ReconSegmenter`).
JOINT_INPUT_KEYS = ("kspace", "mask", "maps")
EVAL_METRICS = ("val/loss", "val/dice")


def _check_config(config: ml_collections.ConfigDict) -> None:
  for key in ("num_epochs", "batch_size", "train_volumes", "val_volumes",
              "slices_per_volume", "test_slices_per_volume"):
    if int(config[key]) < 1:
      raise ValueError(f"config.{key} must be >= 1; got {config[key]!r}")
  if config.input not in INPUTS:
    raise ValueError(f"config.input must be one of {INPUTS}; got {config.input!r}")
  if config.label_set not in LABEL_SETS:
    raise ValueError(f"config.label_set must be one of {tuple(LABEL_SETS)}; "
                     f"got {config.label_set!r}")
  if config.label_set == "lesions" and "lesions" not in config:
    raise ValueError("config.label_set='lesions' needs config.lesions (the settings of "
                     "fdl.data.synthesis.DEFAULT_LESIONS)")
  if config.loss not in SEGMENTATION_LOSSES:
    raise ValueError(f"config.loss must be one of {SEGMENTATION_LOSSES}; "
                     f"got {config.loss!r}")
  if not float(config.acceleration) >= 1:
    raise ValueError(f"config.acceleration must be >= 1 (the under-sampling factor); "
                     f"got {config.acceleration!r}")
  if config.input == "kspace" and "joint" not in config:
    raise ValueError("config.input='kspace' (the joint network) needs config.joint "
                     "(recon, recon_kwargs, recon_weight, init_recon, init_segmenter)")
  if config.mask not in MASKS:
    raise ValueError(f"config.mask must be one of {MASKS}; got {config.mask!r}")
  if config.early_stopping_patience < 0:
    raise ValueError("config.early_stopping_patience must be >= 0 (0: off); "
                     f"got {config.early_stopping_patience!r}")
  if not config.test_templates:
    raise ValueError("config.test_templates must name at least one template")
  shared = set(config.train_templates) & set(config.test_templates)
  if shared or not config.train_templates:
    raise ValueError(f"config.train_templates must be non-empty and disjoint from "
                     f"config.test_templates (the test is other anatomy); both hold "
                     f"{sorted(shared)}")


# --- data -----------------------------------------------------------------------------


def slice_masks(seed: int, volume: int, num_slices: int, num_cols: int, *,
                acceleration: float, center_fraction: float,
                mask: str = "equispaced") -> np.ndarray:
  """Column masks ``float32 [S, W]`` of one volume's slices; all ones at 1x.

  Slice ``s`` of volume ``v`` uses ``fold_in(fold_in(key(seed), v), s)``.
  """
  if float(acceleration) == 1.0:
    return np.ones((num_slices, num_cols), np.float32)
  from fdl.mri import masks  # pylint: disable=g-import-not-at-top
  fn = {"equispaced": masks.equispaced_mask, "random": masks.random_mask}[mask]
  key = jax.random.fold_in(jax.random.key(int(seed)), int(volume))
  return np.stack([np.asarray(fn(jax.random.fold_in(key, s), int(num_cols),
                                 float(acceleration), float(center_fraction)))
                   for s in range(num_slices)]).astype(np.float32)


def zero_filled_rss(kspace: np.ndarray, mask: np.ndarray) -> np.ndarray:
  """RSS of the zero-filled coil images, float32 ``[S, H, W]``.

  Args:
    kspace: complex ``[S, C, H, W]``; mask: ``[S, W]`` column mask.
  """
  from fdl.mri import recon  # pylint: disable=g-import-not-at-top
  return np.asarray(recon.zero_filled(jnp.asarray(kspace, jnp.complex64),
                                      jnp.asarray(mask)[:, None, None, :]), np.float32)


def normalize_input(image: np.ndarray) -> np.ndarray:
  """Each slice of ``[S, H, W]`` divided by its 99th percentile; ``[S, H, W, 1]`` float32."""
  image = np.abs(np.asarray(image, np.float64))
  scale = np.percentile(image.reshape(len(image), -1), 99, axis=1)
  scale = np.where(scale > 0, scale, 1.0)
  return (image / scale[:, None, None])[..., None].astype(np.float32)


def _volume(config, index: int, template: str, num_slices: int, contrast, *,
            deformation=None) -> dict:
  from fdl.data import mri_volumes, synthesis  # pylint: disable=g-import-not-at-top
  labels, voxel_sizes = mri_volumes.template_labels(template)
  out = synthesis.synthesize_slices(
      labels, voxel_sizes, template=template, seed=int(config.seed) * 100_003 + index,
      num_slices=num_slices, axis=2, shape=tuple(config.shape),
      contrast=contrast, num_coils=config.num_coils, snr_db=config.snr_db,
      deformation=synthesis.DEFAULT_DEFORMATION if deformation is None else deformation,
      lesions=config.lesions.to_dict() if config.label_set == "lesions" else None)
  mask = slice_masks(config.seed, index, num_slices, config.shape[1],
                     acceleration=config.acceleration,
                     center_fraction=config.center_fraction, mask=config.mask)
  # The joint network reads k-space; its "image" is the fully sampled one (figures).
  image = (zero_filled_rss(out["kspace"], mask) if config.input == "zero_filled"
           else out["target"])
  provenance = out["provenance"]
  label = out["lesions"] if config.label_set == "lesions" else out["labels"]
  return {"name": f"{template}_{index:04d}", "template": template, "index": index,
          "image": normalize_input(image), "label": np.asarray(label).astype(np.int32),
          "label_names": LABEL_SETS[config.label_set],
          "target": out["target"], "kspace": out["kspace"], "maps": out["maps"],
          "mask": mask, "pixel_size_mm": float(provenance["pixel_size_mm"]),
          "provenance": {k: provenance[k] for k in
                         ("template", "template_sha256", "contrast", "seed",
                          "pixel_size_mm", "shape", "num_coils", "snr_db")}}


def make_data(config: ml_collections.ConfigDict, *, keep_kspace: bool = False) -> dict:
  """The train, validation and test volumes of `config` (module docstring).

  Volume ``i`` (train first, then validation, then test) is synthesized with the
  seed ``seed * 100003 + i``. Training and validation volumes cycle through
  ``config.train_templates``, test volumes through ``config.test_templates``.

  Returns:
    ``{"train": [...], "val": [...], "test": [...]}``, lists of volume dicts with
    ``name``, ``template``, ``image [S, H, W, 1]`` float32, ``label [S, H, W]`` int32,
    ``mask [S, W]``, ``pixel_size_mm`` and ``provenance``; test volumes (and all
    with `keep_kspace`) also keep ``kspace``, ``maps`` and ``target``.
  """
  n_train, n_val = int(config.train_volumes), int(config.val_volumes)
  splits: dict[str, list] = {"train": [], "val": [], "test": []}
  plan = ([("train", t) for t in range(n_train)] + [("val", t) for t in range(n_val)]
          + [("test", t) for t in range(len(config.test_templates))])
  for index, (split, k) in enumerate(plan):
    is_test = split == "test"
    templates = config.test_templates if is_test else config.train_templates
    template = templates[k % len(templates)]
    contrast = config.test_contrast if is_test else tuple(config.contrast)
    # Training and validation deformations are `config.train_deformation` (a wider
    # spread of anatomy than the one template); the test keeps the synthesis default.
    deformation = None if is_test or "train_deformation" not in config else (
        config.train_deformation.to_dict())
    volume = _volume(config, index, template,
                     config.test_slices_per_volume if is_test else config.slices_per_volume,
                     contrast, deformation=deformation)
    volume["split"] = split
    if not (is_test or keep_kspace):
      for key in ("kspace", "maps", "target"):
        volume.pop(key)
    splits[split].append(volume)
  return splits


def stack(volumes: Sequence[dict], *, kspace: bool = False,
          center_fraction: float | None = None) -> dict[str, np.ndarray]:
  """The slices of `volumes` as one batch dict: ``image``, ``label``, ``volume`` (index).

  With `kspace` (the joint network's inputs; the volumes must keep their k-space) also
  ``kspace`` complex64 ``[N, C, H, W]`` and ``target`` ``[N, H, W]`` scaled by
  `kspace_scale`, ``mask [N, 1, 1, W]``, ``maps [N, C, H, W]`` and ``data_range [N]``
  (the scaled target's maximum over its volume).
  """
  out = {"image": np.concatenate([v["image"] for v in volumes]),
         "label": np.concatenate([v["label"] for v in volumes]),
         "volume": np.concatenate([np.full(len(v["label"]), i, np.int32)
                                   for i, v in enumerate(volumes)])}
  if kspace:
    scales = [kspace_scale(v["kspace"], center_fraction) for v in volumes]
    out["kspace"] = np.concatenate([(v["kspace"] * s).astype(np.complex64)
                                    for v, s in zip(volumes, scales)])
    out["target"] = np.concatenate([(v["target"] * s).astype(np.float32)
                                    for v, s in zip(volumes, scales)])
    out["data_range"] = np.concatenate([np.full(len(v["label"]), v["target"].max() * s,
                                                np.float32)
                                        for v, s in zip(volumes, scales)])
    out["mask"] = np.concatenate([v["mask"] for v in volumes])[:, None, None, :]
    out["maps"] = np.concatenate([v["maps"] for v in volumes]).astype(np.complex64)
  return out


def kspace_scale(kspace: np.ndarray, center_fraction: float) -> np.float32:
  """The k-space scaling of the reconstruction networks: ``1 / center_rss_max``.

  `fdl.tasks.reconstruction` trains on k-space divided by the maximum of the RSS
  image of its centre lines (over the volume); a MoDL applied to other k-space must
  see it scaled the same way.
  """
  from fdl.data import mri_volumes  # pylint: disable=g-import-not-at-top
  return np.float32(1.0 / mri_volumes.center_rss_max(kspace, center_fraction))


def _batches(arrays: dict, batch_size: int, *, rng: np.random.Generator | None = None,
             pad: bool) -> Iterator[dict]:
  """Batches of `arrays`; shuffled with `rng`; the last padded (weight 0) with `pad`."""
  n = len(arrays["image"])
  order = rng.permutation(n) if rng is not None else np.arange(n)
  stop = n if pad else (n // batch_size) * batch_size
  for start in range(0, stop, batch_size):
    idx = order[start:start + batch_size]
    weight = np.ones(len(idx), np.float32)
    if len(idx) < batch_size:
      fill = batch_size - len(idx)
      idx = np.concatenate([idx, np.repeat(idx[:1], fill)])
      weight = np.concatenate([weight, np.zeros(fill, np.float32)])
    yield {**{k: v[idx] for k, v in arrays.items() if k != "volume"}, "weight": weight}


# --- model and prediction -------------------------------------------------------------


def create_model(config: ml_collections.ConfigDict):
  """The U-Net segmenter (`fdl.models.Segmenter`) with the config's settings.

  For ``config.input == "kspace"``, the joint network (`fdl.models.ReconSegmenter`:
  ``config.joint.recon`` with ``config.joint.recon_kwargs``, then that segmenter).
  """
  if config.input == "kspace":
    return models.create_model("recon_segmenter",
                               num_classes=len(LABEL_SETS[config.label_set]),
                               recon=config.joint.recon,
                               recon_kwargs=config.joint.recon_kwargs.to_dict(),
                               segmenter_kwargs=config.segmenter.to_dict())
  return models.create_model("segmenter", num_classes=len(LABEL_SETS[config.label_set]),
                             **config.segmenter.to_dict())


def _create_state(config, model, steps_per_epoch: int, mesh=None):
  schedule = make_schedule(config.schedule, learning_rate=config.learning_rate,
                           total_steps=config.num_epochs * steps_per_epoch,
                           warmup_steps=0)
  tx = make_optimizer(config.optimizer, schedule, weight_decay=config.weight_decay)
  if config.input == "kspace":
    h, w = config.shape
    c = int(config.num_coils)
    specs = (jax.ShapeDtypeStruct((1, c, h, w), jnp.complex64),
             jax.ShapeDtypeStruct((1, 1, 1, w), jnp.float32),
             jax.ShapeDtypeStruct((1, c, h, w), jnp.complex64))
    state = create_train_state(model, tx, example_inputs=specs, seed=config.seed,
                               mesh=mesh)
  else:
    state = create_train_state(model, tx, (1, *config.shape, 1), seed=config.seed,
                               mesh=mesh)
  return state, schedule


def _initial_weights(config, state, mesh):
  """`state` with the weights of ``config.joint.init_recon`` / ``init_segmenter`` copied in."""
  from fdl.tasks import reconstruction  # pylint: disable=g-import-not-at-top
  from fdl.train import transfer  # pylint: disable=g-import-not-at-top
  params = {}
  if config.joint.init_recon:
    params["recon"] = reconstruction.load_trained(config.joint.init_recon)[1]["params"]
  if config.joint.init_segmenter:
    params["segmenter"] = load_trained(config.joint.init_segmenter)[1]["params"]
  if not params:
    return state, None
  state, report = transfer.init_state_from(state, {"params": params}, mesh=mesh)
  if report.missing or report.skipped:
    raise ValueError(
        "config.joint.init_recon / init_segmenter: their networks do not match this "
        "model (config.joint.recon_kwargs and config.segmenter must be those of the "
        f"runs): missing {list(report.missing)[:4]}, shape mismatches "
        f"{list(report.skipped)[:4]}")
  return state, report


def predict_joint(apply_fn, variables, arrays: dict, batch_size: int
                  ) -> tuple[np.ndarray, np.ndarray]:
  """The joint network's reconstructions and labels, in batches.

  Args:
    apply_fn: a `ReconSegmenter`'s ``apply``.
    arrays: `stack` with ``kspace=True`` (``kspace``, ``mask``, ``maps``).

  Returns:
    ``(images float32 [N, H, W], labels int32 [N, H, W])``; the images in the units of
    the scaled k-space.
  """
  def fn(v, *inputs):
    image, logits = apply_fn(v, *inputs, train=False)
    return image, jnp.argmax(logits, axis=-1)
  predict = jax.jit(fn)
  images, labels = [], []
  n = len(arrays["kspace"])
  for start in range(0, n, batch_size):
    idx = np.arange(start, min(start + batch_size, n))
    idx = np.concatenate([idx, np.repeat(idx[:1], batch_size - len(idx))])
    image, label = predict(variables, *(arrays[k][idx] for k in JOINT_INPUT_KEYS))
    keep = min(batch_size, n - start)
    images.append(np.asarray(image)[:keep])
    labels.append(np.asarray(label)[:keep])
  return np.concatenate(images).astype(np.float32), np.concatenate(labels).astype(np.int32)


def predict_labels(apply_fn, variables, images: np.ndarray, batch_size: int
                   ) -> np.ndarray:
  """Argmax labels ``int32 [N, H, W]`` of images ``[N, H, W, 1]``, in batches."""
  predict = jax.jit(lambda v, x: jnp.argmax(apply_fn(v, x, train=False), axis=-1))
  out = []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    pad = batch_size - len(chunk)
    padded = np.concatenate([chunk, np.repeat(chunk[:1], pad, 0)]) if pad else chunk
    out.append(np.asarray(predict(variables, padded))[:len(chunk)])
  return np.concatenate(out).astype(np.int32)


# --- scores ---------------------------------------------------------------------------


def _finite_mean(values) -> float:
  values = [v for v in values if math.isfinite(v)]
  return float(np.mean(values)) if values else math.nan


def score_volume(pred: np.ndarray, label: np.ndarray, pixel_size_mm: float,
                 names: Sequence[str] = TISSUE_NAMES) -> dict:
  """Scores of one volume's slices ``[S, H, W]`` (module docstring), as `score_segmentation`.

  Args:
    names: the class names, label value = index (`LABEL_SETS`).

  Returns a dict in the format of `fdl.evaluate.segmentation.score_segmentation`
  (``per_class``, ``mean_dice``, ``mean_hd95_mm``), so `format_table` prints it; for
  the lesion label set also ``lesion_detection``, the lesion-wise counts of
  `fdl.evaluate.segmentation.lesion_detection` summed over the slices (lesions are
  connected in-plane components, as the slices are apart).
  """
  spacing = (pixel_size_mm, pixel_size_mm)
  slices = [seg_eval.score_segmentation(p, t, spacing, names)
            for p, t in zip(pred, label)]
  dices = seg_eval.dice(pred, label, range(len(names)))
  per_class = {}
  area = pixel_size_mm ** 2
  for k, name in enumerate(names):
    p, t = pred == k, label == k
    vd = seg_eval.volume_difference(p, t, (1.0, pixel_size_mm, pixel_size_mm))
    per_class[name] = {
        "label": k, "dice": dices[k],
        "hd95_mm": _finite_mean(s["per_class"][name]["hd95_mm"] for s in slices),
        "hd95_infinite_slices": sum(math.isinf(s["per_class"][name]["hd95_mm"])
                                    for s in slices),
        "volume_pred_mm3": float(p.sum() * area), "volume_target_mm3": float(t.sum() * area),
        "volume_diff_mm3": vd.absolute_mm3, "volume_diff_rel": vd.relative}
  fg = [per_class[n] for n in names[1:]]
  out = {"per_class": per_class,
         "mean_dice": _finite_mean(c["dice"] for c in fg),
         "mean_hd95_mm": _finite_mean(c["hd95_mm"] for c in fg),
         "slice_mean_dice": [s["mean_dice"] for s in slices],
         "background": 0, "voxel_sizes": spacing}
  if "lesion" in names:
    k = names.index("lesion")
    out["lesion_detection"] = seg_eval.sum_lesion_detection(
        [seg_eval.lesion_detection(p == k, t == k) for p, t in zip(pred, label)])
  return out


def score_volumes(preds: Sequence[np.ndarray], volumes: Sequence[dict]) -> dict:
  """Test scores over volumes: ``mean_dice``, ``dice {CSF, GM, WM}``, ``hd95`` (mm), ...

  ``dice``, ``hd95`` and ``volume_diff_rel`` are means over volumes of the per-volume
  scores (`score_volume`); ``per_volume`` holds those; ``pooled`` is the mean table in
  `score_segmentation` format (for `format_table`).
  """
  all_names = tuple(volumes[0].get("label_names", TISSUE_NAMES))
  scores = [score_volume(p, v["label"], v["pixel_size_mm"], all_names)
            for p, v in zip(preds, volumes)]
  names = all_names[1:]

  def mean(key, name):
    return _finite_mean(s["per_class"][name][key] for s in scores)

  pooled = {"per_class": {n: {**{k: mean(k, n) for k in
                                 ("dice", "hd95_mm", "volume_pred_mm3",
                                  "volume_target_mm3", "volume_diff_mm3",
                                  "volume_diff_rel")}, "label": i}
                          for i, n in enumerate(all_names)},
            "mean_dice": _finite_mean(s["mean_dice"] for s in scores),
            "mean_hd95_mm": _finite_mean(s["mean_hd95_mm"] for s in scores),
            "label_names": list(all_names)}
  extra = {}
  if "lesion_detection" in scores[0]:
    extra["lesion_detection"] = seg_eval.sum_lesion_detection(
        [s["lesion_detection"] for s in scores])
  return {**extra,
      "mean_dice": pooled["mean_dice"],
      "dice": {n: mean("dice", n) for n in names},
      "hd95": pooled["mean_hd95_mm"],
      "hd95_mm": {n: mean("hd95_mm", n) for n in names},
      "volume_diff_rel": {n: mean("volume_diff_rel", n) for n in names},
      "num_volumes": len(volumes),
      "num_slices": int(sum(len(v["label"]) for v in volumes)),
      "per_volume": {v["name"]: {"template": v["template"],
                                 "mean_dice": s["mean_dice"],
                                 "dice": {n: s["per_class"][n]["dice"] for n in names},
                                 "hd95": s["mean_hd95_mm"],
                                 "slice_mean_dice": s["slice_mean_dice"],
                                 **({"lesion_detection": s["lesion_detection"]}
                                    if "lesion_detection" in s else {})}
                     for v, s in zip(volumes, scores)},
      "pooled": pooled,
  }


def table(scores: dict) -> str:
  """The per-class table (means over test volumes) of a `score_volumes` result."""
  names = scores["pooled"].get("label_names", TISSUE_NAMES)
  text = seg_eval.format_table(scores["pooled"], names)
  if "lesion_detection" in scores:
    d = scores["lesion_detection"]
    text += (f"\nlesions: {d['num_reference']} in the reference, {d['detected']} detected, "
             f"{d['missed']} missed, {d['invented']} invented "
             f"(of {d['num_predicted']} predicted)")
  return text


# --- figures --------------------------------------------------------------------------

_COLORS = {TISSUE_NAMES: ((0, 0, 0, 0), (0.2, 0.6, 1.0, 0.55), (1.0, 0.5, 0.1, 0.55),
                          (0.3, 0.9, 0.3, 0.55)),
           LESION_NAMES: ((0, 0, 0, 0), (1.0, 0.1, 0.1, 0.7))}
_LEGENDS = {TISSUE_NAMES: "CSF blue, GM orange, WM green", LESION_NAMES: "lesions red"}


def plot_overlays(path: str, images: np.ndarray, reference: np.ndarray,
                  predictions: dict[str, np.ndarray], *, title: str = "",
                  names: Sequence[str] = TISSUE_NAMES) -> None:
  """Rows of test slices: the image, then reference and predicted labels overlaid.

  Args:
    images: ``[S, H, W]``; reference: labels ``[S, H, W]``; predictions: ``name ->
      labels [S, H, W]`` (one column each).
  """
  from matplotlib.colors import ListedColormap  # pylint: disable=g-import-not-at-top
  plt = figures.pyplot()
  names = tuple(names)
  cmap = ListedColormap(_COLORS[names])
  k = len(names)
  columns = {"reference": reference, **predictions}
  rows, cols = len(images), 1 + len(columns)
  fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.6 * rows), squeeze=False)
  for r in range(rows):
    axes[r, 0].imshow(images[r], cmap="gray")
    axes[r, 0].set_title("image" if r == 0 else "", fontsize=9)
    for c, (name, labels) in enumerate(columns.items(), start=1):
      axes[r, c].imshow(images[r], cmap="gray")
      axes[r, c].imshow(labels[r], cmap=cmap, vmin=-0.5, vmax=k - 0.5,
                        interpolation="nearest")
      if name != "reference":
        d = seg_eval.mean_foreground_dice(labels[r], reference[r], list(range(k)))
        name = f"{name} (Dice {d:.3f})"
      axes[r, c].set_title(name, fontsize=9)
  for ax in axes.ravel():
    ax.set_axis_off()
  fig.suptitle((title + "\n" if title else "") +
               _LEGENDS[names], fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=90)
  plt.close(fig)


# --- the task -------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the segmenter, evaluates the sealed test volumes once, writes a report.

  Writes into `workdir`: ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
  ``learning_curves.png``, ``segmentations.png``, ``per_class.txt`` and
  ``summary.json`` (``test[config.input]`` holds the scores of `score_volumes`).
  Running again with the same `workdir` resumes.

  Returns:
    The summary dict (or ``{"interrupted": True, "signal": n}`` after SIGTERM / Ctrl-C).
  """
  config = config_files.resolve_smoke(config, "segmentation")
  _check_config(config)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  mesh = mesh_lib.make_mesh()
  start = time.perf_counter()
  joint = config.input == "kspace"
  splits = make_data(config, keep_kspace=joint)
  data_seconds = time.perf_counter() - start
  train, val = (stack(splits[k], kspace=joint, center_fraction=config.center_fraction)
                for k in ("train", "val"))
  batch_size = int(config.batch_size)
  if len(train["image"]) < batch_size:
    raise ValueError(f"config.batch_size ({batch_size}) exceeds the number of training "
                     f"slices ({len(train['image'])})")
  steps_per_epoch = len(train["image"]) // batch_size
  model = create_model(config)
  state, schedule = _create_state(config, model, steps_per_epoch, mesh)
  loss = segmentation_loss(config.loss)
  input_key = "image"
  transferred = None
  if joint:
    loss = joint_loss(loss, reconstruction_loss("l1"),
                      recon_weight=float(config.joint.recon_weight))
    input_key = JOINT_INPUT_KEYS
    state, transferred = _initial_weights(config, state, mesh)
  train_step = make_train_step(loss, mesh=mesh, learning_rate=schedule,
                               input_key=input_key)
  eval_step = make_eval_step(loss, mesh=mesh, input_key=input_key)

  def train_batches(epoch: int):
    return _batches(train, batch_size, pad=False,
                    rng=np.random.default_rng([int(config.seed), int(epoch)]))

  def val_batches():
    return _batches(val, batch_size, pad=True)

  patience = config.early_stopping_patience or 10**9
  start = time.perf_counter()
  result = fit(state, train_step, train_batches, num_epochs=config.num_epochs,
               eval_step=eval_step, val_data=val_batches, workdir=workdir,
               early_stopping=EarlyStopping(metric="val/dice", mode="max",
                                            patience=patience, restore_best=True),
               keep_checkpoints=config.keep_checkpoints, log_every=config.log_every,
               progress=config.progress)
  train_seconds = time.perf_counter() - start
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}

  # The one and only look at the test volumes, with the best validation state.
  variables = mesh_lib.to_host(result.state.variables)
  tests = splits["test"]
  if joint:
    preds = [predict_joint(model.apply, variables,
                           stack([v], kspace=True, center_fraction=config.center_fraction),
                           batch_size)[1] for v in tests]
  else:
    preds = [predict_labels(model.apply, variables, v["image"], batch_size)
             for v in tests]
  scores = score_volumes(preds, tests)
  best = result.history[result.best_epoch]
  summary = {
      "input": config.input,
      "acceleration": float(config.acceleration),
      "label_set": config.label_set,
      "label_names": list(LABEL_SETS[config.label_set]),
      "test": {config.input: scores},
      "val_dice": best["val/dice"],
      "best_epoch": result.best_epoch + 1,
      "evaluated_checkpoint_step": best["step"],
      "epochs_run": result.epochs_run,
      "stopped_early": result.stopped_early,
      "train_loss": result.history[-1]["train/loss"],
      "num_params": num_params(result.state.params),
      "steps_per_epoch": steps_per_epoch,
      "num_train_slices": len(train["image"]), "num_val_slices": len(val["image"]),
      "data_seconds": data_seconds,
      "train_seconds_this_run": train_seconds,
      "num_devices": jax.device_count(),
      "initialized_from": None if transferred is None else {
          "recon": config.joint.init_recon or None,
          "segmenter": config.joint.init_segmenter or None,
          "copied_params": len(transferred.copied)},
      "data": {split: [{"name": v["name"], **v["provenance"]} for v in vols]
               for split, vols in splits.items()},
  }
  if is_writer():
    figures.plot_learning_curves(result.history,
                                 os.path.join(workdir, "learning_curves.png"),
                                 metrics=("loss", "dice"))
    shown = _figure_slices(tests, preds, int(config.figure_slices))
    plot_overlays(os.path.join(workdir, "segmentations.png"), shown["image"],
                  shown["label"], {config.input: shown["pred"]},
                  title=f"test slices ({config.input}"
                        + (f", {float(config.acceleration):g}x)"
                           if config.input != "fully_sampled" else ")"),
                  names=LABEL_SETS[config.label_set])
    with open(os.path.join(workdir, "per_class.txt"), "w", encoding="utf-8") as f:
      f.write(table(scores) + "\n")
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def _figure_slices(volumes, preds, count: int) -> dict:
  """`count` test slices spread over the test volumes (the middle of each first)."""
  picks = []
  for r in range(count):
    v = r % len(volumes)
    n = len(volumes[v]["label"])
    picks.append((v, (n // 2 + (r // len(volumes)) * max(n // 4, 1)) % n))
  return {"image": np.stack([volumes[v]["image"][s, ..., 0] for v, s in picks]),
          "label": np.stack([volumes[v]["label"][s] for v, s in picks]),
          "pred": np.stack([preds[v][s] for v, s in picks])}


def load_trained(workdir: str) -> tuple[Any, dict, ml_collections.ConfigDict]:
  """``(model, variables, config)`` of a finished run, with its evaluated checkpoint."""
  paths = {n: os.path.join(workdir, n) for n in ("config.json", "summary.json")}
  for path in paths.values():
    if not os.path.exists(path):
      raise FileNotFoundError(f"{path} not found: is {workdir!r} a finished "
                              "segmentation work directory?")
  with open(paths["config.json"], encoding="utf-8") as f:
    config = ml_collections.ConfigDict(json.load(f))
  with open(paths["summary.json"], encoding="utf-8") as f:
    summary = json.load(f)
  model = create_model(config)
  like, _ = _create_state(config, model, summary["steps_per_epoch"])
  checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
  state, _ = checkpointer.restore(like, step=summary["evaluated_checkpoint_step"])
  checkpointer.close()
  return model, mesh_lib.to_host(state.variables), config


def report(summary: dict) -> str:
  """What ``experiments/segmentation.py`` prints: the run's numbers and the test table."""
  shown = ("input", "acceleration", "num_params", "best_epoch", "epochs_run", "val_dice",
           "train_seconds_this_run")
  scores = summary["test"][summary["input"]]
  head = {k: summary[k] for k in shown}
  head["test"] = {k: scores[k] for k in ("mean_dice", "dice", "hd95")}
  return "\n".join([json.dumps(head, indent=2),
                    f"test ({scores['num_slices']} slices of {scores['num_volumes']} "
                    "volumes; means over volumes):",
                    table(scores)])
