"""Data sources: tiny files in the exact on-disk formats, bad files, embedded sets."""

import hashlib
import io
import os
import pickle

import numpy as np
import pytest

from fdl import data
from fdl.data import cifar_files

CIFAR10_DIR = "/work/shared/data/cifar10"
CIFAR10_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                 "horse", "ship", "truck")


def _sha256(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def _dump(path, obj):
  # Protocol 2 and bytes keys, as the official Python 2 files were written.
  with open(path, "wb") as f:
    pickle.dump(obj, f, protocol=2)


def _rows(rng, n):
  return rng.integers(0, 256, (n, 3072), dtype=np.uint8)


def write_cifar10_dir(folder, per_batch=3, test=4, seed=0, meta=True):
  """data_batch_1..5 + test_batch (+ batches.meta); returns (train, test) rows."""
  rng = np.random.default_rng(seed)
  os.makedirs(folder, exist_ok=True)
  train_rows, train_labels = [], []
  for i in range(1, 6):
    rows = _rows(rng, per_batch)
    labels = rng.integers(0, 10, per_batch).tolist()
    _dump(os.path.join(folder, f"data_batch_{i}"),
          {b"batch_label": f"training batch {i} of 5".encode(), b"data": rows,
           b"labels": labels, b"filenames": [b"x.png"] * per_batch})
    train_rows.append(rows)
    train_labels += labels
  test_rows = _rows(rng, test)
  test_labels = rng.integers(0, 10, test).tolist()
  _dump(os.path.join(folder, "test_batch"),
        {b"data": test_rows, b"labels": test_labels})
  if meta:
    _dump(os.path.join(folder, "batches.meta"),
          {b"label_names": [n.encode() for n in CIFAR10_NAMES],
           b"num_cases_per_batch": per_batch, b"num_vis": 3072})
  return (np.concatenate(train_rows), np.array(train_labels),
          test_rows, np.array(test_labels))


def _nhwc(rows):
  """Reference conversion, pixel by pixel from the documented layout."""
  out = np.zeros((len(rows), 32, 32, 3), np.uint8)
  for n in range(len(rows)):
    for c in range(3):
      for i in range(32):
        out[n, i, :, c] = rows[n, c * 1024 + 32 * i:c * 1024 + 32 * i + 32]
  return out


def write_npz(path, n=6, shape=(32, 32, 3), num_classes=10, seed=0, **overrides):
  rng = np.random.default_rng(seed)
  arrays = {"x": rng.integers(0, 256, (n,) + shape, dtype=np.uint8),
            "y": np.arange(n) % num_classes}
  arrays.update(overrides)
  arrays = {k: v for k, v in arrays.items() if v is not None}
  np.savez_compressed(path, **arrays)
  return arrays


# --- CIFAR python pickles ------------------------------------------------------------


def test_cifar10_dir_shapes_labels_names_and_provenance(tmp_path):
  train_rows, train_labels, test_rows, test_labels = write_cifar10_dir(tmp_path)
  src = data.load_source("cifar10_dir", data_dir=str(tmp_path))
  assert src.train_images.shape == (15, 32, 32, 3)
  assert src.train_images.dtype == np.uint8 and src.train_labels.dtype == np.int32
  assert src.test_images.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(src.train_images, _nhwc(train_rows))
  np.testing.assert_array_equal(src.train_labels, train_labels)
  np.testing.assert_array_equal(src.test_images, _nhwc(test_rows))
  np.testing.assert_array_equal(src.test_labels, test_labels)
  assert src.num_classes == 10 and src.class_names == CIFAR10_NAMES
  record = src.provenance
  assert record["source"] == "cifar10_dir"
  assert record["sizes"] == {"train": 15, "test": 4}
  files = {os.path.basename(f["path"]): f for f in record["files"]}
  assert sorted(files) == sorted([f"data_batch_{i}" for i in range(1, 6)]
                                 + ["test_batch", "batches.meta"])
  path = os.path.join(tmp_path, "data_batch_3")
  assert files["data_batch_3"]["sha256"] == _sha256(path)
  assert files["data_batch_3"]["bytes"] == os.path.getsize(path)


def test_cifar_pickle_pixel_layout(tmp_path):
  """A value at plane c, row i, column j of a row lands at image[i, j, c]."""
  write_cifar10_dir(tmp_path, per_batch=1, test=1)
  rows = np.zeros((2, 3072), np.uint8)
  marks = {(0, 2, 5, 0): 200, (0, 7, 1, 1): 100, (1, 31, 30, 2): 50,
           (1, 0, 31, 0): 7}
  for (n, i, j, c), value in marks.items():
    rows[n, c * 1024 + 32 * i + j] = value
  _dump(os.path.join(tmp_path, "data_batch_1"), {b"data": rows, b"labels": [3, 4]})
  src = data.load_source("cifar10_dir", data_dir=str(tmp_path))
  first = src.train_images[:2]
  for (n, i, j, c), value in marks.items():
    assert first[n, i, j, c] == value
  assert np.count_nonzero(first) == len(marks)
  assert src.train_labels[:2].tolist() == [3, 4]


def test_cifar10_dir_accepts_the_archive_folder_and_missing_meta(tmp_path):
  write_cifar10_dir(tmp_path / "cifar-10-batches-py", meta=False)
  src = data.load_source("cifar10_dir", data_dir=str(tmp_path))
  assert len(src.train_labels) == 15
  assert src.class_names == tuple(str(i) for i in range(10))


def test_cifar100_dir_fine_labels(tmp_path):
  rng = np.random.default_rng(1)
  train = _rows(rng, 5)
  fine = [0, 99, 42, 7, 63]
  _dump(tmp_path / "train", {b"data": train, b"fine_labels": fine,
                             b"coarse_labels": [0, 19, 3, 1, 2]})
  _dump(tmp_path / "test", {b"data": _rows(rng, 2), b"fine_labels": [5, 98],
                            b"coarse_labels": [1, 1]})
  names = [f"class{i}".encode() for i in range(100)]
  _dump(tmp_path / "meta", {b"fine_label_names": names,
                            b"coarse_label_names": names[:20]})
  src = data.load_source("cifar100_dir", data_dir=str(tmp_path))
  assert src.train_images.shape == (5, 32, 32, 3) and src.test_images.shape == (2, 32, 32, 3)
  assert src.train_labels.tolist() == fine and src.test_labels.tolist() == [5, 98]
  assert src.num_classes == 100 and src.class_names[42] == "class42"
  np.testing.assert_array_equal(src.train_images, _nhwc(train))


def _truncated(path):
  raw = open(path, "rb").read()
  with open(path, "wb") as f:
    f.write(raw[:len(raw) // 2])


class _Evil:
  def __reduce__(self):
    return (os.system, ("echo pwned",))


@pytest.mark.parametrize("damage, match", [
    (_truncated, r"data_batch_2: not a readable CIFAR pickle file"),
    (lambda p: open(p, "wb").write(b"\x00garbage" * 10), r"data_batch_2: not a readable CIFAR pickle"),
    (lambda p: _dump(p, [1, 2, 3]), r"data_batch_2: a CIFAR pickle file must hold a dict; got list"),
    (lambda p: _dump(p, {b"labels": [1]}), r"data_batch_2: missing key b'data'"),
    (lambda p: _dump(p, {b"data": np.zeros((3, 3072), np.uint8)}), r"data_batch_2: missing key b'labels'"),
    (lambda p: _dump(p, {b"data": np.zeros((3, 3000), np.uint8), b"labels": [1, 2, 3]}),
     r"data_batch_2: b'data' must be uint8 \[N, 3072\].*got uint8 \(3, 3000\)"),
    (lambda p: _dump(p, {b"data": np.zeros((3, 3072), np.float32), b"labels": [1, 2, 3]}),
     r"data_batch_2: b'data' must be uint8"),
    (lambda p: _dump(p, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 2]}),
     r"data_batch_2: b'labels' must hold one label per image \(3\)"),
    (lambda p: _dump(p, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [1, 10, 2]}),
     r"data_batch_2: b'labels' must lie in \[0, 10\); got range \[1, 10\]"),
    (lambda p: _dump(p, {b"data": _Evil(), b"labels": [1]}),
     r"data_batch_2: not a readable CIFAR pickle.*refusing to load posix.system"),
])
def test_bad_cifar_pickles_name_the_file_and_problem(tmp_path, damage, match):
  write_cifar10_dir(tmp_path)
  damage(os.path.join(tmp_path, "data_batch_2"))
  with pytest.raises(ValueError, match=match):
    data.load_source("cifar10_dir", data_dir=str(tmp_path))


