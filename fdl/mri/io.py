"""fastMRI HDF5 files: read, write, and a lazy per-slice data set.

The fastMRI layout (one file per volume):

  kspace               complex64 [slices, coils, H, W]  (multi-coil)
                       complex64 [slices, H, W]         (single-coil)
  reconstruction_rss   float32 [slices, h, w]  (train/val; RSS target)
  reconstruction_esc   float32 [slices, h, w]  (single-coil; emulated)
  ismrmrd_header       scalar string: the ISMRMRD XML header
  root attributes      acquisition, max, norm, patient_id, ...

H is the readout direction (ISMRMRD ``x``, often 2x oversampled), W the phase
encoding direction (``y``). The XML header gives the encoded matrix size, the
reconstruction matrix size (the target's size) and the encoding limits of the
phase-encoding index, from which fastMRI derives the zero-padded columns of
k-space: columns ``[padding_left, padding_right)`` hold acquired data.

Arrays come back as NumPy arrays (host data, ready for an input pipeline);
the multi-coil layout is used throughout, a single-coil file gets a coil axis
of length 1.

References:
  J. Zbontar et al., "fastMRI: An open dataset and benchmarks for accelerated
  MRI", arXiv:1811.08839 (2018).
  ISMRMRD header schema, https://github.com/ismrmrd/ismrmrd (schema/).
"""

from __future__ import annotations

import contextlib
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np

ISMRMRD_NAMESPACE = "http://www.ismrm.org/ISMRMRD"
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")
_NS = {"ismrmrd": ISMRMRD_NAMESPACE}


def read_fastmri(path: str | os.PathLike) -> dict[str, Any]:
  """Reads one fastMRI volume (single- or multi-coil) into memory.

  Args:
    path: an ``.h5`` file in the fastMRI layout.

  Returns:
    A dict with
      ``kspace``: complex64 ``[slices, coils, H, W]`` (``coils == 1`` for a
        single-coil file);
      ``target``: float32 ``[slices, h, w]`` from ``reconstruction_rss``, else
        ``reconstruction_esc``, else None (test files carry no target);
      ``attrs``: the HDF5 root attributes (``max``, ``norm``, ``acquisition``,
        ``patient_id``, ... as Python scalars and strings) plus, from the XML
        header, ``encoding_size`` and ``recon_size`` (``(x, y, z)`` ints),
        ``padding_left`` and ``padding_right`` (ints, columns of the last
        axis).

  Raises:
    FileNotFoundError: the file does not exist.
    OSError: the file is not a readable HDF5 file (empty, truncated, corrupt).
    ValueError: ``kspace`` or ``ismrmrd_header`` is missing, ``kspace`` is not
      complex of rank 3 or 4, or the header lacks a required element.

  Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = os.path.join(tmp.name, "vol.h5")
    >>> k = np.ones((2, 3, 8, 6), np.complex64)
    >>> write_fastmri(path, k, encoding_size=(8, 6, 1), recon_size=(4, 4, 1))
    >>> vol = read_fastmri(path)
    >>> vol["kspace"].shape, vol["target"], vol["attrs"]["recon_size"]
    ((2, 3, 8, 6), None, (4, 4, 1))
    >>> tmp.cleanup()
  """
  path = os.fspath(path)
  with _open_fastmri(path) as f:
    kspace = _checked_kspace(f, path)[()]
    target = None
    for key in TARGET_KEYS:
      if key in f:
        target = np.asarray(f[key][()], np.float32)
        break
    attrs = _read_attrs(f, path)
  kspace = kspace.astype(np.complex64, copy=False)
  if kspace.ndim == 3:
    kspace = kspace[:, None]
  return {"kspace": kspace, "target": target, "attrs": attrs}


