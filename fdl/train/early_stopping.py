"""Early stopping on a validation metric, as a small serializable record."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class EarlyStopping:
  """Stops when a metric has not improved for `patience` epochs.

  An epoch improves on the best so far when its value is better by more than
  `min_delta` (lower for ``mode='min'``, higher for ``mode='max'``). Training stops
  after `patience` consecutive epochs without improvement.

  Attributes:
    metric: name of the validation metric watched, e.g. ``"val/loss"``.
    patience: epochs without improvement tolerated (>= 1).
    min_delta: minimum change that counts as an improvement (>= 0).
    mode: ``"min"`` or ``"max"``.
    restore_best: whether `fit` returns the best epoch's state.
    best: best value so far (None before the first update).
    best_epoch: 0-based epoch of `best` (-1 before the first update).
    wait: epochs since the last improvement.

  Examples:
    >>> es = EarlyStopping(metric="val/loss", patience=2)
    >>> [es.update(epoch, v) for epoch, v in enumerate([3.0, 2.0, 2.5, 2.1])]
    [False, False, False, True]
    >>> es.best_epoch
    1
  """

  metric: str = "val/loss"
  patience: int = 5
  min_delta: float = 0.0
  mode: str = "min"
  restore_best: bool = True
  best: float | None = None
  best_epoch: int = -1
  wait: int = 0

  def __post_init__(self):
    if self.mode not in ("min", "max"):
      raise ValueError(f"mode must be 'min' or 'max'; got {self.mode!r}")
    if self.patience < 1:
      raise ValueError(f"patience must be >= 1; got {self.patience!r}")
    if self.min_delta < 0:
      raise ValueError(f"min_delta must be >= 0; got {self.min_delta!r}")

  def improved(self, value: float) -> bool:
    """Whether `value` beats the best so far by more than `min_delta`."""
    if self.best is None:
      return True
    if self.mode == "min":
      return value < self.best - self.min_delta
    return value > self.best + self.min_delta

  def update(self, epoch: int, value: float) -> bool:
    """Records epoch `epoch`'s metric; returns True when training should stop."""
    value = float(value)
    if math.isnan(value):
      raise FloatingPointError(
          f"early-stopping metric {self.metric!r} is NaN at epoch {epoch}")
    if self.improved(value):
      self.best, self.best_epoch, self.wait = value, epoch, 0
      return False
    self.wait += 1
    return self.wait >= self.patience

  def state_dict(self) -> dict:
    """The record as a JSON-serializable dict."""
    return dataclasses.asdict(self)

  @classmethod
  def from_state_dict(cls, d: dict) -> "EarlyStopping":
    return cls(**d)
