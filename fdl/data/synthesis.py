"""Training data synthesized from anatomy: SynthSeg-style domain randomization.

The idea follows SynthSeg (Billot et al., Medical Image Analysis 2023): a
network trained on images whose contrast, resolution artefacts, bias field,
geometry and noise are drawn at random from wide ranges, generated from
tissue labels, learns what is common to all of them, the anatomy. This module
is our own implementation of that idea (no SynthSeg code), for the tissue
classes of `fdl.data.anatomy` sources:

  label 0 background, 1 CSF, 2 grey matter (GM), 3 white matter (WM).

One sample, from a label map ``L`` (or tissue probability maps ``P_k``):

1. Geometry (`random_deformation`, `warp_labels`, `warp_image`): a random
   affine map (rotation, per-axis scale, shear, translation, about the array
   centre) and a smooth elastic displacement give a dense *sampling map*
   ``coords[:, o]`` = the input position read for output voxel ``o``
   (``scipy.ndimage.map_coordinates`` convention, voxel index units). Labels
   are resampled by nearest neighbour, so every output label is an input
   label (exact, no new values); probability maps and images by linear
   interpolation. Positions outside the input read background.
2. Contrast (`synthesize_image`): each tissue ``k`` gets a mean intensity
   ``mu_k`` and a texture standard deviation ``sigma_k``; the image is
   ``mu_k + sigma_k n`` (``n`` white Gaussian) inside tissue ``k``, or with
   probability maps the partial-volume mixture ``sum_k P_k (mu_k + sigma_k n_k)``.
   Named contrasts use the spin-echo signal equation (see `TISSUE_PARAMETERS`)
   and give the typical orderings

     T1-weighted: WM > GM > CSF;  T2-weighted: CSF > GM > WM;
     PD-weighted (long TR, short TE): GM >~ WM > CSF,

   ``"random"`` draws each ``mu_k`` uniformly in ``[0, 1]`` (any ordering),
   as SynthSeg does.
3. Partial-volume blur: a Gaussian of random width per axis.
4. Bias field: ``exp(b)`` with ``b`` a smooth random field (`smooth_random_field`:
   Gaussian values on a coarse grid, cubic-spline upsampled), multiplied in.
5. Noise: Rician, ``|x + sigma (n_1 + i n_2)|``, of random ``sigma``.
6. Normalization: divided by a robust maximum (a high percentile over the
   foreground, ``labels > 0``) and clipped to ``[0, 1]``.

The labels returned with the image are the warped labels of step 1, so they
match the image's geometry voxel for voxel.

Lesions (`random_lesion_mask`, the ``lesions`` argument of `synthesize_slices`):
synthetic lesions of random number, size, shape and contrast, drawn between
steps 1 and 2 in the output geometry, so their masks are exact by
construction. Each is an ellipse (ellipsoid in 3-D) of random radius,
elongation and orientation centred in grey or white matter, with a boundary
made irregular by a smooth random field, cut to the host tissues; its pixels
take the host tissue's intensity times ``1 + sign c`` (``c`` random, the sign
random per lesion: hyper- or hypo-intense) and then go through the same blur,
bias, noise and normalization. They are the honest stand-in for brain-lesion
or tumour segmentation: shapes and contrasts of our choosing, not real
pathology (no mass effect, oedema, enhancement or typical locations).

Acquisition (`synthesize_kspace`): the magnitude ``m`` gets a smooth random
phase (`smooth_phase`: a degree-2 polynomial, as `fdl.mri.phantoms.random_phantom`
uses, plus a global phase), ``x = m e^{i phi}``; then, as in
`fdl.mri.simulate` (the same coil model, FFT and noise definition),

  y_c = F(S_c x) + n_c,   n_c ~ CN(0, sigma_c^2),
  snr_db = 10 log10(mean |F(S_c x)|^2 / sigma_c^2)   (every coil),

with ``S_c`` the loop-coil maps of `fdl.mri.coil_models.loop_coil_maps`
(``sum_c |S_c|^2 = 1``) and ``F`` the centered orthonormal FFT. The target is
the RSS of the noiseless coil images, ``sqrt(sum_c |S_c x|^2) = m``. Because
``x`` is complex, neither the coil k-space nor that of the SENSE combination
is conjugate symmetric, and `fdl.mri.data_audit.audit` does not flag it (a
magnitude image without phase would be flagged: that is the data crime of
k-space synthesized from magnitude images, Shimron et al. PNAS 2022).

`synthesize_slices` turns a label volume ``[X, Y, Z]`` with voxel sizes in mm
into a stack of such 2-D samples, with a provenance record that says the data
are synthesized and from which template. Its output has the keys of
`fdl.mri.simulate.simulate` (``kspace [S, C, H, W]``, ``maps``, ``target``,
...), so `fdl.data.mri_volumes.normalize_volume` makes a `Volume` of it.

Randomness: every function takes a ``numpy.random.Generator``; sample ``s``
of `synthesize_slices` uses ``np.random.default_rng([seed, s])``, so
``(seed, s)`` (with the other arguments) fixes the bytes of the sample. Its
lesions come from a generator of their own, ``np.random.default_rng([seed, s,
1])``, so the anatomy, deformation, contrast, bias and noise of a sample are
the same with and without lesions.

References:
  B. Billot, D. N. Greve, O. Puonti, A. Thielscher, K. Van Leemput, B. Fischl,
  A. V. Dalca, J. E. Iglesias, "SynthSeg: Segmentation of brain MRI scans of
  any contrast and resolution without retraining", Medical Image Analysis 86
  (2023) 102789.
  J. P. Wansapura, S. K. Holland, R. S. Dunn, W. S. Ball, "NMR relaxation
  times in the human brain at 3.0 tesla", J. Magn. Reson. Imaging 9 (1999).
  E. Shimron, J. I. Tamir, K. Wang, M. Lustig, "Implicit data crimes: machine
  learning bias arising from misuse of public data", PNAS 119 (2022).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fdl.data import provenance as prov
from fdl.mri.coil_models import loop_coil_maps
from fdl.mri.phantoms import image_grid
from fdl.mri.processing import synthesize_kspace as _coil_kspace
from fdl.mri.simulate import coil_noise

GENERATOR = "fdl.data.synthesis (SynthSeg-style domain randomization)"
REFERENCE = ("Billot et al., SynthSeg, Medical Image Analysis 86 (2023) 102789 "
             "(the idea; our own code)")
TISSUES = ("background", "CSF", "GM", "WM")  # label value = index
NUM_LABELS = len(TISSUES)

# Approximate relaxation times at 3 T (ms), of the order reported by Wansapura et
# al. (1999) for GM and WM, and relative proton density (water content).
TISSUE_PARAMETERS = {
    "CSF": {"pd": 1.00, "t1_ms": 4000.0, "t2_ms": 2000.0},
    "GM": {"pd": 0.80, "t1_ms": 1330.0, "t2_ms": 110.0},
    "WM": {"pd": 0.70, "t1_ms": 830.0, "t2_ms": 80.0},
}
# Spin-echo repetition and echo times (ms) of each named contrast.
SEQUENCES = {
    "t1": {"tr_ms": 500.0, "te_ms": 10.0},
    "t2": {"tr_ms": 4000.0, "te_ms": 100.0},
    "pd": {"tr_ms": 2500.0, "te_ms": 10.0},
}
CONTRASTS = ("random", "t1", "t2", "pd")
# Pixels above this fraction of the slice maximum define the object whose phase
# `synthesize_kspace` scales (`smooth_phase` support).
PHASE_SUPPORT = 0.05

# Moderate geometry of one training sample (arguments of `random_deformation`).
DEFAULT_DEFORMATION = {"max_rotation_deg": 15.0, "max_scale": 0.1, "max_shear": 0.05,
                       "max_translation_vox": 4.0, "elastic_std_vox": 1.5,
                       "elastic_grid": 5}

# Lesion settings of `synthesize_slices` (a ``lesions`` mapping overrides some of
# them): per slice, lesions with this probability, their number, radius (mm) and
# relative contrast ``c`` (intensity times ``1 + sign c``, sign random per
# lesion), boundary irregularity, largest axis ratio and host tissue labels
# (arguments of `random_lesion_mask`).
DEFAULT_LESIONS = {"probability": 0.8, "count": (1, 3), "radius_mm": (2.0, 8.0),
                   "contrast": (0.3, 0.8), "irregularity": 0.3, "max_elongation": 2.0,
                   "host_labels": (2, 3)}


def spin_echo_signal(pd: float, t1_ms: float, t2_ms: float, tr_ms: float,
                     te_ms: float) -> float:
  """Spin-echo signal ``PD (1 - exp(-TR/T1)) exp(-TE/T2)`` (arbitrary units).

  >>> round(spin_echo_signal(1.0, 1000.0, 100.0, 1000.0, 0.0), 4)
  0.6321
  """
  return float(pd * (1.0 - np.exp(-tr_ms / t1_ms)) * np.exp(-te_ms / t2_ms))


def contrast_means(contrast: str) -> np.ndarray:
  """Reference mean intensities of a named contrast, float64 ``[4]``.

  Index = label (background, CSF, GM, WM). Background (air) is 0; the tissues
  follow `spin_echo_signal` with `TISSUE_PARAMETERS` and `SEQUENCES`,
  divided by the largest, so the brightest tissue is 1.

  Args:
    contrast: ``"t1"``, ``"t2"`` or ``"pd"``.

  Returns:
    float64 ``[4]`` in ``[0, 1]``.

  >>> m = contrast_means("t1"); bool(m[3] > m[2] > m[1])
  True
  >>> m = contrast_means("t2"); bool(m[1] > m[2] > m[3])
  True
  """
  if contrast not in SEQUENCES:
    raise ValueError(f"contrast must be one of {sorted(SEQUENCES)} for reference means; "
                     f"got {contrast!r}")
  seq = SEQUENCES[contrast]
  means = np.zeros(NUM_LABELS)
  for label, name in enumerate(TISSUES[1:], start=1):
    means[label] = spin_echo_signal(**TISSUE_PARAMETERS[name], **seq)
  return means / means.max()


# ----------------------------------------------------------------------------
# Geometry.


def identity_coords(shape: Sequence[int]) -> np.ndarray:
  """The identity sampling map, float64 ``[ndim, *shape]`` (voxel indices)."""
  shape = _check_spatial_shape(shape)
  return np.stack(np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape],
                              indexing="ij"))


def rotation_matrix(rotation_deg, ndim: int) -> np.ndarray:
  """Rotation ``[ndim, ndim]`` from one angle (2-D) or three Euler angles (3-D).

  Args:
    rotation_deg: 2-D: a float (degrees, from axis 0 towards axis 1);
      3-D: three angles, about axes 0, 1 and 2, applied in that order
      (``R = R_2 R_1 R_0``); one float is used for all three.
    ndim: 2 or 3.

  Returns:
    float64 orthogonal matrix with determinant 1; the identity for zero angles.
  """
  angles = np.deg2rad(np.atleast_1d(np.asarray(rotation_deg, np.float64)))
  if ndim == 2:
    if angles.size != 1:
      raise ValueError(f"rotation_deg must be one angle for 2-D; got {rotation_deg!r}")
    c, s = np.cos(angles[0]), np.sin(angles[0])
    return np.array([[c, -s], [s, c]])
  if ndim == 3:
    if angles.size == 1:
      angles = np.repeat(angles, 3)
    if angles.size != 3:
      raise ValueError(f"rotation_deg must be three angles for 3-D; got {rotation_deg!r}")
    out = np.eye(3)
    for axis, angle in enumerate(angles):
      i, j = [a for a in range(3) if a != axis]
      r = np.eye(3)
      r[i, i] = r[j, j] = np.cos(angle)
      r[i, j], r[j, i] = -np.sin(angle), np.sin(angle)
      out = r @ out
    return out
  raise ValueError(f"rotations are defined for 2-D and 3-D; got ndim={ndim}")


def affine_matrix(ndim: int, *, rotation_deg=0.0, scale=1.0, shear=0.0) -> np.ndarray:
  """``M = R Sh diag(scale)``, the forward linear map of `deformation_coords`.

  Args:
    ndim: 2 or 3.
    rotation_deg: see `rotation_matrix`.
    scale: magnification per axis (a float or ``ndim`` floats, > 0); > 1
      enlarges the anatomy.
    shear: the upper off-diagonal entries of ``Sh`` (unit diagonal), one
      value in 2-D, three in 3-D (entries (0,1), (0,2), (1,2)).

  Returns:
    float64 ``[ndim, ndim]``; ``det M = prod(scale)``.
  """
  scale = np.broadcast_to(np.asarray(scale, np.float64), (ndim,))
  if not np.all(scale > 0):
    raise ValueError(f"scale must be > 0 on every axis; got {scale.tolist()}")
  upper = np.triu_indices(ndim, k=1)
  sh = np.eye(ndim)
  sh[upper] = np.broadcast_to(np.asarray(shear, np.float64), (len(upper[0]),))
  return rotation_matrix(rotation_deg, ndim) @ sh @ np.diag(scale)


def deformation_coords(shape: Sequence[int], *, rotation_deg=0.0, scale=1.0, shear=0.0,
                       translation_vox=0.0, displacement: np.ndarray | None = None
                       ) -> np.ndarray:
  """The sampling map of an explicit affine map plus a displacement field.

  The anatomy at input position ``p`` moves to ``M (p - c) + c + t``, with
  ``M = affine_matrix(...)``, ``c = (shape - 1) / 2`` the array centre and
  ``t = translation_vox``. Output voxel ``o`` therefore reads

    coords[:, o] = M^{-1} (o - c - t) + c + displacement[:, o].

  A region of the anatomy grows by the factor ``|det M|`` (before the
  displacement). With ``M = I`` and an integer ``t`` the map is an exact
  integer shift: `warp_labels` gives ``np.roll(labels, t)`` away from the
  borders.

  Args:
    shape: output spatial shape (2-D or 3-D).
    rotation_deg, scale, shear: see `affine_matrix`.
    translation_vox: ``t``, a float or ``ndim`` floats (voxels).
    displacement: optional float ``[ndim, *shape]``, added to the coordinates
      (voxels; pull form).

  Returns:
    float64 ``[ndim, *shape]``.
  """
  shape = _check_spatial_shape(shape)
  ndim = len(shape)
  m_inv = np.linalg.inv(affine_matrix(ndim, rotation_deg=rotation_deg, scale=scale,
                                      shear=shear))
  t = np.broadcast_to(np.asarray(translation_vox, np.float64), (ndim,))
  centre = (np.asarray(shape, np.float64) - 1.0) / 2.0
  grid = identity_coords(shape)
  rel = (grid - (centre + t).reshape((ndim,) + (1,) * ndim)).reshape(ndim, -1)
  coords = (m_inv @ rel).reshape(grid.shape) + centre.reshape((ndim,) + (1,) * ndim)
  if displacement is not None:
    displacement = np.asarray(displacement, np.float64)
    if displacement.shape != grid.shape:
      raise ValueError(f"displacement must have shape {grid.shape} ([ndim, *shape]); "
                       f"got {displacement.shape}")
    coords = coords + displacement
  return coords


def draw_deformation(shape: Sequence[int], rng: np.random.Generator, *,
                     max_rotation_deg: float = 15.0, max_scale: float = 0.1,
                     max_shear: float = 0.05, max_translation_vox: float = 4.0,
                     elastic_std_vox: float = 1.5, elastic_grid: int = 5
                     ) -> dict[str, Any]:
  """Random parameters of `deformation_coords` (see `random_deformation`).

  Returns:
    ``{"rotation_deg", "scale", "shear", "translation_vox", "displacement"}``;
    all but ``displacement`` (float64 ``[ndim, *shape]``) are lists of floats.
  """
  shape = _check_spatial_shape(shape)
  ndim = len(shape)
  for name, value in (("max_rotation_deg", max_rotation_deg), ("max_scale", max_scale),
                      ("max_shear", max_shear),
                      ("max_translation_vox", max_translation_vox),
                      ("elastic_std_vox", elastic_std_vox)):
    if not np.isfinite(value) or value < 0:
      raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
  if max_scale >= 1:
    raise ValueError(f"max_scale must be < 1 (scales in [1 - s, 1 + s]); got {max_scale}")
  num_angles = 1 if ndim == 2 else 3
  num_shears = ndim * (ndim - 1) // 2
  params = {
      "rotation_deg": rng.uniform(-max_rotation_deg, max_rotation_deg, num_angles),
      "scale": rng.uniform(1.0 - max_scale, 1.0 + max_scale, ndim),
      "shear": rng.uniform(-max_shear, max_shear, num_shears),
      "translation_vox": rng.uniform(-max_translation_vox, max_translation_vox, ndim),
  }
  params = {k: v.tolist() for k, v in params.items()}
  if ndim == 2:
    params["rotation_deg"] = params["rotation_deg"][0]
  params["displacement"] = np.stack([
      smooth_random_field(shape, rng, grid=elastic_grid, std=elastic_std_vox)
      for _ in range(ndim)])
  return params


def random_deformation(shape: Sequence[int], rng: np.random.Generator, *,
                       max_rotation_deg: float = 15.0, max_scale: float = 0.1,
                       max_shear: float = 0.05, max_translation_vox: float = 4.0,
                       elastic_std_vox: float = 1.5, elastic_grid: int = 5
                       ) -> np.ndarray:
  """A random affine-plus-elastic sampling map (see `deformation_coords`).

  Draws, in this order: rotation angles uniform in ``±max_rotation_deg``
  (one in 2-D, three in 3-D), per-axis scales uniform in
  ``[1 - max_scale, 1 + max_scale]``, shears uniform in ``±max_shear``,
  translations uniform in ``±max_translation_vox`` voxels, and per axis an
  elastic displacement `smooth_random_field` with ``grid=elastic_grid``
  control points per axis and standard deviation ``elastic_std_vox`` voxels.
  All maxima 0 give the identity map exactly.

  Args:
    shape: spatial shape, 2-D ``(H, W)`` or 3-D ``(X, Y, Z)``.
    rng: NumPy generator (consumed; the same state gives the same map).
    max_rotation_deg: degrees, >= 0.
    max_scale: in ``[0, 1)``.
    max_shear: >= 0.
    max_translation_vox: voxels, >= 0.
    elastic_std_vox: voxels, >= 0.
    elastic_grid: control points per axis, >= 2.

  Returns:
    float64 ``[ndim, *shape]`` input coordinates of every output voxel, for
    `warp_labels` / `warp_image`.

  Examples:
    >>> coords = random_deformation((8, 6), np.random.default_rng(0))
    >>> coords.shape
    (2, 8, 6)
    >>> z = dict(max_rotation_deg=0, max_scale=0, max_shear=0, max_translation_vox=0,
    ...          elastic_std_vox=0)
    >>> bool(np.array_equal(random_deformation((8, 6), np.random.default_rng(0), **z),
    ...                     identity_coords((8, 6))))
    True
  """
  params = draw_deformation(shape, rng, max_rotation_deg=max_rotation_deg,
                            max_scale=max_scale, max_shear=max_shear,
                            max_translation_vox=max_translation_vox,
                            elastic_std_vox=elastic_std_vox, elastic_grid=elastic_grid)
  return deformation_coords(shape, **params)


def warp_labels(labels: np.ndarray, coords: np.ndarray, *, background: int = 0
                ) -> np.ndarray:
  """Nearest-neighbour resampling of a label map: exact labels, no new values.

  Output voxel ``o`` takes ``labels[floor(coords[:, o] + 0.5)]``; positions
  outside the array take `background`. Every output value is therefore an
  input value or `background`.

  Args:
    labels: integer ``[*spatial]`` (2-D or 3-D).
    coords: float ``[ndim, *out_spatial]`` sampling map (voxel indices of
      `labels`), e.g. from `random_deformation`.
    background: the value read outside `labels`.

  Returns:
    ``[*out_spatial]`` with the dtype of `labels`.
  """
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be an integer array; got {labels.dtype}")
  coords = _check_coords(coords, labels.ndim, "labels")
  index = np.floor(coords + 0.5).astype(np.int64)
  inside = np.ones(coords.shape[1:], bool)
  for axis, n in enumerate(labels.shape):
    inside &= (index[axis] >= 0) & (index[axis] < n)
    np.clip(index[axis], 0, n - 1, out=index[axis])
  out = labels[tuple(index)]
  return np.where(inside, out, np.asarray(background, labels.dtype)).astype(labels.dtype)


def warp_image(image: np.ndarray, coords: np.ndarray, order: int = 1, *,
               cval: float = 0.0) -> np.ndarray:
  """Spline resampling of an intensity or probability map.

  Args:
    image: real ``[*spatial]`` (2-D or 3-D).
    coords: float ``[ndim, *out_spatial]`` sampling map (voxel indices).
    order: spline order, 0-5 (1: linear, which keeps probabilities in
      ``[0, 1]`` and their sum).
    cval: value outside the array.

  Returns:
    ``[*out_spatial]``, float32 (float64 for float64 input).
  """
  image = np.asarray(image)
  if np.iscomplexobj(image) or not np.issubdtype(image.dtype, np.number):
    raise ValueError(f"image must be a real array; got {image.dtype}")
  coords = _check_coords(coords, image.ndim, "image")
  if not isinstance(order, (int, np.integer)) or not 0 <= order <= 5:
    raise ValueError(f"order must be an int in [0, 5]; got {order!r}")
  dtype = np.float64 if image.dtype == np.float64 else np.float32
  return ndimage.map_coordinates(image.astype(np.float64), coords, order=int(order),
                                 mode="constant", cval=float(cval)).astype(dtype)


def smooth_random_field(shape: Sequence[int], rng: np.random.Generator, *, grid: int,
                        std: float) -> np.ndarray:
  """A smooth random field: Gaussian values on a coarse grid, cubic upsampled.

  ``grid ** ndim`` values ``N(0, std^2)`` sit on a grid spanning the array
  (control point ``g`` at position ``g (n - 1) / (grid - 1)`` per axis) and
  are interpolated by a cubic spline, so the field has about ``grid / 2``
  cycles per field of view and standard deviation of the order of `std`.

  Args:
    shape: spatial shape (any ndim >= 1).
    rng: NumPy generator (draws ``grid ** ndim`` normals even when std = 0).
    grid: control points per axis, >= 2.
    std: standard deviation of the control values, >= 0.

  Returns:
    float64 ``[*shape]``.
  """
  shape = tuple(int(n) for n in shape)
  if not isinstance(grid, (int, np.integer)) or grid < 2:
    raise ValueError(f"grid must be an int >= 2 (control points per axis); got {grid!r}")
  if not np.isfinite(std) or std < 0:
    raise ValueError(f"std must be a finite number >= 0; got {std!r}")
  values = rng.standard_normal((int(grid),) * len(shape)) * float(std)
  axes = [np.linspace(0.0, grid - 1.0, n) for n in shape]
  points = np.stack(np.meshgrid(*axes, indexing="ij"))
  return ndimage.map_coordinates(values, points, order=3, mode="nearest")


# ----------------------------------------------------------------------------
# Lesions.

# Control points per axis of the field that makes a lesion's boundary irregular
# (over the lesion's bounding box: about two bumps along each axis), and the
# standard deviation of its control values (the field is clipped to [-1, 1]).
LESION_FIELD_GRID = 5
LESION_FIELD_STD = 0.5


def random_lesion_mask(labels: np.ndarray, rng: np.random.Generator, *,
                       pixel_size_mm: float, count: Sequence[int] = (1, 3),
                       radius_mm: Sequence[float] = (2.0, 8.0),
                       host_labels: Sequence[int] = (2, 3), irregularity: float = 0.3,
                       max_elongation: float = 2.0) -> np.ndarray:
  """A random mask of synthetic lesions of irregular ellipse (ellipsoid) shape.

  Draws, in this order: the number of lesions ``n`` uniform in
  ``[count[0], count[1]]`` (both inclusive; at most the number of host
  pixels); ``n`` distinct centres uniform over the host pixels (``labels`` in
  `host_labels`); then per lesion a radius ``r`` uniform in `radius_mm`
  (converted to pixels by `pixel_size_mm`), semi-axes ``r exp(u_i - mean(u))``
  with ``u_i`` uniform in ``±log(max_elongation) / 2`` (so the area, volume in
  3-D, is that of the disc or ball of radius ``r``, and no two axes differ by
  more than `max_elongation`), a rotation (2-D: one angle in ``[0, 180)``
  degrees; 3-D: three in ``[0, 360)``, see `rotation_matrix`) and a smooth
  random field ``f`` over the lesion's bounding box (`smooth_random_field`,
  ``LESION_FIELD_GRID`` control points per axis, std ``LESION_FIELD_STD``,
  clipped to ``[-1, 1]``). With ``d`` the ellipse's normalized distance
  (``d = 1`` on the ellipse), the lesion is the connected region (face
  connectivity) holding the centre of

    {d < 1 + irregularity f}  and  host,

  so it lies inside the host tissues (it is cut where it would leave them)
  and, before that cut, between the ellipses ``d < 1 - irregularity`` and
  ``d < 1 + irregularity``: its area is within ``[(1 - irregularity)^2,
  (1 + irregularity)^2] pi r^2`` (the powers are 3 in 3-D) up to
  discretization. Lesions may overlap and merge.

  Args:
    labels: integer ``[H, W]`` (or ``[X, Y, Z]``) tissue labels in the output
      geometry (e.g. after `warp_labels`).
    rng: NumPy generator (consumed; the same state gives the same mask).
    pixel_size_mm: edge of a (square or cubic) pixel, mm, > 0.
    count: ``(lo, hi)``, integers with ``0 <= lo <= hi``.
    radius_mm: ``(lo, hi)``, mm, ``0 < lo <= hi``.
    host_labels: the labels lesions grow in (default GM and WM).
    irregularity: relative amplitude of the boundary perturbation, in ``[0, 1)``
      (0: exact ellipses).
    max_elongation: largest ratio of two semi-axes, >= 1 (1: discs).

  Returns:
    bool ``[*labels.shape]``; all False when `labels` has no host pixel or
    ``n = 0``.

  Examples:
    >>> lab = np.zeros((32, 32), np.int32); lab[4:28, 4:28] = 3
    >>> m = random_lesion_mask(lab, np.random.default_rng(0), pixel_size_mm=1.0,
    ...                        count=(2, 2), radius_mm=(2.0, 3.0))
    >>> m.dtype, bool(m.any()), bool(np.all(lab[m] == 3))
    (dtype('bool'), True, True)
  """
  masks, _ = _draw_lesions(labels, rng, pixel_size_mm=pixel_size_mm, count=count,
                           radius_mm=radius_mm, host_labels=host_labels,
                           irregularity=irregularity, max_elongation=max_elongation)
  out = np.zeros(np.shape(labels), bool)
  for mask in masks:
    out |= mask
  return out


def _check_lesion_args(*, pixel_size_mm, count, radius_mm, host_labels, irregularity,
                       max_elongation, name=lambda key: key):
  """Validated lesion arguments; `name` maps an argument to how errors name it."""
  if (isinstance(pixel_size_mm, bool) or not isinstance(pixel_size_mm, (int, float, np.number))
      or not np.isfinite(pixel_size_mm) or not pixel_size_mm > 0):
    raise ValueError(f"{name('pixel_size_mm')} must be a finite number > 0 (mm); "
                     f"got {pixel_size_mm!r}")
  try:
    lo, hi = count
  except (TypeError, ValueError):
    lo = hi = None
  if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
             for v in (lo, hi)) or not 0 <= lo <= hi:
    raise ValueError(f"{name('count')} must be two integers (lo, hi) with 0 <= lo <= hi; "
                     f"got {count!r}")
  try:
    r_lo, r_hi = (float(v) for v in radius_mm)
  except (TypeError, ValueError):
    r_lo = r_hi = float("nan")
  if not (np.isfinite(r_lo) and np.isfinite(r_hi) and 0 < r_lo <= r_hi):
    raise ValueError(f"{name('radius_mm')} must be (lo, hi) in mm with 0 < lo <= hi; "
                     f"got {radius_mm!r}")
  hosts = np.atleast_1d(np.asarray(host_labels))
  if hosts.size == 0 or hosts.ndim != 1 or not np.issubdtype(hosts.dtype, np.integer):
    raise ValueError(f"{name('host_labels')} must be a non-empty sequence of integer "
                     f"labels; got {host_labels!r}")
  if not 0 <= irregularity < 1:
    raise ValueError(f"{name('irregularity')} must be in [0, 1); got {irregularity!r}")
  if not (np.isfinite(max_elongation) and max_elongation >= 1):
    raise ValueError(f"{name('max_elongation')} must be a finite number >= 1; "
                     f"got {max_elongation!r}")
  return {"pixel_size_mm": float(pixel_size_mm), "count": (int(lo), int(hi)),
          "radius_mm": (r_lo, r_hi), "host_labels": hosts.tolist(),
          "irregularity": float(irregularity), "max_elongation": float(max_elongation)}


def _draw_lesions(labels, rng, **kwargs) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
  """`random_lesion_mask`'s lesions one by one: (bool masks, JSON-able records)."""
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"labels must be an integer label array; got {labels.dtype}")
  shape = _check_spatial_shape(labels.shape)
  args = _check_lesion_args(**kwargs)
  ndim = len(shape)
  host = np.isin(labels, args["host_labels"])
  candidates = np.flatnonzero(host)
  if candidates.size == 0:
    return [], []
  num = min(int(rng.integers(args["count"][0], args["count"][1] + 1)), candidates.size)
  centres = np.stack(np.unravel_index(
      candidates[rng.choice(candidates.size, size=num, replace=False)], shape), axis=1)
  irregularity = args["irregularity"]
  face = ndimage.generate_binary_structure(ndim, 1)
  masks, records = [], []
  for centre in centres:
    radius_mm = float(rng.uniform(*args["radius_mm"]))
    log_axes = rng.uniform(-0.5, 0.5, ndim) * np.log(args["max_elongation"])
    axes = radius_mm / args["pixel_size_mm"] * np.exp(log_axes - log_axes.mean())
    angles = rng.uniform(0.0, 180.0) if ndim == 2 else rng.uniform(0.0, 360.0, 3)
    half = int(np.ceil((1.0 + irregularity) * axes.max())) + 1
    box = (2 * half + 1,) * ndim
    # Coordinates of the box pixels in the lesion's own (rotated) frame.
    offsets = identity_coords(box) - half
    local = np.tensordot(rotation_matrix(angles, ndim).T, offsets, axes=1)
    distance = np.sqrt(np.sum((local / axes.reshape((ndim,) + (1,) * ndim)) ** 2, axis=0))
    field = np.clip(smooth_random_field(box, rng, grid=LESION_FIELD_GRID,
                                        std=LESION_FIELD_STD), -1.0, 1.0)
    # The box's overlap with the array, in array and in box indices.
    lo = np.maximum(centre - half, 0)
    hi = np.minimum(centre + half + 1, shape)
    in_array = tuple(slice(a, b) for a, b in zip(lo, hi))
    in_box = tuple(slice(a - c + half, b - c + half) for a, b, c in zip(lo, hi, centre))
    inside = (distance < 1.0 + irregularity * field)[in_box] & host[in_array]
    # Keep the piece that holds the centre (the host cut or a bump of the field
    # can leave islands).
    pieces, _ = ndimage.label(inside, structure=face)
    piece = pieces[tuple(centre - lo)]
    mask = np.zeros(shape, bool)
    mask[in_array] = pieces == piece
    masks.append(mask)
    records.append({"centre_vox": centre.tolist(), "radius_mm": radius_mm,
                    "semi_axes_vox": axes.tolist(),
                    "rotation_deg": float(angles) if ndim == 2 else angles.tolist(),
                    "num_pixels": int(mask.sum())})
  return masks, records


