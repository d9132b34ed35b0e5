"""CIFAR-10/100 in the python-pickle layout of the official ``*-python.tar.gz``.

CIFAR-10 (``cifar-10-batches-py/``): ``data_batch_1`` ... ``data_batch_5`` and
``test_batch``, each a pickled dict with ``b'data'`` (uint8 ``[N, 3072]``) and
``b'labels'`` (N ints in 0..9), plus ``batches.meta`` with ``b'label_names'``.
CIFAR-100 (``cifar-100-python/``): ``train`` and ``test`` with ``b'fine_labels'``
(0..99) and ``b'coarse_labels'``, plus ``meta`` with ``b'fine_label_names'``.

A row of ``b'data'`` is three 32x32 planes, red then green then blue, each in
row-major order: the value at ``data[n, c * 1024 + 32 * i + j]`` is channel `c`
of pixel (row i, column j). `read_cifar_dir` returns NHWC.
"""

from __future__ import annotations

import os
import pickle
from typing import Any

import numpy as np

from fdl.data import provenance as prov

CIFAR_SIDE = 32
_ROW = 3 * CIFAR_SIDE * CIFAR_SIDE

# (train files, test files, label key, meta file, label-names key, classes)
_LAYOUTS = {
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                b"labels", "batches.meta", b"label_names", 10),
    "cifar100": (["train"], ["test"], b"fine_labels", "meta",
                 b"fine_label_names", 100),
}
# Folder names inside the official archives, accepted one level down.
_ARCHIVE_FOLDERS = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}

# What a CIFAR pickle may reference: NumPy's array reconstruction and byte
# strings, nothing else.
# pickle.load runs any callable a file names; a data directory is not trusted
# code, so everything else is refused.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    # Python 3 writes bytes into protocol <= 2 pickles through _codecs.encode.
    ("_codecs", "encode"),
}


class _ArraysOnlyUnpickler(pickle.Unpickler):

  def find_class(self, module, name):
    if (module, name) in _ALLOWED_GLOBALS:
      return super().find_class(module, name)
    raise pickle.UnpicklingError(
        f"refusing to load {module}.{name}: a CIFAR file holds only arrays, "
        "lists, numbers and strings")


def load_pickle(path: str) -> dict:
  """The dict in one CIFAR pickle file (keys are bytes, as written by Python 2).

  Raises:
    FileNotFoundError: `path` does not exist.
    ValueError: the file is truncated, not a pickle, or not a dict; the message
      names the file.
  """
  with open(path, "rb") as f:
    try:
      obj = _ArraysOnlyUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            AttributeError, ImportError, IndexError, KeyError,
            MemoryError, UnicodeDecodeError) as err:
      raise ValueError(
          f"{path}: not a readable CIFAR pickle file ({type(err).__name__}: "
          f"{err}); the file may be truncated or corrupt") from err
  if not isinstance(obj, dict):
    raise ValueError(f"{path}: a CIFAR pickle file must hold a dict; got "
                     f"{type(obj).__name__}")
  return obj


def _key(d: dict, key: bytes, path: str) -> Any:
  if key in d:
    return d[key]
  if key.decode() in d:  # files re-pickled by Python 3 have str keys
    return d[key.decode()]
  raise ValueError(f"{path}: missing key {key!r}; found keys "
                   f"{sorted(map(repr, d))}")


