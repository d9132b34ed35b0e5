"""Toy point sets, deterministic splits and epoch batches."""

import numpy as np
import pytest

from fdl import data


@pytest.mark.parametrize("name", ["moons", "xor"])
def test_toy_dataset_shapes_balance_and_determinism(name):
  x, y = data.make_toy_dataset(name, 301, noise=0.1, seed=4)
  assert x.shape == (301, 2) and x.dtype == np.float32
  assert y.shape == (301,) and y.dtype == np.int32
  assert set(np.unique(y)) == {0, 1}
  assert 0.35 < y.mean() < 0.65
  x2, y2 = data.make_toy_dataset(name, 301, noise=0.1, seed=4)
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  x3, _ = data.make_toy_dataset(name, 301, noise=0.1, seed=5)
  assert not np.array_equal(x, x3)


def test_noise_free_moons_lie_on_their_circles():
  x, y = data.two_moons(200, noise=0.0, seed=0)
  r0 = np.linalg.norm(x[y == 0], axis=1)
  r1 = np.linalg.norm(x[y == 1] - np.array([1.0, 0.5]), axis=1)
  np.testing.assert_allclose(r0, 1.0, rtol=1e-5)
  np.testing.assert_allclose(r1, 1.0, rtol=1e-5)
  assert (x[y == 0, 1] >= -1e-6).all() and (x[y == 1, 1] <= 0.5 + 1e-6).all()


def test_xor_label_is_sign_disagreement():
  x, y = data.xor(500, noise=0.05, seed=1)
  np.testing.assert_array_equal(y, (x[:, 0] * x[:, 1] < 0).astype(np.int32))


def test_splits_are_disjoint_complete_and_deterministic():
  parts = data.split_indices(103, (0.6, 0.2, 0.2), seed=3)
  assert [len(p) for p in parts] == [63, 20, 20]
  joined = np.concatenate(parts)
  assert len(set(joined.tolist())) == 103 and sorted(joined.tolist()) == list(range(103))
  again = data.split_indices(103, (0.6, 0.2, 0.2), seed=3)
  for a, b in zip(parts, again):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match=r"fractions must be positive and sum to 1"):
    data.split_indices(10, (0.5, 0.4), seed=0)


def test_epoch_batches_cover_each_example_once_per_epoch():
  arrays = {"image": np.arange(10, dtype=np.float32)[:, None],
            "label": np.arange(10, dtype=np.int32)}
  e0 = data.epoch_batches(arrays, 3, seed=1, epoch=0)
  assert [len(b["label"]) for b in e0] == [3, 3, 3]
  seen = np.concatenate([b["label"] for b in e0])
  assert len(set(seen.tolist())) == 9
  for b in e0:  # images and labels stay paired
    np.testing.assert_array_equal(b["image"][:, 0], b["label"])
  e1 = data.epoch_batches(arrays, 3, seed=1, epoch=1)
  assert not np.array_equal(seen, np.concatenate([b["label"] for b in e1]))
  again = data.epoch_batches(arrays, 3, seed=1, epoch=0)
  np.testing.assert_array_equal(seen, np.concatenate([b["label"] for b in again]))
  ordered = data.epoch_batches(arrays, 4, seed=None, drop_remainder=False)
  assert [b["label"].tolist() for b in ordered] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


@pytest.mark.parametrize("call, match", [
    (lambda: data.make_toy_dataset("spirals", 10, noise=0.1, seed=0), r"dataset must be one of \('moons', 'xor'\); got 'spirals'"),
    (lambda: data.two_moons(1), r"num_points must be an integer >= 2; got 1"),
    (lambda: data.xor(10, noise=-1.0), r"noise must be >= 0; got -1.0"),
    (lambda: data.epoch_batches({"a": np.zeros(4)}, 5, seed=0), r"batch_size must be in \[1, 4\].*got 5"),
    (lambda: data.epoch_batches({"a": np.zeros(4), "b": np.zeros(3)}, 2, seed=0), r"arrays must have equal lengths"),
])
def test_bad_arguments(call, match):
  with pytest.raises(ValueError, match=match):
    call()