def _lesion_settings(lesions: Mapping[str, Any]) -> dict[str, Any]:
  """`DEFAULT_LESIONS` updated by `lesions`, validated (errors name ``lesions[key]``)."""
  if not isinstance(lesions, Mapping):
    raise ValueError(f"lesions must be None or a mapping of lesion settings (keys "
                     f"{sorted(DEFAULT_LESIONS)}); got {type(lesions).__name__}")
  unknown = set(lesions) - set(DEFAULT_LESIONS)
  if unknown:
    raise ValueError(f"lesions has unknown keys {sorted(unknown)}; expected some of "
                     f"{sorted(DEFAULT_LESIONS)}")
  settings = {**DEFAULT_LESIONS, **lesions}
  name = lambda key: f"lesions[{key!r}]"  # pylint: disable=unnecessary-lambda-assignment
  probability = settings["probability"]
  if not (isinstance(probability, (int, float, np.number)) and 0 <= probability <= 1):
    raise ValueError(f"{name('probability')} must be in [0, 1]; got {probability!r}")
  try:
    c_lo, c_hi = (float(v) for v in settings["contrast"])
  except (TypeError, ValueError):
    c_lo = c_hi = float("nan")
  if not 0 <= c_lo <= c_hi <= 1:
    raise ValueError(f"{name('contrast')} must be (lo, hi) with 0 <= lo <= hi <= 1 (a "
                     f"hypo-intense lesion has 1 - c >= 0 times the host intensity); "
                     f"got {settings['contrast']!r}")
  args = _check_lesion_args(pixel_size_mm=1.0, count=settings["count"],
                            radius_mm=settings["radius_mm"],
                            host_labels=settings["host_labels"],
                            irregularity=settings["irregularity"],
                            max_elongation=settings["max_elongation"], name=name)
  del args["pixel_size_mm"]
  return {**args, "probability": float(probability), "contrast": (c_lo, c_hi)}