def write_fastmri(path: str | os.PathLike, kspace: np.ndarray, *,
                  target: np.ndarray | None = None,
                  target_key: str = "reconstruction_rss",
                  attrs: Mapping[str, Any] | None = None,
                  encoding_size: Sequence[int], recon_size: Sequence[int],
                  encoding_limits: Sequence[int] | None = None) -> None:
  """Writes one volume in the exact fastMRI layout (see the module docstring).

  Args:
    path: output ``.h5`` file (overwritten).
    kspace: complex ``[slices, coils, H, W]`` (multi-coil) or
      ``[slices, H, W]`` (single-coil); stored as complex64 in that layout.
    target: optional real ``[slices, h, w]``, stored as float32.
    target_key: ``"reconstruction_rss"`` or ``"reconstruction_esc"``.
    attrs: root attributes (e.g. ``max``, ``norm``, ``acquisition``,
      ``patient_id``); values must be HDF5-storable scalars or strings.
    encoding_size: encoded matrix ``(x, y, z)``; ``x`` is usually H, ``y`` W.
    recon_size: reconstruction matrix ``(x, y, z)``, the target's
      ``(h, w, 1)`` in fastMRI.
    encoding_limits: ``(minimum, maximum, center)`` of the phase-encoding
      index ``kspace_encoding_step_1``; by default the fully sampled
      ``(0, y - 1, y // 2)``, which gives ``padding_left = 0`` and
      ``padding_right = y``.

  Raises:
    ValueError: on a wrong dtype, rank or shape, or an unknown target key.
  """
  kspace = np.asarray(kspace)
  if not np.iscomplexobj(kspace) or kspace.ndim not in (3, 4):
    raise ValueError("kspace must be complex64 [slices, coils, H, W] or [slices, H, W]; "
                     f"got {kspace.dtype} {kspace.shape}")
  if target_key not in TARGET_KEYS:
    raise ValueError(f"target_key must be one of {TARGET_KEYS}; got {target_key!r}")
  encoding_size = _int_triple("encoding_size", encoding_size)
  recon_size = _int_triple("recon_size", recon_size)
  if encoding_limits is None:
    encoding_limits = (0, encoding_size[1] - 1, encoding_size[1] // 2)
  encoding_limits = _int_triple("encoding_limits", encoding_limits)
  if target is not None:
    target = np.asarray(target)
    if np.iscomplexobj(target) or target.ndim != 3 or target.shape[0] != kspace.shape[0]:
      raise ValueError(f"target must be real float32 [slices, h, w] with {kspace.shape[0]} "
                       f"slices; got {target.dtype} {target.shape}")
  header = ismrmrd_header_xml(encoding_size, recon_size, encoding_limits)
  with h5py.File(os.fspath(path), "w") as f:
    f.create_dataset("kspace", data=kspace.astype(np.complex64, copy=False))
    if target is not None:
      f.create_dataset(target_key, data=target.astype(np.float32, copy=False))
    f.create_dataset("ismrmrd_header", data=np.bytes_(header))
    for name, value in (attrs or {}).items():
      f.attrs[name] = value


def ismrmrd_header_xml(encoding_size: Sequence[int], recon_size: Sequence[int],
                       encoding_limits: Sequence[int]) -> bytes:
  """A minimal ISMRMRD XML header valid against the ISMRMRD schema.

  Args:
    encoding_size: encoded matrix ``(x, y, z)``.
    recon_size: reconstruction matrix ``(x, y, z)``.
    encoding_limits: ``(minimum, maximum, center)`` of
      ``kspace_encoding_step_1`` (phase encoding).

  Returns:
    UTF-8 XML bytes. The field of view in mm equals the matrix size (1 mm
    pixels), as simulated data have no physical scale.
  """
  q = lambda tag: f"{{{ISMRMRD_NAMESPACE}}}{tag}"
  def add(parent, tag, text=None):
    node = ET.SubElement(parent, q(tag))
    if text is not None:
      node.text = str(text)
    return node

  root = ET.Element(q("ismrmrdHeader"))
  # The schema requires experimentalConditions; 3 T proton frequency, in Hz.
  add(add(root, "experimentalConditions"), "H1resonanceFrequency_Hz", 127_728_000)
  encoding = add(root, "encoding")
  for space, size in (("encodedSpace", encoding_size), ("reconSpace", recon_size)):
    node = add(encoding, space)
    matrix = add(node, "matrixSize")
    fov = add(node, "fieldOfView_mm")
    for axis, n in zip("xyz", size):
      add(matrix, axis, int(n))
      add(fov, axis, float(n))
  limits = add(encoding, "encodingLimits")
  step1 = add(limits, "kspace_encoding_step_1")
  for name, value in zip(("minimum", "maximum", "center"), encoding_limits):
    add(step1, name, int(value))
  add(encoding, "trajectory", "cartesian")
  ET.indent(root, space="  ")  # scanner headers are indented; easier to read
  return ET.tostring(root, encoding="utf-8", xml_declaration=True,
                     default_namespace=ISMRMRD_NAMESPACE)


class SliceDataset(Sequence):
  """All slices of a list of fastMRI files, read lazily one slice per item.

  The constructor opens every file once to validate it and to read its slice
  count and header; ``dataset[i]`` then reads one slice with h5py. Items are

    ``kspace``: complex64 ``[coils, H, W]``;
    ``target``: float32 ``[recon_x, recon_y]``, the stored target centre-cropped
      to ``(recon_size[0], recon_size[1])`` as fastMRI does, or None;
    ``attrs``: the file's attributes, as in `read_fastmri`;
    ``fname``: the file name (no directory);
    ``slice``: the slice index in its volume.

  If ``transform`` is given, ``dataset[i]`` returns ``transform(item)``.

  Examples:
    >>> import os, tempfile
    >>> import numpy as np
    >>> tmp = tempfile.TemporaryDirectory()
    >>> paths = [os.path.join(tmp.name, f"v{n}.h5") for n in (2, 3)]
    >>> for path, n in zip(paths, (2, 3)):
    ...   write_fastmri(path, np.ones((n, 4, 8, 8), np.complex64),
    ...                 encoding_size=(8, 8, 1), recon_size=(8, 8, 1))
    >>> ds = SliceDataset(paths)
    >>> len(ds), ds[4]["fname"], ds[4]["slice"], ds[4]["kspace"].shape
    (5, 'v3.h5', 2, (4, 8, 8))
    >>> tmp.cleanup()
  """

  def __init__(self, paths: Sequence[str | os.PathLike], *,
               transform: Callable[[dict[str, Any]], Any] | None = None):
    self.transform = transform
    self._files: list[tuple[str, dict[str, Any], str | None]] = []
    self._index: list[tuple[int, int]] = []
    for path in paths:
      path = os.fspath(path)
      with _open_fastmri(path) as f:
        num_slices = _checked_kspace(f, path).shape[0]
        attrs = _read_attrs(f, path)
        target_key = next((k for k in TARGET_KEYS if k in f), None)
      file_id = len(self._files)
      self._files.append((path, attrs, target_key))
      self._index.extend((file_id, s) for s in range(num_slices))

  def __len__(self) -> int:
    return len(self._index)

  def __getitem__(self, i):
    if isinstance(i, slice):
      return [self[j] for j in range(*i.indices(len(self)))]
    i = int(i)
    if i < 0:
      i += len(self)
    if not 0 <= i < len(self):
      raise IndexError(f"slice index {i} out of range for {len(self)} slices")
    file_id, s = self._index[i]
    path, attrs, target_key = self._files[file_id]
    with _open_fastmri(path) as f:
      kspace = np.asarray(f["kspace"][s]).astype(np.complex64, copy=False)
      target = None if target_key is None else np.asarray(f[target_key][s], np.float32)
    if kspace.ndim == 2:
      kspace = kspace[None]
    if target is not None:
      target = _center_crop(target, attrs["recon_size"][:2])
    item = {"kspace": kspace, "target": target, "attrs": dict(attrs),
            "fname": os.path.basename(path), "slice": s}
    return item if self.transform is None else self.transform(item)


def _center_crop(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """Crops the last two axes to ``size = (h, w)`` from ``((H - h) // 2, (W - w) // 2)``.

  fastMRI's rule (the same as `fdl.mri.metrics.center_crop`, kept here in
  NumPy so the loader does not touch the accelerator): on an odd surplus the
  extra row or column is dropped at the end.
  """
  h, w = (int(s) for s in size)
  big_h, big_w = np.shape(x)[-2:]
  if not (0 < h <= big_h and 0 < w <= big_w):
    raise ValueError(f"crop size {(h, w)} must be positive and at most the array's "
                     f"last two axes {(big_h, big_w)}")
  top, left = (big_h - h) // 2, (big_w - w) // 2
  return x[..., top:top + h, left:left + w]


@contextlib.contextmanager
def _open_fastmri(path: str):
  """Opens ``path`` read-only, turning h5py's errors into ones naming the file."""
  if not os.path.exists(path):
    raise FileNotFoundError(f"fastMRI file not found: {path}")
  try:
    f = h5py.File(path, "r")
  except OSError as e:
    raise OSError(f"cannot open fastMRI file {path}: not a readable HDF5 file "
                  f"(empty, truncated or corrupt?): {e}") from e
  try:
    yield f
  except (OSError, KeyError, RuntimeError) as e:
    # A truncated file can open and then fail when a dataset's data is read.
    raise OSError(f"cannot read fastMRI file {path} (truncated or corrupt?): {e}") from e
  finally:
    f.close()


def _checked_kspace(f: h5py.File, path: str) -> h5py.Dataset:
  if "kspace" not in f or not isinstance(f["kspace"], h5py.Dataset):
    raise ValueError(f"{path}: missing dataset 'kspace' (not a fastMRI file?)")
  ds = f["kspace"]
  if ds.dtype.kind != "c" or ds.ndim not in (3, 4):
    raise ValueError(f"{path}: kspace must be complex64 [slices, coils, H, W] or "
                     f"[slices, H, W]; got {ds.dtype} {ds.shape}")
  return ds


def _read_attrs(f: h5py.File, path: str) -> dict[str, Any]:
  attrs = {name: _python_value(value) for name, value in f.attrs.items()}
  if "ismrmrd_header" not in f:
    raise ValueError(f"{path}: missing dataset 'ismrmrd_header' (not a fastMRI file?)")
  attrs.update(parse_ismrmrd_header(f["ismrmrd_header"][()], source=path))
  return attrs


def parse_ismrmrd_header(xml: bytes | str, *, source: str = "header") -> dict[str, Any]:
  """Matrix sizes and phase-encoding padding from an ISMRMRD XML header.

  fastMRI's rule, with ``enc_y = encoding_size[1]`` and the limits of
  ``encoding/encodingLimits/kspace_encoding_step_1``:

    padding_left  = enc_y // 2 - center
    padding_right = padding_left + maximum + 1

  Args:
    xml: the header, bytes or str.
    source: a name for error messages (the file).

  Returns:
    ``{"encoding_size": (x, y, z), "recon_size": (x, y, z),
    "padding_left": int, "padding_right": int}``.

  Raises:
    ValueError: unparsable XML or a missing element.

  Examples:
    >>> xml = ismrmrd_header_xml((640, 368, 1), (320, 320, 1), (0, 355, 178))
    >>> h = parse_ismrmrd_header(xml)
    >>> h["padding_left"], h["padding_right"]
    (6, 362)
  """
  if isinstance(xml, np.ndarray):
    xml = xml.item()
  try:
    root = ET.fromstring(xml)
  except ET.ParseError as e:
    raise ValueError(f"{source}: ismrmrd_header is not valid XML: {e}") from e

  def value(*tags):
    found = root.find("./" + "/".join(f"ismrmrd:{t}" for t in tags), _NS)
    if found is None or found.text is None:
      raise ValueError(f"{source}: ismrmrd_header lacks {'/'.join(tags)}")
    try:
      return int(float(found.text))
    except ValueError as e:
      raise ValueError(f"{source}: ismrmrd_header {'/'.join(tags)} is not a number: "
                       f"{found.text!r}") from e

  size = lambda space: tuple(value("encoding", space, "matrixSize", a) for a in "xyz")
  encoding_size, recon_size = size("encodedSpace"), size("reconSpace")
  limits = ("encoding", "encodingLimits", "kspace_encoding_step_1")
  center, maximum = value(*limits, "center"), value(*limits, "maximum")
  padding_left = encoding_size[1] // 2 - center
  return {"encoding_size": encoding_size, "recon_size": recon_size,
          "padding_left": padding_left, "padding_right": padding_left + maximum + 1}


def _python_value(value):
  if isinstance(value, bytes):
    return value.decode("utf-8", errors="replace")
  if isinstance(value, np.generic):
    return value.item()
  return value


def _int_triple(name: str, values) -> tuple[int, int, int]:
  values = tuple(int(v) for v in values)
  if len(values) != 3:
    raise ValueError(f"{name} must be three ints (x, y, z); got {values}")
  return values
