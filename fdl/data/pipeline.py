"""Splits, normalization and the grain input pipeline of image classification.

The data path of an honest experiment, in order:

1. `make_splits`: validation carved from the training data by seed; the test
   split (official, or carved when the data has none) is sealed in a
   `SealedTestSplit` that the training pipeline never sees.
2. `compute_norm_stats`: per-channel mean and std of the training split only.
3. `ClassificationPipeline`: shuffled, augmented, normalized global batches per
   epoch from grain, each process taking its slice; ordered, padded and
   weighted evaluation batches of the validation split.
4. `test_batches` / `sealed_test_batches`: the test split, once, after training.

Batches are dicts of host NumPy arrays: ``image`` float32 ``[b, H, W, C]``,
``label`` int32 ``[b]`` and, in evaluation, ``weight`` float32 ``[b]`` (0 for
padding). With several processes, `b` is this process's share of the global
batch and the global batch is the concatenation in process order.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, Callable, Iterable, Iterator, Mapping

import grain
import numpy as np

from fdl.data import provenance as prov
from fdl.data import sources as sources_lib
from fdl.data.augment import AugmentConfig, as_augment_config, augment_image

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


# --- batches -------------------------------------------------------------------


class Batches:
  """A sized iterable of host batches: ``len()`` is the number of steps.

  Each ``iter()`` starts a fresh pass, except for single-pass batches (the
  test split), whose second ``iter()`` raises `RuntimeError`.
  """

  def __init__(self, make_iterator: Callable[[], Iterator[dict]], length: int,
               *, single_pass: bool = False, description: str = ""):
    self._make_iterator = make_iterator
    self._length = int(length)
    self._single_pass = single_pass
    self._passes = 0
    self.description = description

  def __len__(self) -> int:
    return self._length

  def __iter__(self) -> Iterator[dict]:
    if self._single_pass and self._passes:
      raise RuntimeError(f"{self.description or 'these batches'} can be "
                         "iterated only once")
    self._passes += 1
    return self._make_iterator()

  def __repr__(self):
    return f"Batches({self.description!r}, {self._length} steps)"


def _rows(global_size: int, process_index: int | None,
          process_count: int | None) -> slice:
  """This process's rows of a global batch of `global_size` examples."""
  if process_index is None and process_count is None:
    # Imported here: fdl.train's trainer imports fdl.data, and the data package
    # must stay importable without the training package being initialized.
    from fdl.train.distributed import process_slice  # pylint: disable=g-import-not-at-top
    return process_slice(global_size)
  if global_size % process_count:
    raise ValueError(f"global batch size {global_size} must be divisible by the "
                     f"process count {process_count}")
  per = global_size // process_count
  return slice(process_index * per, (process_index + 1) * per)


