"""Splits, normalization, the grain pipeline and the sealed test split."""

import collections
import hashlib
import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import data

AUG_ALL = data.AugmentConfig(crop_padding=2, flip=True, rotation_degrees=20,
                             scale_range=0.1, cutout_size=3)


def tiny_source(n_train=40, n_test=10, shape=(6, 6, 3), num_classes=4, seed=0):
  """Distinct random images; brightness varies a lot from image to image."""
  rng = np.random.default_rng(seed)
  n = n_train + n_test
  scale = rng.uniform(0.1, 1.0, (n, 1, 1, 1))
  x = (rng.uniform(0, 255, (n,) + shape) * scale).astype(np.uint8)
  y = (np.arange(n) % num_classes).astype(np.int32)
  return data.Source(
      train_images=x[:n_train], train_labels=y[:n_train],
      test_images=x[n_train:] if n_test else None,
      test_labels=y[n_train:] if n_test else None, num_classes=num_classes,
      class_names=tuple(f"c{k}" for k in range(num_classes)),
      provenance={"source": "tiny"})


def pipeline(splits, **kwargs):
  kwargs.setdefault("batch_size", 8)
  kwargs.setdefault("seed", 0)
  kwargs.setdefault("pad_multiple", 1)
  return data.ClassificationPipeline(splits, **kwargs)


def _hashes(images):
  return [hashlib.sha256(x.tobytes()).hexdigest() for x in images]


# --- splits ---------------------------------------------------------------------------


def test_cifar_sized_plan_is_45000_5000_disjoint_and_deterministic():
  plan = data.plan_splits(50_000, has_test=True, val_size=5000, seed=0)
  assert (len(plan.train), len(plan.val), plan.test) == (45_000, 5_000, None)
  both = np.concatenate([plan.train, plan.val])
  assert np.array_equal(np.sort(both), np.arange(50_000))  # disjoint and complete
  again = data.plan_splits(50_000, has_test=True, val_size=5000, seed=0)
  assert np.array_equal(plan.val, again.val) and np.array_equal(plan.train, again.train)
  other = data.plan_splits(50_000, has_test=True, val_size=5000, seed=1)
  assert not np.array_equal(plan.val, other.val)


def test_val_size_too_large_falls_back_to_fractions():
  plan = data.plan_splits(512, has_test=True, val_size=5000, seed=0)
  assert (len(plan.train), len(plan.val), plan.val_rule) == (436, 76, "val_fraction=0.15")
  plan = data.plan_splits(512, has_test=True, val_size=64, seed=0)
  assert (len(plan.train), len(plan.val), plan.val_rule) == (448, 64, "val_size=64")
  plan = data.plan_splits(1000, has_test=False, val_size=None, val_fraction=0.1,
                          test_fraction=0.2, seed=0)
  assert (len(plan.train), len(plan.val), len(plan.test)) == (700, 100, 200)
  with pytest.raises(ValueError, match=r"3 examples are too few to split"):
    data.plan_splits(3, has_test=False, seed=0)


def test_digits_split_070_015_015_disjoint_by_index_and_by_image():
  source = data.load_source("digits")
  splits = data.make_splits(source, seed=3)
  n = len(source.train_labels)
  assert n == 1797
  sizes = splits.provenance["splits"]["sizes"]
  assert sizes == {"train": 1259, "val": 269, "test": 269}
  assert sizes["train"] / n == pytest.approx(0.70, abs=0.005)
  assert sizes["val"] / n == pytest.approx(0.15, abs=0.005)
  test_images, test_labels = splits.test.open()
  # Index disjointness: the three parts are a partition of the 1,797 rows.
  carved = data.plan_splits(n, has_test=False, seed=3)
  rows = np.concatenate([splits.train_indices, splits.val_indices, carved.test])
  assert np.array_equal(np.sort(rows), np.arange(n))
  np.testing.assert_array_equal(test_images, source.train_images[carved.test])
  # Image disjointness, allowing for the data set's own duplicates: the parts
  # hold each distinct image exactly as often as the source does.
  parts = [_hashes(splits.train_images), _hashes(splits.val_images), _hashes(test_images)]
  total = collections.Counter(_hashes(source.train_images))
  assert sum((collections.Counter(p) for p in parts), collections.Counter()) == total
  duplicated = {h for h, c in total.items() if c > 1}
  for a in range(3):
    for b in range(a + 1, 3):
      assert set(parts[a]) & set(parts[b]) <= duplicated
  again = data.make_splits(source, seed=3)
  np.testing.assert_array_equal(again.val_images, splits.val_images)
  np.testing.assert_array_equal(again.train_labels, splits.train_labels)