def _insert_lesions(image, labels, rng, settings, pixel_size_mm):
  """Draws lesions (probability, shapes, contrasts) and paints them into `image`.

  Returns ``(image, bool mask, JSON-able record)``; `image` is a new array.
  """
  present = bool(rng.uniform() < settings["probability"])
  masks, records = [], []
  if present:
    masks, records = _draw_lesions(
        labels, rng, pixel_size_mm=pixel_size_mm, count=settings["count"],
        radius_mm=settings["radius_mm"], host_labels=settings["host_labels"],
        irregularity=settings["irregularity"], max_elongation=settings["max_elongation"])
  out = image.copy()
  mask = np.zeros(labels.shape, bool)
  factors = []
  for lesion, record in zip(masks, records):
    # A random sign per lesion: hyper-intense (as lesions on T2 / FLAIR, where
    # their water content makes them bright) or hypo-intense (as on T1, where
    # they are dark). Relative to the host tissue (its intensity and texture),
    # not absolute, so any contrast of step 2 gets visible lesions.
    c = rng.uniform(*settings["contrast"])
    sign = 1.0 if rng.uniform() < 0.5 else -1.0
    factor = 1.0 + sign * c
    out[lesion] = image[lesion] * factor  # where lesions overlap, the last one's
    mask |= lesion
    record["contrast_factor"] = factor
    factors.append(factor)
  return out, mask, {"present": present, "num_lesions": len(masks),
                     "contrast_factors": factors, "num_pixels": int(mask.sum()),
                     "lesions": records}


