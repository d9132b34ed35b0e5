"""Records of where data came from and what was done to it.

Every `Source`, split and pipeline carries a plain, JSON-serializable dict that
says which files (by sha256) or which TFDS release the pixels came from, how
many examples each split holds, and every preprocessing step applied, so that a
number in a report can be traced back to bytes on disk.
"""

from __future__ import annotations

import hashlib
import os
from typing import Any

import numpy as np

_CHUNK = 1 << 20


def sha256_file(path: str) -> str:
  """Hex sha256 of the bytes of the file at `path`.

  >>> import tempfile, os
  >>> with tempfile.TemporaryDirectory() as d:
  ...   p = os.path.join(d, "empty")
  ...   _ = open(p, "wb").close()
  ...   sha256_file(p)[:16]
  'e3b0c44298fc1c14'
  """
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()


def file_record(path: str) -> dict[str, Any]:
  """``{"path", "sha256", "bytes"}`` of a data file, the path made absolute."""
  return {"path": os.path.abspath(path), "sha256": sha256_file(path),
          "bytes": os.path.getsize(path)}


def sha256_arrays(*arrays: np.ndarray) -> str:
  """Hex sha256 over the dtypes, shapes and C-order bytes of `arrays`.

  Two index sets or two image stacks hash equal only when they are equal
  element for element, so a split can be recorded by its digest instead of
  thousands of indices.

  >>> a = np.arange(4, dtype=np.int64)
  >>> sha256_arrays(a) == sha256_arrays(a.copy()), sha256_arrays(a) == sha256_arrays(a[::-1])
  (True, False)
  """
  digest = hashlib.sha256()
  for a in arrays:
    a = np.ascontiguousarray(a)
    digest.update(f"{a.dtype.str}{a.shape}".encode())
    digest.update(a.tobytes())
  return digest.hexdigest()


def to_jsonable(value: Any) -> Any:
  """`value` with NumPy scalars/arrays and tuples turned into JSON types."""
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return to_jsonable(value.tolist())
  if isinstance(value, np.generic):
    return value.item()
  return value