def read_batch(path: str, label_key: bytes, num_classes: int
               ) -> tuple[np.ndarray, np.ndarray]:
  """Images and labels of one CIFAR pickle file.

  Args:
    path: a ``data_batch_*``, ``test_batch``, ``train`` or ``test`` file.
    label_key: ``b'labels'`` (CIFAR-10) or ``b'fine_labels'`` (CIFAR-100).
    num_classes: labels must lie in ``[0, num_classes)``.

  Returns:
    ``(images, labels)``: uint8 ``[N, 32, 32, 3]`` (NHWC, RGB), int32 ``[N]``.
  """
  d = load_pickle(path)
  data = np.asarray(_key(d, b"data", path))
  if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _ROW:
    raise ValueError(
        f"{path}: b'data' must be uint8 [N, {_ROW}] (3 planes of 32x32); got "
        f"{data.dtype} {data.shape}")
  labels = np.asarray(_key(d, label_key, path))
  if labels.ndim != 1 or len(labels) != len(data):
    raise ValueError(
        f"{path}: {label_key!r} must hold one label per image ({len(data)}); "
        f"got shape {labels.shape}")
  if len(labels) and not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{path}: {label_key!r} must be integers; got "
                     f"{labels.dtype}")
  if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
    raise ValueError(
        f"{path}: {label_key!r} must lie in [0, {num_classes}); got range "
        f"[{labels.min()}, {labels.max()}]")
  images = data.reshape(-1, 3, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
  return np.ascontiguousarray(images), labels.astype(np.int32)


def _label_names(path: str, key: bytes, num_classes: int) -> tuple[str, ...]:
  names = _key(load_pickle(path), key, path)
  names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
  if len(names) != num_classes:
    raise ValueError(f"{path}: {key!r} must list {num_classes} class names; "
                     f"got {len(names)}")
  return names


def read_cifar_dir(data_dir: str, variant: str) -> dict[str, Any]:
  """Reads a CIFAR-10 or CIFAR-100 python-pickle directory.

  Args:
    data_dir: the folder with the batch files, or the folder holding the
      archive's ``cifar-10-batches-py`` / ``cifar-100-python`` folder.
    variant: ``"cifar10"`` or ``"cifar100"``.

  Returns:
    A dict with ``train_images``/``test_images`` uint8 ``[N, 32, 32, 3]``,
    ``train_labels``/``test_labels`` int32, ``num_classes``, ``class_names``
    (from the meta file, else ``"0"``, ``"1"``, ...), and ``files`` (path,
    sha256 and size of every file read).

  Raises:
    FileNotFoundError: a batch file is missing; the message lists which.
    ValueError: a file is corrupt or has the wrong keys, shapes or labels.
  """
  train_files, test_files, label_key, meta, names_key, num_classes = (
      _LAYOUTS[variant])
  if not data_dir:
    raise FileNotFoundError(
        f"{variant}_dir needs data_dir: the folder with the CIFAR python "
        f"batches ({', '.join(train_files + test_files)})")
  nested = os.path.join(data_dir, _ARCHIVE_FOLDERS[variant])
  if not os.path.exists(os.path.join(data_dir, train_files[0])) and os.path.isdir(
      nested):
    data_dir = nested
  missing = [f for f in train_files + test_files
             if not os.path.isfile(os.path.join(data_dir, f))]
  if missing:
    raise FileNotFoundError(
        f"{os.path.abspath(data_dir)} is not a {variant} python-pickle folder: "
        f"missing {', '.join(missing)} (expected {', '.join(train_files + test_files)}, "
        f"as extracted from the official {variant.replace('cifar', 'cifar-')}"
        "-python.tar.gz)")

  def read(names):
    parts = [read_batch(os.path.join(data_dir, n), label_key, num_classes)
             for n in names]
    return (np.concatenate([p[0] for p in parts]),
            np.concatenate([p[1] for p in parts]))

  train_images, train_labels = read(train_files)
  test_images, test_labels = read(test_files)
  read_files = train_files + test_files
  meta_path = os.path.join(data_dir, meta)
  if os.path.isfile(meta_path):
    class_names = _label_names(meta_path, names_key, num_classes)
    read_files = read_files + [meta]
  else:
    class_names = tuple(str(i) for i in range(num_classes))
  return {
      "train_images": train_images, "train_labels": train_labels,
      "test_images": test_images, "test_labels": test_labels,
      "num_classes": num_classes, "class_names": class_names,
      "files": [prov.file_record(os.path.join(data_dir, f)) for f in read_files],
  }