# ----------------------------------------------------------------------------
# Contrast.


def synthesize_image(labels: np.ndarray | None, rng: np.random.Generator, *,
                     probabilities: np.ndarray | None = None, contrast: str = "random",
                     deformation: Mapping[str, Any] | None = None,
                     mean_jitter: float = 0.1, texture_std: Sequence[float] = (0.0, 0.05),
                     blur_sigma_vox: Sequence[float] = (0.0, 1.0), bias_std: float = 0.3,
                     bias_grid: int = 4, noise_std: Sequence[float] = (0.0, 0.02),
                     robust_percentile: float = 99.0
                     ) -> tuple[np.ndarray, np.ndarray]:
  """A random-contrast magnitude image with exact labels (module docstring).

  Args:
    labels: integer ``[*spatial]`` (2-D or 3-D) with values in ``{0, 1, 2, 3}``
      (background, CSF, GM, WM); or None when `probabilities` is given.
    rng: NumPy generator; the same state and arguments give the same bytes.
    probabilities: instead of `labels`, float ``[K, *spatial]`` tissue
      probabilities, ``K = 4`` (background, CSF, GM, WM) or ``K = 3`` (CSF,
      GM, WM; background = ``1 - sum``, clipped at 0). Warped linearly;
      intensities mix by probability (partial volume), labels are the argmax.
    contrast: ``"t1"``, ``"t2"``, ``"pd"`` (means `contrast_means` times
      ``1 + U(-mean_jitter, mean_jitter)`` per tissue) or ``"random"``
      (tissue means uniform in ``[0, 1]``); background mean 0.
    deformation: None (no deformation) or keyword arguments of
      `random_deformation` (e.g. `DEFAULT_DEFORMATION`).
    mean_jitter: relative jitter of named-contrast means, in ``[0, 1)``; the
      ordering is kept when it is smaller than the relative gaps.
    texture_std: ``(lo, hi)``: per-tissue texture std uniform in it
      (intensity units, the brightest named tissue is 1).
    blur_sigma_vox: ``(lo, hi)``: Gaussian blur sigma per axis (voxels).
    bias_std: the std of ``log`` bias is drawn uniform in ``[0, bias_std]``.
    bias_grid: control points per axis of the bias field, >= 2.
    noise_std: ``(lo, hi)``: Rician noise sigma uniform in it.
    robust_percentile: percentile of the foreground intensities mapped to 1.

  Returns:
    ``(image, labels)``: float32 ``[*spatial]`` in ``[0, 1]``, and int32
    ``[*spatial]`` labels in the image's geometry (the warped input labels;
    every value is an input label or 0).

  Examples:
    >>> lab = np.zeros((16, 16), np.int32); lab[4:12, 4:12] = 1; lab[6:10, 6:10] = 3
    >>> img, out = synthesize_image(lab, np.random.default_rng(0), contrast="t1")
    >>> img.dtype, out.dtype, bool(np.array_equal(out, lab))
    (dtype('float32'), dtype('int32'), True)
  """
  image, labels, _, _ = _synthesize_image(
      labels, rng, probabilities=probabilities, contrast=contrast,
      deformation=deformation, mean_jitter=mean_jitter, texture_std=texture_std,
      blur_sigma_vox=blur_sigma_vox, bias_std=bias_std, bias_grid=bias_grid,
      noise_std=noise_std, robust_percentile=robust_percentile)
  return image, labels


