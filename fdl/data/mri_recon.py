"""The slice input pipeline of learned MRI reconstruction.

The second half of the data path (`fdl.data.mri_volumes` loads and normalizes
the volumes): `ReconPipeline` splits volumes into train/validation/test by
VOLUME, estimates coil maps once, and produces batches of under-sampled
slices,

  kspace = M * k_full,   target = |x| (fully sampled reference),

with host NumPy arrays in the layout of `fdl.mri` (DESIGN.md): ``kspace``
complex64 ``[b, C, H, W]``, ``mask`` float32 ``[b, 1, 1, W]`` (line masks) or
``[b, 1, H, W]`` (Poisson-disc), ``maps`` complex64 ``[b, C, H, W]``,
``target`` float32 ``[b, h, w]`` and ``data_range`` float32 ``[b]`` (the
maximum of the slice's target volume, fastMRI's SSIM data range).

Randomness, all from ``root = PRNGKey(seed)``:

* volume split: ``permutation(fold_in(root, 2), num_volumes)``; the first
  `test_volumes` indices are test, the next `val_volumes` validation. Volumes
  whose ``source["split"]`` is set (``"test"`` / ``"train_val"``: data split by
  anatomy, `fdl.data.anatomy_volumes`) keep it: the test split is exactly the
  ``"test"`` volumes, and validation is drawn by the same permutation from the
  ``"train_val"`` ones;
* training order of epoch e: ``permutation(fold_in(fold_in(root, 0), e), n)``;
* training mask of slice i (its index in the training split) in epoch e:
  ``fold_in(fold_in(fold_in(root, 1), e), i)``, a fresh mask per example and
  epoch (masks are augmentation: a network must not learn one pattern);
* training augmentation (``augment=``, off by default) of slice i in epoch
  e: ``fold_in(fold_in(fold_in(root, 3), e), i)`` (`fdl.data.recon_augment`);
* validation and test masks: ``PRNGKey(crc32(f"{volume name}/{slice}"))``,
  fixed per slice, independent of the seed and the run, so validation scores
  are comparable across epochs and runs.
"""

from __future__ import annotations

import functools
import sys
import time
import zlib
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fdl.data import provenance as prov
from fdl.data import recon_augment
from fdl.data.batching import process_slice
from fdl.data.mri_volumes import (NORMALIZATION, Volume, center_columns,
                                  espirit_calib_size, estimate_coil_maps)
from fdl.data.pipeline import Batches
from fdl.mri import data_audit
from fdl.mri.masks import equispaced_mask, num_low_frequencies, poisson_mask, random_mask

LINE_MASKS = {"random": random_mask, "equispaced": equispaced_mask}
MASK_TYPES = ("random", "equispaced", "poisson")
MAPS_METHODS = ("true", "estimate")
_PROGRESS_SECONDS = 10.0