def test_synthetic_splits_share_no_image():
  source = data.load_source("synthetic", seed=0)
  splits = data.make_splits(source, val_size=64, seed=0)
  test_images, _ = splits.test.open()
  train, val, test = (set(_hashes(x)) for x in
                      (splits.train_images, splits.val_images, test_images))
  assert (len(train), len(val), len(test)) == (448, 64, 128)
  assert not train & val and not train & test and not val & test
  np.testing.assert_array_equal(test_images, source.test_images)  # official test untouched
  assert splits.test.origin == "official test split"


# --- normalization ----------------------------------------------------------------------


def test_norm_stats_come_from_the_training_split_only():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  stats = data.compute_norm_stats(splits.train_images)
  train = splits.train_images.astype(np.float64) / 255
  np.testing.assert_allclose(stats.mean, train.mean(axis=(0, 1, 2)), rtol=1e-12)
  np.testing.assert_allclose(stats.std, train.std(axis=(0, 1, 2)), rtol=1e-12)
  both = np.concatenate([splits.train_images, splits.val_images]).astype(np.float64) / 255
  assert np.abs(stats.mean - both.mean(axis=(0, 1, 2))).min() > 1e-3
  p = pipeline(splits)
  np.testing.assert_array_equal(p.stats.mean, stats.mean)
  assert p.provenance["normalization"]["mean"] == stats.mean.tolist()
  assert p.provenance["normalization"]["std"] == stats.std.tolist()
  normalized = data.normalize(splits.train_images, stats)
  assert normalized.dtype == np.float32
  np.testing.assert_allclose(normalized.mean(axis=(0, 1, 2)), 0, atol=1e-5)
  np.testing.assert_allclose(normalized.std(axis=(0, 1, 2)), 1, atol=1e-5)


# --- batches ------------------------------------------------------------------------------


def test_eval_batches_are_the_normalized_raw_images_in_order_with_weights():
  splits = data.make_splits(tiny_source(n_train=60), val_size=13, seed=1)
  p = pipeline(splits, augmentation=AUG_ALL, eval_batch_size=8, pad_multiple=4)
  batches = list(p.eval_batches())
  assert len(p.eval_batches()) == 2 and len(batches) == 2
  assert [len(b["label"]) for b in batches] == [8, 8]  # 13 = 8 + 5, padded to 8
  images = np.concatenate([b["image"] for b in batches])
  labels = np.concatenate([b["label"] for b in batches])
  weight = np.concatenate([b["weight"] for b in batches])
  assert images.dtype == np.float32 and labels.dtype == np.int32 and weight.dtype == np.float32
  np.testing.assert_array_equal(weight, [1] * 13 + [0] * 3)
  np.testing.assert_array_equal(images[:13], data.normalize(splits.val_images, p.stats))
  np.testing.assert_array_equal(labels[:13], splits.val_labels)
  assert not images[13:].any() and not labels[13:].any()
  # Padding goes only to the next multiple of the device count.
  p1 = pipeline(splits, eval_batch_size=8, pad_multiple=1)
  assert [len(b["label"]) for b in p1.eval_batches()] == [8, 5]
  # A second pass gives the same batches.
  again = np.concatenate([b["image"] for b in p.eval_batches()])
  np.testing.assert_array_equal(again, images)


def test_train_batches_without_augmentation_are_normalized_raw_in_shuffled_order():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  p = pipeline(splits, batch_size=8)
  assert p.steps_per_epoch == 3  # 30 // 8, the remainder dropped
  batches = list(p.train_batches(0))
  assert len(p.train_batches(0)) == 3 and len(batches) == 3
  order = p.train_order(0)
  assert len(set(order.tolist())) == 24 and not np.array_equal(order, np.sort(order))
  reference = data.normalize(splits.train_images, p.stats)
  for k, b in enumerate(batches):
    assert b["image"].shape == (8, 6, 6, 3) and b["image"].dtype == np.float32
    assert b["label"].dtype == np.int32
    rows = order[8 * k:8 * (k + 1)]
    np.testing.assert_array_equal(b["image"], reference[rows])
    np.testing.assert_array_equal(b["label"], splits.train_labels[rows])
  assert not np.array_equal(p.train_order(1), order)  # a new order each epoch


def test_train_batches_with_augmentation_differ_and_keep_labels():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  plain = pipeline(splits)
  augmented = pipeline(splits, augmentation=AUG_ALL)
  for a, b in zip(plain.train_batches(0), augmented.train_batches(0)):
    np.testing.assert_array_equal(a["label"], b["label"])  # same order
    assert a["image"].shape == b["image"].shape
    assert not np.allclose(a["image"], b["image"])


def _stack(batches):
  return [{k: np.asarray(v) for k, v in b.items()} for b in batches]