def _synthesize_image(labels, rng, *, probabilities, contrast, deformation, mean_jitter,
                      texture_std, blur_sigma_vox, bias_std, bias_grid, noise_std,
                      robust_percentile, lesions=None, lesion_rng=None,
                      pixel_size_mm=None):
  """`synthesize_image`, with optional lesions, and a JSON-able record of the draws.

  Lesions (`_lesion_settings` of a ``lesions`` mapping, or None) are drawn
  from `lesion_rng` alone, in the output geometry after step 1, and painted
  between steps 2 and 3, so every draw from `rng` is the same with and
  without them. `pixel_size_mm` is the output pixel size (mm) their radii are
  measured in.

  Returns:
    ``(image, labels, lesion mask or None, record)``: float32, int32 and bool
    ``[*spatial]``, and a dict (with ``"lesions"`` when lesions are given).
  """
  if contrast not in CONTRASTS:
    raise ValueError(f"contrast must be one of {list(CONTRASTS)}; got {contrast!r}")
  texture_std = _check_range(texture_std, "texture_std")
  blur_sigma_vox = _check_range(blur_sigma_vox, "blur_sigma_vox")
  noise_std = _check_range(noise_std, "noise_std")
  if not 0 <= mean_jitter < 1:
    raise ValueError(f"mean_jitter must be in [0, 1); got {mean_jitter!r}")
  if not np.isfinite(bias_std) or bias_std < 0:
    raise ValueError(f"bias_std must be a finite number >= 0; got {bias_std!r}")
  if not 0 < robust_percentile <= 100:
    raise ValueError(f"robust_percentile must be in (0, 100]; got {robust_percentile!r}")
  probs = _check_tissue_input(labels, probabilities)
  shape = probs.shape[1:] if probs is not None else np.shape(labels)
  _check_spatial_shape(shape)
  record: dict[str, Any] = {"contrast": contrast}

  # 1. Geometry: labels by nearest neighbour, probabilities linearly.
  if deformation is not None:
    params = draw_deformation(shape, rng, **dict(deformation))
    coords = deformation_coords(shape, **params)
    record["deformation"] = {k: v for k, v in params.items() if k != "displacement"}
    if probs is None:
      labels = warp_labels(labels, coords)
    else:
      probs = np.stack([warp_image(p, coords, 1, cval=float(k == 0))
                        for k, p in enumerate(probs)]).astype(np.float64)
  else:
    record["deformation"] = None
  if probs is not None:
    labels = np.argmax(probs, axis=0)
  labels = np.asarray(labels).astype(np.int32)

  # 2. Per-tissue means and texture.
  if contrast == "random":
    means = np.concatenate([[0.0], rng.uniform(0.0, 1.0, NUM_LABELS - 1)])
  else:
    jitter = rng.uniform(-mean_jitter, mean_jitter, NUM_LABELS)
    means = contrast_means(contrast) * (1.0 + jitter)
  stds = rng.uniform(*texture_std, NUM_LABELS)
  stds[0] = 0.0  # air: the acquisition noise comes later
  if probs is None:
    image = means[labels] + stds[labels] * rng.standard_normal(labels.shape)
  else:
    tissue = means[:, None] + stds[:, None] * rng.standard_normal(
        (NUM_LABELS, labels.size))
    image = np.sum(probs.reshape(NUM_LABELS, -1) * tissue, axis=0).reshape(labels.shape)
  image = np.clip(image, 0.0, None)

  # 2b. Lesions, in the output geometry (exact masks), from their own generator.
  lesion_mask = None
  if lesions is not None:
    image, lesion_mask, record["lesions"] = _insert_lesions(image, labels, lesion_rng,
                                                            lesions, pixel_size_mm)

  # 3. Partial-volume blur.
  sigma = rng.uniform(*blur_sigma_vox, labels.ndim)
  if np.any(sigma > 0):
    image = ndimage.gaussian_filter(image, sigma, mode="constant")

  # 4. Bias field.
  log_bias_std = rng.uniform(0.0, bias_std)
  image = image * np.exp(smooth_random_field(labels.shape, rng, grid=bias_grid,
                                             std=log_bias_std))

  # 5. Rician noise.
  sigma_n = rng.uniform(*noise_std)
  noise = rng.standard_normal((2,) + labels.shape) * sigma_n
  image = np.sqrt((image + noise[0]) ** 2 + noise[1] ** 2)

  # 6. Robust normalization to [0, 1].
  foreground = image[labels > 0] if np.any(labels > 0) else image.ravel()
  peak = float(np.percentile(foreground, robust_percentile))
  if peak > 0:
    image = np.clip(image / peak, 0.0, 1.0)
  record.update({"tissue_means": means, "texture_std": stds, "blur_sigma_vox": sigma,
                 "log_bias_std": log_bias_std, "noise_std": sigma_n,
                 "robust_max": peak})
  return image.astype(np.float32), labels, lesion_mask, prov.to_jsonable(record)


