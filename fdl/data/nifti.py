"""NIfTI volumes in the canonical RAS+ orientation.

Every reader here returns arrays indexed ``[X, Y, Z]`` with the first axis
pointing to the subject's Right, the second Anterior and the third Superior
(RAS+), whatever the axis order and signs stored in the file. Reorientation is
``nibabel.as_closest_canonical``: a permutation and flips of the stored array,
never an interpolation, so label values stay exact. An oblique affine is
snapped to its closest axis permutation (the obliquity stays in the affine,
the voxels are not resampled).

Voxel sizes are in millimetres, one per returned axis, taken from the lengths
of the columns of the canonical affine.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

VoxelSizes = tuple[float, float, float]

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _nibabel():
  try:
    import nibabel  # pylint: disable=import-outside-toplevel
  except ImportError as e:  # pragma: no cover - nibabel is a core dependency.
    raise ImportError(
        "fdl.data.nifti needs nibabel: pip install nibabel "
        '(or pip install -e ".")') from e
  return nibabel


def _one_line(err: BaseException) -> str:
  text = " ".join(str(err).split())
  return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _voxel_sizes(affine: np.ndarray) -> VoxelSizes:
  sizes = np.sqrt((np.asarray(affine, np.float64)[:3, :3] ** 2).sum(axis=0))
  return tuple(float(s) for s in sizes)  # type: ignore[return-value]


def _read_canonical(path: str | os.PathLike[str], *, what: str = "load_nifti"
                   ) -> tuple[Any, np.ndarray]:
  """Reads a 3-D NIfTI file as a canonical (RAS+) nibabel image.

  Args:
    path: a ``.nii`` or ``.nii.gz`` file (NIfTI-1 or NIfTI-2).
    what: the caller's name, used to start error messages.

  Returns:
    ``(image, data)``: the canonical ``nibabel`` image (its ``affine`` maps
    ``[X, Y, Z]`` voxel indices to RAS+ millimetres) and its data array
    ``[X, Y, Z]`` with the file's scaling applied, in the dtype that
    ``nibabel``'s ``dataobj`` gives (the stored dtype when unscaled).

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: the file cannot be read as NIfTI (corrupt, truncated, another
      format), or it is not 3-D (a 4-D file whose trailing dimensions are all
      1 is squeezed to 3-D instead).
  """
  nib = _nibabel()
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{what}: no NIfTI file at {path!r}")
  if os.path.isdir(path):
    raise ValueError(f"{what}: {path!r} is a directory, expected a NIfTI file "
                     f"({' or '.join(_NIFTI_SUFFIXES)})")
  try:
    img = nib.load(path)
  except Exception as e:  # nibabel raises many types for bad files.
    raise ValueError(
        f"{what}: {path!r} is not a readable NIfTI file ({_one_line(e)})"
    ) from e
  if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
    raise ValueError(f"{what}: {path!r} is a {type(img).__name__}, expected a "
                     "NIfTI-1 or NIfTI-2 image")
  shape = tuple(int(s) for s in img.shape)
  if len(shape) > 3 and all(s == 1 for s in shape[3:]):
    img = nib.funcs.squeeze_image(img)
  if len(img.shape) != 3:
    raise ValueError(
        f"{what}: {path!r} has shape {shape}, expected a 3-D volume [X, Y, Z] "
        "(a 4-D file is only accepted when its 4th dimension is 1)")
  try:
    img = nib.as_closest_canonical(img)
    data = np.asanyarray(img.dataobj)
  except Exception as e:  # Truncated or corrupt data blocks fail here.
    raise ValueError(
        f"{what}: {path!r} is not a readable NIfTI file ({_one_line(e)})"
    ) from e
  return img, np.asarray(data)


def load_nifti(path: str | os.PathLike[str]) -> tuple[np.ndarray, VoxelSizes]:
  """Reads a 3-D NIfTI image as float32 in the canonical RAS+ orientation.

  Args:
    path: a ``.nii`` or ``.nii.gz`` file holding one 3-D volume (a 4-D file
      with a trailing dimension of 1 is accepted and squeezed).

  Returns:
    ``(array, voxel_sizes)``: ``array`` is float32 ``[X, Y, Z]`` with axes
    pointing Right, Anterior, Superior and the file's intensity scaling
    (``scl_slope``/``scl_inter``) applied, in the file's own units;
    ``voxel_sizes`` is ``(dx, dy, dz)`` in mm along those axes.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: corrupt or truncated file, not NIfTI, or not 3-D; the message
      names the file and the reason.

  Examples:
    >>> import tempfile, numpy as np
    >>> p = tempfile.mkdtemp() + "/v.nii.gz"
    >>> save_nifti(p, np.zeros((4, 5, 6)), (1.0, 2.0, 3.0))
    >>> a, vs = load_nifti(p)
    >>> a.shape, a.dtype.name, vs
    ((4, 5, 6), 'float32', (1.0, 2.0, 3.0))
  """
  img, data = _read_canonical(path, what="load_nifti")
  return data.astype(np.float32, copy=False), _voxel_sizes(img.affine)


def _labels_from_array(data: np.ndarray, source: str) -> np.ndarray:
  """Checks that ``data`` holds integer label values and returns int32.

  Args:
    data: any numeric array.
    source: where it came from (a file path), for error messages.

  Returns:
    ``data`` as int32, same shape, values unchanged.

  Raises:
    ValueError: a value is not finite, not a whole number, or outside int32.
  """
  data = np.asarray(data)
  if data.dtype == np.bool_:
    return data.astype(np.int32)
  if np.issubdtype(data.dtype, np.floating):
    bad = ~np.isfinite(data) | (data != np.round(data))
    if bad.any():
      example = data[tuple(np.argwhere(bad)[0])]
      raise ValueError(
          f"{source}: expected integer label values, found {example!r} "
          f"({int(bad.sum())} of {data.size} voxels are not whole numbers); "
          "is this an intensity image rather than a label map?")
  elif not np.issubdtype(data.dtype, np.integer):
    raise ValueError(f"{source}: expected integer labels, got dtype "
                     f"{data.dtype}")
  if data.size:
    lo, hi = data.min(), data.max()
    info = np.iinfo(np.int32)
    if lo < info.min or hi > info.max:
      raise ValueError(f"{source}: label values span [{lo}, {hi}], outside "
                       "the int32 range")
  return data.astype(np.int32)


def load_label_nifti(path: str | os.PathLike[str]
                     ) -> tuple[np.ndarray, VoxelSizes]:
  """Reads a 3-D NIfTI label map as int32 in the canonical RAS+ orientation.

  The label values are kept exactly (reorientation only permutes and flips
  the stored array; nothing is interpolated).

  Args:
    path: a ``.nii``/``.nii.gz`` file of integer-valued labels (any stored
      dtype, as long as every value, after scaling, is a whole number).

  Returns:
    ``(labels, voxel_sizes)``: int32 ``[X, Y, Z]`` RAS+ labels and
    ``(dx, dy, dz)`` in mm.

  Raises:
    FileNotFoundError: no file at ``path``.
    ValueError: as ``load_nifti``, or a value that is not a whole number
      (the message names the file and one such value).
  """
  img, data = _read_canonical(path, what="load_label_nifti")
  labels = _labels_from_array(data, f"load_label_nifti: {os.fspath(path)!r}")
  return labels, _voxel_sizes(img.affine)


def save_nifti(path: str | os.PathLike[str], array: np.ndarray,
               voxel_sizes: tuple[float, float, float] = (1.0, 1.0, 1.0)
               ) -> None:
  """Writes a 3-D array as NIfTI-1 with a RAS+ affine.

  The affine is ``diag(dx, dy, dz, 1)``: voxel ``[i, j, k]`` sits at
  ``(i*dx, j*dy, k*dz)`` mm, axes Right, Anterior, Superior, so
  ``load_nifti(path)`` gives back ``array`` unchanged.

  Args:
    path: destination; ``.nii.gz`` compresses, ``.nii`` does not.
    array: ``[X, Y, Z]``; integer and bool arrays are stored as int32,
      everything else as float32.
    voxel_sizes: ``(dx, dy, dz)`` in mm, positive and finite.

  Raises:
    ValueError: ``array`` is not 3-D, ``voxel_sizes`` is not three positive
      finite numbers, or ``path`` does not end in ``.nii``/``.nii.gz``.
  """
  nib = _nibabel()
  path = os.fspath(path)
  if not path.endswith(_NIFTI_SUFFIXES):
    raise ValueError(f"save_nifti: path {path!r} must end in .nii or .nii.gz")
  array = np.asarray(array)
  if array.ndim != 3:
    raise ValueError(f"save_nifti: array must be 3-D [X, Y, Z], got shape "
                     f"{array.shape}")
  sizes = np.asarray(voxel_sizes, np.float64)
  if sizes.shape != (3,) or not np.all(np.isfinite(sizes)) or np.any(
      sizes <= 0):
    raise ValueError(f"save_nifti: voxel_sizes must be three positive mm "
                     f"values, got {voxel_sizes!r}")
  if array.dtype == np.bool_ or np.issubdtype(array.dtype, np.integer):
    array = array.astype(np.int32)
  else:
    array = array.astype(np.float32)
  affine = np.diag([*sizes, 1.0])
  img = nib.Nifti1Image(array, affine)
  img.set_qform(affine, code=1)
  img.set_sform(affine, code=1)
  img.header.set_xyzt_units("mm")
  nib.save(img, path)
