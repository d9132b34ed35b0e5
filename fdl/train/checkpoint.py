"""Checkpoints of the whole train state through an Orbax `CheckpointManager`.

A checkpoint holds two items: ``state`` (the `TrainState` leaves, saved with
`StandardSave` and restored against an abstract target carrying the current
shardings) and ``meta`` (JSON: the loop's position and early-stopping record).
The manager keeps the last `keep` checkpoints and, when `best_metric` is given,
the best one by that metric.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers as policies

from fdl.train.state import TrainState


class Checkpointer:
  """Saves and restores `TrainState` plus JSON metadata in `directory`.

  Args:
    directory: where step folders are written (created if missing).
    keep: number of most recent checkpoints kept (>= 1).
    best_metric: name of a metric passed to `save`; the checkpoint with its best
      value is kept as well. None keeps only the most recent ones.
    best_mode: ``"min"`` or ``"max"``, the direction in which `best_metric` improves.
  """

  def __init__(self, directory: str, *, keep: int = 2,
               best_metric: str | None = None, best_mode: str = "min"):
    if keep < 1:
      raise ValueError(f"keep must be >= 1; got {keep!r}")
    if best_mode not in ("min", "max"):
      raise ValueError(f"best_mode must be 'min' or 'max'; got {best_mode!r}")
    self.directory = os.path.abspath(directory)
    self.best_metric = best_metric
    self.best_mode = best_mode
    keep_policies = [policies.LatestN(n=keep)]
    if best_metric is not None:
      # BestN keeps the n *last* of the checkpoints sorted by the metric, so an
      # ascending sort keeps the highest value: reverse it for 'min'.
      keep_policies.append(policies.BestN(
          get_metric_fn=lambda m: m[best_metric],
          reverse=best_mode == "min", n=1,
          keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policies.AnyPreservationPolicy(keep_policies),
        create=True)
    self._manager = ocp.CheckpointManager(
        self.directory, options=options, item_names=("state", "meta"))

  def latest_step(self) -> int | None:
    """Step of the most recent checkpoint, or None if there is none."""
    return self._manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self._manager.all_steps())

  def save(self, state: TrainState, meta: dict,
           metrics: dict[str, float] | None = None) -> None:
    """Saves `state` at its step with `meta` (JSON) and optional `metrics`.

    A checkpoint already at that step is replaced.
    """
    step = int(jax.device_get(state.step)) if state.step.is_fully_addressable \
        else int(state.step.addressable_data(0))
    if step in self._manager.all_steps():
      # A signal can land after an epoch's last step: its checkpoint has the
      # epoch's end step but not the epoch's validation. The epoch-end save
      # of the resumed run supersedes it.
      self._manager.wait_until_finished()
      self._manager.delete(step)
    self._manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(serialization.to_state_dict(state)),
            meta=ocp.args.JsonSave(meta)),
        metrics=metrics, force=True)

  def restore(self, like: TrainState, step: int | None = None
              ) -> tuple[TrainState, dict]:
    """Restores the checkpoint at `step` (default latest) into `like`'s structure.

    Args:
      like: a state with the structure, shapes, dtypes and shardings wanted (for
        example freshly created); its values are not used.
      step: which checkpoint; None for the latest.

    Returns:
      ``(state, meta)``.
    """
    if step is None:
      step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        serialization.to_state_dict(like))
    restored = self._manager.restore(
        step,
        args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                meta=ocp.args.JsonRestore()))
    state = serialization.from_state_dict(like, restored["state"])
    return state, dict(restored["meta"])

  def wait(self) -> None:
    """Blocks until asynchronous saves have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