# ----------------------------------------------------------------------------
# Acquisition.


def smooth_phase(shape: Sequence[int], rng: np.random.Generator, *,
                 phase_rms: float = np.pi / 4, support: np.ndarray | None = None
                 ) -> np.ndarray:
  """A smooth random phase map: global phase plus a degree-2 polynomial.

  ``phi = phi_0 + p(x, y)``, ``phi_0`` uniform in ``[0, 2 pi)``, ``p`` a
  polynomial in the normalized coordinates of `fdl.mri.phantoms.image_grid`
  with monomials ``x, y, x^2, x y, y^2`` and Gaussian coefficients, made of
  mean 0 and root-mean-square `phase_rms` over `support` (the object), as
  B0 inhomogeneity and receiver phase give. Fixing the RMS over the object
  (not the peak over the field of view) keeps every sample's phase away from
  zero where the signal is, so the data-crime audit's asymmetry ratio stays
  well above its threshold (at ``pi / 4``, >= 0.1 on 100 synthesized
  slices, against 0.03). ``phase_rms = 0`` leaves only the global phase (the
  image is then real up to a constant phase).

  Args:
    shape: ``(H, W)``.
    rng: NumPy generator (draws 6 numbers).
    phase_rms: radians, >= 0.
    support: optional boolean ``[H, W]`` where the RMS is measured (None or
      empty: the whole field of view).

  Returns:
    float64 ``[H, W]`` radians.
  """
  if not np.isfinite(phase_rms) or phase_rms < 0:
    raise ValueError(f"phase_rms must be a finite number >= 0 (radians); got {phase_rms!r}")
  x, y = image_grid(shape)
  global_phase = rng.uniform(0.0, 2.0 * np.pi)
  coefs = rng.standard_normal(5)
  poly = np.tensordot(coefs, np.stack([x, y, x * x, x * y, y * y]), axes=1)
  if support is None:
    support = np.ones(poly.shape, bool)
  support = np.asarray(support, bool)
  if support.shape != poly.shape:
    raise ValueError(f"support must have the shape {poly.shape}; got {support.shape}")
  if not support.any():
    support = np.ones(poly.shape, bool)
  poly = poly - poly[support].mean()
  rms = np.sqrt(np.mean(poly[support] ** 2))
  poly = poly * (phase_rms / rms) if rms > 0 else poly
  return global_phase + poly


def synthesize_kspace(image: np.ndarray, rng: np.random.Generator, *, num_coils: int = 8,
                      snr_db: float = 30.0, phase_rms: float = np.pi / 4
                      ) -> dict[str, np.ndarray]:
  """Multi-coil k-space of a magnitude image, in `fdl.mri.simulate`'s conventions.

  ``x = image * exp(i phi)`` with ``phi`` = `smooth_phase` (one per slice, its
  RMS measured where ``image > PHASE_SUPPORT * max(image)``),
  ``y_c = F(S_c x) + n_c`` with the loop-coil maps of
  `fdl.mri.coil_models.loop_coil_maps` and complex Gaussian noise of
  per-coil SNR `snr_db` over all given slices (module docstring).

  Args:
    image: real, non-negative magnitude ``[H, W]`` or ``[S, H, W]``.
    rng: NumPy generator (phase first, slice by slice, then the noise).
    num_coils: number of receive coils, >= 1.
    snr_db: per-coil SNR in dB; ``inf`` gives no noise.
    phase_rms: see `smooth_phase`.

  Returns:
    A dict of NumPy arrays (``[S]`` dropped for 2-D input), as `simulate`:
      ``kspace``: complex64 ``[S, C, H, W]``, noisy, fully sampled, centered;
      ``image``: complex64 ``[S, H, W]``, the noiseless complex image ``x``;
      ``maps``: complex64 ``[S, C, H, W]``, ``sum_c |S_c|^2 = 1``;
      ``target``: float32 ``[S, H, W]``, RSS of the noiseless coil images
        (equals `image`'s magnitude);
      ``noise``: complex64 ``[S, C, H, W]`` (``kspace - noise`` is noiseless);
      ``noise_std``: float32 ``[C]``, sigma_c per complex sample;
      ``phase``: float32 ``[S, H, W]`` radians.
  """
  image = np.asarray(image)
  if np.iscomplexobj(image) or image.ndim not in (2, 3) or min(image.shape[-2:]) < 2:
    raise ValueError(f"image must be a real magnitude [H, W] or [S, H, W] with H, W >= 2; "
                     f"got {image.dtype} {image.shape}")
  if not np.all(np.isfinite(image)) or image.min() < 0:
    raise ValueError("image must be finite and non-negative (a magnitude)")
  if isinstance(num_coils, bool) or int(num_coils) != num_coils or num_coils < 1:
    raise ValueError(f"num_coils must be an integer >= 1; got {num_coils!r}")
  if np.isnan(snr_db):
    raise ValueError("snr_db must be a number (inf for no noise); got nan")
  single = image.ndim == 2
  stack = image[None] if single else image
  height, width = stack.shape[-2:]
  phase = np.stack([smooth_phase((height, width), rng, phase_rms=phase_rms,
                                 support=m > PHASE_SUPPORT * m.max()) for m in stack])
  x = (stack * np.exp(1j * phase)).astype(np.complex64)
  coil_maps = loop_coil_maps((height, width), int(num_coils))
  maps = np.ascontiguousarray(np.broadcast_to(coil_maps, (len(stack), *coil_maps.shape)))
  clean = _coil_kspace(x, maps)

  noise, noise_std = coil_noise(clean, snr_db, rng)  # fdl.mri.simulate's definition

  coil_images = maps.astype(np.complex128) * x[:, None]
  target = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=1)).astype(np.float32)
  out = {"kspace": clean + noise, "image": x, "maps": maps, "target": target,
         "noise": noise, "noise_std": noise_std.astype(np.float32),
         "phase": phase.astype(np.float32)}
  if single:
    out = {k: (v if k == "noise_std" else v[0]) for k, v in out.items()}
  return out


# ----------------------------------------------------------------------------
# Slices of a template volume.


def slice_positions(labels_volume: np.ndarray, num_slices: int, *, axis: int = 2,
                    slab_fraction: float = 0.5) -> np.ndarray:
  """Indices along `axis` of the slices `synthesize_slices` takes.

  Rule: the brain extent ``[first, last]`` is the range of indices along
  `axis` whose plane holds any label > 0; the central slab is its middle
  `slab_fraction`, ``[lo, hi]`` with ``lo = first + (1 - f) / 2 (last - first)``
  and ``hi = last - (1 - f) / 2 (last - first)``; slice ``s`` of
  ``num_slices`` is at ``round(lo + (hi - lo) (s + 1/2) / num_slices)``
  (evenly spaced, the centre for one slice). Positions may repeat when the
  slab holds fewer planes than `num_slices`.

  Returns:
    int64 ``[num_slices]``, non-decreasing.
  """
  labels_volume = np.asarray(labels_volume)
  if labels_volume.ndim != 3:
    raise ValueError(f"labels_volume must be [X, Y, Z]; got shape {labels_volume.shape}")
  if not -3 <= axis < 3:
    raise ValueError(f"axis must be 0, 1 or 2; got {axis!r}")
  if isinstance(num_slices, bool) or int(num_slices) != num_slices or num_slices < 1:
    raise ValueError(f"num_slices must be an integer >= 1; got {num_slices!r}")
  if not 0 <= slab_fraction <= 1:
    raise ValueError(f"slab_fraction must be in [0, 1]; got {slab_fraction!r}")
  other = tuple(a for a in range(3) if a != axis % 3)
  occupied = np.flatnonzero(np.any(labels_volume > 0, axis=other))
  if occupied.size == 0:
    raise ValueError("labels_volume holds no tissue (no label > 0): no slice to take")
  first, last = float(occupied[0]), float(occupied[-1])
  margin = 0.5 * (1.0 - slab_fraction) * (last - first)
  lo, hi = first + margin, last - margin
  s = (np.arange(int(num_slices)) + 0.5) / int(num_slices)
  return np.floor(lo + (hi - lo) * s + 0.5).astype(np.int64)


