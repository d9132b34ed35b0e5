"""Deterministic splits and mini-batches of in-memory arrays."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def split_indices(num_examples: int, fractions: Sequence[float], *, seed: int
                  ) -> list[np.ndarray]:
  """Disjoint random index sets covering ``range(num_examples)``.

  Args:
    num_examples: size of the data set.
    fractions: one fraction per split, summing to 1, e.g. ``(0.6, 0.2, 0.2)``.
      Sizes are rounded down and the remainder goes to the first split.
    seed: seed of the permutation; same seed, same splits.

  Returns:
    One sorted int64 index array per split.
  """
  fractions = tuple(float(f) for f in fractions)
  if any(f <= 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
    raise ValueError(
        f"fractions must be positive and sum to 1; got {fractions}")
  order = np.random.default_rng(seed).permutation(num_examples)
  sizes = [int(np.floor(f * num_examples)) for f in fractions]
  sizes[0] += num_examples - sum(sizes)
  if min(sizes) < 1:
    raise ValueError(
        f"every split needs at least one example; {num_examples} examples with "
        f"fractions {fractions} give sizes {sizes}")
  bounds = np.cumsum([0] + sizes)
  return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def epoch_batches(arrays: Mapping[str, np.ndarray], batch_size: int, *,
                  seed: int | None, epoch: int = 0,
                  drop_remainder: bool = True) -> list[dict]:
  """The mini-batches of one epoch, shuffled as a function of ``(seed, epoch)``.

  Args:
    arrays: equal-length arrays, e.g. ``{"image": x, "label": y}``.
    batch_size: examples per batch (>= 1, at most the number of examples).
    seed: shuffling seed; None keeps the order (for evaluation).
    epoch: the epoch; each epoch gets its own permutation.
    drop_remainder: drop the last partial batch (training keeps shapes fixed
      so the step compiles once).

  Returns:
    A list of dicts of arrays with leading dimension `batch_size` (the last
    one smaller when `drop_remainder` is False).
  """
  lengths = {k: len(v) for k, v in arrays.items()}
  if len(set(lengths.values())) != 1:
    raise ValueError(f"arrays must have equal lengths; got {lengths}")
  n = next(iter(lengths.values()))
  if not 1 <= batch_size <= n:
    raise ValueError(
        f"batch_size must be in [1, {n}] (the number of examples); got {batch_size}")
  order = np.arange(n) if seed is None else np.random.default_rng(
      [seed, epoch]).permutation(n)
  stop = n - n % batch_size if drop_remainder else n
  return [{k: v[order[i:i + batch_size]] for k, v in arrays.items()}
          for i in range(0, stop, batch_size)]


def process_slice(global_batch_size: int, process_index: int | None = None,
                  process_count: int | None = None) -> slice:
  """The rows of a global batch that one process feeds, in process order.

  Process ``i`` of ``n`` feeds rows ``[i * B / n, (i + 1) * B / n)`` of every global
  batch of ``B`` examples; every pipeline and step of fdl follows this one rule.

  Args:
    global_batch_size: ``B``, the examples of one step over all processes.
    process_index, process_count: given together, or both None for this process
      (``jax.process_index()`` of ``jax.process_count()``).

  Raises:
    ValueError: only one of the two given, an index outside ``[0, n)``, or ``B`` not
      divisible by ``n``.
  """
  if (process_index is None) != (process_count is None):
    raise ValueError("process_index and process_count go together")
  if process_count is None:
    import jax  # pylint: disable=g-import-not-at-top  (the data package imports without it)
    process_index, process_count = jax.process_index(), jax.process_count()
  if not 0 <= process_index < process_count:
    raise ValueError(f"process_index must be in [0, {process_count}); got {process_index}")
  if global_batch_size % process_count:
    raise ValueError(f"global batch size {global_batch_size} must be divisible by the "
                     f"process count {process_count}")
  per = global_batch_size // process_count
  return slice(process_index * per, (process_index + 1) * per)
