"""Image classification data sources by name: TFDS, CIFAR pickles, npz, digits, synthetic.

`load_source(name, ...)` returns a `Source`: the full training and (where the
data set has one) official test arrays in memory, uint8 NHWC, with a provenance
record. Nothing here downloads: TFDS data must already be prepared, files must
already exist, and the two embedded sets (scikit-learn's digits, the synthetic
gratings) need no files at all.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
import zlib
from typing import Any, Callable

import numpy as np

from fdl.data import cifar_files
from fdl.data import provenance as prov
from fdl.data.synthetic import synthetic_images


@dataclasses.dataclass(frozen=True, eq=False)
class Source:
  """A labelled image data set, as loaded, before any split or preprocessing.

  Attributes:
    train_images: uint8 ``[N, H, W, C]`` (C is 1 or 3), the official training
      split (or all the data, for sets without an official test split).
    train_labels: int32 ``[N]`` in ``[0, num_classes)``.
    test_images: uint8 ``[M, H, W, C]``, the official test split, or None.
    test_labels: int32 ``[M]``, or None.
    num_classes: number of classes.
    class_names: one name per class.
    provenance: ``{"source": name, "files": [{"path", "sha256", "bytes"}] or
      "tfds": {"name", "version", "data_dir"}, "sizes": {"train", "test"},
      "image_shape": [H, W, C], ...}``; JSON-serializable.
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  test_images: np.ndarray | None
  test_labels: np.ndarray | None
  num_classes: int
  class_names: tuple[str, ...]
  provenance: dict

  def __post_init__(self):
    name = self.provenance.get("source", "source")
    _check_images(self.train_images, f"{name} train_images")
    _check_labels(self.train_labels, len(self.train_images), self.num_classes,
                  f"{name} train_labels")
    if (self.test_images is None) != (self.test_labels is None):
      raise ValueError(f"{name}: test_images and test_labels must both be "
                       "given or both be None")
    if self.test_images is not None:
      _check_images(self.test_images, f"{name} test_images")
      if self.test_images.shape[1:] != self.train_images.shape[1:]:
        raise ValueError(
            f"{name}: test images are {self.test_images.shape[1:]} but train "
            f"images are {self.train_images.shape[1:]}")
      _check_labels(self.test_labels, len(self.test_images), self.num_classes,
                    f"{name} test_labels")
    if len(self.class_names) != self.num_classes:
      raise ValueError(f"{name}: {len(self.class_names)} class names for "
                       f"{self.num_classes} classes")

  @property
  def image_shape(self) -> tuple[int, int, int]:
    """``(H, W, C)`` of one image."""
    return tuple(self.train_images.shape[1:])

  def __repr__(self):
    test = None if self.test_images is None else self.test_images.shape
    return (f"Source({self.provenance.get('source')!r}, train="
            f"{self.train_images.shape}, test={test}, "
            f"num_classes={self.num_classes})")


def _check_images(x: np.ndarray, what: str) -> None:
  if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4 or (
      x.shape[-1] not in (1, 3)):
    got = (f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray)
           else type(x).__name__)
    raise ValueError(f"{what} must be uint8 [N, H, W, C] with C in (1, 3); "
                     f"got {got}")
  if len(x) == 0:
    raise ValueError(f"{what} is empty")


def _check_labels(y: np.ndarray, n: int, num_classes: int, what: str) -> None:
  if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.shape != (n,):
    got = (f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray)
           else type(y).__name__)
    raise ValueError(f"{what} must be int32 [{n}]; got {got}")
  if n and (y.min() < 0 or y.max() >= num_classes):
    raise ValueError(f"{what} must lie in [0, {num_classes}); got range "
                     f"[{y.min()}, {y.max()}]")


# --- TFDS ------------------------------------------------------------------


