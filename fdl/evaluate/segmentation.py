"""The sealed test of segmentation: Dice, HD95 and volume difference, on the host.

NumPy/SciPy, float64, for label maps of one 2-D slice ``[H, W]`` or one 3-D volume
``[D, H, W]`` (any rank >= 1 works). Physical sizes come from ``voxel_sizes``, one
positive spacing per axis in millimetres, so distances are in mm and volumes in mm^3
(mm^2, an area, for a 2-D slice).

Conventions, shared by every function here:

- **Dice** of a class: ``2 |P & T| / (|P| + |T|)``; NaN when the class is absent from
  both prediction and reference (undefined rather than perfect), and NaN values are
  left out of every mean (`mean_foreground_dice`, ``mean_dice``).
- **Surface** of a mask: its voxels with at least one face neighbour (4-connectivity in
  2-D, 6 in 3-D) outside the mask; voxels on the edge of the array count as surface
  (outside the array is background). As MedPy's ``hd95``.
- **HD95**: the 95th percentile (``np.percentile``, linear interpolation) of the pooled
  distances from every surface voxel of each mask to the nearest surface voxel of the
  other, in mm (Euclidean, ``scipy.ndimage.distance_transform_edt`` with
  ``sampling=voxel_sizes``); NaN when both masks are empty, inf when exactly one is.
- **Volume difference**: signed, prediction minus reference, in mm^3 and relative to the
  reference volume (inf when the reference is empty and the prediction is not, NaN when
  both are empty).

- **Lesion detection** (`lesion_detection`, for binary lesion masks): lesions are the
  connected components of a mask (``connectivity`` 1: face neighbours only; up to
  ``ndim``: every neighbour), components under ``min_size`` voxels left out of both
  masks; a reference lesion is *detected* when any of its voxels is predicted, else
  *missed*; a predicted component that touches no reference lesion is *invented* (a
  false positive). Sensitivity ``detected / num_reference`` and precision
  ``(num_predicted - invented) / num_predicted``, NaN when the denominator is 0;
  `sum_lesion_detection` pools the counts of several slices or volumes and recomputes
  both.

`score_segmentation` gives all of them per class plus the foreground means, and
`format_table` prints them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

__all__ = [
    "VolumeDifference",
    "dice",
    "format_table",
    "hausdorff95",
    "lesion_detection",
    "mean_foreground_dice",
    "score_segmentation",
    "sum_lesion_detection",
    "surface",
    "volume_difference",
]


def _describe(x: np.ndarray) -> str:
  return f"{x.dtype.name} {tuple(x.shape)}"


def _check_labels(pred: Any, target: Any) -> tuple[np.ndarray, np.ndarray]:
  pred, target = np.asarray(pred), np.asarray(target)
  for name, arr in (("pred", pred), ("target", target)):
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_) or arr.ndim < 1:
      raise ValueError(f"{name} must be an integer label map [H, W] or [D, H, W]; "
                       f"got {_describe(arr)}")
  if pred.shape != target.shape:
    raise ValueError(f"pred must have the shape of target; got pred {_describe(pred)} "
                     f"and target {_describe(target)}")
  return pred, target


def _check_masks(pred_mask: Any, target_mask: Any) -> tuple[np.ndarray, np.ndarray]:
  pred_mask, target_mask = np.asarray(pred_mask), np.asarray(target_mask)
  for name, arr in (("pred_mask", pred_mask), ("target_mask", target_mask)):
    if arr.dtype != np.bool_ and not (np.issubdtype(arr.dtype, np.integer)
                                      and np.isin(arr, (0, 1)).all()):
      raise ValueError(f"{name} must be a boolean (or 0/1 integer) mask [H, W] or "
                       f"[D, H, W]; got {_describe(arr)}")
    if arr.ndim < 1:
      raise ValueError(f"{name} must have rank >= 1; got {_describe(arr)}")
  if pred_mask.shape != target_mask.shape:
    raise ValueError(f"pred_mask must have the shape of target_mask; got pred_mask "
                     f"{_describe(pred_mask)} and target_mask {_describe(target_mask)}")
  return pred_mask.astype(bool), target_mask.astype(bool)


def _check_voxel_sizes(voxel_sizes: Any, ndim: int) -> tuple[float, ...]:
  sizes = np.asarray(voxel_sizes, dtype=np.float64).reshape(-1) if np.ndim(
      voxel_sizes) <= 1 else None
  if sizes is None or sizes.size != ndim or not np.all(np.isfinite(sizes)) \
      or not np.all(sizes > 0):
    raise ValueError(f"voxel_sizes must be {ndim} positive finite spacings in mm, one per "
                     f"axis of the masks; got {voxel_sizes!r}")
  return tuple(float(s) for s in sizes)


def dice(pred: Any, target: Any, labels: Sequence[int] | None = None
         ) -> dict[int, float]:
  """Dice coefficient per class of two label maps.

  ``dice_c = 2 |{pred == c} & {target == c}| / (|{pred == c}| + |{target == c}|)``.

  Args:
    pred: integer label map, any shape (``[H, W]``, ``[D, H, W]``).
    target: integer label map of the same shape (the reference).
    labels: the classes to score, background included if wanted. Default: every value
      that occurs in ``pred`` or ``target``, in increasing order.

  Returns:
    ``{class: dice}`` as Python floats in ``[0, 1]``, in the order of ``labels``; NaN for a
    class absent from both maps (undefined; excluded from means).

  Raises:
    ValueError: the maps are not integer or differ in shape.

  Examples:
    >>> import numpy as np
    >>> dice(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), labels=[0, 1, 2, 3])
    {0: 1.0, 1: 0.6666666666666666, 2: 0.6666666666666666, 3: nan}
  """
  pred, target = _check_labels(pred, target)
  if labels is None:
    labels = np.union1d(np.unique(pred), np.unique(target)).tolist()
  scores = {}
  for label in labels:
    p, t = pred == label, target == label
    total = int(p.sum()) + int(t.sum())
    scores[int(label)] = 2.0 * int(np.sum(p & t)) / total if total else math.nan
  return scores


def mean_foreground_dice(pred: Any, target: Any, labels: Sequence[int] | None = None, *,
                         background: int | None = 0) -> float:
  """Mean of `dice` over the foreground classes, NaN classes left out.

  Args:
    pred: integer label map.
    target: integer label map of the same shape.
    labels: classes to score (default: those present in either map).
    background: the class left out of the mean (None: keep every class).

  Returns:
    The mean as a float; NaN when no foreground class occurs in either map.
  """
  scores = dice(pred, target, labels)
  values = [v for c, v in scores.items() if c != background and not math.isnan(v)]
  return float(np.mean(values)) if values else math.nan


def surface(mask: Any) -> np.ndarray:
  """The surface voxels of a boolean mask: mask voxels with a face neighbour outside it.

  Face neighbours (4-connectivity in 2-D, 6 in 3-D); outside the array counts as
  background, so mask voxels on the array's edge are surface.

  Args:
    mask: boolean (or 0/1) array, any rank >= 1.

  Returns:
    Boolean array of the same shape, a subset of ``mask``.

  Examples:
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[1:4, 1:4] = True
    >>> int(surface(m).sum())  # a 3x3 square's border: all but the centre
    8
  """
  mask = np.asarray(mask, bool)
  structure = ndimage.generate_binary_structure(mask.ndim, 1)
  return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _surface_distances(from_surface: np.ndarray, to_surface: np.ndarray,
                       voxel_sizes: tuple[float, ...]) -> np.ndarray:
  """Distance (mm) from every voxel of ``from_surface`` to the nearest of ``to_surface``."""
  distance = ndimage.distance_transform_edt(~to_surface, sampling=voxel_sizes)
  return distance[from_surface]


def hausdorff95(pred_mask: Any, target_mask: Any, voxel_sizes: Sequence[float], *,
                percentile: float = 95.0) -> float:
  """Robust (95th-percentile) symmetric Hausdorff distance between two masks, in mm.

  The distances from each `surface` voxel of ``pred_mask`` to the nearest surface voxel
  of ``target_mask``, and from each surface voxel of ``target_mask`` to the nearest of
  ``pred_mask``, are pooled and their ``percentile``-th percentile taken
  (``np.percentile``, linear interpolation), as MedPy's ``hd95``. Distances are
  Euclidean between voxel centres with the anisotropic ``voxel_sizes``.

  Args:
    pred_mask: boolean (or 0/1) mask ``[H, W]`` or ``[D, H, W]``.
    target_mask: boolean mask of the same shape.
    voxel_sizes: spacing of each axis in mm, e.g. ``(slice_thickness, dy, dx)``.
    percentile: in ``[0, 100]``; 100 gives the classical Hausdorff distance.

  Returns:
    The distance in mm, a float; 0.0 for identical non-empty masks, NaN when both masks
    are empty, inf when exactly one is.

  Raises:
    ValueError: masks not boolean or 0/1, shapes differ, ``voxel_sizes`` not one
      positive spacing per axis, or ``percentile`` outside ``[0, 100]``.

  Examples:
    A 4x4 square moved down by 2 rows of 1.5 mm:

    >>> import numpy as np
    >>> a = np.zeros((10, 8), bool); a[1:5, 2:6] = True
    >>> hausdorff95(a, np.roll(a, 2, axis=0), voxel_sizes=(1.5, 0.5))
    3.0
  """
  pred_mask, target_mask = _check_masks(pred_mask, target_mask)
  voxel_sizes = _check_voxel_sizes(voxel_sizes, pred_mask.ndim)
  if not isinstance(percentile, (int, float)) or not 0 <= percentile <= 100:
    raise ValueError(f"percentile must be a number in [0, 100]; got {percentile!r}")
  pred_empty, target_empty = not pred_mask.any(), not target_mask.any()
  if pred_empty and target_empty:
    return math.nan
  if pred_empty or target_empty:
    return math.inf
  pred_surface, target_surface = surface(pred_mask), surface(target_mask)
  distances = np.concatenate([
      _surface_distances(pred_surface, target_surface, voxel_sizes),
      _surface_distances(target_surface, pred_surface, voxel_sizes),
  ])
  return float(np.percentile(distances, percentile))


class VolumeDifference(NamedTuple):
  """Signed volume difference, prediction minus reference.

  Attributes:
    absolute_mm3: ``V_pred - V_target`` in mm^3 (mm^2 for 2-D masks); ml = mm^3 / 1000.
    relative: ``(V_pred - V_target) / V_target``, a fraction (0.1 = 10 % too large); inf
      when the reference is empty and the prediction is not, NaN when both are empty.
  """

  absolute_mm3: float
  relative: float


def volume_difference(pred_mask: Any, target_mask: Any, voxel_sizes: Sequence[float]
                      ) -> VolumeDifference:
  """Signed volume difference of two masks, in mm^3 and relative to the reference.

  The volume of a mask is its voxel count times ``prod(voxel_sizes)``.

  Args:
    pred_mask: boolean (or 0/1) mask ``[H, W]`` or ``[D, H, W]``.
    target_mask: boolean mask of the same shape (the reference).
    voxel_sizes: spacing of each axis in mm.

  Returns:
    `VolumeDifference` ``(absolute_mm3, relative)``, a tuple of floats.

  Examples:
    >>> import numpy as np
    >>> a = np.zeros((4, 4), bool); a[:2, :2] = True
    >>> volume_difference(a, np.ones((4, 4), bool), voxel_sizes=(2.0, 0.5))
    VolumeDifference(absolute_mm3=-12.0, relative=-0.75)
  """
  pred_mask, target_mask = _check_masks(pred_mask, target_mask)
  voxel_volume = math.prod(_check_voxel_sizes(voxel_sizes, pred_mask.ndim))
  pred_volume = int(pred_mask.sum()) * voxel_volume
  target_volume = int(target_mask.sum()) * voxel_volume
  absolute = pred_volume - target_volume
  if target_volume > 0:
    relative = absolute / target_volume
  else:
    relative = math.inf if pred_volume > 0 else math.nan
  return VolumeDifference(float(absolute), float(relative))


# The counts of `lesion_detection`, which `sum_lesion_detection` adds up.
_DETECTION_COUNTS = ("num_reference", "num_predicted", "detected", "missed", "invented")


def _components(mask: np.ndarray, structure: np.ndarray, min_size: int
                ) -> tuple[np.ndarray, np.ndarray]:
  """Connected components of ``mask``: (label map, bool keep-table over label values)."""
  labels, num = ndimage.label(mask, structure=structure)
  keep = np.bincount(labels.ravel(), minlength=num + 1) >= min_size
  keep[0] = False  # background
  return labels, keep


def _with_rates(counts: Mapping[str, int]) -> dict[str, Any]:
  """The counts plus sensitivity and precision (NaN for a zero denominator)."""
  out: dict[str, Any] = {k: int(counts[k]) for k in _DETECTION_COUNTS}
  n_ref, n_pred = out["num_reference"], out["num_predicted"]
  out["sensitivity"] = out["detected"] / n_ref if n_ref else math.nan
  out["precision"] = (n_pred - out["invented"]) / n_pred if n_pred else math.nan
  return out


def lesion_detection(pred_mask: Any, target_mask: Any, *, connectivity: int = 1,
                     min_size: int = 1) -> dict[str, Any]:
  """Lesion-wise detection counts of a binary prediction against a reference mask.

  Lesions are the connected components of each mask (``scipy.ndimage.label`` with
  ``ndimage.generate_binary_structure(ndim, connectivity)``); components with fewer than
  ``min_size`` voxels are dropped from both masks before matching (as if absent). A
  reference lesion is *detected* when at least one of its voxels is predicted (by a kept
  predicted component), else *missed*; a kept predicted component is *invented* (a false
  positive) when it touches no kept reference lesion. One predicted component spanning
  two reference lesions detects both and counts once in the precision.

  Args:
    pred_mask: boolean (or 0/1) mask of any rank >= 1, e.g. ``[H, W]`` or ``[D, H, W]``.
    target_mask: boolean mask of the same shape (the reference).
    connectivity: neighbourhood of a component, an int in ``[1, ndim]``: 1 joins face
      neighbours only (4 in 2-D, 6 in 3-D), ``ndim`` every neighbour (8 in 2-D, 26 in
      3-D).
    min_size: the smallest component counted, in voxels, an int >= 1.

  Returns:
    ``{"num_reference", "num_predicted", "detected", "missed", "invented"}`` as Python
    ints (``detected + missed == num_reference``), plus floats ``"sensitivity"``
    (``detected / num_reference``, NaN without reference lesions) and ``"precision"``
    (``(num_predicted - invented) / num_predicted``, NaN without predicted components).

  Raises:
    ValueError: masks not boolean or 0/1, shapes differ, or ``connectivity`` or
      ``min_size`` out of range.

  Examples:
    Two reference lesions, one hit, one missed, and one invented component:

    >>> import numpy as np
    >>> ref = np.zeros((6, 8), bool); ref[1:3, 1:3] = True; ref[4, 6] = True
    >>> pred = np.zeros((6, 8), bool); pred[2, 2] = True; pred[5, 0] = True
    >>> r = lesion_detection(pred, ref)
    >>> r["detected"], r["missed"], r["invented"], r["sensitivity"], r["precision"]
    (1, 1, 1, 0.5, 0.5)
  """
  pred_mask, target_mask = _check_masks(pred_mask, target_mask)
  ndim = pred_mask.ndim
  if (isinstance(connectivity, bool) or not isinstance(connectivity, (int, np.integer))
      or not 1 <= connectivity <= ndim):
    raise ValueError(f"connectivity must be an int in [1, {ndim}] for {ndim}-D masks; "
                     f"got {connectivity!r}")
  if isinstance(min_size, bool) or not isinstance(min_size, (int, np.integer)) \
      or min_size < 1:
    raise ValueError(f"min_size must be an int >= 1 (voxels); got {min_size!r}")
  structure = ndimage.generate_binary_structure(ndim, int(connectivity))
  ref_labels, ref_keep = _components(target_mask, structure, int(min_size))
  pred_labels, pred_keep = _components(pred_mask, structure, int(min_size))
  ref_kept, pred_kept = ref_keep[ref_labels], pred_keep[pred_labels]
  num_reference, num_predicted = int(ref_keep.sum()), int(pred_keep.sum())
  detected = np.unique(ref_labels[ref_kept & pred_kept]).size
  touching = np.unique(pred_labels[pred_kept & ref_kept]).size
  return _with_rates({"num_reference": num_reference, "num_predicted": num_predicted,
                      "detected": detected, "missed": num_reference - detected,
                      "invented": num_predicted - touching})


def sum_lesion_detection(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
  """Pools `lesion_detection` results (of slices, volumes): counts added, rates redone.

  The pooled sensitivity is ``sum(detected) / sum(num_reference)`` and the precision
  ``(sum(num_predicted) - sum(invented)) / sum(num_predicted)``, lesion-weighted (not a
  mean of per-slice rates, which slices without lesions would make NaN).

  Args:
    results: a sequence of dicts with (at least) the counts of `lesion_detection`.

  Returns:
    A dict with the keys of `lesion_detection`; all counts 0 and NaN rates for an empty
    sequence.

  Raises:
    ValueError: an item is not a mapping with those counts.

  Examples:
    >>> import numpy as np
    >>> a = lesion_detection(np.array([1, 0, 0, 1]), np.array([1, 0, 1, 0]))
    >>> b = lesion_detection(np.array([0, 0, 0, 0]), np.array([0, 0, 0, 1]))
    >>> a["sensitivity"], b["sensitivity"]
    (0.5, 0.0)
    >>> total = sum_lesion_detection([a, b])
    >>> total["num_reference"], total["detected"], total["sensitivity"], total["precision"]
    (3, 1, 0.3333333333333333, 0.5)
  """
  if isinstance(results, Mapping) or isinstance(results, str):
    raise ValueError("results must be a sequence of lesion_detection dicts; got one "
                     f"{type(results).__name__}")
  totals = dict.fromkeys(_DETECTION_COUNTS, 0)
  for i, result in enumerate(results):
    missing = [k for k in _DETECTION_COUNTS
               if not isinstance(result, Mapping) or k not in result]
    if missing:
      raise ValueError(f"results[{i}] must be a lesion_detection dict with the counts "
                       f"{list(_DETECTION_COUNTS)}; it lacks {missing}")
    for k in _DETECTION_COUNTS:
      totals[k] += int(result[k])
  return _with_rates(totals)


def _label_names(label_names: Mapping[int, str] | Sequence[str]) -> dict[int, str]:
  if isinstance(label_names, Mapping):
    names = {int(k): str(v) for k, v in label_names.items()}
  elif isinstance(label_names, Sequence) and not isinstance(label_names, str):
    names = {i: str(v) for i, v in enumerate(label_names)}
  else:
    names = None
  if not names or len(set(names.values())) != len(names):
    raise ValueError("label_names must be a non-empty sequence of distinct names indexed "
                     "by label value, or a mapping {label: name}; got "
                     f"{label_names!r}")
  return names


def score_segmentation(pred_labels: Any, target_labels: Any, voxel_sizes: Sequence[float],
                       label_names: Mapping[int, str] | Sequence[str], *,
                       background: int | None = 0) -> dict[str, Any]:
  """Every segmentation score of one slice or volume, per class and averaged.

  Args:
    pred_labels: integer label map ``[H, W]`` or ``[D, H, W]``.
    target_labels: reference label map of the same shape.
    voxel_sizes: spacing of each axis in mm (``len == ndim``).
    label_names: the classes, ``["background", "liver", ...]`` indexed by label value, or
      ``{label: name}``. Every value of either map must be named.
    background: the label left out of the means (None: average every class).

  Returns:
    A dict with

    - ``"per_class"``: ``{name: {"label", "dice", "hd95_mm", "volume_pred_mm3",
      "volume_target_mm3", "volume_diff_mm3", "volume_diff_rel"}}`` for every named class
      (background included), in label order, Python floats with the conventions of the
      module docstring (NaN Dice and HD95 for a class absent from both maps);
    - ``"mean_dice"``: mean foreground Dice, NaN classes left out (NaN if none is left);
    - ``"mean_hd95_mm"``: mean foreground HD95, NaN classes left out (inf if a class is
      missing from exactly one map);
    - ``"background"``: the background label, and ``"voxel_sizes"``: the spacings.

  Raises:
    ValueError: bad maps or spacings (see `dice`, `hausdorff95`), or a label value that
      ``label_names`` does not name.

  Examples:
    >>> import numpy as np
    >>> target = np.zeros((6, 6), int); target[1:5, 1:5] = 1
    >>> scores = score_segmentation(target, target, (1.0, 1.0), ["background", "organ"])
    >>> scores["mean_dice"], scores["per_class"]["organ"]["hd95_mm"]
    (1.0, 0.0)
  """
  pred_labels, target_labels = _check_labels(pred_labels, target_labels)
  voxel_sizes = _check_voxel_sizes(voxel_sizes, pred_labels.ndim)
  names = _label_names(label_names)
  present = np.union1d(np.unique(pred_labels), np.unique(target_labels)).tolist()
  unnamed = [v for v in present if v not in names]
  if unnamed:
    raise ValueError(f"label_names must name every label in the maps; labels {unnamed} "
                     f"have no name in {names}")
  voxel_volume = math.prod(voxel_sizes)
  dices = dice(pred_labels, target_labels, sorted(names))
  per_class = {}
  for label in sorted(names):
    p, t = pred_labels == label, target_labels == label
    volume = volume_difference(p, t, voxel_sizes)
    per_class[names[label]] = {
        "label": label,
        "dice": dices[label],
        "hd95_mm": hausdorff95(p, t, voxel_sizes),
        "volume_pred_mm3": float(p.sum() * voxel_volume),
        "volume_target_mm3": float(t.sum() * voxel_volume),
        "volume_diff_mm3": volume.absolute_mm3,
        "volume_diff_rel": volume.relative,
    }
  foreground = [s for s in per_class.values() if s["label"] != background]

  def nanmean(key):
    values = [s[key] for s in foreground if not math.isnan(s[key])]
    return float(np.mean(values)) if values else math.nan

  return {"per_class": per_class, "mean_dice": nanmean("dice"),
          "mean_hd95_mm": nanmean("hd95_mm"), "background": background,
          "voxel_sizes": voxel_sizes}


def format_table(scores: Mapping[str, Any],
                 label_names: Mapping[int, str] | Sequence[str] | None = None) -> str:
  """A plain-text table of `score_segmentation`'s scores, one row per class.

  Columns: class name, label, Dice, HD95 (mm), predicted and reference volumes and
  their signed difference (mm^3), and the relative difference (%). A last row gives the
  foreground means of Dice and HD95. NaN prints as ``nan``, inf as ``inf``.

  Args:
    scores: the dict returned by `score_segmentation`.
    label_names: the classes to list and their order (as in `score_segmentation`);
      default every class of ``scores``, in label order.

  Returns:
    The table as one string, lines separated by ``\\n``, no trailing newline.

  Raises:
    ValueError: ``scores`` is not a `score_segmentation` result, or ``label_names``
      names a class it does not hold.

  Examples:
    >>> import numpy as np
    >>> target = np.zeros((6, 6), int); target[1:5, 1:5] = 1
    >>> scores = score_segmentation(target, target, (1.0, 1.0), ["background", "organ"])
    >>> print(format_table(scores, ["background", "organ"]))
    class      label     dice   hd95_mm vol_pred_mm3  vol_ref_mm3 vol_diff_mm3    diff_%
    ------------------------------------------------------------------------------------
    background     0   1.0000      0.00         20.0         20.0          0.0      0.00
    organ          1   1.0000      0.00         16.0         16.0          0.0      0.00
    mean (fg)          1.0000      0.00
  """
  if not isinstance(scores, Mapping) or "per_class" not in scores:
    raise ValueError("scores must be the dict of score_segmentation (with 'per_class'); "
                     f"got {type(scores).__name__}")
  per_class = scores["per_class"]
  if label_names is None:
    order = sorted(per_class, key=lambda n: per_class[n]["label"])
  else:
    names = _label_names(label_names)
    order = [names[k] for k in sorted(names)]
    missing = [n for n in order if n not in per_class]
    if missing:
      raise ValueError(f"label_names must name classes of scores; {missing} are not in "
                       f"{list(per_class)}")
  width = max([len("class"), len("mean (fg)")] + [len(n) for n in order])
  header = (f"{'class':<{width}} {'label':>5} {'dice':>8} {'hd95_mm':>9} "
            f"{'vol_pred_mm3':>12} {'vol_ref_mm3':>12} {'vol_diff_mm3':>12} "
            f"{'diff_%':>9}")
  lines = [header, "-" * len(header)]
  for name in order:
    s = per_class[name]
    lines.append(f"{name:<{width}} {s['label']:>5d} {s['dice']:>8.4f} {s['hd95_mm']:>9.2f} "
                 f"{s['volume_pred_mm3']:>12.1f} {s['volume_target_mm3']:>12.1f} "
                 f"{s['volume_diff_mm3']:>12.1f} {100 * s['volume_diff_rel']:>9.2f}")
  lines.append(f"{'mean (fg)':<{width}} {'':>5} {scores['mean_dice']:>8.4f} "
               f"{scores['mean_hd95_mm']:>9.2f}")
  return "\n".join(lines)
