"""Timing of compiled JAX calls for the benchmarks: median after warm-up."""

from __future__ import annotations

import statistics
import time
from typing import Any, Callable

import jax


def time_calls(fn: Callable[[], Any], repeats: int) -> tuple[float, float, list[float]]:
  """Times `fn` once cold (compilation included), then `repeats` times warm.

  Every call is ended by `jax.block_until_ready` on its result, so the time
  covers the computation, not just its dispatch.

  Args:
    fn: a zero-argument callable returning JAX arrays (or a pytree of them).
    repeats: number of timed warm calls, >= 1.

  Returns:
    ``(first_call_s, median_s, times_s)`` in seconds.
  """
  if repeats < 1:
    raise ValueError(f"repeats must be >= 1; got {repeats!r}")
  start = time.perf_counter()
  jax.block_until_ready(fn())
  first = time.perf_counter() - start
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return first, statistics.median(times), times