def test_same_seed_same_batches_other_seed_or_epoch_different():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  a = _stack(pipeline(splits, augmentation=AUG_ALL, seed=4).train_batches(2))
  b = _stack(pipeline(splits, augmentation=AUG_ALL, seed=4).train_batches(2))
  c = _stack(pipeline(splits, augmentation=AUG_ALL, seed=5).train_batches(2))
  d = _stack(pipeline(splits, augmentation=AUG_ALL, seed=4).train_batches(3))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
  assert not np.array_equal(a[0]["image"], c[0]["image"])
  assert not np.array_equal(a[0]["image"], d[0]["image"])


def test_batches_do_not_depend_on_the_process_count():
  """Concatenating 4 processes' slices gives the 1-process global batches."""
  splits = data.make_splits(tiny_source(n_train=50), val_size=10, seed=0)
  single = pipeline(splits, batch_size=8, augmentation=AUG_ALL, seed=2,
                    eval_batch_size=8, pad_multiple=4)
  views = [pipeline(splits, batch_size=8, augmentation=AUG_ALL, seed=2,
                    eval_batch_size=8, pad_multiple=4, process_index=i,
                    process_count=4) for i in range(4)]
  for epoch in (0, 1):
    whole = list(single.train_batches(epoch))
    parts = [list(v.train_batches(epoch)) for v in views]
    assert len(whole) == 5 and all(len(p) == 5 for p in parts)
    for k, batch in enumerate(whole):
      for key in ("image", "label"):
        assert all(len(p[k][key]) == 2 for p in parts)
        np.testing.assert_array_equal(
            np.concatenate([p[k][key] for p in parts]), batch[key])
  whole = list(single.eval_batches())
  parts = [list(v.eval_batches()) for v in views]
  for k, batch in enumerate(whole):
    for key in ("image", "label", "weight"):
      np.testing.assert_array_equal(np.concatenate([p[k][key] for p in parts]),
                                    batch[key])
  with pytest.raises(ValueError, match=r"global batch size 6 must be divisible by "
                     r"the process count 4"):
    pipeline(splits, batch_size=6, process_index=0, process_count=4)


_DEVICE_SCRIPT = r"""
import json, hashlib
import jax
from fdl import data
source = data.load_source("synthetic", seed=1)
splits = data.make_splits(source, val_size=30, seed=1)
p = data.ClassificationPipeline(splits, batch_size=16, seed=7, augmentation=data.AugmentConfig.cifar())
digest = hashlib.sha256()
for epoch in (0, 1):
  for b in p.train_batches(epoch):
    digest.update(b["image"].tobytes()); digest.update(b["label"].tobytes())
print(json.dumps({"devices": jax.device_count(), "train": digest.hexdigest(),
                  "eval_sizes": [len(b["label"]) for b in p.eval_batches()]}))
"""


def test_training_batches_are_the_same_on_1_and_4_devices():
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
             JAX_PLATFORMS="cpu")
  out = subprocess.run([PYTHON, "-c", _DEVICE_SCRIPT], env=env, cwd=REPO_DIR,
                       capture_output=True, text=True, timeout=120, check=True)
  four = json.loads(out.stdout.strip().splitlines()[-1])
  assert four["devices"] == 4
  assert four["eval_sizes"] == [16, 16]  # 30 = 16 + 14, padded to 16 (multiple of 4)
  splits = data.make_splits(data.load_source("synthetic", seed=1), val_size=30, seed=1)
  p = pipeline(splits, batch_size=16, seed=7, augmentation=data.AugmentConfig.cifar())
  digest = hashlib.sha256()
  for epoch in (0, 1):
    for b in p.train_batches(epoch):
      digest.update(b["image"].tobytes())
      digest.update(b["label"].tobytes())
  assert digest.hexdigest() == four["train"]
  assert [len(b["label"]) for b in p.eval_batches()] == [16, 14]


def test_worker_process_gives_the_same_batches():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  inline = _stack(pipeline(splits, augmentation=AUG_ALL).train_batches(1))
  workers = pipeline(splits, augmentation=AUG_ALL, num_workers=1).train_batches(1)
  assert len(workers) == 3
  spawned = _stack(workers)
  assert len(spawned) == 3
  for a, b in zip(inline, spawned):
    assert type(b["image"]) is np.ndarray
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["label"], b["label"])
  partial = iter(workers)  # leaving an epoch early stops the workers
  np.testing.assert_array_equal(next(partial)["image"], inline[0]["image"])
  partial.close()


def test_batch_size_larger_than_the_split_is_named():
  splits = data.make_splits(tiny_source(), val_size=10, seed=0)
  with pytest.raises(ValueError, match=r"batch_size 64 does not fit the train split "
                     r"of 30 examples"):
    pipeline(splits, batch_size=64)
  with pytest.raises(ValueError, match=r"batch_size 6 must be a multiple of 4"):
    pipeline(splits, batch_size=6, pad_multiple=4)
  with pytest.raises(ValueError, match=r"split must be 'val' or 'train'"):
    pipeline(splits).eval_batches("validation")


