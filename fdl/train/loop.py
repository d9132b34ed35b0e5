"""The training loop: epochs, validation, early stopping, logging, checkpoints.

`fit` drives a compiled `train_step` over epochs of host batches. It is
restartable: with a `workdir`, every epoch ends in a checkpoint, SIGTERM or Ctrl-C
saves one mid-epoch, and a new call with the same `workdir` resumes from the
latest, skipping the batches already consumed, so that an interrupted and resumed
run ends with the same parameters as an uninterrupted one. The data must
therefore be a deterministic function of the epoch (see `train_data`).

What a run leaves in its `workdir` tells how it ended: ``interrupted.json``
(signal, step, time) after a signal, removed again when a later run finishes;
``.fit.lock`` while a `fit` is running, so that a second `fit` on the same
`workdir` refuses instead of racing on the checkpoints. Entry points exit with
``sys.exit(exit_status(result))``, so that a scheduler sees an interrupted run
as failed (``128 + signal number``, the shell's convention).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import logging
import math
import os
import signal
import threading
import time
from typing import Any, Callable, Iterable

import jax
import jax.numpy as jnp
import numpy as np
import tqdm

from fdl.train import mesh as mesh_lib
from fdl.train.checkpoint import Checkpointer
from fdl.train.workdir import WorkdirBusyError, WorkdirLock
from fdl.train.early_stopping import EarlyStopping
from fdl.train.metric_writer import MetricWriter, is_writer
from fdl.train.state import TrainState

log = logging.getLogger(__name__)

# The checkpoint keeps the most recent epoch that improved the watched metric;
# ranking by this value (epoch number when improved, -1 otherwise) makes Orbax's
# "best" agree with the early-stopping rule, min_delta included.
_BEST_RANK = "best_rank"

INTERRUPTED_FILE = "interrupted.json"  # in the workdir, while a run is stopped
FIT_LOCK = ".fit.lock"  # in the workdir, while `fit` runs there
# What `meta` must hold for a checkpoint to be resumed from.
_META_KEYS = ("epoch", "batches_done", "history", "tracker")


@dataclasses.dataclass
class FitResult:
  """What `fit` returns.

  Attributes:
    state: the final state (the best epoch's when early stopping restored it).
    history: one dict per completed epoch: ``epoch``, ``step``, ``train/<m>``
      (means over the epoch's steps) and ``val/<m>``.
    epochs_run: completed epochs, resumed ones included.
    best_epoch: 0-based epoch with the best watched metric, or None.
    stopped_early: whether early stopping ended the run.
    interrupted: whether a signal ended the run (a checkpoint was saved).
    signal: the number of that signal (``signal.SIGTERM``, ...), else None. In
      a multi-process run it is the same on every process, also on those the
      signal did not reach (the highest number any process received).
  """

  state: TrainState
  history: list[dict]
  epochs_run: int
  best_epoch: int | None
  stopped_early: bool
  interrupted: bool
  signal: int | None = None

  @property
  def signal_name(self) -> str | None:
    """``"SIGTERM"``, ``"SIGINT"``, ... or None."""
    return None if self.signal is None else signal.Signals(self.signal).name


def exit_status(result: FitResult) -> int:
  """The process exit status for an entry point that ran `fit`.

  ``128 + signal number`` for an interrupted run (143 after SIGTERM, 130 after
  Ctrl-C, as a shell reports a process killed by that signal), 0 otherwise, so
  that a job scheduler or ``make`` sees an interrupted run as not finished. Use
  it as ``sys.exit(exit_status(result))``.

  Args:
    result: what `fit` returned.

  Returns:
    The exit status, an int in [0, 255].
  """
  if not result.interrupted:
    return 0
  return 128 + int(result.signal if result.signal is not None else signal.SIGTERM)


class _StopFlag:
  """Set by SIGTERM / SIGINT so the loop can save and exit between steps."""

  def __init__(self):
    self.requested = False
    self.signum = None
    self.signal_name = None

  def handler(self, signum, frame):
    del frame
    if self.requested and signum == signal.SIGINT:
      raise KeyboardInterrupt  # a second Ctrl-C stops at once
    self.requested = True
    self.signum = int(signum)
    self.signal_name = signal.Signals(signum).name


@contextlib.contextmanager
def _catch_stop_signals(enabled: bool):
  flag = _StopFlag()
  if not enabled or threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {s: signal.signal(s, flag.handler)
              for s in (signal.SIGTERM, signal.SIGINT)}
  try:
    yield flag
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def _epoch_batches(train_data, epoch: int) -> Iterable:
  return train_data(epoch) if callable(train_data) else train_data


def _batch_size(batch) -> int:
  return int(np.shape(jax.tree.leaves(batch)[0])[0]) * jax.process_count()


def evaluate(state: TrainState, eval_step: Callable, batches: Iterable,
             prefix: str = "val/") -> dict[str, float]:
  """Means of `eval_step`'s metrics over `batches`, weighted by batch size."""
  sums: dict[str, float] = {}
  count = 0.0
  for batch in batches:
    metrics = mesh_lib.to_host(eval_step(state, batch))
    n = float(metrics.pop("count"))
    count += n
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(v) * n
  if not count:
    raise ValueError("evaluate got no batches")
  return {prefix + k: v / count for k, v in sums.items()}


def _agreed_signal(signum: int | None) -> int | None:
  """The signal any process received (the highest number), or None."""
  if jax.process_count() == 1:
    return signum
  from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
  received = int(np.max(multihost_utils.process_allgather(
      np.asarray(signum or 0, np.int32))))
  return received or None


def _check_resumable(state: TrainState, meta: dict) -> None:
  del state
  missing = [k for k in _META_KEYS if k not in meta]
  if missing:
    raise KeyError(f"meta lacks {missing}")


def _write_interrupted(workdir: str, signum: int | None, step: int, epoch: int,
                       checkpoint_dir: str) -> None:
  """Records in `workdir` that a signal stopped the run (process 0)."""
  record = {
      "signal": None if signum is None else signal.Signals(signum).name,
      "signum": signum, "step": step, "epoch": epoch,
      "time": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "checkpoint_dir": checkpoint_dir,
  }
  path = os.path.join(workdir, INTERRUPTED_FILE)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(record, f, indent=1)
  os.replace(path + ".tmp", path)


def fit(
    state: TrainState,
    train_step: Callable,
    train_data: Callable[[int], Iterable] | Iterable,
    *,
    num_epochs: int,
    eval_step: Callable | None = None,
    val_data: Callable[[], Iterable] | Iterable | None = None,
    workdir: str | None = None,
    early_stopping: EarlyStopping | None = None,
    keep_checkpoints: int = 2,
    log_every: int = 50,
    progress: bool = True,
    handle_signals: bool = True,
) -> FitResult:
  """Trains `state` for `num_epochs` epochs, validating after each.

  Init order: an existing checkpoint in ``workdir/checkpoints`` wins over the
  `state` given (which then only supplies structure and shardings).

  Args:
    state: initial state (see `create_train_state`); donated to `train_step`.
    train_step: ``(state, batch) -> (state, metrics)``, from `make_train_step`.
    train_data: ``epoch -> iterable of host batches`` (preferred: a resumed run
      must see the same batches in the same order), or a re-iterable.
    num_epochs: total epochs of the run, resumed ones included.
    eval_step: ``(state, batch) -> metrics``, from `make_eval_step`.
    val_data: ``() -> iterable`` or a re-iterable of validation batches.
    workdir: where ``metrics.jsonl``, TensorBoard events and checkpoints go.
      None: nothing is written and nothing resumes.
    early_stopping: stops on a validation metric (needs `eval_step`/`val_data`).
    keep_checkpoints: how many recent checkpoints to keep; the best epoch's
      checkpoint is kept in addition.
    log_every: steps between metric fetches (finite checks, log lines).
    progress: show a progress bar (process 0 only).
    handle_signals: save a checkpoint and return on SIGTERM / Ctrl-C; the
      result then has ``interrupted=True`` and the signal, and
      ``workdir/interrupted.json`` records it until a later run finishes.

  Returns:
    A `FitResult`; pass it to `exit_status` for the process's exit status.

  Raises:
    FloatingPointError: a non-finite loss; the message names the step. No
      checkpoint is written after it, so the last good one stays intact.
    fdl.train.workdir.WorkdirBusyError: another `fit` is running on
      `workdir` (the message names its pid and host).
    fdl.train.checkpoint.CheckpointError: `workdir` has checkpoints but none
      can be restored. A damaged newest one is skipped with a warning, moved
      to ``workdir/checkpoints/damaged/``, and the run resumes from the newest
      readable one.
  """
  if num_epochs < 1:
    raise ValueError(f"num_epochs must be >= 1; got {num_epochs!r}")
  if log_every < 1:
    raise ValueError(f"log_every must be >= 1; got {log_every!r}")
  if (eval_step is None) != (val_data is None):
    raise ValueError("eval_step and val_data must be given together")
  if early_stopping is not None and val_data is None:
    raise ValueError("early_stopping needs eval_step and val_data")
  lock = WorkdirLock(workdir, name=FIT_LOCK) if workdir is not None else None
  busy = None
  if lock is not None:
    try:
      lock.acquire()  # process 0 only
    except WorkdirBusyError as e:
      busy = e
    # The other processes must refuse too, not wait for process 0 forever.
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      refused = bool(np.any(multihost_utils.process_allgather(
          np.asarray(busy is not None))))
      if refused and busy is None:
        lock.release()
        busy = WorkdirBusyError(
            f"work directory {workdir} is in use: process 0 could not take "
            f"its lock file {lock.path}")
    if busy is not None:
      raise busy
  try:
    return _fit(state, train_step, train_data, num_epochs=num_epochs,
                eval_step=eval_step, val_data=val_data, workdir=workdir,
                early_stopping=early_stopping,
                keep_checkpoints=keep_checkpoints, log_every=log_every,
                progress=progress, handle_signals=handle_signals)
  finally:
    if lock is not None:
      lock.release()


def _fit(state, train_step, train_data, *, num_epochs, eval_step, val_data,
         workdir, early_stopping, keep_checkpoints, log_every, progress,
         handle_signals) -> FitResult:
  """`fit` after its checks, with the workdir lock held."""
  # Without early stopping, still track the best validation loss for the
  # checkpoint policy; patience is then effectively infinite.
  tracker = early_stopping or EarlyStopping(
      metric="val/loss", patience=10**9, restore_best=False)
  checkpointer = None
  writer = MetricWriter(workdir)
  history: list[dict] = []
  start_epoch, skip_batches, partial = 0, 0, None
  finished = False
  if workdir is not None:
    checkpointer = Checkpointer(
        os.path.join(workdir, "checkpoints"), keep=keep_checkpoints,
        best_metric=_BEST_RANK, best_mode="max")
    if checkpointer.latest_step() is not None:
      # A damaged newest checkpoint is skipped (with a warning) and moved aside,
      # so that the resumed run's own checkpoints rank as the newest.
      state, meta, resumed_step = checkpointer.restore_latest(
          state, validate=_check_resumable, set_aside_damaged=True)
      start_epoch = meta["epoch"]
      skip_batches = meta["batches_done"]
      partial = meta.get("partial")
      history = meta["history"]
      finished = meta.get("stopped_early", False)
      tracker = EarlyStopping.from_state_dict(meta["tracker"])
      if early_stopping is not None:
        # Settings come from the caller; the progress record from the checkpoint.
        tracker = dataclasses.replace(
            early_stopping, best=tracker.best, best_epoch=tracker.best_epoch,
            wait=tracker.wait)
      if is_writer():
        print(f"fit: resumed from step {resumed_step} in {workdir} "
              f"(epoch {start_epoch}, batch {skip_batches})", flush=True)
    previous = os.path.join(workdir, INTERRUPTED_FILE)
    if is_writer() and os.path.exists(previous):
      try:
        with open(previous, encoding="utf-8") as f:
          record = json.load(f)
        print(f"fit: the previous run was stopped by {record.get('signal')} at "
              f"step {record.get('step')} ({record.get('time')})", flush=True)
      except (OSError, ValueError):
        pass

  def meta(epoch, batches_done, stopped_early=False, partial_sums=None):
    return {"epoch": epoch, "batches_done": batches_done, "history": history,
            "tracker": tracker.state_dict(), "stopped_early": stopped_early,
            "partial": partial_sums}

  stopped_early = finished
  interrupted = False
  stop_signal = None
  host_step = _step_number(state)
  best_copy = None  # the best state, kept on device when there is no workdir
  epoch = start_epoch
  with _catch_stop_signals(handle_signals) as stop:
    for epoch in range(start_epoch, num_epochs if not finished else start_epoch):
      sums = dict(partial["sums"]) if partial else {}
      steps_in_epoch = partial["steps"] if partial else 0
      partial = None
      pending: list[tuple[int, Any]] = []
      batches = _epoch_batches(train_data, epoch)
      total = len(batches) if hasattr(batches, "__len__") else None
      bar = tqdm.tqdm(total=total, initial=min(skip_batches, total or 0),
                      desc=f"epoch {epoch + 1}/{num_epochs}", unit="step",
                      disable=not (progress and is_writer()), leave=False,
                      dynamic_ncols=True)
      window_start = time.perf_counter()
      window_examples = 0
      batches_done = 0

      def flush():
        nonlocal steps_in_epoch, window_start, window_examples
        if not pending:
          return
        fetched = mesh_lib.to_host([m for _, m in pending])
        for (step, _), m in zip(pending, fetched):
          loss = float(m["total_loss"])
          if not math.isfinite(loss):
            if checkpointer is not None:
              checkpointer.wait()
            last = checkpointer.latest_step() if checkpointer else None
            writer.close()
            raise FloatingPointError(
                f"non-finite loss {loss} at step {step} (epoch {epoch + 1}); "
                "training stopped" + (
                    f", the last good checkpoint (step {last}) in "
                    f"{checkpointer.directory} is intact" if last is not None
                    else ""))
          for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + float(v)
          steps_in_epoch += 1
        elapsed = time.perf_counter() - window_start
        record = {f"train/{k}": float(v) for k, v in fetched[-1].items()}
        record["train/steps_per_second"] = len(pending) / elapsed
        record["train/examples_per_second"] = window_examples / elapsed
        writer.write(pending[-1][0], record)
        # The bar advances only here, after the host has waited for the
        # steps' results: dispatch is asynchronous, so counting steps as they
        # are queued would show a rate and an ETA that compute cannot meet.
        bar.update(len(pending))
        bar.set_postfix(loss=f"{record['train/loss']:.4f}",
                        ex_per_s=f"{record['train/examples_per_second']:.0f}")
        pending.clear()
        window_start = time.perf_counter()
        window_examples = 0

      for index, batch in enumerate(batches):
        if index < skip_batches:
          continue
        state, metrics = train_step(state, batch)
        host_step += 1  # tracked on the host: reading state.step would sync
        batches_done = index + 1
        pending.append((host_step, metrics))
        window_examples += _batch_size(batch)
        at_flush = len(pending) >= log_every
        if at_flush:
          flush()
        # Several processes must agree to stop at the same step, so they
        # compare their flags at flush points only.
        if jax.process_count() == 1:
          stop_signal = stop.signum if stop.requested else None
        elif at_flush:
          stop_signal = _agreed_signal(stop.signum)
        if stop_signal is not None:
          flush()
          interrupted = True
          break
      skip_batches = 0
      flush()
      bar.close()

      if interrupted:
        if checkpointer is not None:
          checkpointer.save(state, meta(epoch, batches_done, partial_sums={
              "sums": sums, "steps": steps_in_epoch}))
          checkpointer.wait()
          if is_writer():
            _write_interrupted(workdir, stop_signal, host_step, epoch,
                               checkpointer.directory)
        if is_writer():
          name = stop.signal_name or signal.Signals(stop_signal).name
          print(f"fit: {name} received; saved a checkpoint at step "
                f"{host_step} and stopped", flush=True)
        break

      if steps_in_epoch == 0:
        raise ValueError(f"train_data yielded no batches in epoch {epoch}")
      record = {"epoch": epoch, "step": host_step}
      record.update({f"train/{k}": v / steps_in_epoch for k, v in sums.items()})
      if eval_step is not None:
        val = val_data() if callable(val_data) else val_data
        record.update(evaluate(state, eval_step, val))
      history.append(record)
      writer.write(record["step"], {k: v for k, v in record.items()
                                    if k not in ("epoch", "step")} | {
                                        "epoch": epoch})
      improved = False
      should_stop = False
      if tracker.metric in record:
        improved = tracker.improved(record[tracker.metric])
        should_stop = tracker.update(epoch, record[tracker.metric])
      should_stop = should_stop and early_stopping is not None
      if is_writer():
        shown = {k: round(v, 4) for k, v in record.items()
                 if k.startswith("val/") or k in ("train/loss", "train/accuracy")}
        print(f"epoch {epoch + 1}/{num_epochs} step {record['step']}: {shown}",
              flush=True)
      if checkpointer is not None:
        checkpointer.save(state, meta(epoch + 1, 0, stopped_early=should_stop),
                          metrics={_BEST_RANK: float(epoch if improved else -1)})
      elif improved and early_stopping is not None and early_stopping.restore_best:
        best_copy = jax.tree.map(jnp.copy, state)
      if should_stop:
        stopped_early = True
        if is_writer():
          print(f"fit: early stopping after epoch {epoch + 1}: "
                f"{tracker.metric} has not improved for {tracker.patience} epochs "
                f"(best {tracker.best:.4g} at epoch {tracker.best_epoch + 1})",
                flush=True)
        break

  best_epoch = tracker.best_epoch if tracker.best_epoch >= 0 else None
  if (early_stopping is not None and early_stopping.restore_best and not
      interrupted and best_epoch is not None and
      best_epoch != history[-1]["epoch"]):
    best_step = history[best_epoch]["step"]
    if checkpointer is None:
      state = best_copy
    else:
      checkpointer.wait()
      state, _ = checkpointer.restore(state, best_step)
    if is_writer():
      print(f"fit: restored the best state (epoch {best_epoch + 1}, step "
            f"{best_step})", flush=True)
  if checkpointer is not None:
    checkpointer.close()
    if not interrupted and is_writer():
      # This run finished: a stop recorded by an earlier one no longer applies.
      with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(workdir, INTERRUPTED_FILE))
  writer.close()
  return FitResult(state=state, history=history, epochs_run=len(history),
                   best_epoch=best_epoch, stopped_early=stopped_early,
                   interrupted=interrupted, signal=stop_signal)


def _step_number(state: TrainState) -> int:
  step = state.step
  if isinstance(step, jax.Array) and not step.is_fully_addressable:
    return int(step.addressable_data(0))
  return int(step)
