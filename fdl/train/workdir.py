"""Exclusive ownership of a work directory: one run writes into it at a time.

Two runs started on the same work directory would interleave their metrics and
race on the checkpoints (each deleting what the other's keep policy does not
know). `WorkdirLock` makes the second one refuse at start-up instead:

  with WorkdirLock(workdir):
    train_and_evaluate(config, workdir)

The lock is a file, ``<workdir>/.lock`` by default, created atomically
(``O_CREAT | O_EXCL``) and holding JSON ``{"pid", "host", "started", ...}`` so
that the refusal can name the holder. A lock left by a run that died without
releasing it (its pid no longer alive on this host) is stale: it is reported
with a warning and taken over. Only process 0 of a multi-process run takes the
lock; the other processes share process 0's ownership.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import time
import uuid
import warnings

LOCK_NAME = ".lock"

# A lock file that cannot be parsed is normally one being written this instant
# (created, not yet filled); older than this, its writer is taken to have died.
_UNREADABLE_GRACE_S = 30.0


class WorkdirBusyError(RuntimeError):
  """Another live run holds the work directory's lock."""


class StaleLockWarning(UserWarning):
  """A lock left by a run that is no longer alive was taken over."""


def _proc_start_ticks(pid: int) -> int | None:
  """Start time of `pid` in clock ticks since boot (Linux), to detect pid reuse."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      # The command name (field 2) is parenthesized and may contain spaces.
      fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[19])  # field 22 of proc(5), counted after the name
  except (OSError, IndexError, ValueError):
    return None


def _pid_alive(pid: int, start_ticks: int | None) -> bool:
  """Whether `pid` runs on this host and is the process that took the lock."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    pass  # it exists, under another user
  if start_ticks is not None:
    now = _proc_start_ticks(pid)
    if now is not None and now != start_ticks:
      return False  # the pid was reused by a later process
  return True


def read_lock(path: str) -> dict | None:
  """The holder record of lock file `path`, or None if it is absent or unreadable."""
  try:
    with open(path, encoding="utf-8") as f:
      record = json.load(f)
  except (OSError, ValueError):
    return None
  return record if isinstance(record, dict) else None


def _describe(record: dict) -> str:
  return (f"pid {record.get('pid')} on host {record.get('host')!r}, started "
          f"{record.get('started')}")


class WorkdirLock:
  """Context manager holding ``<workdir>/<name>`` while a run uses `workdir`.

  Args:
    workdir: the directory to own (created if missing).
    name: the lock file's name inside `workdir`.
    process_index: this process's index in a multi-process run; only index 0
      takes the lock, the others hold nothing. None asks
      ``jax.process_index()``, which starts JAX's backend: in a multi-process
      run, enter the lock after ``jax.distributed.initialize``.

  Raises (on enter / `acquire`):
    WorkdirBusyError: a live run holds the lock; the message names its pid,
      host and start time, and the lock file.
  """

  def __init__(self, workdir: str, *, name: str = LOCK_NAME,
               process_index: int | None = None):
    if not workdir:
      raise ValueError(f"workdir must be a directory path; got {workdir!r}")
    self.workdir = os.path.abspath(workdir)
    self.path = os.path.join(self.workdir, name)
    self._process_index = process_index
    self._record: dict | None = None  # ours, while held

  @property
  def held(self) -> bool:
    """Whether this object currently holds the lock file."""
    return self._record is not None

  def _is_owner_process(self) -> bool:
    index = self._process_index
    if index is None:
      import jax  # pylint: disable=g-import-not-at-top
      index = jax.process_index()
    return index == 0

  def acquire(self) -> "WorkdirLock":
    """Takes the lock (process 0 only); returns self."""
    if self._record is not None:
      raise RuntimeError(f"{self.path} is already held by this WorkdirLock")
    if not self._is_owner_process():
      return self
    os.makedirs(self.workdir, exist_ok=True)
    pid = os.getpid()
    record = {
        "pid": pid,
        "host": socket.gethostname(),
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"),
        "proc_start_ticks": _proc_start_ticks(pid),
        "token": uuid.uuid4().hex,
    }
    for _ in range(3):  # a takeover can lose a race with another taker
      if self._try_create(record):
        self._record = record
        return self
      self._take_over_if_stale()
    holder = read_lock(self.path)
    raise WorkdirBusyError(
        f"work directory {self.workdir} is in use: lock file {self.path} is "
        "held by " + (_describe(holder) if holder else "an unknown run"))

  def _try_create(self, record: dict) -> bool:
    try:
      fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
      return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(record, f)
      f.write("\n")
      f.flush()
      os.fsync(f.fileno())
    return True

  def _take_over_if_stale(self) -> None:
    """Removes the lock file if its holder is gone; raises if it is alive."""
    holder = read_lock(self.path)
    if holder is None:
      try:
        age = time.time() - os.path.getmtime(self.path)
      except FileNotFoundError:
        return  # released meanwhile: try again
      if age < _UNREADABLE_GRACE_S:
        raise WorkdirBusyError(
            f"work directory {self.workdir} is in use: lock file {self.path} "
            "is being written by another run (unreadable, "
            f"{age:.0f} s old); if no run uses the directory, delete it")
      reason = f"unreadable lock file, {age:.0f} s old"
    else:
      if holder.get("host") != socket.gethostname():
        raise WorkdirBusyError(
            f"work directory {self.workdir} is in use: lock file {self.path} "
            f"is held by {_describe(holder)}; its liveness cannot be checked "
            "from this host, so if that run is gone, delete the lock file")
      pid = holder.get("pid")
      if isinstance(pid, int) and _pid_alive(pid, holder.get("proc_start_ticks")):
        raise WorkdirBusyError(
            f"work directory {self.workdir} is in use: lock file {self.path} "
            f"is held by {_describe(holder)}, which is still running")
      reason = f"left by {_describe(holder)}, which is no longer running"
    # Rename first: of two runs taking over at once only one rename succeeds.
    aside = f"{self.path}.stale-{os.getpid()}"
    try:
      os.rename(self.path, aside)
    except FileNotFoundError:
      return
    if read_lock(aside) != holder:
      # The file changed between reading and renaming: it is a fresh lock of a
      # run that took over first. Put it back (unless yet another lock exists).
      try:
        os.link(aside, self.path)
      except OSError:
        pass
      os.remove(aside)
      return
    os.remove(aside)
    warnings.warn(f"took over the stale lock {self.path}: {reason}",
                  StaleLockWarning, stacklevel=4)

  def release(self) -> None:
    """Removes the lock file if it is still ours; a no-op when not held."""
    record, self._record = self._record, None
    if record is None:
      return
    current = read_lock(self.path)
    if current is None or current.get("token") != record["token"]:
      warnings.warn(f"lock file {self.path} was removed or replaced while this "
                    "run held it; leaving it as it is", RuntimeWarning,
                    stacklevel=2)
      return
    try:
      os.remove(self.path)
    except FileNotFoundError:
      pass

  def __enter__(self) -> "WorkdirLock":
    return self.acquire()

  def __exit__(self, *exc) -> None:
    self.release()
