"""Metrics as JSON lines plus TensorBoard events, written by process 0 only."""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

import jax
import numpy as np


def is_writer() -> bool:
  """Only process 0 writes logs and files, so multi-host runs do not collide."""
  return jax.process_index() == 0


def _plain(value: Any) -> Any:
  if isinstance(value, (np.generic, np.ndarray)) and np.ndim(value) == 0:
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)  # JSON has no NaN/Inf; keep them readable.
  return value


class MetricWriter:
  """Appends ``{"step": s, name: value, ...}`` lines to ``metrics.jsonl``.

  Names carry their split as prefix (``train/loss``, ``val/accuracy``). Scalars
  are mirrored to TensorBoard (tensorboardX, no TensorFlow needed). On processes
  other than 0, and with ``workdir=None``, every call is a no-op.
  """

  def __init__(self, workdir: str | None, *, tensorboard: bool = True):
    self._active = workdir is not None and is_writer()
    self._jsonl = None
    self._tb = None
    if not self._active:
      return
    os.makedirs(workdir, exist_ok=True)
    self.path = os.path.join(workdir, "metrics.jsonl")
    self._jsonl = open(self.path, "a", encoding="utf-8")
    if tensorboard:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top
      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

  def write(self, step: int, metrics: Mapping[str, Any]) -> None:
    if not self._active:
      return
    record = {"step": int(step)}
    record.update({k: _plain(v) for k, v in metrics.items()})
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for name, value in metrics.items():
        if isinstance(value, (int, float, np.number)) or (
            isinstance(value, np.ndarray) and value.ndim == 0):
          self._tb.add_scalar(name, float(value), int(step))

  def flush(self) -> None:
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def write_json(path: str, obj: Any) -> None:
  """Writes `obj` as indented JSON atomically (process 0 only)."""
  if not is_writer():
    return
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    json.dump(obj, f, indent=2, sort_keys=True, default=_plain)
    f.write("\n")
  os.replace(tmp, path)


def read_jsonl(path: str) -> list[dict]:
  """Reads a ``metrics.jsonl`` file into a list of dicts."""
  with open(path, encoding="utf-8") as f:
    return [json.loads(line) for line in f if line.strip()]