# --- the sealed test split -------------------------------------------------------------


def test_test_split_is_sealed_from_the_pipeline_and_opened_once():
  source = tiny_source()
  splits = data.make_splits(source, val_size=10, seed=0)
  p = pipeline(splits, augmentation=AUG_ALL)
  held = [v for v in vars(p).values() if isinstance(v, np.ndarray)]
  assert held and not any(np.shares_memory(v, source.test_images) for v in held)
  assert not any(isinstance(v, (data.Splits, data.SealedTestSplit))
                 for v in vars(p).values())
  with pytest.raises(ValueError, match=r"the training pipeline has no test split"):
    p.eval_batches("test")
  assert splits.test.evaluations == 0
  batches = data.test_batches(splits, p.stats, 4, pad_multiple=4)
  assert splits.test.evaluations == 1
  got = list(batches)
  assert len(batches) == 3 and [len(b["label"]) for b in got] == [4, 4, 4]
  images = np.concatenate([b["image"] for b in got])
  weight = np.concatenate([b["weight"] for b in got])
  np.testing.assert_array_equal(weight, [1] * 10 + [0] * 2)
  np.testing.assert_array_equal(images[:10], data.normalize(source.test_images, p.stats))
  with pytest.raises(RuntimeError, match=r"can be iterated only once"):
    list(batches)
  with pytest.raises(RuntimeError, match=r"the test split was already evaluated"):
    data.test_batches(splits, p.stats, 4, pad_multiple=4)
  assert splits.test.evaluations == 1
  assert "evaluations=1" in repr(splits.test)


def test_sealed_test_batches_with_an_extra_archive(tmp_path):
  source = tiny_source()
  splits = data.make_splits(source, val_size=10, seed=0)
  p = pipeline(splits)
  extra = str(tmp_path / "lossless_subset.npz")
  np.savez(extra, x=source.test_images[:3], y=source.test_labels[:3])
  seen = {}
  for name, batches in data.sealed_test_batches(source, splits, p, [extra]):
    seen[name] = np.concatenate([b["label"][b["weight"] > 0] for b in batches])
  assert list(seen) == ["test", "lossless_subset"]
  np.testing.assert_array_equal(seen["test"], source.test_labels)
  np.testing.assert_array_equal(seen["lossless_subset"], source.test_labels[:3])
  assert splits.test.evaluations == 1
  record = p.provenance["test_sets"]
  assert record["test"]["size"] == 10
  assert record["lossless_subset"]["file"]["sha256"] == hashlib.sha256(
      open(extra, "rb").read()).hexdigest()
  bad = str(tmp_path / "bad.npz")
  np.savez(bad, x=source.test_images[:3], y=np.array([0, 1, 9]))
  other = data.make_splits(source, val_size=10, seed=0)
  gen = data.sealed_test_batches(source, other, p, [bad])
  next(gen)
  with pytest.raises(ValueError, match=r"bad.npz: key 'y' must be < 4"):
    next(gen)


# --- provenance -------------------------------------------------------------------------


def test_pipeline_provenance_records_files_splits_stats_and_settings(tmp_path):
  rng = np.random.default_rng(0)
  path = str(tmp_path / "train.npz")
  np.savez(path, x=rng.integers(0, 256, (50, 4, 4, 3), dtype=np.uint8),
           y=np.arange(50) % 5)
  source = data.load_source("npz", train_file=path)
  splits = data.make_splits(source, val_size=10, seed=9)
  p = pipeline(splits, augmentation={"crop_padding": 1, "flip": True}, seed=3)
  record = json.loads(json.dumps(p.provenance))  # JSON-serializable
  assert record["source"]["source"] == "npz"
  assert record["source"]["files"][0]["sha256"] == hashlib.sha256(
      open(path, "rb").read()).hexdigest()
  assert record["source"]["sizes"] == {"train": 50, "test": None}
  assert record["splits"]["sizes"] == {"train": 33, "val": 10, "test": 7}
  assert record["splits"]["seed"] == 9
  assert set(record["splits"]["index_sha256"]) == {"train", "val", "test"}
  assert record["normalization"]["mean"] == p.stats.mean.tolist()
  assert record["augmentation"]["crop_padding"] == 1 and record["augmentation"]["flip"]
  assert record["augmentation"]["rotation_degrees"] == 0.0
  assert record["batching"]["seed"] == 3 and record["batching"]["steps_per_epoch"] == 4
  assert p.input_shape == (4, 4, 3) and p.num_classes == 5