def test_missing_cifar_files_are_listed(tmp_path):
  write_cifar10_dir(tmp_path)
  os.remove(tmp_path / "data_batch_4")
  os.remove(tmp_path / "test_batch")
  with pytest.raises(FileNotFoundError,
                     match=r"is not a cifar10 python-pickle folder: missing data_batch_4, test_batch"):
    data.load_source("cifar10_dir", data_dir=str(tmp_path))
  with pytest.raises(FileNotFoundError, match=r"cifar100_dir needs data_dir"):
    data.load_source("cifar100_dir")


def test_python3_pickles_with_str_keys_are_read(tmp_path):
  write_cifar10_dir(tmp_path)
  rows = np.full((2, 3072), 9, np.uint8)
  with open(tmp_path / "data_batch_1", "wb") as f:
    pickle.dump({"data": rows, "labels": [1, 2]}, f)  # newest protocol, str keys
  src = data.load_source("cifar10_dir", data_dir=str(tmp_path))
  assert src.train_labels[:2].tolist() == [1, 2] and (src.train_images[:2] == 9).all()


# --- npz ---------------------------------------------------------------------------------


def test_npz_single_file(tmp_path):
  path = str(tmp_path / "train.npz")
  arrays = write_npz(path, n=7, idx_in_test_npz=np.arange(7))  # extra keys ignored
  src = data.load_source("npz", train_file=path)
  np.testing.assert_array_equal(src.train_images, arrays["x"])
  assert src.train_labels.dtype == np.int32
  np.testing.assert_array_equal(src.train_labels, arrays["y"])
  assert src.test_images is None and src.test_labels is None
  assert src.num_classes == 7 and src.class_names == tuple("0123456")  # max label + 1
  assert src.provenance["files"][0]["sha256"] == _sha256(path)
  assert src.provenance["sizes"] == {"train": 7, "test": None}


