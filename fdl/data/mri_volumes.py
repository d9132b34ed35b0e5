"""Fully sampled multi-coil MRI volumes, loaded and normalized for learning.

The first half of the data path of learned reconstruction (`fdl.data.mri_recon`
splits, masks and batches what it returns):

* `load_volumes`: simulated phantom volumes (``"simulated"``), volumes
  synthesized from real anatomy (``"anatomy"``, `fdl.data.synthesis` on the
  templates of `fdl.data.anatomy`, split by anatomy), or a directory of fastMRI
  multi-coil files, each as a `Volume`.
* Normalization, the same for every source: volume ``v`` is multiplied by

    scale_v = 1 / max_{s, r} RSS(ifft2c(P k_v[s]))(r),

  where ``P`` keeps only the ``num_low_frequencies(W, center_fraction)``
  centre columns of k-space (fastMRI's centre block, which every mask of
  `fdl.mri.masks` samples). The scale therefore uses only data a scanner has
  at test time, never the fully sampled target, and the target gets the same
  factor.
* `estimate_coil_maps`: ESPIRiT maps from those centre columns only, so they
  do not depend on the mask.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
import sys
from typing import Any, Mapping, Sequence

import jax
import numpy as np

from fdl.data import provenance as prov
from fdl.mri.coils import estimate_maps
from fdl.mri.fft import ifft2c_host
from fdl.mri.io import read_fastmri
from fdl.mri import processing as mri_processing
from fdl.mri.masks import num_low_frequencies
from fdl.mri.simulate import simulate

NORMALIZATION = ("kspace and target of each volume multiplied by 1 / max over the "
                 "volume of the RSS image of its centre k-space columns only "
                 "(num_low_frequencies(W, center_fraction) columns, zeros elsewhere)")


@dataclasses.dataclass(frozen=True, eq=False)
class Volume:
  """One fully sampled, normalized multi-coil volume.

  Attributes:
    name: unique id, e.g. ``"simulated_0003"`` or the file stem.
    kspace: complex64 ``[S, C, H, W]``, fully sampled, times `scale`.
    target: float32 ``[S, h, w]`` magnitude reference times `scale`; ``(h, w)``
      is the reconstruction size (``(H, W)`` for simulated data).
    maps: complex64 ``[S, C, H, W]`` true coil sensitivities, or None (files).
    scale: the factor applied to the raw k-space and target.
    source: JSON-able record of where the volume came from and how it was
      normalized (``dataset``, ``normalization``, and a file record or the
      simulation arguments).
  """

  name: str
  kspace: np.ndarray
  target: np.ndarray
  maps: np.ndarray | None
  scale: float
  source: dict

  @property
  def num_slices(self) -> int:
    return int(self.kspace.shape[0])

  @property
  def data_range(self) -> float:
    """Maximum of the whole target volume, fastMRI's SSIM/PSNR data range."""
    return float(self.target.max())

  def __repr__(self):
    return (f"Volume({self.name!r}, kspace={self.kspace.shape}, "
            f"target={self.target.shape}, maps={self.maps is not None}, "
            f"scale={self.scale:.4g})")


def center_columns(num_cols: int, center_fraction: float) -> slice:
  """The fully sampled centre columns of every mask, as a slice of ``[0, W)``.

  ``num_low = num_low_frequencies(num_cols, center_fraction)`` columns from
  ``(num_cols - num_low + 1) // 2`` (fastMRI's centring, as documented in
  `fdl.mri.masks.num_low_frequencies`).

  >>> center_columns(20, 0.2)
  slice(8, 12, None)
  """
  num_low = num_low_frequencies(num_cols, center_fraction)
  start = (num_cols - num_low + 1) // 2
  return slice(start, start + num_low)