def default_tfds_dir() -> str:
  """``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets`` (TFDS's own default)."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser(
      "~/tensorflow_datasets")


def _tfds_not_prepared(name: str, data_dir: str, why: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"TFDS dataset {name!r} is not prepared in {data_dir} ({why}). fdl never "
      f"downloads. Prepare it on a machine with internet access with\n"
      f"  tfds build {name} --data_dir={data_dir} --file_format=array_record\n"
      f"and copy {os.path.join(data_dir, name)} here (or set $TFDS_DATA_DIR / "
      f"data_dir to where it is), or use '{name}_dir' with the python-pickle "
      f"folder of the official archive, or 'npz' with train_file/test_file.")


def _prepared_versions(name: str, data_dir: str) -> list[str]:
  root = os.path.join(data_dir, name)
  if not os.path.isdir(root):
    return []
  found = []
  for dirpath, _, filenames in os.walk(root):
    if "dataset_info.json" in filenames and any(
        ".array_record" in f for f in filenames):
      found.append(dirpath)
  return sorted(found)


def _load_tfds(name: str, data_dir: str) -> dict[str, Any]:
  """Both splits of a prepared TFDS image classification set, as arrays."""
  data_dir = os.path.abspath(os.path.expanduser(data_dir or default_tfds_dir()))
  # TFDS's own error for a missing data set is a confusing one about the
  # TFRECORD format, and it creates nothing but also explains nothing; check
  # the folder first so that the user reads one clear message.
  if not _prepared_versions(name, data_dir):
    root = os.path.join(data_dir, name)
    why = (f"{root} does not exist" if not os.path.isdir(root) else
           f"no version folder under {root} holds dataset_info.json and "
           "array_record files")
    raise _tfds_not_prepared(name, data_dir, why)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top

  try:
    sources = tfds.data_source(name, split=["train", "test"], data_dir=data_dir,
                               download=False, try_gcs=False)
  except (NotImplementedError, AssertionError, FileNotFoundError,
          tfds.core.registered.DatasetNotFoundError) as err:
    raise _tfds_not_prepared(name, data_dir, f"{type(err).__name__}: {err}"
                             ) from err
  arrays = {}
  for split, source in zip(("train", "test"), sources):
    records = source.__getitems__(list(range(len(source))))
    images = np.stack([np.asarray(r["image"], np.uint8) for r in records])
    labels = np.asarray([r["label"] for r in records], np.int32)
    arrays[split] = (images, labels)
  info = sources[0].dataset_info
  label = info.features["label"]
  return {
      "train_images": arrays["train"][0], "train_labels": arrays["train"][1],
      "test_images": arrays["test"][0], "test_labels": arrays["test"][1],
      "num_classes": int(label.num_classes),
      "class_names": tuple(label.names),
      "tfds": {"name": name, "version": str(info.version),
               "data_dir": data_dir, "file_format": "array_record"},
  }


# --- npz -------------------------------------------------------------------


def read_npz(path: str) -> dict[str, Any]:
  """Images, labels and optional class names from one ``.npz`` archive.

  The archive holds ``x``: uint8 ``[N, H, W, C]`` with C in (1, 3); ``y``:
  integer ``[N]``; optionally ``classes``: ``[K]`` strings, in which case every
  label must be below K. Other keys are ignored.

  Returns:
    ``{"images": uint8 [N, H, W, C], "labels": int32 [N], "classes": tuple
    of str or None}``.

  Raises:
    FileNotFoundError: no file at `path`.
    ValueError: the archive is corrupt, or a key is missing or has the wrong
      dtype, rank or length; the message names the file and the key.
  """
  if not path:
    raise FileNotFoundError("npz needs train_file: a .npz with x (uint8 "
                            "[N, H, W, C]) and y (integer [N])")
  if not os.path.isfile(path):
    raise FileNotFoundError(f"no npz file at {os.path.abspath(path)}")
  try:
    with np.load(path, allow_pickle=False) as archive:
      keys = set(archive.files)
      for key in ("x", "y"):
        if key not in keys:
          raise ValueError(f"{path}: missing key {key!r} (found {sorted(keys)}); "
                           "expected x uint8 [N, H, W, C] and y integer [N]")
      x, y = archive["x"], archive["y"]
      classes = archive["classes"] if "classes" in keys else None
  except ValueError as err:
    if str(err).startswith(f"{path}:"):
      raise
    raise ValueError(f"{path}: not a readable .npz archive ({err})") from err
  except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
    raise ValueError(f"{path}: not a readable .npz archive ({type(err).__name__}: "
                     f"{err}); the file may be truncated or corrupt") from err

  if x.dtype != np.uint8:
    raise ValueError(f"{path}: key 'x' must be uint8 (pixel values 0..255); got "
                     f"{x.dtype}")
  if x.ndim != 4 or x.shape[-1] not in (1, 3):
    raise ValueError(f"{path}: key 'x' must be [N, H, W, C] with C in (1, 3); "
                     f"got shape {x.shape}")
  if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer)):
    raise ValueError(f"{path}: key 'y' must be integer [N]; got {y.dtype} "
                     f"{y.shape}")
  if len(y) != len(x):
    raise ValueError(f"{path}: key 'y' has {len(y)} labels but key 'x' has "
                     f"{len(x)} images; expected one label per image")
  if len(y) and y.min() < 0:
    raise ValueError(f"{path}: key 'y' must be >= 0; got minimum {y.min()}")
  names = None
  if classes is not None:
    if classes.ndim != 1 or classes.dtype.kind not in "US":
      raise ValueError(f"{path}: key 'classes' must be a 1-D array of strings; "
                       f"got {classes.dtype} {classes.shape}")
    names = tuple(c.decode() if isinstance(c, bytes) else str(c)
                  for c in classes.tolist())
    if len(y) and y.max() >= len(names):
      raise ValueError(
          f"{path}: key 'y' must be < {len(names)} (the number of 'classes'); "
          f"got maximum {y.max()}")
  if len(y) and y.max() > np.iinfo(np.int32).max:
    raise ValueError(f"{path}: key 'y' does not fit int32; maximum {y.max()}")
  return {"images": np.ascontiguousarray(x), "labels": y.astype(np.int32),
          "classes": names}


def _load_npz(train_file: str, test_file: str) -> dict[str, Any]:
  train = read_npz(train_file)
  test = read_npz(test_file) if test_file else None
  names = train["classes"]
  if test is not None:
    if test["images"].shape[1:] != train["images"].shape[1:]:
      raise ValueError(
          f"{test_file}: key 'x' images are {test['images'].shape[1:]} but the "
          f"training images in {train_file} are {train['images'].shape[1:]}")
    if names is not None and test["classes"] is not None and (
        names != test["classes"]):
      raise ValueError(f"{test_file}: key 'classes' {test['classes']} differs "
                       f"from {train_file}: {names}")
    names = names or test["classes"]
  labels = [train["labels"]] + ([test["labels"]] if test else [])
  if names is None:
    num_classes = int(max(int(l.max()) for l in labels if len(l))) + 1
    names = tuple(str(i) for i in range(num_classes))
  else:
    for path, l in zip((train_file, test_file), labels):
      if len(l) and l.max() >= len(names):
        raise ValueError(f"{path}: key 'y' must be < {len(names)} (the number "
                         f"of classes); got maximum {l.max()}")
  files = [prov.file_record(train_file)] + (
      [prov.file_record(test_file)] if test else [])
  return {
      "train_images": train["images"], "train_labels": train["labels"],
      "test_images": test["images"] if test else None,
      "test_labels": test["labels"] if test else None,
      "num_classes": len(names), "class_names": names, "files": files,
  }


# --- embedded sets -----------------------------------------------------------


def _load_digits() -> dict[str, Any]:
  import sklearn  # pylint: disable=g-import-not-at-top
  from sklearn import datasets  # pylint: disable=g-import-not-at-top

  digits = datasets.load_digits()
  # 0..16 grey levels to 0..255, so that the set is uint8 like every other one.
  images = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
  record: dict[str, Any] = {"loader": "sklearn.datasets.load_digits",
                            "sklearn_version": sklearn.__version__,
                            "scaling": "round(value * 255 / 16), from 0..16"}
  try:
    from importlib import resources  # pylint: disable=g-import-not-at-top
    path = resources.files("sklearn.datasets.data") / "digits.csv.gz"
    record["files"] = [prov.file_record(str(path))]
  except (ImportError, OSError, TypeError):  # provenance only; never fatal
    pass
  return {"train_images": images, "train_labels": digits.target.astype(np.int32),
          "test_images": None, "test_labels": None, "num_classes": 10,
          "class_names": tuple(str(i) for i in range(10)), **record}


def _load_synthetic(seed: int) -> dict[str, Any]:
  x, y, xt, yt = synthetic_images(seed=seed)
  return {"train_images": x, "train_labels": y, "test_images": xt,
          "test_labels": yt, "num_classes": 10,
          "class_names": tuple(f"grating_{k * 18}deg" for k in range(10)),
          "generator": "fdl.data.synthetic.synthetic_images", "seed": seed}


# name -> (loader(data_dir, train_file, test_file, seed), one-line description)
SOURCES: dict[str, tuple[Callable[..., dict], str]] = {
    "cifar10": (lambda d, tr, te, s: _load_tfds("cifar10", d),
                "CIFAR-10 from a prepared TFDS data dir (array_record)"),
    "cifar100": (lambda d, tr, te, s: _load_tfds("cifar100", d),
                 "CIFAR-100 (fine labels) from a prepared TFDS data dir"),
    "cifar10_dir": (lambda d, tr, te, s: cifar_files.read_cifar_dir(d, "cifar10"),
                    "CIFAR-10 python-pickle folder (data_batch_1..5, test_batch)"),
    "cifar100_dir": (lambda d, tr, te, s: cifar_files.read_cifar_dir(d, "cifar100"),
                     "CIFAR-100 python-pickle folder (train, test; fine labels)"),
    "npz": (lambda d, tr, te, s: _load_npz(tr, te),
            ".npz archives with x uint8 [N,H,W,C], y, optional classes"),
    "digits": (lambda d, tr, te, s: _load_digits(),
               "scikit-learn's 1,797 8x8 handwritten digits (embedded)"),
    "synthetic": (lambda d, tr, te, s: _load_synthetic(s),
                  "512 + 128 generated 32x32 gratings, 10 classes (embedded)"),
}


def load_source(name: str, *, data_dir: str = "", train_file: str = "",
                test_file: str = "", seed: int = 0) -> Source:
  """Loads the image classification data set `name` into memory.

  Args:
    name: one of `SOURCES`: ``cifar10``/``cifar100`` (TFDS, already prepared
      in array_record format; never downloaded), ``cifar10_dir``/
      ``cifar100_dir`` (a folder in the official python-pickle format), ``npz``
      (`train_file`, optional `test_file`), ``digits`` (scikit-learn's 8x8
      digits, no test split), ``synthetic`` (generated from `seed`).
    data_dir: TFDS data dir (default ``$TFDS_DATA_DIR`` or
      ``~/tensorflow_datasets``) or the pickle folder.
    train_file: npz training archive.
    test_file: npz test archive (optional).
    seed: seed of the synthetic set; the other sources ignore it.

  Returns:
    A `Source` with uint8 NHWC images and int32 labels.

  Raises:
    ValueError: unknown `name`, or malformed data (the message names the file
      and the key).
    FileNotFoundError: the data is not where `data_dir`/`train_file` point.

  >>> src = load_source("synthetic", seed=3)
  >>> src.train_images.shape, src.test_images.shape, src.num_classes
  ((512, 32, 32, 3), (128, 32, 32, 3), 10)
  """
  if name not in SOURCES:
    raise ValueError(f"unknown data source {name!r}; known sources: "
                     f"{', '.join(SOURCES)}")
  loaded = SOURCES[name][0](data_dir, train_file, test_file, seed)
  arrays = {k: loaded.pop(k) for k in (
      "train_images", "train_labels", "test_images", "test_labels",
      "num_classes", "class_names")}
  test = arrays["test_images"]
  record = {
      "source": name,
      "sizes": {"train": int(len(arrays["train_images"])),
                "test": None if test is None else int(len(test))},
      "test_split": "official" if test is not None else None,
      "image_shape": list(arrays["train_images"].shape[1:]),
      "num_classes": int(arrays["num_classes"]),
      **loaded,
  }
  return Source(num_classes=int(arrays.pop("num_classes")),
                class_names=tuple(arrays.pop("class_names")),
                provenance=prov.to_jsonable(record), **arrays)