def test_npz_pair_with_class_names_and_grey_images(tmp_path):
  classes = np.array(["cat", "dog", "emu"])
  tr, te = str(tmp_path / "tr.npz"), str(tmp_path / "te.npz")
  write_npz(tr, n=5, shape=(8, 6, 1), num_classes=3, classes=classes)
  write_npz(te, n=4, shape=(8, 6, 1), num_classes=2, seed=1)
  src = data.load_source("npz", train_file=tr, test_file=te)
  assert src.train_images.shape == (5, 8, 6, 1) and src.test_images.shape == (4, 8, 6, 1)
  assert src.class_names == ("cat", "dog", "emu") and src.num_classes == 3
  assert [os.path.basename(f["path"]) for f in src.provenance["files"]] == [
      "tr.npz", "te.npz"]
  assert src.provenance["files"][1]["sha256"] == _sha256(te)


def _corrupt_middle(path):
  raw = bytearray(open(path, "rb").read())
  raw[len(raw) // 2:len(raw) // 2 + 64] = b"\xff" * 64
  open(path, "wb").write(bytes(raw))


@pytest.mark.parametrize("write, match", [
    (lambda p: write_npz(p, x=None), r"bad.npz: missing key 'x' \(found \['y'\]\)"),
    (lambda p: write_npz(p, y=None), r"bad.npz: missing key 'y'"),
    (lambda p: write_npz(p, x=np.zeros((6, 32, 32, 3), np.float32)),
     r"bad.npz: key 'x' must be uint8 \(pixel values 0..255\); got float32"),
    (lambda p: write_npz(p, x=np.zeros((6, 32, 32), np.uint8)),
     r"bad.npz: key 'x' must be \[N, H, W, C\] with C in \(1, 3\); got shape \(6, 32, 32\)"),
    (lambda p: write_npz(p, x=np.zeros((6, 32, 32, 4), np.uint8)),
     r"key 'x' must be \[N, H, W, C\] with C in \(1, 3\); got shape \(6, 32, 32, 4\)"),
    (lambda p: write_npz(p, y=np.arange(5)),
     r"bad.npz: key 'y' has 5 labels but key 'x' has 6 images"),
    (lambda p: write_npz(p, y=np.array([0, 1, -1, 2, 3, 4])),
     r"bad.npz: key 'y' must be >= 0; got minimum -1"),
    (lambda p: write_npz(p, y=np.zeros(6, np.float32)), r"bad.npz: key 'y' must be integer \[N\]; got float32"),
    (lambda p: write_npz(p, classes=np.array(["a", "b"])),
     r"bad.npz: key 'y' must be < 2 \(the number of 'classes'\); got maximum 5"),
    (lambda p: write_npz(p, classes=np.arange(10)), r"bad.npz: key 'classes' must be a 1-D array of strings"),
    (lambda p: (write_npz(p), _truncated(p)), r"bad.npz: not a readable .npz archive"),
    (lambda p: (write_npz(p), _corrupt_middle(p)), r"bad.npz: not a readable .npz archive"),
    (lambda p: open(p, "wb").write(b"not a zip file at all"), r"bad.npz: not a readable .npz archive"),
])
def test_bad_npz_files_name_the_file_and_key(tmp_path, write, match):
  path = str(tmp_path / "bad.npz")
  write(path)
  with pytest.raises(ValueError, match=match):
    data.load_source("npz", train_file=path)


def test_npz_pair_must_agree(tmp_path):
  tr, te = str(tmp_path / "tr.npz"), str(tmp_path / "te.npz")
  write_npz(tr, classes=np.array(list("abcdefghij")))
  write_npz(te, shape=(16, 16, 3))
  with pytest.raises(ValueError, match=r"te.npz: key 'x' images are \(16, 16, 3\)"):
    data.load_source("npz", train_file=tr, test_file=te)
  write_npz(te, n=12, num_classes=12)
  with pytest.raises(ValueError, match=r"te.npz: key 'y' must be < 10"):
    data.load_source("npz", train_file=tr, test_file=te)
  with pytest.raises(FileNotFoundError, match=r"no npz file at .*missing.npz"):
    data.load_source("npz", train_file=str(tmp_path / "missing.npz"))
  with pytest.raises(FileNotFoundError, match=r"npz needs train_file"):
    data.load_source("npz")


# --- embedded sets ---------------------------------------------------------------------


def test_digits_is_the_real_sklearn_set_as_uint8():
  from sklearn.datasets import load_digits
  src = data.load_source("digits")
  assert src.train_images.shape == (1797, 8, 8, 1) and src.train_images.dtype == np.uint8
  assert src.test_images is None and src.num_classes == 10
  assert np.bincount(src.train_labels).tolist() == np.bincount(load_digits().target).tolist()
  reference = load_digits().images
  np.testing.assert_array_equal(src.train_images[..., 0],
                                np.rint(reference * 255 / 16).astype(np.uint8))
  assert src.train_images.max() == 255 and src.train_images.min() == 0
  # 16 * 255 / 16 = 255 and 8 -> 127.5 rounds to even: 128.
  assert set(np.unique(src.train_images)) == {round(v * 255 / 16) for v in range(17)}
  assert src.provenance["files"][0]["path"].endswith("digits.csv.gz")


def test_synthetic_is_deterministic_and_balanced():
  a = data.load_source("synthetic", seed=5)
  b = data.load_source("synthetic", seed=5)
  c = data.load_source("synthetic", seed=6)
  assert a.train_images.shape == (512, 32, 32, 3) and a.test_images.shape == (128, 32, 32, 3)
  assert a.train_images.tobytes() == b.train_images.tobytes()
  assert a.test_labels.tobytes() == b.test_labels.tobytes()
  assert a.train_images.tobytes() != c.train_images.tobytes()
  assert np.bincount(a.train_labels).tolist() == [52, 52, 51, 51, 51, 51, 51, 51, 51, 51]
  assert a.provenance["seed"] == 5
  # Every image distinct (the split tests rely on it); pixel values spread out.
  assert len({x.tobytes() for x in np.concatenate([a.train_images, a.test_images])}) == 640
  assert 40 < a.train_images.std() < 90


def test_synthetic_classes_differ_in_orientation_energy():
  """The class signal is real: the mean spectrum differs between classes."""
  x, y, _, _ = data.synthetic_images(400, 0, seed=0)
  grey = x.astype(np.float64).mean(-1)
  spectra = np.abs(np.fft.fft2(grey - grey.mean((1, 2), keepdims=True)))
  per_class = np.stack([spectra[y == k].mean(0) for k in range(10)])
  # Nearest class-mean spectrum classifies far above chance (0.1).
  d = ((spectra[:, None] - per_class[None]) ** 2).sum((2, 3))
  assert (d.argmin(1) == y).mean() > 0.5


# --- TFDS --------------------------------------------------------------------------------


def test_tfds_not_prepared_is_one_clear_error(tmp_path, monkeypatch):
  with pytest.raises(FileNotFoundError) as err:
    data.load_source("cifar10", data_dir=str(tmp_path / "tfds"))
  message = str(err.value)
  assert f"not prepared in {tmp_path / 'tfds'}" in message
  assert f"tfds build cifar10 --data_dir={tmp_path / 'tfds'} --file_format=array_record" in message
  assert "'cifar10_dir'" in message and "'npz'" in message
  assert not (tmp_path / "tfds").exists()  # nothing created, nothing downloaded
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "env_dir"))
  with pytest.raises(FileNotFoundError, match=r"'cifar100' is not prepared in .*env_dir"):
    data.load_source("cifar100")


