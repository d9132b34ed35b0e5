"""Checkpoints of the whole train state through an Orbax `CheckpointManager`.

A checkpoint holds two items: ``state`` (the `TrainState` leaves, saved with
`StandardSave` and restored against an abstract target carrying the current
shardings) and ``meta`` (JSON: the loop's position and early-stopping record).
The manager keeps the last `keep` checkpoints and, when `best_metric` is given,
the best one by that metric.

A checkpoint can be damaged on disk (a truncated array file after a full disk
or a killed copy, garbage in ``meta/metadata``). `Checkpointer.restore_latest`
then warns with the step and the reason, and falls back to the newest step
that restores completely; a step whose restore raises is never used in part.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization
from orbax.checkpoint import checkpoint_managers as policies

from fdl.train.state import TrainState

# Damaged steps set aside by `restore_latest` go here, out of Orbax's sight (its
# step folders are named by bare integers).
DAMAGED_DIR = "damaged"


class CheckpointError(RuntimeError):
  """A checkpoint (or every checkpoint of a directory) cannot be restored."""


class DamagedCheckpointWarning(UserWarning):
  """A checkpoint step could not be restored and was skipped."""


def _one_line(error: BaseException, limit: int = 300) -> str:
  """``Type: first line of the message``, at most `limit` characters."""
  text = str(error).strip().splitlines()
  text = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _all_processes(flag: bool) -> bool:
  """Whether `flag` holds on every process (itself with one process)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  return bool(np.all(multihost_utils.process_allgather(np.asarray(flag))))


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

    A checkpoint already at that step is replaced. `meta` is copied at the call:
    the write happens in the background, and a caller that goes on appending
    to a list inside it (the loop's history) must not change what is saved.

    Raises:
      TypeError: `meta` is not JSON-serializable (the message says what).
    """
    try:
      meta = json.loads(json.dumps(meta))
    except (TypeError, ValueError) as e:
      raise TypeError(f"meta must be JSON-serializable: {e}") from e
    metrics = None if metrics is None else dict(metrics)
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

  def step_path(self, step: int) -> str:
    """The folder of checkpoint `step`."""
    return os.path.join(self.directory, str(step))

  def restore(self, like: TrainState, step: int | None = None
              ) -> tuple[TrainState, dict]:
    """Restores the checkpoint at `step` (default latest) into `like`'s structure.

    Args:
      like: a state with the structure, shapes, dtypes and shardings wanted (for
        example freshly created); its values are not used.
      step: which checkpoint; None for the latest.

    Returns:
      ``(state, meta)``.

    Raises:
      FileNotFoundError: there is no checkpoint (at `step`) in the directory.
      CheckpointError: the checkpoint exists but cannot be read (damaged
        files, or a structure other than `like`'s); the message names the step
        folder and the reason in one line, the original error is chained.
    """
    if step is None:
      step = self.latest_step()
    if step is None:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    if step not in self.all_steps():
      raise FileNotFoundError(
          f"no checkpoint at step {step} in {self.directory}; steps there: "
          f"{self.all_steps()}")
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding),
        serialization.to_state_dict(like))
    try:
      restored = self._manager.restore(
          step,
          args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract),
                                  meta=ocp.args.JsonRestore()))
      meta = restored["meta"]
      if not isinstance(meta, dict):
        raise ValueError(f"meta is a {type(meta).__name__}, not a JSON object")
      state = serialization.from_state_dict(like, restored["state"])
    except Exception as e:  # pylint: disable=broad-except
      raise CheckpointError(
          f"cannot restore checkpoint {self.step_path(step)}: {_one_line(e)}"
      ) from e
    return state, dict(meta)

  def restore_latest(
      self, like: TrainState, *,
      validate: Callable[[TrainState, dict], Any] | None = None,
      set_aside_damaged: bool = False,
  ) -> tuple[TrainState, dict, int]:
    """Restores the newest checkpoint that reads completely, newest first.

    A step whose restore raises (or that `validate` rejects) is skipped with a
    `DamagedCheckpointWarning` naming the step, the step used instead and the
    reason, in one line; its values are never used.

    Args:
      like: structure, shapes, dtypes and shardings wanted (see `restore`).
      validate: optional ``(state, meta) -> None`` that raises when a restored
        checkpoint is unusable (for example a `meta` missing the keys the
        caller needs); such a step counts as damaged.
      set_aside_damaged: once a readable step is found, move the skipped
        ones to ``<directory>/damaged/<step>`` (process 0; all processes then
        re-read the directory); when none is readable nothing moves. A resumed
        run continues from an older step, and the damaged newer folders would
        otherwise count as the most recent ones for the keep policy, which
        could delete the new run's checkpoints in their favour.

    Returns:
      ``(state, meta, step)``.

    Raises:
      FileNotFoundError: the directory holds no checkpoint.
      CheckpointError: no step could be restored; the message names the
        directory and each step's reason.
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f"no checkpoint in {self.directory}")
    failures: list[tuple[int, str]] = []
    last_error = None
    result = None
    for step in steps:
      error = None
      try:
        state, meta = self.restore(like, step)
        if validate is not None:
          validate(state, meta)
      except CheckpointError as e:
        error = e
        reason = _one_line(e.__cause__ or e)
      except Exception as e:  # pylint: disable=broad-except  (from `validate`)
        error = e
        reason = _one_line(e)
      # Every process must settle on the same step, even if the damage is in
      # a shard that only some of them read.
      if _all_processes(error is None):
        result = state, meta, step
        break
      if error is None:
        reason = "unreadable on another process"
      last_error = error or last_error
      failures.append((step, reason))
    if result is None:
      # Nothing is moved: a rerun must fail the same way, not start afresh.
      for step, reason in failures:
        warnings.warn(
            f"checkpoint step {step} in {self.directory} cannot be restored: "
            f"{reason}", DamagedCheckpointWarning, stacklevel=2)
      raise CheckpointError(
          f"no readable checkpoint in {self.directory}: " + "; ".join(
              f"step {s}: {r}" for s, r in failures)) from last_error
    moved = (self._set_aside([s for s, _ in failures]) if set_aside_damaged
             else {})
    for step, reason in failures:
      where = f" (moved to {moved[step]})" if step in moved else ""
      warnings.warn(
          f"checkpoint step {step} in {self.directory} cannot be restored, "
          f"resuming from step {result[2]} instead{where}: {reason}",
          DamagedCheckpointWarning, stacklevel=2)
    return result

  def _set_aside(self, steps: list[int]) -> dict[int, str]:
    """Moves step folders to ``damaged/``; returns ``{step: new path}``."""
    self._manager.wait_until_finished()
    moved = {}
    target_dir = os.path.join(self.directory, DAMAGED_DIR)
    for step in steps:
      target = os.path.join(target_dir, str(step))
      n = 1
      while os.path.exists(target):
        target = os.path.join(target_dir, f"{step}-{n}")
        n += 1
      moved[step] = target
      if jax.process_index() == 0:
        os.makedirs(target_dir, exist_ok=True)
        shutil.move(self.step_path(step), target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices("fdl_checkpoint_set_aside")
    self._manager.reload()
    return moved

  def wait(self) -> None:
    """Blocks until asynchronous saves have finished."""
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.wait_until_finished()
    self._manager.close()