class ReconPipeline:
  """Train/validation/test slices of under-sampled multi-coil k-space.

  Args:
    volumes: `Volume` s with equal ``[C, H, W]`` and target ``[h, w]``, as from
      `fdl.data.load_volumes`.
    val_volumes, test_volumes: number of volumes in the validation and test
      splits (>= 1 each, leaving >= 1 training volume).
    mask_type: ``"random"`` or ``"equispaced"`` (1-D line masks over W,
      fastMRI semantics) or ``"poisson"`` (2-D variable-density Poisson disc;
      built on the host, about 30 us per sample: slow for large images).
    acceleration: grid points over sampled points, >= 1 (1: fully sampled).
    center_fraction: fraction of fully sampled centre columns, in (0, 1).
      Poisson masks sample the same full-height centre columns as their
      calibration block, so normalization and coil maps, which use only
      those columns, are the same for every mask type.
    batch_size: GLOBAL batch size (>= 1, at most the training slices).
    seed: seed of the split, the shuffling and the training masks (>= 0).
    maps: ``"true"`` (the volumes' own maps; simulated data only) or
      ``"estimate"`` (ESPIRiT from the centre columns, once per slice).
    calib_size, kernel_size: ESPIRiT calibration and kernel sizes; the
      calibration region is shrunk to fit inside the centre columns.
    process_index, process_count: default ``jax.process_index()`` and
      ``jax.process_count()``; each process gets its rows of every global
      batch.
    train_slices: None (all) or keep only the first `train_slices` slices of
      the training split (volumes in `split_names` order, slices in order),
      for training on scarce data; validation and test stay as they are.
    augment: None (off) or a `fdl.data.recon_augment.ReconAugment` (or its
      dict): training batches get flips / rotations / scalings applied
      consistently to k-space, maps and target before masking; validation
      and test are never augmented.

  Raises:
    ValueError: a bad argument, naming it and its value.
  """

  def __init__(self, volumes: Sequence[Volume], *, val_volumes: int,
               test_volumes: int, mask_type: str, acceleration: float,
               center_fraction: float, batch_size: int, seed: int,
               maps: str = "estimate", calib_size: int = 24, kernel_size: int = 6,
               process_index: int | None = None, process_count: int | None = None,
               train_slices: int | None = None,
               augment: recon_augment.ReconAugment | dict | None = None):
    volumes = list(volumes)
    _check_arguments(volumes, val_volumes, test_volumes, mask_type, acceleration,
                     center_fraction, batch_size, seed, maps)
    self._rows = process_slice(batch_size, process_index, process_count)
    self.mask_type = mask_type
    self.acceleration = float(acceleration)
    self.center_fraction = float(center_fraction)
    self.seed = int(seed)
    self.batch_size = int(batch_size)
    self.maps_method = maps
    _, num_coils, height, width = volumes[0].kspace.shape
    self.num_coils = int(num_coils)
    self.image_shape = (int(height), int(width))
    self.target_shape = tuple(int(d) for d in volumes[0].target.shape[1:])
    self._center = center_columns(width, center_fraction)
    self._num_low = num_low_frequencies(width, center_fraction)
    _check_normalization(volumes, self._center)
    if maps == "estimate":
      self.calib_size = espirit_calib_size(calib_size, kernel_size, self.image_shape,
                                           center_fraction)
      self.kernel_size = int(kernel_size)

    root = jax.random.PRNGKey(self.seed)
    self._splits = _split_volumes(volumes, int(val_volumes), int(test_volumes), root)
    self.train_slices = None
    if train_slices is not None:
      self._keep_train_slices(train_slices)
    self._slices = {name: _slice_table(vols) for name, vols in self._splits.items()}
    if self.train_slices is not None:
      self._slices["train"] = tuple(t[:self.train_slices] for t in self._slices["train"])
    self.augment = (recon_augment.ReconAugment.from_dict(augment)
                    if isinstance(augment, dict) else augment)
    if self.augment is not None and not isinstance(self.augment,
                                                   recon_augment.ReconAugment):
      raise ValueError(f"augment must be None, a ReconAugment or its dict; got "
                       f"{type(augment).__name__}")
    self._data_ranges = {name: np.array([v.data_range for v in vols], np.float32)
                         for name, vols in self._splits.items()}
    num_train = len(self._slices["train"][0])
    if self.batch_size > num_train:
      raise ValueError(f"batch_size {batch_size} exceeds the {num_train} training "
                       "slices; choose batch_size in [1, "
                       f"{num_train}]")
    self.steps_per_epoch = num_train // self.batch_size
    self._maps = {name: self._coil_maps(self._splits[name]) for name in ("train", "val")}
    self._warn_if_maps_empty(self._maps["train"] + self._maps["val"])
    self._val_masks = self._fixed_masks(self._splits["val"])
    self._test_opened = 0
    self.provenance = self._provenance(calib_size, kernel_size)

  # -- properties ----------------------------------------------------------------

  @property
  def mask_shape(self) -> tuple[int, ...]:
    """Shape of one example's mask: ``(1, 1, W)`` or ``(1, H, W)`` (poisson)."""
    if self.mask_type == "poisson":
      return (1, *self.image_shape)
    return (1, 1, self.image_shape[1])

  def split_names(self, split: str) -> list[str]:
    """Volume names of ``"train"``, ``"val"`` or ``"test"``, in split order."""
    return [v.name for v in self._splits[split]]

  # -- training ------------------------------------------------------------------

  def train_order(self, epoch: int) -> np.ndarray:
    """Training slice indices in the order epoch `epoch` feeds them.

    Returns:
      int64 ``[steps_per_epoch * batch_size]``; global batch k holds slices
      ``order[k * batch_size:(k + 1) * batch_size]`` of the training split
      (volumes in `split_names` order, slices in order within a volume).
    """
    num_train = len(self._slices["train"][0])
    key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.seed), 0), epoch)
    order = np.asarray(jax.random.permutation(key, num_train), np.int64)
    return order[:self.steps_per_epoch * self.batch_size]

  def train_masks(self, epoch: int, slice_ids: np.ndarray) -> np.ndarray:
    """Fresh masks of training slices `slice_ids` in epoch `epoch`.

    Returns:
      float32 ``[len(slice_ids), *mask_shape]`` of 0/1.
    """
    base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.seed), 1), epoch)
    keys = _fold_in_all(base, jnp.asarray(slice_ids, jnp.uint32))
    return self._masks(np.asarray(keys))

  def train_batches(self, epoch: int) -> Batches:
    """This process's training batches of epoch `epoch` (0-based).

    Returns:
      `Batches` (``len()`` = `steps_per_epoch`) of dicts with ``kspace``,
      ``mask``, ``maps``, ``target``, ``data_range`` (module docstring), ``b =
      batch_size / process_count`` rows each; the last partial batch of the
      epoch is dropped.
    """
    if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 0:
      raise ValueError(f"epoch must be an integer >= 0; got {epoch!r}")
    epoch = int(epoch)
    order = self.train_order(epoch)

    def iterate():
      for step in range(self.steps_per_epoch):
        ids = order[step * self.batch_size:(step + 1) * self.batch_size][self._rows]
        yield self._batch("train", ids, self.train_masks(epoch, ids),
                          augment_epoch=epoch)

    return Batches(iterate, self.steps_per_epoch, description=f"train epoch {epoch}")

  # -- validation ----------------------------------------------------------------

  def val_batches(self) -> Batches:
    """The validation slices in order, with fixed masks, once per pass.

    Returns:
      `Batches` of dicts as `train_batches` plus ``weight`` float32 ``[b]``:
      1 for real slices, 0 for the copies of the last slice that pad the last
      global batch to `batch_size` (copies, not zeros, so that every metric
      stays finite and ``weight * metric`` is 0).
    """
    num_val = len(self._slices["val"][0])
    steps = -(-num_val // self.batch_size)

    def iterate():
      for step in range(steps):
        ids = np.arange(step * self.batch_size, (step + 1) * self.batch_size)
        weight = (ids < num_val).astype(np.float32)[self._rows]
        ids = np.minimum(ids, num_val - 1)[self._rows]
        batch = self._batch("val", ids, self._val_masks[ids])
        batch["weight"] = weight
        yield batch

    return Batches(iterate, steps, description="validation slices")

  # -- the sealed test split -----------------------------------------------------

  def test_volumes(self) -> Iterator[dict]:
    """Opens the sealed test split: one dict per test volume, all slices.

    Call it once, after model selection; a second call raises. Coil maps of
    the test volumes are estimated here (from their centre columns).

    Returns:
      An iterator of dicts: ``name`` (str), ``kspace`` complex64
      ``[S, C, H, W]`` (masked), ``mask`` float32 ``[S, *mask_shape]`` (fixed
      per slice), ``maps`` complex64 ``[S, C, H, W]``, ``target`` float32
      ``[S, h, w]`` and ``data_range`` (float, the target volume's maximum).

    Raises:
      RuntimeError: the test split was opened before.
    """
    if self._test_opened:
      raise RuntimeError(
          "the test split was already opened once; it is sealed so that no "
          "choice (model, epoch, hyperparameter) can be made on it. Use "
          "val_batches() for model selection.")
    self._test_opened += 1
    volumes = self._splits["test"]

    def iterate():
      all_maps = self._coil_maps(volumes)
      self._warn_if_maps_empty(all_maps)
      for volume, maps in zip(volumes, all_maps):
        mask = self._fixed_masks([volume])
        yield {"name": volume.name, "kspace": volume.kspace * mask, "mask": mask,
               "maps": maps, "target": volume.target, "data_range": volume.data_range}

    return iterate()

  # -- internals -----------------------------------------------------------------

  def acquire(self, split: str, ids: np.ndarray, masks: np.ndarray) -> dict:
    """Slices `ids` of ``"train"`` or ``"val"`` under-sampled with masks of one's choice.

    For training schemes that fix their own acquisitions (self-supervised
    learning keeps one mask per slice), with no augmentation.

    Args:
      split: ``"train"`` or ``"val"`` (the test split stays sealed).
      ids: int ``[b]`` slice indices within the split (as `train_order`).
      masks: float32 ``[b, *mask_shape]``.

    Returns:
      A batch dict as `train_batches` gives, ``target`` included.
    """
    if split not in ("train", "val"):
      raise ValueError(f"split must be 'train' or 'val' (the test split is sealed); "
                       f"got {split!r}")
    masks = np.asarray(masks, np.float32)
    if masks.shape != (len(ids), *self.mask_shape):
      raise ValueError(f"masks must be [{len(ids)}, {', '.join(map(str, self.mask_shape))}]"
                       f" (one per id); got {masks.shape}")
    return self._batch(split, np.asarray(ids), masks)

  def _batch(self, split: str, ids: np.ndarray, masks: np.ndarray,
             augment_epoch: int | None = None) -> dict:
    volume_ids, slice_ids = (table[ids] for table in self._slices[split])
    volumes, maps = self._splits[split], self._maps[split]
    kspace = np.stack([volumes[v].kspace[s] for v, s in zip(volume_ids, slice_ids)])
    batch_maps = np.stack([maps[v][s] for v, s in zip(volume_ids, slice_ids)])
    target = np.stack([volumes[v].target[s] for v, s in zip(volume_ids, slice_ids)])
    if augment_epoch is not None and self.augment is not None:
      # Before masking: the transform acts on the fully sampled coil images.
      kspace, batch_maps, target = recon_augment.augment_batch(
          kspace, batch_maps, target, self.augment_keys(augment_epoch, ids),
          self.augment)
    return {
        "kspace": kspace * masks,
        "mask": masks,
        "maps": batch_maps,
        "target": target,
        "data_range": self._data_ranges[split][volume_ids],
    }

  def augment_keys(self, epoch: int, slice_ids: np.ndarray) -> np.ndarray:
    """Raw keys ``uint32 [len(slice_ids), 2]`` of the training augmentation draws."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(self.seed), 3), epoch)
    return np.asarray(_fold_in_all(base, jnp.asarray(slice_ids, jnp.uint32)))

  def _keep_train_slices(self, train_slices) -> None:
    """Keeps the training volumes that hold the first `train_slices` slices."""
    available = sum(v.num_slices for v in self._splits["train"])
    if (isinstance(train_slices, bool) or not isinstance(train_slices, (int, np.integer))
        or not 1 <= train_slices <= available):
      raise ValueError(f"train_slices must be None or an int in [1, {available}] (the "
                       f"training split's slices); got {train_slices!r}")
    kept, total = [], 0
    for volume in self._splits["train"]:
      if total >= train_slices:
        break
      kept.append(volume)
      total += volume.num_slices
    self._splits["train"] = kept
    self.train_slices = int(train_slices)

  def _fixed_masks(self, volumes: Sequence[Volume]) -> np.ndarray:
    """Masks keyed by slice id ``f"{name}/{slice}"``: the same in every run."""
    seeds = [zlib.crc32(f"{v.name}/{s}".encode()) for v in volumes
             for s in range(v.num_slices)]
    return self._masks(np.stack([np.asarray(jax.random.PRNGKey(c)) for c in seeds]))

  def _masks(self, keys: np.ndarray) -> np.ndarray:
    """float32 ``[N, *mask_shape]`` masks, one per raw key of ``keys [N, 2]``."""
    height, width = self.image_shape
    if self.acceleration == 1:
      return np.ones((len(keys), *self.mask_shape), np.float32)
    if self.mask_type == "poisson":
      # Calibration block = the full-height centre columns (see the class doc).
      calib = (height, self._num_low)
      return np.stack([np.asarray(poisson_mask(jnp.asarray(k), self.image_shape,
                                               self.acceleration, calib=calib))
                       for k in keys])[:, None]
    masks = _line_masks(self.mask_type, width, self.acceleration, self.center_fraction,
                        jnp.asarray(keys))
    return np.asarray(masks)[:, None, None, :]

  def _coil_maps(self, volumes: Sequence[Volume]) -> list[np.ndarray]:
    if self.maps_method == "true":
      return [v.maps for v in volumes]
    start, last = time.perf_counter(), time.perf_counter()
    out = []
    for n, volume in enumerate(volumes, start=1):
      out.append(estimate_coil_maps(volume.kspace, self.center_fraction,
                                    calib_size=self.calib_size,
                                    kernel_size=self.kernel_size))
      now = time.perf_counter()
      if now - last > _PROGRESS_SECONDS or (n == len(volumes)
                                            and now - start > _PROGRESS_SECONDS):
        print(f"estimating coil maps (ESPIRiT): {n}/{len(volumes)} volumes, "
              f"{now - start:.0f} s", flush=True)
        last = now
    return out

  def _warn_if_maps_empty(self, maps: Sequence[np.ndarray]) -> None:
    # ESPIRiT zeroes pixels it cannot explain; with too small a calibration
    # region that is every pixel, and such slices cannot be reconstructed.
    empty = sum(int(np.sum(~np.any(m, axis=(1, 2, 3)))) for m in maps)
    if empty and self.maps_method == "estimate":
      print(f"warning: ESPIRiT gave all-zero coil maps for {empty} of "
            f"{sum(len(m) for m in maps)} slices (calibration {self.calib_size} x "
            f"{self.calib_size}, kernel_size={self.kernel_size}); more centre columns "
            "(center_fraction) or a smaller kernel_size may help", file=sys.stderr)

  def _provenance(self, calib_size: int, kernel_size: int) -> dict:
    splits = self._splits
    maps = {"method": self.maps_method}
    if self.maps_method == "estimate":
      maps.update(algorithm="ESPIRiT (fdl.mri.coils.estimate_maps) on the centre "
                  "columns only, once per slice", calib_size=self.calib_size,
                  requested_calib_size=int(calib_size), kernel_size=self.kernel_size)
    else:
      maps["algorithm"] = "the volumes' true simulated coil maps"
    return prov.to_jsonable({
        "dataset": sorted({str(v.source.get("dataset")) for vols in splits.values()
                           for v in vols}),
        "volumes": {name: [v.name for v in vols] for name, vols in splits.items()},
        "slices": {name: len(table[0]) for name, table in self._slices.items()},
        "split": {"seed": self.seed, "by": "volume",
                  "rule": "permutation(fold_in(PRNGKey(seed), 2)) of volume indices: "
                          "test first, then val, the rest train"},
        "normalization": {"rule": NORMALIZATION,
                          "scale": {v.name: v.scale for vols in splits.values()
                                    for v in vols}},
        "mask": {"type": self.mask_type, "acceleration": self.acceleration,
                 "center_fraction": self.center_fraction,
                 "center_columns": [self._center.start, self._center.stop],
                 "train": "fresh per (epoch, slice): fold_in(fold_in(fold_in("
                          "PRNGKey(seed), 1), epoch), training slice index)",
                 "val_test": "fixed per slice: PRNGKey(crc32('<volume name>/<slice>'))",
                 **({"calib": [self.image_shape[0], self._num_low]}
                    if self.mask_type == "poisson" else {})},
        "maps": maps,
        "batching": {"global_batch_size": self.batch_size,
                     "steps_per_epoch": self.steps_per_epoch,
                     "dropped_per_epoch": len(self._slices["train"][0])
                                          - self.steps_per_epoch * self.batch_size,
                     "shuffle": "permutation(fold_in(fold_in(PRNGKey(seed), 0), epoch))",
                     "val_padding": "last batch padded with copies of its last slice, "
                                    "weight 0"},
        "audit": _audit(splits),
        **({"train_subset": {"train_slices": self.train_slices,
                             "rule": "the first train_slices slices of the training "
                                     "split (volumes in split order, slices in order)"}}
           if self.train_slices is not None else {}),
        **({"augment": {**self.augment.to_dict(),
                        "where": "training batches only, before masking",
                        "key": "fold_in(fold_in(fold_in(PRNGKey(seed), 3), epoch), "
                               "training slice index)"}}
           if self.augment is not None else {}),
        "kspace_sha256": {name: prov.sha256_arrays(*[v.kspace for v in vols])
                          for name, vols in splits.items()},
        "sources": {v.name: v.source for vols in splits.values() for v in vols},
    })

  def __repr__(self):
    sizes = ", ".join(f"{name}={len(vols)} volumes/{len(self._slices[name][0])} slices"
                      for name, vols in self._splits.items())
    return (f"ReconPipeline({sizes}, mask={self.mask_type} x{self.acceleration:g}, "
            f"batch_size={self.batch_size}, maps={self.maps_method})")


# --- helpers ----------------------------------------------------------------------


def _audit(splits) -> dict:
  """`fdl.mri.audit` of every volume's fully sampled k-space: the flagged ones."""
  flagged, factors = {}, {}
  for vols in splits.values():
    for v in vols:
      # With the volume's own maps (simulated), the symmetry test also sees k-space
      # synthesized from magnitude images through complex maps.
      result = data_audit.audit(v.kspace, maps=v.maps)
      if result["flags"]:
        flagged[v.name] = result["flags"]
        if result["zero_padded"]:
          factors[v.name] = result["zero_pad_factor"]
  return {"method": "fdl.mri.audit of each volume's fully sampled k-space (and its "
                    "true coil maps, when it has them)",
          "flagged": flagged, "zero_pad_factor": factors,
          "flags": sorted({f for flags in flagged.values() for f in flags})}


def _check_arguments(volumes, val_volumes, test_volumes, mask_type, acceleration,
                     center_fraction, batch_size, seed, maps) -> None:
  def is_int(x):
    return not isinstance(x, bool) and isinstance(x, (int, np.integer))

  if not volumes or not all(isinstance(v, Volume) for v in volumes):
    raise ValueError(f"volumes must be a non-empty list of Volume; got {len(volumes)} "
                     "items")
  for v in volumes:
    if (v.kspace.dtype != np.complex64 or v.kspace.ndim != 4 or v.target.ndim != 3
        or len(v.target) != len(v.kspace)
        or (v.maps is not None and v.maps.shape != v.kspace.shape)):
      raise ValueError(
          f"volume {v.name}: kspace must be complex64 [S, C, H, W], target [S, h, w] "
          f"and maps None or like kspace; got kspace {v.kspace.dtype} "
          f"{v.kspace.shape}, target {v.target.shape}, maps "
          f"{None if v.maps is None else v.maps.shape}")
  for name, value in (("val_volumes", val_volumes), ("test_volumes", test_volumes)):
    if not is_int(value) or value < 1:
      raise ValueError(f"{name} must be an int >= 1; got {value!r}")
  if val_volumes + test_volumes >= len(volumes):
    raise ValueError(
        f"val_volumes={val_volumes} + test_volumes={test_volumes} leave no training "
        f"volume of {len(volumes)}; lower them or load more volumes")
  if mask_type not in MASK_TYPES:
    raise ValueError(f"mask_type must be one of {MASK_TYPES}; got {mask_type!r}")
  if not _is_number(acceleration) or not acceleration >= 1:
    raise ValueError(f"acceleration must be a number >= 1; got {acceleration!r}")
  if not _is_number(center_fraction) or not 0 < center_fraction < 1:
    raise ValueError(f"center_fraction must be in (0, 1); got {center_fraction!r}")
  if not is_int(batch_size) or batch_size < 1:
    raise ValueError(f"batch_size must be an int >= 1; got {batch_size!r}")
  if not is_int(seed) or seed < 0:
    raise ValueError(f"seed must be an int >= 0; got {seed!r}")
  if maps not in MAPS_METHODS:
    raise ValueError(f"maps must be one of {MAPS_METHODS}; got {maps!r}")
  names = [v.name for v in volumes]
  if len(set(names)) != len(names):
    raise ValueError(f"volume names must be unique (they key the validation masks); "
                     f"got {names}")
  shapes = {(v.kspace.shape[1:], v.target.shape[1:]) for v in volumes}
  if len(shapes) > 1:
    listing = ", ".join(f"{v.name}: kspace {v.kspace.shape}, target {v.target.shape}"
                        for v in volumes)
    raise ValueError("all volumes must share [coils, H, W] and the target's [h, w] to be "
                     f"batched together; got {listing}")
  if maps == "true":
    missing = [v.name for v in volumes if v.maps is None]
    if missing:
      raise ValueError(f"maps='true' needs the true coil maps of every volume "
                       f"(simulated data); {missing} have none (fastMRI files carry "
                       "no maps): use maps='estimate'")


def _split_volumes(volumes, num_val: int, num_test: int, root) -> dict[str, list]:
  """Train / validation / test volumes (module docstring: the volume split)."""
  order = np.asarray(jax.random.permutation(jax.random.fold_in(root, 2), len(volumes)))
  fixed = [v.source.get("split") for v in volumes]
  if all(f is None for f in fixed):
    return {"test": [volumes[i] for i in sorted(order[:num_test])],
            "val": [volumes[i] for i in sorted(order[num_test:num_test + num_val])],
            "train": [volumes[i] for i in sorted(order[num_test + num_val:])]}
  if any(f not in ("test", "train_val") for f in fixed):
    raise ValueError(f"volume source['split'] must be 'test' or 'train_val' for every "
                     f"volume or for none; got {sorted(set(map(str, fixed)))}")
  test = [i for i, f in enumerate(fixed) if f == "test"]
  if len(test) != num_test:
    raise ValueError(f"test_volumes is {num_test} but the data fix {len(test)} test "
                     f"volumes (source['split'], split by anatomy): set test_volumes="
                     f"{len(test)}")
  rest = [int(i) for i in order if fixed[i] == "train_val"]
  return {"test": [volumes[i] for i in test],
          "val": [volumes[i] for i in sorted(rest[:num_val])],
          "train": [volumes[i] for i in sorted(rest[num_val:])]}


def _is_number(x) -> bool:
  return not isinstance(x, bool) and isinstance(x, (int, float, np.integer, np.floating))


def _check_normalization(volumes: Sequence[Volume], center: slice) -> None:
  """The volumes' normalization must use only columns every mask samples."""
  for v in volumes:
    used = v.source.get("normalization", {}).get("center_columns")
    if used is not None and not center.start <= used[0] <= used[1] <= center.stop:
      raise ValueError(
          f"volume {v.name} was normalized with centre columns {used}, but the masks "
          f"sample only columns [{center.start}, {center.stop}); use the same "
          "center_fraction in load_volumes and ReconPipeline")


def _slice_table(volumes: Sequence[Volume]) -> tuple[np.ndarray, np.ndarray]:
  """(volume index, slice index) int64 arrays of every slice, volume by volume."""
  volume_ids = np.concatenate([np.full(v.num_slices, i, np.int64)
                               for i, v in enumerate(volumes)])
  slice_ids = np.concatenate([np.arange(v.num_slices, dtype=np.int64) for v in volumes])
  return volume_ids, slice_ids


@jax.jit
def _fold_in_all(key: jax.Array, data: jax.Array) -> jax.Array:
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, data)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _line_masks(mask_type: str, num_cols: int, acceleration: float,
                center_fraction: float, keys: jax.Array) -> jax.Array:
  """float32 ``[N, num_cols]`` line masks, one per raw key of ``keys [N, 2]``."""
  fn = LINE_MASKS[mask_type]
  return jax.vmap(lambda key: fn(key, num_cols, acceleration, center_fraction))(keys)