def _eval_iterator(images: np.ndarray, labels: np.ndarray, stats: NormStats,
                   batch_size: int, pad_multiple: int,
                   process_index: int | None, process_count: int | None
                   ) -> Iterator[dict]:
  n = len(labels)
  for start in range(0, n, batch_size):
    real = min(batch_size, n - start)
    size = -(-real // pad_multiple) * pad_multiple
    image = np.zeros((size,) + images.shape[1:], np.float32)
    image[:real] = normalize(images[start:start + real], stats)
    label = np.zeros(size, np.int32)
    label[:real] = labels[start:start + real]
    weight = np.zeros(size, np.float32)
    weight[:real] = 1.0
    rows = _rows(size, process_index, process_count)
    yield {"image": image[rows], "label": label[rows], "weight": weight[rows]}


def _eval_batches(images, labels, stats, batch_size, pad_multiple,
                  process_index, process_count, *, single_pass=False,
                  description="") -> Batches:
  if batch_size < 1 or batch_size % pad_multiple:
    raise ValueError(f"evaluation batch_size must be a positive multiple of "
                     f"{pad_multiple} (the device count); got {batch_size}")
  steps = -(-len(labels) // batch_size)
  return Batches(
      lambda: _eval_iterator(images, labels, stats, batch_size, pad_multiple,
                             process_index, process_count),
      steps, single_pass=single_pass, description=description)


class _LabeledArrays:
  """Random-access source of ``(image, label)`` pairs for grain."""

  def __init__(self, images: np.ndarray, labels: np.ndarray):
    self.images = images
    self.labels = labels

  def __len__(self) -> int:
    return len(self.labels)

  def __getitem__(self, index):
    return self.images[index], self.labels[index]


class _TrainTransform:
  """Normalize, then augment one example; picklable for grain workers."""

  def __init__(self, stats: NormStats, augmentation: AugmentConfig):
    self.stats = stats
    self.augmentation = augmentation

  def __call__(self, element, rng: np.random.Generator) -> dict:
    image, label = element
    image = normalize(image, self.stats)
    if self.augmentation.enabled:
      image = augment_image(image, rng, self.augmentation)
    return {"image": np.ascontiguousarray(image, np.float32),
            "label": np.int32(label)}


def _epoch_seeds(seed: int, epoch: int) -> tuple[int, int]:
  """Independent (shuffle, augmentation) seeds for one epoch of a run."""
  shuffle, augment = np.random.SeedSequence([seed, epoch]).generate_state(2)
  return int(shuffle), int(augment)


def _parse_absl_flags() -> None:
  # grain's worker start-up reads an absl flag; outside absl.app (tests,
  # notebooks) flags are unparsed and reading one raises. Parsing no arguments
  # leaves every flag at its default.
  from absl import flags  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class ClassificationPipeline:
  """Training and validation batches of an image classification run.

  Training batches of epoch `e` are a function of ``(seed, e)`` only: grain
  shuffles the training split with a seed drawn from ``(seed, e)``, augments
  each example with a generator seeded by ``(seed, e)`` and its position, and
  groups examples into global batches of `batch_size` (the remainder is
  dropped so every step has one shape). Each process then takes its rows
  (`fdl.train.process_slice`) of every global batch, so the examples and their
  augmentation draws do not depend on the process or device count. Only this
  process's rows are computed.

  The pipeline holds the training and validation arrays only; the test split
  stays sealed in `Splits.test` (see `test_batches`).

  Args:
    splits: from `make_splits`.
    batch_size: GLOBAL batch size of training (and, by default, evaluation);
      a multiple of `pad_multiple`.
    seed: seed of shuffling and augmentation (>= 0).
    augmentation: an `AugmentConfig`, a dict of its fields, or None (off).
    num_workers: grain worker processes for training batches; 0 computes them
      in this process.
    eval_batch_size: global batch size of evaluation (default `batch_size`).
    stats: normalization statistics; default: `compute_norm_stats` of the
      training split.
    pad_multiple: evaluation batches are padded to a multiple of this
      (default ``jax.device_count()``, which sharding needs).
    process_index, process_count: default ``jax.process_index()`` and
      ``jax.process_count()``; set them to build another process's view.
  """

  def __init__(self, splits: Splits, *, batch_size: int, seed: int,
               augmentation: AugmentConfig | Mapping[str, Any] | None = None,
               num_workers: int = 0, eval_batch_size: int | None = None,
               stats: NormStats | None = None, pad_multiple: int | None = None,
               process_index: int | None = None,
               process_count: int | None = None):
    if (process_index is None) != (process_count is None):
      raise ValueError("process_index and process_count go together")
    if process_count is not None and not 0 <= process_index < process_count:
      raise ValueError(f"process_index must be in [0, {process_count}); got "
                       f"{process_index}")
    if int(seed) != seed or seed < 0:
      raise ValueError(f"seed must be an integer >= 0; got {seed!r}")
    if int(num_workers) != num_workers or num_workers < 0:
      raise ValueError(f"num_workers must be an integer >= 0; got {num_workers!r}")
    if pad_multiple is None:
      import jax  # pylint: disable=g-import-not-at-top
      pad_multiple = jax.device_count()
    self._train_images = splits.train_images
    self._train_labels = splits.train_labels
    self._val_images = splits.val_images
    self._val_labels = splits.val_labels
    num_train = len(self._train_labels)
    if not 1 <= batch_size <= num_train:
      raise ValueError(
          f"batch_size {batch_size} does not fit the train split of {num_train} "
          f"examples; choose batch_size in [1, {num_train}]")
    if batch_size % pad_multiple:
      raise ValueError(f"batch_size {batch_size} must be a multiple of "
                       f"{pad_multiple} (the device count)")
    self.batch_size = int(batch_size)
    self.eval_batch_size = int(eval_batch_size or batch_size)
    if self.eval_batch_size % pad_multiple:
      raise ValueError(f"eval_batch_size {self.eval_batch_size} must be a "
                       f"multiple of {pad_multiple} (the device count)")
    self.seed = int(seed)
    self.num_workers = int(num_workers)
    self.augmentation = as_augment_config(augmentation)
    self.pad_multiple = int(pad_multiple)
    self._process = (process_index, process_count)
    _rows(self.batch_size, *self._process)  # checks divisibility now
    self.stats = stats if stats is not None else compute_norm_stats(
        self._train_images)
    self.num_classes = splits.num_classes
    self.class_names = splits.class_names
    self.input_shape = tuple(int(d) for d in splits.image_shape)
    self.steps_per_epoch = num_train // self.batch_size
    self.provenance = prov.to_jsonable({
        **splits.provenance,
        "normalization": {
            **self.stats.to_dict(),
            "computed_on": f"train split ({num_train} images), all pixels",
            "formula": "(x / 255 - mean) / std, float32, per channel",
        },
        "augmentation": {
            **self.augmentation.to_dict(), "applied_to": "train split only",
            "order": ["normalize", "rotation/scale (bilinear)", "padded crop",
                      "flip", "cutout"],
        },
        "batching": {
            "seed": self.seed, "global_batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "steps_per_epoch": self.steps_per_epoch,
            "dropped_per_epoch": num_train - self.steps_per_epoch * self.batch_size,
            "eval_padding_multiple": self.pad_multiple,
            "shuffle": "grain MapDataset.shuffle, seeded per (seed, epoch)",
        },
    })

  # -- training ------------------------------------------------------------------

  def _train_dataset(self, epoch: int) -> grain.MapDataset:
    shuffle_seed, augment_seed = _epoch_seeds(self.seed, epoch)
    ds = grain.MapDataset.source(
        _LabeledArrays(self._train_images, self._train_labels))
    ds = ds.shuffle(seed=shuffle_seed)
    ds = ds.random_map(_TrainTransform(self.stats, self.augmentation),
                       seed=augment_seed)
    # Global batch k is examples [k*B, (k+1)*B) of the shuffled epoch; this
    # process's rows of it are batch k*count + index of batches of B/count,
    # so slicing that strided view equals building the global batch and
    # slicing it, without computing the other processes' examples.
    rows = _rows(self.batch_size, *self._process)
    per = rows.stop - rows.start
    count = self.batch_size // per
    ds = ds.batch(per, drop_remainder=True)
    return ds[rows.start // per:self.steps_per_epoch * count:count]

  def train_order(self, epoch: int) -> np.ndarray:
    """Rows of the training split in the order epoch `epoch` feeds them.

    Returns:
      int64 ``[steps_per_epoch * batch_size]``: global batch k is
      ``train_images[order[k * batch_size:(k + 1) * batch_size]]``.
    """
    shuffle_seed, _ = _epoch_seeds(self.seed, epoch)
    ds = grain.MapDataset.range(len(self._train_labels)).shuffle(seed=shuffle_seed)
    return np.array([ds[i] for i in range(self.steps_per_epoch * self.batch_size)],
                    np.int64)

  def train_batches(self, epoch: int) -> Batches:
    """This process's training batches of epoch `epoch` (0-based).

    Returns:
      `Batches` of ``{"image": float32 [b, H, W, C], "label": int32 [b]}``
      with ``b = batch_size / process_count``; ``len()`` is
      `steps_per_epoch`.
    """
    if int(epoch) != epoch or epoch < 0:
      raise ValueError(f"epoch must be an integer >= 0; got {epoch!r}")
    ds = self._train_dataset(int(epoch))

    def iterate():
      if self.num_workers == 0:
        for i in range(len(ds)):
          yield ds[i]
        return
      _parse_absl_flags()
      iterator = iter(ds.to_iter_dataset().mp_prefetch(
          grain.MultiprocessingOptions(num_workers=self.num_workers)))
      try:
        for batch in iterator:
          # Worker batches live in shared memory that grain may recycle; own them.
          yield {k: np.array(v) for k, v in batch.items()}
      finally:
        # Stops the workers at once when the loop leaves the epoch early.
        iterator.close()

    return Batches(iterate, self.steps_per_epoch,
                   description=f"train epoch {epoch}")

  # -- evaluation ----------------------------------------------------------------

  def eval_batches(self, split: str = "val") -> Batches:
    """Ordered, unaugmented batches of the validation (or training) split.

    Every example appears exactly once; the last batch is padded to a multiple
    of `pad_multiple` with zero images whose ``weight`` is 0.

    Args:
      split: ``"val"``, or ``"train"`` to measure the fit without augmentation.

    Returns:
      `Batches` of ``{"image": float32 [b, H, W, C], "label": int32 [b],
      "weight": float32 [b]}``.
    """
    if split == "val":
      images, labels = self._val_images, self._val_labels
    elif split == "train":
      images, labels = self._train_images, self._train_labels
    elif split == "test":
      raise ValueError("the training pipeline has no test split; it is sealed "
                       "in Splits.test and read once by test_batches()")
    else:
      raise ValueError(f"split must be 'val' or 'train'; got {split!r}")
    return _eval_batches(images, labels, self.stats, self.eval_batch_size,
                         self.pad_multiple, *self._process,
                         description=f"{split} split")

  def __repr__(self):
    return (f"ClassificationPipeline(train={len(self._train_labels)}, "
            f"val={len(self._val_labels)}, batch_size={self.batch_size}, "
            f"steps_per_epoch={self.steps_per_epoch}, "
            f"augmentation={self.augmentation})")


# --- the sealed test split -------------------------------------------------------


def test_batches(splits: Splits, stats: NormStats, batch_size: int, *,
                 pad_multiple: int | None = None,
                 process_index: int | None = None,
                 process_count: int | None = None) -> Batches:
  """Opens the sealed test split: ordered, normalized, padded and weighted batches.

  Call it once, after training; `splits.test.evaluations` counts the calls
  and a second one raises. The returned batches can be iterated only once.

  Args:
    splits: from `make_splits`.
    stats: the training split's statistics (``pipeline.stats``).
    batch_size: global evaluation batch size, a multiple of `pad_multiple`.
    pad_multiple, process_index, process_count: as in `ClassificationPipeline`.

  Returns:
    Single-pass `Batches` like `ClassificationPipeline.eval_batches`.

  Raises:
    RuntimeError: the test split was opened before.
  """
  if pad_multiple is None:
    import jax  # pylint: disable=g-import-not-at-top
    pad_multiple = jax.device_count()
  images, labels = splits.test.open()
  return _eval_batches(images, labels, stats, batch_size, pad_multiple,
                       process_index, process_count, single_pass=True,
                       description="test split")


test_batches.__test__ = False  # a library function, not a pytest test


def sealed_test_batches(source: sources_lib.Source, splits: Splits,
                        pipeline: ClassificationPipeline,
                        extra_test_files: Iterable[str] = ()
                        ) -> Iterator[tuple[str, Batches]]:
  """The test split and any extra npz test archives, each once, by name.

  Yields ``("test", batches)`` for the sealed split of `splits`, then
  ``(file stem, batches)`` for each extra archive (for example the lossless
  CIFAR-10 test subset next to a lossy full test set). Extra archives must
  match the image shape and class count of `source`; they are read only when
  reached. Their file records are added to ``pipeline.provenance["test_sets"]``.
  """
  record = pipeline.provenance.setdefault("test_sets", {})
  record["test"] = {"size": splits.test.size, "origin": splits.test.origin}
  process = pipeline._process  # pylint: disable=protected-access
  yield "test", test_batches(splits, pipeline.stats, pipeline.eval_batch_size,
                             pad_multiple=pipeline.pad_multiple,
                             process_index=process[0], process_count=process[1])
  for path in extra_test_files:
    name = os.path.splitext(os.path.basename(path))[0]
    if name in record:
      raise ValueError(f"two test sets named {name!r}; rename {path}")
    arrays = sources_lib.read_npz(path)
    if arrays["images"].shape[1:] != source.image_shape:
      raise ValueError(f"{path}: key 'x' images are {arrays['images'].shape[1:]}; "
                       f"the training data's are {source.image_shape}")
    if len(arrays["labels"]) and arrays["labels"].max() >= source.num_classes:
      raise ValueError(f"{path}: key 'y' must be < {source.num_classes}; got "
                       f"maximum {arrays['labels'].max()}")
    if arrays["classes"] is not None and arrays["classes"] != source.class_names:
      raise ValueError(f"{path}: key 'classes' {arrays['classes']} differs from "
                       f"the training data's {source.class_names}")
    record[name] = {"size": int(len(arrays["labels"])),
                    "file": prov.file_record(path)}
    yield name, _eval_batches(
        arrays["images"], arrays["labels"], pipeline.stats,
        pipeline.eval_batch_size, pipeline.pad_multiple, *process,
        single_pass=True, description=f"test set {name}")
