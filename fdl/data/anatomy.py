"""Named sources of real brain anatomy: an image plus tissue labels.

Every source returns an ``Anatomy``: a T1-weighted image, integer tissue
labels and a brain mask on the same RAS+ grid (see ``fdl.data.nifti``), with
the voxel sizes, the voxel-to-world affine and a provenance record (files,
licence, what the subject is, how the labels were made). The files are read
where their packages install them; nothing is copied into this repository.

Sources and how independent they are:

* ``mni152()``: the MNI ICBM152 2009a symmetric template (an average of 152
  brains) inside the ``nilearn`` wheel, with its GM and WM probability maps.
* ``colin27()``: Colin27, one subject scanned 27 times and averaged, from the
  Debian package ``mricron-data``. It lives in the same MNI space as
  ``mni152()``, so the two are not independent subjects.
* ``itk_head()``: a T1 head of another, unrelated subject with a k-means
  tissue segmentation, from the Debian package ``insighttoolkit5-examples``.
  Use it as the independent subject.
* ``from_files()``: a user's own image + label NIfTI pair.

Tissue sources share ``TISSUE_LABELS``: 0 background (everything outside the
brain mask), 1 CSF, 2 GM, 3 WM.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from fdl.data.nifti import (VoxelSizes, _labels_from_array, _read_canonical,
                            _voxel_sizes)

TISSUE_LABELS: dict[int, str] = {0: "background", 1: "CSF", 2: "GM", 3: "WM"}

MRICRON_TEMPLATES = "/usr/share/mricron/templates"
ITK_EXAMPLES_DATA = "/usr/share/doc/insighttoolkit5-examples/examples/Data"

_MNI_FILES = {n: f"mni_icbm152_{n}_tal_nlin_sym_09a_converted.nii.gz"
              for n in ("t1", "gm", "wm")}
_MNI_LICENSE = (
    "ICBM 2009a template: Copyright (C) 1993-2009 Louis Collins, McConnell "
    "Brain Imaging Centre, Montreal Neurological Institute, McGill University; "
    "permission to use, copy, modify and distribute with this notice kept "
    "(http://www.bic.mni.mcgill.ca/ServicesAtlases/ICBM152NLin2009); shipped "
    "in the nilearn wheel (BSD-3-Clause)")
_COLIN_LICENSE = (
    "Colin27 (Holmes et al. 1998, J Comput Assist Tomogr 22:324), MNI/McGill, "
    "redistributed by MRIcron (BSD-3-Clause) in Debian mricron-data; see "
    "/usr/share/doc/mricron-data/copyright")
_ITK_LICENSE = (
    "ITK example data, Copyright Insight Software Consortium / NumFOCUS, "
    "Apache-2.0; see /usr/share/doc/insighttoolkit5-examples/copyright")


@dataclasses.dataclass(frozen=True, eq=False)
class Anatomy:
  """One head or brain on a RAS+ voxel grid.

  Attributes:
    name: short name of the source ("mni152", "colin27", ...).
    image: float32 ``[X, Y, Z]`` T1-weighted intensities in the file's own
      arbitrary units (0..255 for the packaged sources), axes Right,
      Anterior, Superior.
    labels: int32 ``[X, Y, Z]`` label map on the same grid.
    label_names: label value -> name, covering every value in ``labels``
      (``TISSUE_LABELS`` for the packaged sources).
    voxel_sizes: ``(dx, dy, dz)`` in mm.
    affine: float64 ``[4, 4]`` map from voxel ``[i, j, k, 1]`` to RAS+ mm.
    brain_mask: bool ``[X, Y, Z]`` inside-brain voxels, or None when unknown.
    tissues: tissue name -> float32 ``[X, Y, Z]`` probability in [0, 1]
      (``mni152`` only: "CSF", "GM", "WM"), or None for hard labels only.
    provenance: where everything came from and how it was derived (plain
      strings and lists, JSON-serializable).
  """
  name: str
  image: np.ndarray
  labels: np.ndarray
  label_names: dict[int, str]
  voxel_sizes: VoxelSizes
  affine: np.ndarray
  brain_mask: np.ndarray | None = None
  tissues: dict[str, np.ndarray] | None = None
  provenance: dict[str, Any] = dataclasses.field(default_factory=dict)

  @property
  def shape(self) -> tuple[int, int, int]:
    return tuple(self.image.shape)  # type: ignore[return-value]

  def label_fractions(self, within_mask: bool = True) -> dict[str, float]:
    """Fraction of voxels per label name (of the brain mask, if it exists)."""
    sel = self.labels[self.brain_mask] if (
        within_mask and self.brain_mask is not None) else self.labels.ravel()
    n = max(int(sel.size), 1)
    return {name: float(np.count_nonzero(sel == v)) / n
            for v, name in self.label_names.items()}


def _need(path: str, what: str, how: str) -> str:
  if not os.path.isfile(path):
    raise FileNotFoundError(f"{what}: missing {path!r}; install it with: {how}")
  return path


def _nilearn_data_dir() -> str:
  how = 'pip install nilearn (or pip install -e ".[anatomy]")'
  spec = importlib.util.find_spec("nilearn")
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError(
        "mni152: the MNI152 template ships inside the nilearn wheel, which is "
        f"not installed; install it with: {how}")
  return os.path.join(list(spec.submodule_search_locations)[0], "datasets",
                      "data")


MNI152_LABELS = ("probabilities", "kmeans")


def mni152(labels: str = "probabilities") -> Anatomy:
  """The MNI ICBM152 2009a symmetric template with tissue probabilities.

  Read by path from the installed ``nilearn`` package (nilearn is not
  imported). Grid 197 x 233 x 189 at 1 mm; world origin (0, 0, 0) mm is the
  anterior commissure. The T1 is already brain-extracted by its makers.

  Derivation (all voxelwise):
    * GM, WM: the packaged probability maps (uint8) divided by 255.
    * brain mask: T1 > 0.2 * max(T1), nilearn's ``load_mni152_brain_mask``
      rule.
    * CSF: ``clip(mask - GM - WM, 0, 1)``: the in-brain probability left
      over once GM and WM are accounted for (no CSF map is packaged).
    * labels (``labels="probabilities"``): 0 outside the mask; inside,
      1 + argmax(CSF, GM, WM) (ties go to the earlier class). Inside the mask
      about 8% CSF, 58% GM, 34% WM.
    * labels (``labels="kmeans"``): the rule of `colin27`, a 1-D k-means (k=3)
      of the T1 inside the mask, darkest CSF, middle GM, brightest WM: about
      14% CSF, 48% GM, 38% WM (colin27: 11%, 48%, 40%). Tissues defined by one
      rule on every template, for a segmenter tested on colin27 or the ITK
      head, whose labels are such intensity classes.

  Args:
    labels: ``"probabilities"`` or ``"kmeans"`` (above).

  Returns:
    ``Anatomy`` with ``tissues`` {"CSF", "GM", "WM"} (the probabilities, either
    way) and labels ``TISSUE_LABELS``.

  Raises:
    FileNotFoundError: nilearn is not installed or lacks the files; the
      message says how to install it.
  """
  if labels not in MNI152_LABELS:
    raise ValueError(f"mni152 labels must be one of {MNI152_LABELS}; got {labels!r}")
  how = 'pip install nilearn (or pip install -e ".[anatomy]")'
  data_dir = _nilearn_data_dir()
  paths = {n: _need(os.path.join(data_dir, f), "mni152", how)
           for n, f in _MNI_FILES.items()}
  img, t1 = _read_canonical(paths["t1"], what="mni152")
  t1 = t1.astype(np.float32)
  probs = {}
  for n in ("gm", "wm"):
    other, data = _read_canonical(paths[n], what="mni152")
    _check_same_grid(img, other, paths["t1"], paths[n], "mni152")
    probs[n] = np.clip(data.astype(np.float32) / 255.0, 0.0, 1.0)
  mask = t1 > 0.2 * t1.max()
  csf = np.clip(mask.astype(np.float32) - probs["gm"] - probs["wm"], 0.0, 1.0)
  tissues = {"CSF": csf, "GM": probs["gm"], "WM": probs["wm"]}
  rule = labels
  if rule == "kmeans":
    classes, centres = _kmeans_1d(t1[mask], k=3)
    labels = np.zeros(t1.shape, np.int32)
    labels[mask] = classes + 1
  else:
    labels = _argmax_labels(tissues, mask)
  provenance = {
      "source": "nilearn wheel: nilearn/datasets/data",
      "files": dict(paths),
      "subject": "template: nonlinear average of 152 brains (MNI ICBM152 "
                 "2009a, symmetric); brain-extracted T1",
      "space": "MNI152 (ICBM 2009a sym), origin at the anterior commissure",
      "independence": "shares MNI space with colin27: not an independent "
                      "subject; use itk_head() for that",
      "license": _MNI_LICENSE,
      "brain_mask": "T1 > 0.2 * max(T1) (nilearn load_mni152_brain_mask rule)",
      "tissues": "GM, WM: packaged uint8 maps / 255; CSF: clip(mask - GM - WM, "
                 "0, 1), derived here (no CSF map is packaged)",
      "labels": ("0 outside mask; inside 1 + argmax(CSF, GM, WM): 1 CSF, 2 GM, 3 WM"
                 if rule == "probabilities" else
                 "0 outside mask; inside 1-D k-means (k=3) of T1, sorted by centre: "
                 "1 CSF (darkest), 2 GM, 3 WM (the colin27 rule)"),
      "orientation": "RAS+ (nibabel.as_closest_canonical)",
  }
  if rule == "kmeans":
    provenance["kmeans_centres"] = [float(c) for c in centres]
  return Anatomy("mni152" if rule == "probabilities" else "mni152_kmeans", t1, labels, dict(TISSUE_LABELS),
                 _voxel_sizes(img.affine), np.asarray(img.affine, np.float64),
                 mask, tissues, provenance)


def colin27(*, skull_stripped: bool = False) -> Anatomy:
  """Colin27 (one subject, 27 scans averaged), from Debian ``mricron-data``.

  Grid 181 x 217 x 181 at 1 mm in MNI space (world (0, 0, 0) mm near the
  anterior commissure). ``mricron-data`` has no tissue segmentation, so the
  tissues are derived here, and the provenance says so:

    * brain mask: ``ch2bet.nii.gz > 0`` (MRIcron's brain-extracted copy; it
      equals ``ch2.nii.gz`` inside and 0 outside).
    * labels: 1-D k-means (3 classes, 50 Lloyd iterations, centres started at
      the 1/6, 1/2, 5/6 intensity quantiles) on the T1 intensities inside the
      mask; classes sorted by centre, darkest = CSF, middle = GM,
      brightest = WM (T1 contrast). Partial-volume voxels go to the nearest
      centre. Inside the mask about 11% CSF, 48% GM, 40% WM.

  Args:
    skull_stripped: if True ``image`` is ``ch2bet`` (zero outside the brain),
      else the full head ``ch2``.

  Returns:
    ``Anatomy`` with labels ``TISSUE_LABELS`` and ``tissues`` None.

  Raises:
    FileNotFoundError: the files are missing; the message says
      ``apt-get install mricron-data``.
  """
  how = "apt-get install mricron-data"
  head_path = _need(os.path.join(MRICRON_TEMPLATES, "ch2.nii.gz"), "colin27",
                    how)
  bet_path = _need(os.path.join(MRICRON_TEMPLATES, "ch2bet.nii.gz"), "colin27",
                   how)
  img, head = _read_canonical(head_path, what="colin27")
  bet_img, bet = _read_canonical(bet_path, what="colin27")
  _check_same_grid(img, bet_img, head_path, bet_path, "colin27")
  head = head.astype(np.float32)
  bet = bet.astype(np.float32)
  mask = bet > 0
  classes, centres = _kmeans_1d(head[mask], k=3)
  labels = np.zeros(head.shape, np.int32)
  labels[mask] = classes + 1
  provenance = {
      "source": f"Debian mricron-data: {MRICRON_TEMPLATES}",
      "files": {"head": head_path, "brain": bet_path},
      "subject": "Colin27: one subject (C. Holmes) scanned 27 times, averaged",
      "space": "MNI (same space as mni152), origin near the anterior "
               "commissure",
      "independence": "shares MNI space with mni152: not an independent "
                      "subject; use itk_head() for that",
      "license": _COLIN_LICENSE,
      "brain_mask": "ch2bet.nii.gz > 0",
      "tissues": "none packaged; derived here by 1-D k-means (k=3) of T1 "
                 "intensity inside the brain mask, sorted by centre: "
                 "darkest CSF, middle GM, brightest WM",
      "kmeans_centres": [float(c) for c in centres],
      "labels": "0 outside mask, 1 CSF, 2 GM, 3 WM",
      "image": "ch2bet (skull-stripped)" if skull_stripped else
               "ch2 (full head)",
      "also_available": "ch2better.nii.gz (0.5 mm head), atlases aal, "
                        "brodmann (ch2 grid), HarvardOxford, JHU (FSL grid)",
      "orientation": "RAS+ (nibabel.as_closest_canonical)",
  }
  return Anatomy("colin27", bet if skull_stripped else head, labels,
                 dict(TISSUE_LABELS), _voxel_sizes(img.affine),
                 np.asarray(img.affine, np.float64), mask, None, provenance)


# KmeansTest_T1KmeansPrelimSegmentation classes, identified from the data:
# inside the skull-strip mask only 0, 4, 5, 6 occur, with median T1 45, 50,
# 76, 102 (CSF darkest, WM brightest on T1); 1 is air (median 0), 2 and 3
# are scalp, skull and fat (outside the mask). Label 0 marks 126 voxels
# inside the mask with CSF-like intensity.
_ITK_TO_TISSUE = {0: 1, 1: 0, 2: 0, 3: 0, 4: 1, 5: 2, 6: 3}


def itk_head(*, skull_stripped: bool = False) -> Anatomy:
  """A real T1 head (independent subject) from ``insighttoolkit5-examples``.

  Stored 128 x 128 x 62 (L, S, A) at 2 x 2 x 3 mm; returned RAS+ as
  128 x 62 x 128 with voxel sizes (2, 3, 2) mm. Files:

    * ``KmeansTest_T1UCharRaw.nii.gz``: the T1 head (0..255).
    * ``KmeansTest_T1RawSkullStrip.nii.gz``: a skull-stripped map whose
      values are only {0, 4, 5, 6} and do not follow the tissue intensities
      (88% of it is 6), so it is used only as the brain mask (> 0).
    * ``KmeansTest_T1KmeansPrelimSegmentation.nii.gz``: k-means classes
      0..6. Mapping (checked against the data): 4 -> CSF, 5 -> GM, 6 -> WM
      (median T1 50, 76, 102 inside the mask); 1 (air), 2, 3 (scalp, skull,
      fat) -> background; 0 (126 voxels inside the mask, median T1 45) ->
      CSF. Voxels outside the mask are background. Inside the mask about
      19% CSF, 44% GM, 37% WM.

  Args:
    skull_stripped: if True ``image`` is the T1 times the brain mask, else
      the full head.

  Returns:
    ``Anatomy`` with labels ``TISSUE_LABELS`` and ``tissues`` None.

  Raises:
    FileNotFoundError: the files are missing; the message says
      ``apt-get install insighttoolkit5-examples``.
  """
  how = "apt-get install insighttoolkit5-examples"
  paths = {k: _need(os.path.join(ITK_EXAMPLES_DATA, f), "itk_head", how)
           for k, f in (("head", "KmeansTest_T1UCharRaw.nii.gz"),
                        ("skull_strip", "KmeansTest_T1RawSkullStrip.nii.gz"),
                        ("kmeans",
                         "KmeansTest_T1KmeansPrelimSegmentation.nii.gz"))}
  img, head = _read_canonical(paths["head"], what="itk_head")
  ss_img, ss = _read_canonical(paths["skull_strip"], what="itk_head")
  km_img, km = _read_canonical(paths["kmeans"], what="itk_head")
  _check_same_grid(img, ss_img, paths["head"], paths["skull_strip"], "itk_head")
  _check_same_grid(img, km_img, paths["head"], paths["kmeans"], "itk_head")
  head = head.astype(np.float32)
  mask = ss > 0
  km = _labels_from_array(km, f"itk_head: {paths['kmeans']!r}")
  unknown = sorted(set(np.unique(km).tolist()) - set(_ITK_TO_TISSUE))
  if unknown:
    raise ValueError(f"itk_head: {paths['kmeans']!r} has classes {unknown}, "
                     f"expected only {sorted(_ITK_TO_TISSUE)}")
  lut = np.zeros(max(_ITK_TO_TISSUE) + 1, np.int32)
  for src, dst in _ITK_TO_TISSUE.items():
    lut[src] = dst
  labels = np.where(mask, lut[km], 0).astype(np.int32)
  provenance = {
      "source": f"Debian insighttoolkit5-examples: {ITK_EXAMPLES_DATA}",
      "files": dict(paths),
      "subject": "one real subject's T1 head (ITK KmeansTest data)",
      "space": "native scanner space of that subject",
      "independence": "independent of mni152 and colin27",
      "license": _ITK_LICENSE,
      "brain_mask": "KmeansTest_T1RawSkullStrip > 0",
      "labels": "from KmeansTest_T1KmeansPrelimSegmentation: 4 -> 1 CSF, "
                "5 -> 2 GM, 6 -> 3 WM, 0 (inside mask) -> 1 CSF, "
                "1/2/3 (air, scalp, skull, fat) and outside mask -> 0",
      "image": "T1 x brain mask" if skull_stripped else "T1 full head",
      "orientation": "RAS+ (nibabel.as_closest_canonical); stored LSA",
  }
  image = head * mask if skull_stripped else head
  return Anatomy("itk_head", image.astype(np.float32), labels,
                 dict(TISSUE_LABELS), _voxel_sizes(img.affine),
                 np.asarray(img.affine, np.float64), mask, None, provenance)


def from_files(image_path: str | os.PathLike[str],
               label_path: str | os.PathLike[str],
               label_names: Mapping[int, str], *, name: str | None = None,
               background: int | None = 0, atol_mm: float = 1e-3) -> Anatomy:
  """A user's own image + label NIfTI pair on one grid.

  Args:
    image_path: the intensity image (any NIfTI, 3-D).
    label_path: integer labels on the same grid (same shape and affine).
    label_names: label value -> name; must cover every value in the labels.
    name: the ``Anatomy`` name; defaults to the image file name.
    background: the label value outside the brain; ``brain_mask`` is
      ``labels != background``. None gives ``brain_mask`` None.
    atol_mm: tolerance, in mm, for the two affines to count as equal.

  Returns:
    ``Anatomy`` with both volumes in RAS+.

  Raises:
    FileNotFoundError: a file is missing.
    ValueError: unreadable files, shapes or affines that differ (both are
      named), non-integer labels, or labels missing from ``label_names``.
  """
  img, image = _read_canonical(image_path, what="from_files")
  lab_img, labels = _read_canonical(label_path, what="from_files")
  _check_same_grid(img, lab_img, os.fspath(image_path), os.fspath(label_path),
                   "from_files", atol_mm=atol_mm)
  labels = _labels_from_array(labels, f"from_files: {os.fspath(label_path)!r}")
  names = {int(k): str(v) for k, v in label_names.items()}
  missing = sorted(set(np.unique(labels).tolist()) - set(names))
  if missing:
    raise ValueError(
        f"from_files: {os.fspath(label_path)!r} has label values {missing} "
        f"that label_names does not name (it names {sorted(names)})")
  mask = None if background is None else labels != background
  provenance = {
      "source": "user files",
      "files": {"image": os.fspath(image_path), "labels": os.fspath(label_path)},
      "labels": dict(names),
      "brain_mask": (None if background is None else
                     f"labels != {background}"),
      "orientation": "RAS+ (nibabel.as_closest_canonical)",
  }
  return Anatomy(name or os.path.basename(os.fspath(image_path)),
                 image.astype(np.float32), labels, names,
                 _voxel_sizes(img.affine), np.asarray(img.affine, np.float64),
                 mask, None, provenance)


def downsample(anatomy: Anatomy, factor: int) -> Anatomy:
  """Coarsens an ``Anatomy`` by an integer factor along every axis.

  Trailing voxels that do not fill a whole block are dropped, so the new
  shape is ``shape // factor``. Images and tissue probabilities take the
  block mean; labels the block's most frequent value (ties go to the
  smaller label value); the brain mask is "at least half the block". The
  voxel sizes grow by ``factor`` and the affine moves to block centres.

  Args:
    anatomy: the source.
    factor: positive integer; 1 returns ``anatomy`` unchanged.

  Returns:
    A new ``Anatomy``; its provenance records the factor.

  Raises:
    ValueError: ``factor`` is not a positive integer or exceeds a dimension.
  """
  if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or (
      factor < 1):
    raise ValueError(f"downsample: factor must be a positive integer, got "
                     f"{factor!r}")
  factor = int(factor)
  if factor == 1:
    return anatomy
  if any(s < factor for s in anatomy.shape):
    raise ValueError(f"downsample: factor {factor} exceeds a dimension of "
                     f"shape {anatomy.shape}")
  out_shape = tuple(s // factor for s in anatomy.shape)

  def blocks(a):
    a = a[tuple(slice(0, n * factor) for n in out_shape)]
    return a.reshape(out_shape[0], factor, out_shape[1], factor, out_shape[2],
                     factor)

  def mean(a):
    return blocks(a.astype(np.float32)).mean(axis=(1, 3, 5), dtype=np.float32)

  values = np.unique(anatomy.labels)  # Ascending.
  best = np.full(out_shape, -1, np.int32)
  best_count = np.zeros(out_shape, np.int32)
  for v in values:  # Sorted ascending; ">" keeps the smaller value on ties.
    count = blocks(anatomy.labels == v).sum(axis=(1, 3, 5), dtype=np.int32)
    better = count > best_count
    best[better] = v
    best_count[better] = count[better]
  affine = np.array(anatomy.affine, np.float64)
  affine[:3, 3] += affine[:3, :3] @ np.full(3, (factor - 1) / 2.0)
  affine[:3, :3] *= factor
  mask = None if anatomy.brain_mask is None else mean(anatomy.brain_mask) >= 0.5
  tissues = None if anatomy.tissues is None else {
      k: mean(v) for k, v in anatomy.tissues.items()}
  provenance = dict(anatomy.provenance)
  provenance["downsample"] = (
      f"factor {factor}: block mean (image, tissues), block mode (labels), "
      "mask = block mean >= 0.5")
  return dataclasses.replace(
      anatomy, image=mean(anatomy.image), labels=best,
      voxel_sizes=tuple(float(v) * factor for v in anatomy.voxel_sizes),
      affine=affine, brain_mask=mask, tissues=tissues, provenance=provenance)


def _check_same_grid(a, b, path_a: str, path_b: str, what: str, *,
                     atol_mm: float = 1e-3) -> None:
  if tuple(a.shape[:3]) != tuple(b.shape[:3]):
    raise ValueError(f"{what}: {path_a!r} has shape {tuple(a.shape)} but "
                     f"{path_b!r} has shape {tuple(b.shape)}; they must share "
                     "one grid")
  if not np.allclose(a.affine, b.affine, rtol=0.0, atol=atol_mm):
    fmt = lambda m: np.array2string(np.asarray(m), precision=3,  # noqa: E731
                                    separator=",").replace("\n", "")
    raise ValueError(f"{what}: the affines of {path_a!r} ({fmt(a.affine)}) "
                     f"and {path_b!r} ({fmt(b.affine)}) differ by more than "
                     f"{atol_mm} mm; they must share one grid")


def _argmax_labels(tissues: Mapping[str, np.ndarray],
                   mask: np.ndarray) -> np.ndarray:
  probs = np.stack([tissues["CSF"], tissues["GM"], tissues["WM"]])
  return np.where(mask, probs.argmax(axis=0) + 1, 0).astype(np.int32)


def _kmeans_1d(x: np.ndarray, k: int, iters: int = 50
               ) -> tuple[np.ndarray, np.ndarray]:
  """Deterministic Lloyd k-means on 1-D values; classes sorted by centre."""
  x = np.asarray(x, np.float64).ravel()
  centres = np.quantile(x, [(i + 0.5) / k for i in range(k)])
  assign = np.zeros(x.shape, np.int64)
  for _ in range(iters):
    edges = (centres[1:] + centres[:-1]) / 2.0
    assign = np.searchsorted(edges, x)
    new = np.array([x[assign == j].mean() if np.any(assign == j) else
                    centres[j] for j in range(k)])
    if np.allclose(new, centres):
      break
    centres = np.sort(new)
  edges = (centres[1:] + centres[:-1]) / 2.0
  return np.searchsorted(edges, x).astype(np.int32), centres
