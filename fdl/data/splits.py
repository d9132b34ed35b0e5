"""Train/validation/test splits and normalization statistics of image data.

The first half of the data path of an honest experiment (`fdl.data.pipeline`
batches what it returns):

1. `make_splits`: validation carved from the training data by seed; the test
   split (official, or carved when the data has none) is sealed in a
   `SealedTestSplit` that the training pipeline never sees. `plan_splits`
   chooses the rows.
2. `compute_norm_stats`: per-channel mean and std of the training split only;
   `normalize` applies them.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from fdl.data import provenance as prov
from fdl.data import sources as sources_lib


# Validation fraction when val_size does not fit the data (and test fraction
# for data without an official test split): 0.70 / 0.15 / 0.15.
DEFAULT_VAL_FRACTION = 0.15


# --- normalization -------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class NormStats:
  """Per-channel statistics of the training images, in [0, 1] units.

  Attributes:
    mean: float64 ``[C]``.
    std: float64 ``[C]``, population std (ddof 0) over all training pixels.
  """

  mean: np.ndarray
  std: np.ndarray

  def to_dict(self) -> dict[str, list[float]]:
    return {"mean": self.mean.tolist(), "std": self.std.tolist()}


def compute_norm_stats(images: np.ndarray) -> NormStats:
  """Per-channel mean and std of uint8 `images` ``[N, H, W, C]`` over all pixels.

  Sums are exact integers, so the result is the float64 mean/std of
  ``images / 255`` correctly rounded, without a float64 copy of the data.

  >>> x = np.array([0, 255], np.uint8).reshape(2, 1, 1, 1)
  >>> s = compute_norm_stats(x); s.mean.tolist(), s.std.tolist()
  ([0.5], [0.5])
  """
  if images.dtype != np.uint8 or images.ndim != 4 or not len(images):
    raise ValueError(f"images must be non-empty uint8 [N, H, W, C]; got "
                     f"{images.dtype} {images.shape}")
  channels = images.shape[-1]
  # Per-channel histograms of the 256 grey levels give exact sums of x and x^2.
  hist = np.zeros((channels, 256), np.int64)
  for start in range(0, len(images), 2048):
    chunk = images[start:start + 2048].reshape(-1, channels)
    for c in range(channels):
      hist[c] += np.bincount(chunk[:, c], minlength=256)
  levels = np.arange(256, dtype=np.int64)
  total = [int(t) for t in hist @ levels]
  squares = [int(q) for q in hist @ (levels * levels)]
  count = images.size // channels
  mean = np.array([t / (count * 255) for t in total])
  # count^2 * 255^2 * var = count * sum(x^2) - sum(x)^2, exactly in integers.
  var = np.array([(count * q - t * t) / (count * count * 255 * 255)
                  for t, q in zip(total, squares)])
  std = np.sqrt(var)
  if np.any(std == 0):
    raise ValueError(f"training images have a constant channel (std {std.tolist()}); "
                     "cannot normalize")
  return NormStats(mean=mean, std=std)


def normalize(images: np.ndarray, stats: NormStats) -> np.ndarray:
  """``(images / 255 - mean) / std`` in float32, per channel (last axis)."""
  mean = stats.mean.astype(np.float32)
  std = stats.std.astype(np.float32)
  return (images.astype(np.float32) / np.float32(255.0) - mean) / std


# --- splits --------------------------------------------------------------------


class SealedTestSplit:
  """The held-out test examples, handed out once.

  `open` returns the arrays the first time and raises afterwards, and
  `evaluations` counts the openings, so a test can assert that a run looked
  at its test split exactly once. The arrays are kept out of ``repr``.
  """

  def __init__(self, images: np.ndarray, labels: np.ndarray, origin: str):
    self._images = images
    self._labels = labels
    self.origin = origin
    self.evaluations = 0

  @property
  def size(self) -> int:
    return int(len(self._labels))

  @property
  def image_shape(self) -> tuple[int, ...]:
    return tuple(self._images.shape[1:])

  def open(self) -> tuple[np.ndarray, np.ndarray]:
    """``(images uint8 [M, H, W, C], labels int32 [M])``, the first time only.

    Raises:
      RuntimeError: the split was opened before.
    """
    if self.evaluations:
      raise RuntimeError(
          "the test split was already evaluated once; it is sealed so that no "
          "choice (model, epoch, hyperparameter) can be made on it. Use the "
          "validation split for model selection.")
    self.evaluations += 1
    return self._images, self._labels

  def __repr__(self):
    return (f"SealedTestSplit({self.size} examples, {self.origin}, "
            f"evaluations={self.evaluations})")


@dataclasses.dataclass(frozen=True, eq=False)
class Splits:
  """Train and validation arrays, and the sealed test split.

  Attributes:
    train_images, val_images: uint8 ``[N, H, W, C]``.
    train_labels, val_labels: int32 ``[N]``.
    train_indices, val_indices: int64 rows of the source array they came from
      (the official training split, or all the data when there is no test
      split), sorted.
    test: the `SealedTestSplit`.
    num_classes, class_names: from the source.
    provenance: source record plus ``splits`` (seed, sizes, rules, index
      digests).
  """

  train_images: np.ndarray
  train_labels: np.ndarray
  val_images: np.ndarray
  val_labels: np.ndarray
  train_indices: np.ndarray
  val_indices: np.ndarray
  test: SealedTestSplit
  num_classes: int
  class_names: tuple[str, ...]
  provenance: dict

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.train_images.shape[1:])

  def __repr__(self):
    return (f"Splits(train={len(self.train_labels)}, val={len(self.val_labels)}, "
            f"test={self.test.size}, image_shape={self.image_shape})")


@dataclasses.dataclass(frozen=True)
class SplitPlan:
  """Which rows go where; see `plan_splits`.

  Attributes:
    train, val: sorted int64 rows of the pool they are carved from.
    test: sorted int64 rows for a carved test split, or None when the data
      has an official test split.
    val_rule: how the validation size was chosen, e.g. ``"val_size=5000"``.
  """

  train: np.ndarray
  val: np.ndarray
  test: np.ndarray | None
  val_rule: str


def plan_splits(num_examples: int, *, has_test: bool,
                val_size: int | None = 5000,
                val_fraction: float | None = None,
                test_fraction: float = DEFAULT_VAL_FRACTION,
                seed: int) -> SplitPlan:
  """Disjoint random train/val(/test) rows of ``range(num_examples)``.

  The validation split has `val_size` examples when that is at most half of
  what remains for training and validation; otherwise (small data sets, or
  `val_size` None) ``floor(val_fraction * num_examples)`` with `val_fraction`
  defaulting to 0.15. Without an official test split (`has_test` False) a test
  split of ``floor(test_fraction * num_examples)`` is carved first.

  Args:
    num_examples: size of the pool (the official training split, or all data).
    has_test: whether the data set has its own test split.
    val_size: validation examples, e.g. 5,000 of CIFAR's 50,000.
    val_fraction: fallback fraction of `num_examples` for validation.
    test_fraction: fraction carved for test when `has_test` is False.
    seed: seed of the permutation; same seed, same rows.

  Returns:
    A `SplitPlan`.

  >>> p = plan_splits(50_000, has_test=True, seed=0)
  >>> len(p.train), len(p.val), p.test, p.val_rule
  (45000, 5000, None, 'val_size=5000')
  >>> p = plan_splits(1797, has_test=False, seed=0)
  >>> len(p.train), len(p.val), len(p.test), p.val_rule
  (1259, 269, 269, 'val_fraction=0.15')
  """
  if seed < 0:
    raise ValueError(f"seed must be >= 0; got {seed}")
  fraction = DEFAULT_VAL_FRACTION if val_fraction is None else float(val_fraction)
  if not 0 < fraction < 1:
    raise ValueError(f"val_fraction must be in (0, 1); got {val_fraction!r}")
  if not has_test and not 0 < test_fraction < 1:
    raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
  if val_size is not None and (int(val_size) != val_size or val_size < 1):
    raise ValueError(f"val_size must be an integer >= 1 or None; got {val_size!r}")
  num_test = 0 if has_test else int(math.floor(test_fraction * num_examples))
  pool = num_examples - num_test
  if val_size is not None and val_size <= pool // 2:
    num_val, rule = int(val_size), f"val_size={int(val_size)}"
  else:
    num_val, rule = int(math.floor(fraction * num_examples)), f"val_fraction={fraction:g}"
  num_train = pool - num_val
  if min(num_train, num_val) < 1 or (not has_test and num_test < 1):
    raise ValueError(
        f"{num_examples} examples are too few to split: train {num_train}, val "
        f"{num_val}" + ("" if has_test else f", test {num_test}"))
  order = np.random.default_rng(seed).permutation(num_examples)
  test = None if has_test else np.sort(order[:num_test])
  val = np.sort(order[num_test:num_test + num_val])
  train = np.sort(order[num_test + num_val:])
  return SplitPlan(train=train, val=val, test=test, val_rule=rule)


def make_splits(source: sources_lib.Source, *, val_size: int | None = 5000,
                val_fraction: float | None = None,
                test_fraction: float = DEFAULT_VAL_FRACTION, seed: int) -> Splits:
  """Deterministic, disjoint train/validation/test splits of a `Source`.

  Validation always comes out of the training data (see `plan_splits` for the
  sizes: CIFAR's 50,000 give 45,000 / 5,000). The official test split becomes
  the sealed test split untouched; data without one (digits) is split
  0.70 / 0.15 / 0.15 by default.

  Args:
    source: the loaded data.
    val_size: validation examples when that fits (at most half the pool).
    val_fraction: fraction used otherwise (default 0.15).
    test_fraction: test fraction for data without an official test split.
    seed: same seed, same splits.

  Returns:
    `Splits`; the test arrays only inside its sealed `test`.

  >>> s = make_splits(sources_lib.load_source("digits"), seed=0)
  >>> len(s.train_labels), len(s.val_labels), s.test.size
  (1259, 269, 269)
  """
  has_test = source.test_images is not None
  plan = plan_splits(len(source.train_labels), has_test=has_test,
                     val_size=val_size, val_fraction=val_fraction,
                     test_fraction=test_fraction, seed=seed)
  x, y = source.train_images, source.train_labels
  if has_test:
    test = SealedTestSplit(source.test_images, source.test_labels,
                           "official test split")
    test_rule = "official test split"
  else:
    test = SealedTestSplit(x[plan.test], y[plan.test],
                           f"carved from the data, test_fraction={test_fraction:g}")
    test_rule = test.origin
  digests = {"train": prov.sha256_arrays(plan.train),
             "val": prov.sha256_arrays(plan.val)}
  if plan.test is not None:
    digests["test"] = prov.sha256_arrays(plan.test)
  record = {
      "source": source.provenance,
      "splits": {
          "seed": int(seed),
          "sizes": {"train": int(len(plan.train)), "val": int(len(plan.val)),
                    "test": test.size},
          "val_rule": plan.val_rule,
          "test_rule": test_rule,
          "index_sha256": digests,
      },
  }
  return Splits(train_images=x[plan.train], train_labels=y[plan.train],
                val_images=x[plan.val], val_labels=y[plan.val],
                train_indices=plan.train, val_indices=plan.val, test=test,
                num_classes=source.num_classes, class_names=source.class_names,
                provenance=record)