def plane_to_grid(plane: np.ndarray, spacing_mm: Sequence[float], shape: Sequence[int],
                  pixel_size_mm: float | None = None, *,
                  center_vox: Sequence[float] | None = None) -> tuple[np.ndarray, float]:
  """Nearest-neighbour resampling of a label plane to a square-pixel grid.

  Output pixel ``(i, j)`` of ``shape = (H, W)`` has its centre at
  ``((i - (H - 1) / 2) p, (j - (W - 1) / 2) p)`` mm from the point
  `center_vox` of the plane and reads the plane voxel nearest to that point
  (voxel ``a`` of axis ``d`` lies ``(a - center_d) spacing_d`` mm from it). By
  default the centre is the plane's, ``(n - 1) / 2``, and the pixel size
  ``p = max(n_0 spacing_0 / H, n_1 spacing_1 / W)``, the smallest that fits
  the whole plane. Pixels are square, so anisotropic voxels keep their true
  mm proportions.

  Args:
    plane: integer ``[n_0, n_1]`` labels.
    spacing_mm: voxel size of the plane's two axes, mm (> 0).
    shape: output ``(H, W)``.
    pixel_size_mm: optional output pixel size, mm.
    center_vox: optional plane position (voxel units, two floats) that lands
      at the output centre.

  Returns:
    ``(labels [H, W] of the plane's dtype, pixel size in mm)``.
  """
  plane = np.asarray(plane)
  spacing = np.asarray(spacing_mm, np.float64)
  height, width = _check_spatial_shape(shape)
  if plane.ndim != 2:
    raise ValueError(f"plane must be [n_0, n_1]; got shape {plane.shape}")
  if spacing.shape != (2,) or not np.all(spacing > 0):
    raise ValueError(f"spacing_mm must be two sizes > 0 (mm); got {spacing_mm!r}")
  extent = np.asarray(plane.shape) * spacing
  if pixel_size_mm is None:
    pixel_size_mm = float(max(extent[0] / height, extent[1] / width))
  if not pixel_size_mm > 0:
    raise ValueError(f"pixel_size_mm must be > 0; got {pixel_size_mm!r}")
  if center_vox is None:
    center_vox = (np.asarray(plane.shape, np.float64) - 1.0) / 2.0
  in_centre = np.asarray(center_vox, np.float64)
  if in_centre.shape != (2,) or not np.all(np.isfinite(in_centre)):
    raise ValueError(f"center_vox must be two finite numbers; got {center_vox!r}")
  out_centre = (np.array([height, width], np.float64) - 1.0) / 2.0
  grid = identity_coords((height, width))
  coords = ((grid - out_centre[:, None, None]) * (pixel_size_mm / spacing)[:, None, None]
            + in_centre[:, None, None])
  return warp_labels(plane, coords), float(pixel_size_mm)


def brain_field_of_view(labels_volume: np.ndarray, voxel_sizes: Sequence[float],
                        shape: Sequence[int], *, axis: int = 2, margin: float = 0.1
                        ) -> tuple[float, list[float]]:
  """Pixel size and in-plane centre that frame the brain of every slice.

  The bounding box of ``labels > 0`` over the whole volume, on the two axes
  other than `axis` (voxels ``[lo_d, hi_d]``), widened by ``1 + margin``,
  fits into `shape` with square pixels:
  ``p = (1 + margin) max((hi_0 - lo_0 + 1) s_0 / H, (hi_1 - lo_1 + 1) s_1 / W)``,
  centred at ``(lo + hi) / 2``. The same framing for every slice keeps the
  scale of the anatomy fixed (mm per pixel) across slices.

  Returns:
    ``(pixel size in mm, [centre_0, centre_1] in voxels of the plane)``.
  """
  labels_volume = np.asarray(labels_volume)
  if not margin >= 0:
    raise ValueError(f"fov_margin must be >= 0 or None; got {margin!r}")
  height, width = _check_spatial_shape(shape)
  in_plane = [a for a in range(3) if a != axis % 3]
  spacing = np.asarray(voxel_sizes, np.float64)[in_plane]
  lo, hi = [], []
  for a in in_plane:
    occupied = np.flatnonzero(np.any(labels_volume > 0,
                                     axis=tuple(b for b in range(3) if b != a)))
    if occupied.size == 0:
      raise ValueError("labels_volume holds no tissue (no label > 0): no slice to take")
    lo.append(occupied[0])
    hi.append(occupied[-1])
  lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
  extent = (hi - lo + 1.0) * spacing * (1.0 + margin)
  return (float(max(extent[0] / height, extent[1] / width)),
          ((lo + hi) / 2.0).tolist())


