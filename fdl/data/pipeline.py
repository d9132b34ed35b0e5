"""The grain input pipeline of image classification, and the test split's batches.

The second half of the data path of an honest experiment, on top of the splits
and normalization statistics of `fdl.data.splits`:

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

import os
from typing import Any, Callable, Iterable, Iterator, Mapping

import grain
import numpy as np

from fdl.data.batching import process_slice
from fdl.data import provenance as prov
from fdl.data import sources as sources_lib
from fdl.data.augment import AugmentConfig, as_augment_config, augment_image
from fdl.data.splits import NormStats, Splits, compute_norm_stats, normalize


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
    rows = process_slice(size, process_index, process_count)
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
  (`fdl.data.batching.process_slice`) of every global batch, so the examples and their
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
    process_slice(self.batch_size, *self._process)  # checks divisibility now
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
    rows = process_slice(self.batch_size, *self._process)
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