def rss_image(kspace: np.ndarray) -> np.ndarray:
  """RSS of the coil images of host k-space, ``sqrt(sum_c |ifft2c(k_c)|^2)``.

  Args:
    kspace: complex ``[..., C, H, W]``, centred.

  Returns:
    float32 ``[..., H, W]``, computed with NumPy in float64.
  """
  image = ifft2c_host(np.asarray(kspace, np.complex128))
  return np.sqrt(np.sum(np.abs(image) ** 2, axis=-3)).astype(np.float32)


def center_rss_max(kspace: np.ndarray, center_fraction: float) -> float:
  """Max over all slices of the RSS image of the centre columns of `kspace`.

  Args:
    kspace: complex ``[S, C, H, W]``.
    center_fraction: as in `fdl.mri.masks`, in (0, 1).

  Returns:
    The maximum, a Python float (the normalization divides by it).
  """
  columns = center_columns(kspace.shape[-1], center_fraction)
  centre = np.zeros(kspace.shape, np.complex64)
  centre[..., columns] = kspace[..., columns]
  return float(rss_image(centre).max())


def espirit_calib_size(calib_size: int, kernel_size: int, image_shape: Sequence[int],
                       center_fraction: float) -> int:
  """The largest ESPIRiT calibration side <= `calib_size` inside the centre columns.

  `fdl.mri.coils.estimate_maps` reads the square of side ``c`` at columns
  ``[W // 2 - c // 2, W // 2 - c // 2 + c)``; for odd W and an even centre
  block that window can stick out by one column, so ``c`` shrinks until the
  window lies inside the fully sampled block (and inside H).

  Args:
    calib_size: the requested side.
    kernel_size: ESPIRiT's kernel side.
    image_shape: ``(H, W)``.
    center_fraction: the masks' centre fraction, in (0, 1).

  Returns:
    The side ``c`` to pass to `estimate_maps`.

  Raises:
    ValueError: ``kernel_size`` does not fit (``1 <= kernel_size < c`` and
      ``2 * kernel_size - 1 <= min(H, W)``), naming both sizes.

  >>> espirit_calib_size(24, 2, (24, 21), 0.2)  # centre columns [9, 13)
  3
  """
  height, width = (int(d) for d in image_shape)
  center = center_columns(width, center_fraction)
  size = min(int(calib_size), center.stop - center.start, height)
  while size > 0 and not (center.start <= width // 2 - size // 2
                          and width // 2 - size // 2 + size <= center.stop):
    size -= 1
  if not 1 <= kernel_size < size or 2 * kernel_size - 1 > min(height, width):
    raise ValueError(
        f"ESPIRiT needs 1 <= kernel_size < calibration size and 2 * kernel_size - 1 "
        f"<= min(H, W); got kernel_size={kernel_size} with a calibration size of "
        f"{size} (calib_size={calib_size}, {center.stop - center.start} centre "
        f"columns): raise center_fraction or lower kernel_size")
  return size


def estimate_coil_maps(kspace: np.ndarray, center_fraction: float, *,
                       calib_size: int = 24, kernel_size: int = 6) -> np.ndarray:
  """ESPIRiT coil maps of every slice, from the centre columns of `kspace` only.

  Every mask samples those columns, so the maps do not depend on the mask and
  are the same at training and test time.

  Args:
    kspace: complex64 ``[S, C, H, W]`` (fully sampled or masked).
    center_fraction: the masks' centre fraction, in (0, 1).
    calib_size, kernel_size: as in `fdl.mri.coils.estimate_maps`; the
      calibration side is reduced by `espirit_calib_size`.

  Returns:
    complex64 ``[S, C, H, W]`` maps.
  """
  num_slices, coils, height, width = kspace.shape
  calib_size = espirit_calib_size(calib_size, kernel_size, (height, width),
                                  center_fraction)
  columns = center_columns(width, center_fraction)
  centre = np.zeros_like(kspace)
  centre[..., columns] = kspace[..., columns]
  # The eigen-decomposition holds [chunk, H, W, C, C] complex64: chunks of
  # slices keep it near 256 MB (one 320 x 320 15-coil slice is 184 MB).
  chunk = min(num_slices, max(1, (1 << 28) // (height * width * coils * coils * 8)))
  out = []
  for start in range(0, num_slices, chunk):
    part = centre[start:start + chunk]
    real = len(part)
    if real < chunk:  # one chunk shape, one compilation
      part = np.concatenate([part, np.repeat(part[-1:], chunk - real, axis=0)])
    maps = estimate_maps(part, calib_size=calib_size, kernel_size=kernel_size)
    out.append(np.asarray(maps)[:real])
  return np.concatenate(out)


def normalize_volume(name: str, kspace: np.ndarray, target: np.ndarray,
                     maps: np.ndarray | None, center_fraction: float,
                     source: dict[str, Any]) -> Volume:
  """Scales raw k-space and target by the centre-line rule (module docstring).

  Raises:
    ValueError: the centre columns hold no signal (max 0), so no scale exists.
  """
  peak = center_rss_max(kspace, center_fraction)
  if not np.isfinite(peak) or peak <= 0:
    raise ValueError(f"volume {name}: the RSS of its centre k-space columns is "
                     f"{peak}; cannot normalize (empty or non-finite k-space?)")
  scale = 1.0 / peak
  record = dict(source)
  record["normalization"] = {
      "rule": NORMALIZATION, "center_fraction": float(center_fraction),
      "center_columns": _slice_list(center_columns(kspace.shape[-1], center_fraction)),
      "scale": scale}
  return Volume(name=name,
                kspace=(kspace * np.float32(scale)).astype(np.complex64),
                target=(target * np.float32(scale)).astype(np.float32),
                maps=None if maps is None else np.asarray(maps, np.complex64),
                scale=scale, source=prov.to_jsonable(record))


def load_volumes(dataset: str | os.PathLike, *, seed: int,
                 num_volumes: int | None = None,
                 slices_per_volume: int | None = None,
                 shape: Sequence[int] = (128, 128), num_coils: int = 8,
                 snr_db: float = 30.0, phantom: str = "random",
                 center_fraction: float,
                 processing: Mapping[str, Any] | None = None,
                 anatomy: Mapping[str, Any] | None = None) -> list[Volume]:
  """Loads and normalizes fully sampled volumes (see the module docstring).

  Args:
    dataset: ``"simulated"`` (ellipse phantoms), ``"anatomy"`` (synthesized from
      real brain templates, `anatomy_volumes`), or a directory of fastMRI
      multi-coil ``.h5`` files (read in sorted order; single-coil files get one
      coil).
    seed: simulated data: volume ``i`` is
      ``simulate(fold_in(PRNGKey(seed), i), ...)``. Unused for files.
    num_volumes: simulated: how many (required, >= 1); files: at most this
      many readable files (None: all).
    slices_per_volume: simulated: slices per volume (required, >= 1); files:
      keep this many central slices (None: all).
    shape, num_coils, snr_db, phantom: arguments of
      `fdl.mri.simulate.simulate`; unused for files.
    center_fraction: the masks' centre fraction, in (0, 1); defines the
      centre columns the normalization uses.
    processing: simulated data only: commit a data crime on purpose (see
      `process_simulation`): ``{"zero_pad_factor": f}`` (f >= 1; 1: none) or
      ``{"jpeg_quality": q}`` (1-100; 0: none). None or both off: raw k-space.
    anatomy: ``dataset="anatomy"`` only: keyword arguments of `anatomy_volumes`
      (``test_volumes``, ``train_templates``, ``test_templates``, ``contrast``,
      ``test_contrast``).

  Returns:
    `Volume` s, named ``simulated_{i:04d}`` or by file stem. For files the
    target is the file's ``reconstruction_rss`` (centre-cropped to the
    header's reconstruction size), else the RSS of the fully sampled coil
    images centre-cropped to it, and ``maps`` is None.

  Raises:
    ValueError: a bad argument (named), a directory without ``.h5`` files, or
      one whose files are all unreadable (each file and its error listed).
    FileNotFoundError: `dataset` is neither ``"simulated"`` nor a directory.
  """
  if isinstance(center_fraction, bool) or not 0 < center_fraction < 1:
    raise ValueError(f"center_fraction must be in (0, 1); got {center_fraction!r}")
  if num_volumes is not None and (int(num_volumes) != num_volumes or num_volumes < 1):
    raise ValueError(f"num_volumes must be an integer >= 1 or None; got {num_volumes!r}")
  if slices_per_volume is not None and (int(slices_per_volume) != slices_per_volume
                                        or slices_per_volume < 1):
    raise ValueError("slices_per_volume must be an integer >= 1 or None; got "
                     f"{slices_per_volume!r}")
  if os.fspath(dataset) == "simulated":
    if num_volumes is None or slices_per_volume is None:
      raise ValueError("dataset='simulated' needs num_volumes and slices_per_volume; "
                       f"got {num_volumes!r} and {slices_per_volume!r}")
    return _simulated_volumes(seed, int(num_volumes), int(slices_per_volume),
                              shape, num_coils, snr_db, phantom, center_fraction,
                              check_processing(processing))
  if os.fspath(dataset) == "anatomy":
    if num_volumes is None or slices_per_volume is None:
      raise ValueError("dataset='anatomy' needs num_volumes and slices_per_volume; "
                       f"got {num_volumes!r} and {slices_per_volume!r}")
    if check_processing(processing):
      raise ValueError(f"processing={dict(processing)!r} applies to dataset='simulated' "
                       "only; got dataset='anatomy'")
    return anatomy_volumes(seed, int(num_volumes), int(slices_per_volume), shape=shape,
                           num_coils=num_coils, snr_db=snr_db,
                           center_fraction=center_fraction, **(anatomy or {}))
  if check_processing(processing):
    raise ValueError(f"processing={dict(processing)!r} applies to dataset='simulated' "
                     f"only; got dataset={os.fspath(dataset)!r}")
  return _file_volumes(pathlib.Path(dataset), num_volumes, slices_per_volume,
                       center_fraction)


def check_processing(processing: Mapping[str, Any] | None) -> dict[str, Any]:
  """The active settings of a `load_volumes` ``processing`` dict ({} when none).

  Raises:
    ValueError: an unknown key, a value out of range, or both processings on.
  """
  if not processing:
    return {}
  unknown = set(processing) - {"zero_pad_factor", "jpeg_quality"}
  if unknown:
    raise ValueError(f"processing keys must be 'zero_pad_factor' and/or 'jpeg_quality'; "
                     f"got {sorted(unknown)}")
  active = {}
  factor = processing.get("zero_pad_factor", 1.0)
  if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
    raise ValueError(f"processing['zero_pad_factor'] must be a number >= 1 (1: none); "
                     f"got {factor!r}")
  if factor > 1:
    active["zero_pad_factor"] = float(factor)
  quality = processing.get("jpeg_quality", 0)
  if isinstance(quality, bool) or not isinstance(quality, int) or not 0 <= quality <= 100:
    raise ValueError(f"processing['jpeg_quality'] must be an int in [0, 100] (0: none); "
                     f"got {quality!r}")
  if quality:
    active["jpeg_quality"] = int(quality)
  if len(active) > 1:
    raise ValueError(f"processing: one data crime at a time; got {active}")
  return active


def process_simulation(sim: Mapping[str, np.ndarray], processing: Mapping[str, Any]
                       ) -> tuple[np.ndarray, np.ndarray, dict]:
  """K-space and reference of a simulated volume after one processing step.

  Args:
    sim: a `fdl.mri.simulate` result (``kspace``, ``noise``, ``maps``, ``target``).
    processing: as `check_processing` returns it: ``{}``, ``{"zero_pad_factor":
      f}`` or ``{"jpeg_quality": q}``.

  Returns:
    ``(kspace complex64 [S, C, H, W], target float32 [S, H, W], kspace_origin)``:

    - ``{}``: the raw simulation (target: RSS of the noiseless coil images).
    - zero-padding: `fdl.mri.processing.zero_pad_kspace` of the noisy k-space;
      the target is the RSS of the equally zero-padded noiseless k-space, the
      interpolated image such a data set ships as its reference.
    - JPEG: the magnitude of the SENSE-combined noisy image (the exported
      image), JPEG-compressed at quality q and decoded, ``x_q``; k-space
      synthesized from it through the true maps, ``k_c = F(S_c x_q)``, with no
      further noise; the target is the RSS of its coil images (= ``x_q``, as
      ``sum_c |S_c|^2 = 1``).
  """
  kspace, target = sim["kspace"], sim["target"]
  height, width = kspace.shape[-2:]
  if not processing:
    return kspace, target, {"kind": "simulated", "from_processed_images": False,
                            "how": "forward model (complex phantom x coil maps, FFT) "
                                   "plus complex Gaussian noise"}
  if "zero_pad_factor" in processing:
    factor = processing["zero_pad_factor"]
    rows = mri_processing.padded_block(height, factor)
    cols = mri_processing.padded_block(width, factor)
    clean = mri_processing.zero_pad_kspace(kspace - sim["noise"], factor)
    return (mri_processing.zero_pad_kspace(kspace, factor), rss_image(clean),
            {"kind": "synthesized from processed images", "from_processed_images": True,
             "processing": {"zero_pad_factor": factor},
             "how": f"simulated acquisition of the centre {rows.stop - rows.start} x "
                    f"{cols.stop - cols.start} k-space block, zero-padded to {height} x "
                    f"{width} (fdl.mri.processing.zero_pad_kspace)"})
  quality = processing["jpeg_quality"]
  exported = np.abs(mri_processing.coil_combine(kspace, sim["maps"]))
  compressed = np.stack([mri_processing.jpeg_roundtrip(image, quality)
                         for image in exported])
  synthesized = mri_processing.synthesize_kspace(compressed, sim["maps"])
  return (synthesized, rss_image(synthesized),
          {"kind": "synthesized from processed images", "from_processed_images": True,
           "processing": {"jpeg_quality": quality},
           "how": "magnitude of the SENSE-combined simulated image, 8-bit JPEG at quality "
                  f"{quality} (Pillow), k-space synthesized through the true coil maps "
                  "without noise (fdl.mri.processing)"})


def _simulated_volumes(seed, num_volumes, num_slices, shape, num_coils, snr_db,
                       phantom, center_fraction, processing) -> list[Volume]:
  root = jax.random.PRNGKey(int(seed))
  volumes = []
  for i in range(num_volumes):
    sim = simulate(jax.random.fold_in(root, i), num_slices=num_slices, shape=shape,
                   num_coils=num_coils, snr_db=snr_db, phantom=phantom)
    kspace, target, origin = process_simulation(sim, processing)
    source = {"dataset": "simulated", "generator": "fdl.mri.simulate.simulate",
              "key": f"fold_in(PRNGKey({int(seed)}), {i})", "num_slices": num_slices,
              "shape": list(sim["kspace"].shape[-2:]), "num_coils": int(num_coils),
              "snr_db": float(snr_db), "phantom": phantom,
              "target": ("RSS of the noiseless coil images" if not processing else
                         "the processed reference (fdl.data.process_simulation)"),
              # Data-crime record (Shimron et al. 2022): how the k-space came to be.
              "kspace_origin": origin}
    volumes.append(normalize_volume(f"simulated_{i:04d}", kspace, target,
                                    sim["maps"], center_fraction, source))
  return volumes


# Templates of `fdl.data.anatomy` by name. MNI152 and colin27 share one space (MNI),
# so they are not independent subjects; the ITK head is another subject.
# Template names: mni152_kmeans is MNI152 with the colin27 labelling rule
# (`fdl.data.anatomy.mni152`: k-means of T1 rather than argmax of probabilities).
ANATOMY_TEMPLATES = ("mni152", "mni152_kmeans", "colin27", "itk_head")


@functools.lru_cache(maxsize=None)
def template_labels(name: str) -> tuple[np.ndarray, tuple[float, float, float]]:
  """Tissue labels of a template as axial planes in display orientation.

  Returns labels ``[rows A->P, columns L->R, slices I->S]``: the RAS+ volume's axes
  reordered to (y reversed, x, z), so that an axial plane has anterior at the top,
  and the voxel sizes in that order.
  """
  from fdl.data import anatomy as anatomy_lib  # pylint: disable=g-import-not-at-top
  source = {"mni152": anatomy_lib.mni152,
            "mni152_kmeans": functools.partial(anatomy_lib.mni152, labels="kmeans"),
            "colin27": anatomy_lib.colin27, "itk_head": anatomy_lib.itk_head}[name]()
  labels = np.ascontiguousarray(np.transpose(source.labels, (1, 0, 2))[::-1])
  dx, dy, dz = source.voxel_sizes
  return labels, (float(dy), float(dx), float(dz))


def anatomy_volumes(seed: int, num_volumes: int, slices_per_volume: int, *,
                    shape: Sequence[int], num_coils: int, snr_db: float,
                    center_fraction: float, test_volumes: int = 2,
                    train_templates: Sequence[str] = ("mni152",),
                    test_templates: Sequence[str] = ("colin27", "itk_head"),
                    contrast: str | Sequence[str] = "random",
                    test_contrast: str | Sequence[str] = "t1") -> list[Volume]:
  """Volumes synthesized from real anatomy (`fdl.data.synthesis.synthesize_slices`).

  The last `test_volumes` volumes are synthesized from `test_templates` (in turn),
  the others from `train_templates`; each volume's ``source["split"]`` says
  ``"test"`` or ``"train_val"``, and `fdl.data.ReconPipeline` keeps that split (its
  validation volumes are drawn from the ``"train_val"`` ones). With the defaults the
  network is trained and selected on the MNI152 template only and tested on colin27
  and the ITK head: colin27 lies in MNI space (not an independent subject), the ITK
  head is an independent subject. Volume ``i`` is synthesized with the seed
  ``seed * 100003 + i`` (its own deformations, contrast draws, bias fields, phase,
  noise).

  Args:
    seed, num_volumes, slices_per_volume, shape, num_coils, snr_db,
      center_fraction: as `load_volumes`.
    test_volumes: how many volumes are test volumes, in [1, num_volumes - 2].
    train_templates, test_templates: names in `ANATOMY_TEMPLATES`, disjoint.
    contrast, test_contrast: `fdl.data.synthesis` contrast names (or sequences to
      draw from per slice) of the training/validation and of the test volumes.

  Returns:
    `Volume` s named ``anatomy_<template>_<i:04d>``; ``maps`` are the true coil maps.
  """
  from fdl.data import synthesis  # pylint: disable=g-import-not-at-top
  if not 1 <= test_volumes <= num_volumes - 2:
    raise ValueError(f"anatomy test_volumes must be in [1, num_volumes - 2 = "
                     f"{num_volumes - 2}] (>= 1 train and 1 validation volume); got "
                     f"{test_volumes!r}")
  for what, names in (("train_templates", train_templates),
                      ("test_templates", test_templates)):
    if not names or any(n not in ANATOMY_TEMPLATES for n in names):
      raise ValueError(f"anatomy {what} must be a non-empty sequence of "
                       f"{ANATOMY_TEMPLATES}; got {tuple(names)!r}")
  if set(train_templates) & set(test_templates):
    raise ValueError(f"anatomy train_templates and test_templates must be disjoint "
                     f"(split by anatomy); both hold "
                     f"{sorted(set(train_templates) & set(test_templates))}")
  volumes = []
  for i in range(num_volumes):
    is_test = i >= num_volumes - test_volumes
    names = test_templates if is_test else train_templates
    name = names[(i - (num_volumes - test_volumes) if is_test else i) % len(names)]
    labels, voxel_sizes = template_labels(name)
    out = synthesis.synthesize_slices(
        labels, voxel_sizes, template=name, seed=int(seed) * 100_003 + i,
        num_slices=slices_per_volume, axis=2, shape=tuple(shape),
        contrast=test_contrast if is_test else contrast, num_coils=num_coils,
        snr_db=snr_db)
    source = {"dataset": "anatomy", "split": "test" if is_test else "train_val",
              "template": name, "synthesized": True,
              "target": "RSS of the noiseless coil images (the synthesized magnitude)",
              "synthesis": out["provenance"],
              "kspace_origin": out["provenance"].get("kspace_origin")}
    volumes.append(normalize_volume(f"anatomy_{name}_{i:04d}", out["kspace"],
                                    out["target"], out["maps"], center_fraction, source))
  return volumes


def _file_volumes(directory: pathlib.Path, num_volumes, slices_per_volume,
                  center_fraction) -> list[Volume]:
  if not directory.is_dir():
    raise FileNotFoundError(f"dataset must be 'simulated' or a directory of fastMRI "
                            f".h5 files; {directory} is not a directory")
  paths = sorted(directory.glob("*.h5"))
  if not paths:
    raise ValueError(f"dataset directory {directory} contains no .h5 files")
  volumes, failures = [], []
  for path in paths:
    if num_volumes is not None and len(volumes) == num_volumes:
      break
    try:
      raw = read_fastmri(path)
    except (OSError, ValueError, KeyError) as e:
      failures.append(f"{path}: {type(e).__name__}: {e}")
      continue
    volumes.append(_file_volume(directory, path, raw, slices_per_volume,
                                center_fraction))
  if not volumes:
    raise ValueError(f"dataset directory {directory} has no readable fastMRI file; "
                     "tried:\n  " + "\n  ".join(failures))
  for failure in failures:
    print(f"warning: load_volumes skipped an unreadable file: {failure}",
          file=sys.stderr)
  return volumes


def _file_volume(directory, path, raw, slices_per_volume, center_fraction) -> Volume:
  kspace = raw["kspace"]
  recon_size = raw["attrs"]["recon_size"][:2]
  if raw["target"] is not None:
    target, how = raw["target"], "reconstruction_rss of the file"
  else:
    target, how = rss_image(kspace), "RSS of the fully sampled coil images"
  target = _center_crop(target, recon_size)
  if slices_per_volume is not None and slices_per_volume < len(kspace):
    # Central slices: the edge slices of fastMRI volumes hold little anatomy.
    start = (len(kspace) - slices_per_volume) // 2
    kspace = kspace[start:start + slices_per_volume]
    target = target[start:start + slices_per_volume]
    slices = [start, start + slices_per_volume]
  else:
    slices = [0, len(kspace)]
  source = {"dataset": os.fspath(directory.resolve()), "file": prov.file_record(path),
            "slices": slices, "target": f"{how}, centre-cropped to {list(recon_size)}",
            # A file does not say whether its k-space was acquired or synthesized from
            # processed images; `fdl.mri.audit` (in the pipeline's provenance) checks.
            "kspace_origin": {"kind": "as stored in the file", "from_processed_images": None,
                              "acquisition": raw["attrs"].get("acquisition")}}
  return normalize_volume(path.stem, kspace, target, None, center_fraction, source)


def _center_crop(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
  # fastMRI's rule, as fdl.mri.metrics.center_crop, in NumPy (host data).
  h, w = (int(s) for s in size)
  big_h, big_w = x.shape[-2:]
  h, w = min(h, big_h), min(w, big_w)
  top, left = (big_h - h) // 2, (big_w - w) // 2
  return np.ascontiguousarray(x[..., top:top + h, left:left + w])


def _slice_list(s: slice) -> list[int]:
  return [s.start, s.stop]