def synthesize_slices(labels_volume: np.ndarray, voxel_sizes: Sequence[float], *,
                      template: str, seed: int, num_slices: int = 8, axis: int = 2,
                      shape: Sequence[int] = (128, 128),
                      contrast: str | Sequence[str] = "random", num_coils: int = 8,
                      snr_db: float = 30.0, phase_rms: float = np.pi / 4,
                      slab_fraction: float = 0.5, fov_margin: float | None = 0.1,
                      pixel_size_mm: float | None = None,
                      deformation: Mapping[str, Any] | None = DEFAULT_DEFORMATION,
                      lesions: Mapping[str, Any] | None = None,
                      **image_kwargs: Any) -> dict[str, Any]:
  """Synthesized multi-coil training slices from a template label volume.

  Sample ``s`` (of ``num_slices``), with ``rng = np.random.default_rng([seed, s])``:

  1. the plane at index ``slice_positions(...)[s]`` along `axis` (the other
     two axes, in increasing order, become rows and columns), resampled to
     `shape` by `plane_to_grid` (nearest neighbour, mm-true square pixels),
     framed by `brain_field_of_view` (the brain of the whole volume plus
     `fov_margin`, the same for every slice) or, with ``fov_margin=None``,
     the whole plane;
  2. a contrast: `contrast` if it is a name, else one of the given names
     drawn uniformly;
  3. `synthesize_image` (deformation, contrast, blur, bias, noise, [0, 1]),
     with `lesions` painted in after the deformation and contrast;
  4. `synthesize_kspace` (smooth phase, loop coils, noise at `snr_db` per
     coil over that slice).

  Lesions: with a `lesions` mapping, sample ``s`` draws from its own
  generator ``np.random.default_rng([seed, s, 1])``: with probability
  ``probability`` it gets lesions (else none), `random_lesion_mask` with
  ``count``, ``radius_mm`` (mm, measured with the output pixel size),
  ``host_labels``, ``irregularity`` and ``max_elongation``, drawn on the
  deformed labels (the image's geometry, so the mask is exact); then per
  lesion ``c`` uniform in ``contrast`` and a random sign, and its pixels'
  intensity (host tissue mean plus texture) is multiplied by ``1 + sign c``
  before blur, bias, noise and normalization. The tissue generator is not
  touched: the anatomy, contrast, deformation, bias and noise draws of a
  sample are those it has without lesions, and the image differs only at the
  lesions, their blur spill-over, and by the normalization's scale where a
  lesion changes the robust maximum. The tissue ``labels`` stay the tissue
  labels (a lesion keeps the label of the tissue it sits in).

  Args:
    labels_volume: integer ``[X, Y, Z]`` labels in ``{0, 1, 2, 3}``
      (background, CSF, GM, WM), e.g. from `fdl.data.anatomy`.
    voxel_sizes: the three voxel sizes in mm.
    template: the template's name, recorded in the provenance.
    seed: integer >= 0.
    num_slices: number of samples, >= 1.
    axis: the slicing axis of `labels_volume` (0, 1 or 2).
    shape: output ``(H, W)``.
    contrast: a name in `CONTRASTS` or a sequence of them.
    num_coils, snr_db, phase_rms: see `synthesize_kspace`.
    slab_fraction: see `slice_positions`.
    fov_margin: relative margin around the brain's bounding box, >= 0; None
      frames the whole plane instead.
    pixel_size_mm: overrides the framing's pixel size (mm).
    deformation: keyword arguments of `random_deformation`, or None.
    lesions: None (no lesions: the output is exactly that of a call without
      this argument, apart from an all-False ``lesions`` array) or a mapping
      with some of the keys of `DEFAULT_LESIONS` (the others take its values):
      ``probability`` in ``[0, 1]``, ``count`` (two ints), ``radius_mm``
      (two mm), ``contrast`` (``0 <= lo <= hi <= 1``), ``irregularity``,
      ``max_elongation``, ``host_labels``.
    **image_kwargs: further arguments of `synthesize_image` (``mean_jitter``,
      ``texture_std``, ``blur_sigma_vox``, ``bias_std``, ``bias_grid``,
      ``noise_std``, ``robust_percentile``).

  Returns:
    A dict with the keys of `fdl.mri.simulate.simulate` plus labels:
      ``kspace`` complex64 ``[S, C, H, W]``; ``image`` complex64 ``[S, H, W]``;
      ``maps`` complex64 ``[S, C, H, W]``; ``target`` float32 ``[S, H, W]``
      (RSS of the noiseless coil images = the synthesized magnitude, in
      ``[0, 1]``); ``noise`` complex64 ``[S, C, H, W]``; ``noise_std``
      float32 ``[S, C]``; ``labels`` int32 ``[S, H, W]`` (exactly the
      target's geometry); ``lesions`` bool ``[S, H, W]`` (the exact lesion
      masks, all False without `lesions`); ``slice_index`` int64 ``[S]``;
      and ``provenance``,
      a JSON-able dict: ``synthesized`` (True), ``template``,
      ``template_sha256`` (of `labels_volume`), ``generator``, ``reference``,
      ``contrast``, ``seed``, the geometry and acquisition arguments,
      ``target``, ``kspace_origin`` and ``samples`` (per slice: index,
      contrast and the drawn values). With `lesions`, also ``lesions`` (the
      settings) and ``lesion_rng``, and per sample ``lesions``:
      ``present``, ``num_lesions``, ``contrast_factors`` (``1 + sign c`` per
      lesion), ``num_pixels`` and per lesion its centre, radius, semi-axes,
      rotation, pixel count and factor.
  """
  labels_volume = np.asarray(labels_volume)
  _check_labels(labels_volume, "labels_volume")
  if labels_volume.ndim != 3:
    raise ValueError(f"labels_volume must be [X, Y, Z]; got shape {labels_volume.shape}")
  voxel_sizes = np.asarray(voxel_sizes, np.float64)
  if voxel_sizes.shape != (3,) or not np.all(voxel_sizes > 0):
    raise ValueError(f"voxel_sizes must be three sizes > 0 (mm); got {voxel_sizes!r}")
  if not isinstance(template, str) or not template:
    raise ValueError(f"template must be a non-empty name; got {template!r}")
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
    raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
  choices = [contrast] if isinstance(contrast, str) else list(contrast)
  if not choices or any(c not in CONTRASTS for c in choices):
    raise ValueError(f"contrast must be one of {list(CONTRASTS)} or a sequence of them; "
                     f"got {contrast!r}")
  unknown = set(image_kwargs) - set(_IMAGE_KEYS)
  if unknown:
    raise ValueError(f"unknown synthesize_image arguments: {sorted(unknown)}")
  lesion_settings = None if lesions is None else _lesion_settings(lesions)
  axis = int(axis) % 3
  positions = slice_positions(labels_volume, num_slices, axis=axis,
                              slab_fraction=slab_fraction)
  in_plane = [a for a in range(3) if a != axis]
  if fov_margin is None:
    pixel, center = pixel_size_mm, None
  else:
    pixel, center = brain_field_of_view(labels_volume, voxel_sizes, shape, axis=axis,
                                        margin=fov_margin)
    pixel = pixel if pixel_size_mm is None else pixel_size_mm
  keys = ("kspace", "image", "maps", "target", "noise", "noise_std")
  out: dict[str, list] = {k: [] for k in keys + ("labels", "lesions")}
  samples = []
  for s, index in enumerate(positions):
    rng = np.random.default_rng([int(seed), s])
    plane = np.take(labels_volume, int(index), axis=axis)
    grid_labels, pixel = plane_to_grid(plane, voxel_sizes[in_plane], shape, pixel,
                                       center_vox=center)
    name = choices[int(rng.integers(len(choices)))] if len(choices) > 1 else choices[0]
    magnitude, labels, lesion_mask, record = _synthesize_image(
        grid_labels, rng, probabilities=None, contrast=name,
        deformation=deformation, **{**_IMAGE_DEFAULTS, **image_kwargs},
        lesions=lesion_settings, lesion_rng=np.random.default_rng([int(seed), s, 1]),
        pixel_size_mm=pixel)
    acq = synthesize_kspace(magnitude, rng, num_coils=num_coils, snr_db=snr_db,
                            phase_rms=phase_rms)
    for k in keys:
      out[k].append(acq[k])
    out["labels"].append(labels)
    out["lesions"].append(np.zeros(labels.shape, bool) if lesion_mask is None
                          else lesion_mask)
    samples.append({"sample": s, "slice_index": int(index), "rng": [int(seed), s],
                    **record})
  result: dict[str, Any] = {k: np.stack(v) for k, v in out.items()}
  result["slice_index"] = positions
  result["provenance"] = prov.to_jsonable({
      "synthesized": True, "template": template,
      "template_sha256": prov.sha256_arrays(labels_volume),
      "template_shape": list(labels_volume.shape), "voxel_sizes_mm": voxel_sizes,
      "generator": GENERATOR, "reference": REFERENCE,
      "contrast": contrast if isinstance(contrast, str) else choices, "seed": int(seed),
      "rng": "numpy.random.default_rng([seed, sample])", "num_slices": int(num_slices),
      "axis": axis, "slab_fraction": float(slab_fraction), "shape": list(shape),
      "pixel_size_mm": pixel, "fov_margin": fov_margin,
      "fov_center_vox": center, "deformation": None if deformation is None else
      dict(deformation), "image": {**_IMAGE_DEFAULTS, **image_kwargs},
      "num_coils": int(num_coils), "snr_db": float(snr_db), "phase_rms": float(phase_rms),
      "target": "RSS of the noiseless coil images (= the synthesized magnitude)",
      "kspace_origin": {"kind": "synthesized from a template", "from_processed_images":
                        False, "how": "label template -> random-contrast magnitude "
                        "with smooth random phase -> loop-coil maps, FFT, complex "
                        "Gaussian noise (fdl.data.synthesis)"},
      "samples": samples,
      # Only with lesions: without, the record is the one it always was.
      **({} if lesion_settings is None else {
          "lesions": lesion_settings,
          "lesion_rng": "numpy.random.default_rng([seed, sample, 1])"})})
  return result


# The contrast arguments `synthesize_slices` passes on, with `synthesize_image`'s
# defaults (one source of truth).
_IMAGE_KEYS = ("mean_jitter", "texture_std", "blur_sigma_vox", "bias_std", "bias_grid",
               "noise_std", "robust_percentile")
_IMAGE_DEFAULTS = {name: p.default for name, p in
                   inspect.signature(synthesize_image).parameters.items()
                   if name in _IMAGE_KEYS}


# ----------------------------------------------------------------------------
# Checks.


def _check_spatial_shape(shape) -> tuple[int, ...]:
  shape = tuple(int(n) for n in shape)
  if len(shape) not in (2, 3) or min(shape) < 1:
    raise ValueError(f"shape must be 2-D or 3-D with sizes >= 1; got {shape}")
  return shape


def _check_coords(coords, ndim: int, name: str) -> np.ndarray:
  coords = np.asarray(coords, np.float64)
  if coords.ndim != ndim + 1 or coords.shape[0] != ndim:
    raise ValueError(f"coords must be [ndim={ndim}, *out_spatial] for {ndim}-D {name}; "
                     f"got shape {coords.shape}")
  if not np.all(np.isfinite(coords)):
    raise ValueError("coords contain NaN or Inf values")
  return coords


def _check_range(value, name: str) -> tuple[float, float]:
  lo, hi = (float(v) for v in value)
  if not (np.isfinite(lo) and np.isfinite(hi) and 0 <= lo <= hi):
    raise ValueError(f"{name} must be (lo, hi) with 0 <= lo <= hi; got {value!r}")
  return lo, hi


def _check_labels(labels, name: str) -> None:
  labels = np.asarray(labels)
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must be an integer label array; got {labels.dtype}")
  if labels.size and (labels.min() < 0 or labels.max() >= NUM_LABELS):
    raise ValueError(f"{name} must hold labels in 0..{NUM_LABELS - 1} ({', '.join(TISSUES)}); "
                     f"got values in [{labels.min()}, {labels.max()}]")


def _check_tissue_input(labels, probabilities) -> np.ndarray | None:
  """Validates exactly one of labels / probabilities; returns float64 ``[4, ...]`` or None."""
  if (labels is None) == (probabilities is None):
    raise ValueError("pass exactly one of labels and probabilities")
  if probabilities is None:
    _check_labels(labels, "labels")
    return None
  probs = np.asarray(probabilities, np.float64)
  if probs.ndim not in (3, 4) or probs.shape[0] not in (3, 4):
    raise ValueError(f"probabilities must be [K, *spatial] with K = 3 (CSF, GM, WM) or 4 "
                     f"(background, CSF, GM, WM); got shape {probs.shape}")
  if not np.all(np.isfinite(probs)) or probs.min() < 0:
    raise ValueError("probabilities must be finite and >= 0")
  if probs.shape[0] == 3:
    probs = np.concatenate([np.clip(1.0 - probs.sum(0, keepdims=True), 0.0, None), probs])
  return probs