def test_tfds_in_tfrecord_format_is_rejected_clearly(tmp_path):
  version = tmp_path / "cifar10" / "3.0.2"
  version.mkdir(parents=True)
  (version / "dataset_info.json").write_text("{}")
  (version / "cifar10-train.tfrecord-00000-of-00001").write_bytes(b"")
  with pytest.raises(FileNotFoundError, match=r"no version folder under .* holds "
                     r"dataset_info.json and array_record files"):
    data.load_source("cifar10", data_dir=str(tmp_path))


def test_tfds_array_record_happy_path(tmp_path):
  """A tiny cifar10 written offline by TFDS's own builder, read back."""
  pytest.importorskip("PIL")
  pytest.importorskip("array_record")
  from PIL import Image
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import cifar

  rng = np.random.default_rng(0)
  splits = {s: (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                rng.integers(0, 10, n)) for s, n in (("train", 6), ("test", 3))}

  class OfflineCifar10(cifar.Cifar10, skip_registration=True):
    name = "cifar10"
    # TFDS looks up package resources for a class of a dotted module (this test's
    # is `data.test_sources`), which needs `importlib_resources`; a builder defined
    # in a test has none.
    __module__ = "__main__"

    def _split_generators(self, dl_manager):
      del dl_manager
      self.info.features["label"].names = list(CIFAR10_NAMES)
      return {s: self._examples(*splits[s]) for s in splits}

    def _examples(self, images, labels):
      for i, (image, label) in enumerate(zip(images, labels)):
        # PIL images are PNG-encoded without TensorFlow.
        yield i, {"id": f"{i}", "image": Image.fromarray(image),
                  "label": int(label)}

  OfflineCifar10(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  src = data.load_source("cifar10", data_dir=str(tmp_path))
  assert src.train_images.shape == (6, 32, 32, 3) and src.test_images.shape == (3, 32, 32, 3)
  assert src.class_names == CIFAR10_NAMES
  for split, images, labels in (("train", src.train_images, src.train_labels),
                                ("test", src.test_images, src.test_labels)):
    # TFDS stores examples in its own (hashed) order: compare as pairs.
    written = sorted((x.tobytes(), int(y)) for x, y in zip(*splits[split]))
    assert sorted((x.tobytes(), int(y)) for x, y in zip(images, labels)) == written
  assert src.provenance["tfds"]["name"] == "cifar10"
  assert src.provenance["tfds"]["version"] == "3.0.2"


def test_unknown_source_lists_the_known_ones():
  with pytest.raises(ValueError, match=r"unknown data source 'imagenet'; known sources: "
                     r"cifar10, cifar100, cifar10_dir, cifar100_dir, npz, digits, synthetic"):
    data.load_source("imagenet")


def test_source_checks_its_arrays():
  x = np.zeros((2, 4, 4, 3), np.uint8)
  with pytest.raises(ValueError, match=r"train_labels must lie in \[0, 3\); got range \[0, 5\]"):
    data.Source(x, np.array([0, 5], np.int32), None, None, 3, ("a", "b", "c"), {"source": "t"})
  with pytest.raises(ValueError, match=r"train_images must be uint8 \[N, H, W, C\]"):
    data.Source(x.astype(np.float32), np.array([0, 1], np.int32), None, None, 3,
                ("a", "b", "c"), {"source": "t"})


# --- the real CIFAR-10 copy -----------------------------------------------------------


def _real(name):
  path = os.path.join(CIFAR10_DIR, name)
  if not os.path.isfile(path):
    pytest.skip(f"{path} not present")
  return path


def test_real_cifar10_lossless_test_subset():
  path = _real("cifar10_test1000_lossless.npz")
  src = data.load_source("npz", train_file=path)
  assert src.train_images.shape == (1000, 32, 32, 3)
  assert src.class_names == CIFAR10_NAMES
  assert src.provenance["files"][0]["sha256"] == (
      "43899a9aa84710d22e153dc848052891fffebbdddf0191a13134cc510c8d037a")
  # Official test_batch: image 0 is a cat with red row 0 starting 158, 159, 165, 166, 160.
  assert src.train_labels[0] == 3
  assert src.train_images[0, 0, :5, 0].tolist() == [158, 159, 165, 166, 160]


@pytest.mark.slow
def test_real_cifar10_train_and_test():
  src = data.load_source("npz", train_file=_real("cifar10_train.npz"),
                         test_file=_real("cifar10_test.npz"))
  assert src.train_images.shape == (50000, 32, 32, 3)
  assert src.test_images.shape == (10000, 32, 32, 3)
  assert src.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
  assert np.bincount(src.train_labels).tolist() == [5000] * 10
  assert src.train_images[0, 0, :10, 0].tolist() == [59, 43, 50, 68, 98, 119, 139,
                                                     145, 149, 149]
  hashes = [f["sha256"] for f in src.provenance["files"]]
  assert hashes == ["b3148f6665e2fba2bbc427a63c5e447af7f103a2697cae91f4e6406025754030",
                    "5979e62f53d695f37a361f54872a0971b779da6a64f018a01bd7ffc53f56ded4"]
  stats = data.compute_norm_stats(src.train_images)
  np.testing.assert_allclose(stats.mean, [0.4914, 0.4822, 0.4465], atol=6e-5)
  np.testing.assert_allclose(stats.std, [0.2470, 0.2435, 0.2616], atol=6e-5)
