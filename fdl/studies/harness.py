"""The run harness of every study, and the one ``main`` of every experiment script.

A study is a config, a work directory and named sub-runs (training runs, each
in ``<workdir>/<name>``) whose summaries a `summarize` function turns into the
study's summary. `run_study` does the bookkeeping they share:

1. creates the work directory; if it holds a ``config.json`` already (a
   rerun), compares it with this config: the same (up to the keys in
   `fdl.config_files.HARMLESS`) and the study resumes, a different one is
   refused with a ValueError naming the differing keys (dotted, e.g.
   ``recon.num_epochs``), so that finished runs of one config are never mixed
   with runs of another; then writes this ``config.json``;
2. turns on XLA's persistent compilation cache in ``<workdir>/jax_cache`` if
   ``config.compilation_cache`` (sub-runs compile the same programs);
3. runs the sub-runs in order, printing ``[k/n] name``: a sub-run whose
   `SubRun.finished` returns its summary is reused, any other runs (and
   resumes from its own checkpoints); the first interrupted one stops the
   study, which returns ``{"interrupted": True, "signal": ..., "subrun": name}``
   and writes no summary;
4. ``summarize(results)`` (a dict name -> sub-run summary), written to
   ``summary.json``.

Only process 0 prints and writes files. Smoke (tiny sizes for tests) is
`fdl.config_files`' one mechanism: a study calls
``config = config_files.resolve_smoke(config, name)`` before it builds its
sub-runs from the config, and a sub-run's config derived from the shrunk one is
not shrunk again.

`main` is what every ``experiments/<name>.py`` calls: flags ``--config``
(default: the script's own ``experiments/configs/<name>.py``), ``--workdir``
(default ``runs/<name>``) and ``--verbose``; it takes the work directory's
`fdl.train.workdir.WorkdirLock`, runs, prints the report, and exits 2 with
``error: <message>`` on input errors, ``128 + signal`` after an interruption.

Nothing heavy is imported at module level (JAX, the trainer): the harness
itself runs plain Python callables, as its tests do.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
from collections.abc import Callable, Iterable, Sequence

import ml_collections

from fdl import config_files
from fdl.config_files import load_config  # pylint: disable=unused-import

Summary = dict


@dataclasses.dataclass(frozen=True)
class SubRun:
  """One training run of a study, in ``<study workdir>/<name>``.

  Attributes:
    name: the sub-directory, unique within the study.
    run: ``run(workdir) -> summary``; trains (resuming from its checkpoints in
      `workdir` if any); ``{"interrupted": True, "signal": n}`` after a signal.
    finished: ``finished(workdir) -> summary | None``: a finished run's summary
      to reuse, or None to run; may raise ValueError to refuse `workdir` (a
      run of another config). None: never reused.
    describe: shown after the name in the progress line.
    report: ``report(summary) -> str``, printed after the sub-run.
  """

  name: str
  run: Callable[[str], Summary]
  finished: Callable[[str], Summary | None] | None = None
  describe: str = ""
  report: Callable[[Summary], str] | None = None


def reconstruction_run(name: str, config: ml_collections.ConfigDict, *,
                       describe: str = "",
                       report: Callable[[Summary], str] | None = None) -> SubRun:
  """A `fdl.tasks.reconstruction.train_and_evaluate` sub-run, reused when finished."""
  from fdl.tasks import reconstruction  # pylint: disable=g-import-not-at-top
  return SubRun(name, run=lambda d: reconstruction.train_and_evaluate(config, d),
                finished=lambda d: reconstruction.finished_summary(config, d),
                describe=describe, report=report)


def _process_index() -> int:
  import jax  # pylint: disable=g-import-not-at-top
  return jax.process_index()


def _write_json(path: str, obj) -> None:
  from fdl.train.metric_writer import write_json  # pylint: disable=g-import-not-at-top
  write_json(path, obj)


# Also used by tasks that run several models in one work directory.
check_workdir_config = config_files.check_workdir_config


def run_study(config: ml_collections.ConfigDict, workdir: str,
              subruns: Sequence[SubRun],
              summarize: Callable[[dict[str, Summary]], Summary], *,
              harmless: Iterable[str] = config_files.HARMLESS,
              process_index: int | None = None) -> Summary:
  """Runs a study (module docstring); returns its summary, also in ``summary.json``.

  Args:
    config: the study's config, smoke already resolved; written to
      ``config.json``.
    workdir: the study's work directory; sub-run `s` runs in
      ``workdir/s.name``.
    subruns: the sub-runs, in order.
    summarize: ``summarize(results) -> summary`` with `results` the sub-runs'
      summaries by name; it may write figures (on process 0).
    harmless: config keys that may differ from a stored ``config.json``.
    process_index: this process's index (None: ``jax.process_index()``); only
      0 prints and writes.

  Returns:
    The summary, or ``{"interrupted": True, "signal": n, "subrun": name}`` if a
    sub-run was interrupted (nothing is summarized then).

  Raises:
    ValueError: `workdir` holds a study of another config, two sub-runs share
      a name, or a sub-run refuses its directory.
  """
  names = [s.name for s in subruns]
  if len(set(names)) != len(names):
    raise ValueError(f"sub-run names must be unique; got {names}")
  writer = (_process_index() if process_index is None else process_index) == 0
  say = print if writer else (lambda *a, **k: None)
  check_workdir_config(config, workdir, harmless=harmless)
  os.makedirs(workdir, exist_ok=True)
  if writer:
    _write_json(os.path.join(workdir, "config.json"), config.to_dict())
  if config.get("compilation_cache"):
    use_compilation_cache(workdir)
  results = {}
  for k, sub in enumerate(subruns, start=1):
    subdir = os.path.join(workdir, sub.name)
    summary = sub.finished(subdir) if sub.finished is not None else None
    label = f"[{k}/{len(subruns)}] {sub.name}" + (f" ({sub.describe})" if sub.describe
                                                 else "")
    say(label + (": finished, reused" if summary is not None else ""), flush=True)
    if summary is None:
      summary = sub.run(subdir)
    if summary.get("interrupted"):
      return {"interrupted": True, "signal": summary.get("signal"), "subrun": sub.name}
    results[sub.name] = summary
    if sub.report is not None:
      say(sub.report(summary), flush=True)
  out = summarize(results)
  if writer:
    _write_json(os.path.join(workdir, "summary.json"), out)
  return out


def use_compilation_cache(workdir: str, min_compile_seconds: float = 0.5) -> str:
  """Turns on XLA's persistent compilation cache in ``<workdir>/jax_cache``.

  Each training run builds new jitted closures of the same computations; the
  cache keys on the compiled program, so runs of one experiment (and its
  reruns) compile each program once. Process-wide, and it takes effect for
  compilations after this call.

  Returns:
    The cache directory.
  """
  import jax  # pylint: disable=g-import-not-at-top
  directory = os.path.abspath(os.path.join(workdir, "jax_cache"))
  jax.config.update("jax_compilation_cache_dir", directory)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", min_compile_seconds)
  return directory


# --- the entry points' main -----------------------------------------------------------

# fdl's own input errors: printed as ``error: <message>``, exit status 2. Anything
# else is a bug and keeps its traceback.
INPUT_ERRORS = (ValueError, FileNotFoundError)
USAGE_ERROR = 2


def _input_errors() -> tuple[type[BaseException], ...]:
  from fdl.train.checkpoint import CheckpointError  # pylint: disable=g-import-not-at-top
  from fdl.train.workdir import WorkdirBusyError  # pylint: disable=g-import-not-at-top
  return INPUT_ERRORS + (WorkdirBusyError, CheckpointError)


def exit_code(summary: Summary) -> int:
  """0, or ``128 + signal`` for an interrupted run (`fdl.train.loop.exit_status`)."""
  from fdl.train.loop import exit_status  # pylint: disable=g-import-not-at-top
  return exit_status(types.SimpleNamespace(
      interrupted=bool(summary.get("interrupted")),
      signal=summary.get("signal")))


def _unknown_key(error: BaseException) -> str:
  """The message of ml_collections' (nested, quoted) error for an unknown key."""
  while error.args and isinstance(error.args[0], BaseException):
    error = error.args[0]
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  lines = text.splitlines() or [""]
  hint = " ".join(line.strip() for line in lines[1:])
  return (f"the config has no key {lines[0].strip(chr(39) + chr(34))!r} (a "
          f"--config.KEY=VALUE override)" + (f"; {hint}" if hint else ""))


def _fail(message: str) -> None:
  if "Traceback (most recent call last)" in message:
    # config_flags quotes the whole traceback of a failing get_config: keep its
    # first line and the exception's.
    lines = [line for line in message.splitlines() if line.strip()]
    message = f"{lines[0]} {lines[-1]}"
  print(f"error: {message}", file=sys.stderr, flush=True)
  sys.exit(USAGE_ERROR)


def main(run: Callable[[ml_collections.ConfigDict | None, str], Summary],
         report: Callable[[Summary], str] | None = None, *, script: str,
         config: bool = True, workdir_aliases: Sequence[str] = ()) -> None:
  """The ``main`` of ``experiments/<name>.py``: flags, lock, run, report, exit status.

  Flags: ``--config`` (an ml_collections config file, ``path.py[:arg]``,
  overridable by ``--config.key=value``; default ``experiments/configs/<name>.py``
  next to `script`), ``--workdir`` (default ``runs/<name>``) and ``--verbose``
  (tracebacks for input errors too).

  Args:
    run: ``run(config, workdir) -> summary`` (config None without `config`).
    report: ``report(summary) -> str``, printed after a finished run.
    script: the entry point's ``__file__``; names the defaults.
    config: whether the script takes ``--config``.
    workdir_aliases: other names of ``--workdir`` (older command lines).
  """
  from absl import app, flags, logging  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  name = os.path.splitext(os.path.basename(script))[0]
  config_flag = None
  if config:
    default = os.path.join(os.path.dirname(os.path.abspath(script)), "configs",
                           name + ".py")
    try:  # overrides of keys the default config lacks fail here
      config_flag = config_flags.DEFINE_config_file(
          "config", default, "Config file (path.py or path.py:arg).", lock_config=True)
    except (AttributeError, KeyError) as e:
      _fail(_unknown_key(e))
    except (TypeError, ValueError, OSError) as e:
      _fail(f"--config: {e}")
  workdir_flag = flags.DEFINE_string("workdir", os.path.join("runs", name),
                                     "Work directory: config, runs, summary, figures.")
  for alias in workdir_aliases:
    flags.DEFINE_alias(alias, "workdir")
  verbose = flags.DEFINE_bool("verbose", False,
                              "Show the traceback of input errors too.")

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.Error as e:
      _fail(str(e))
    except INPUT_ERRORS as e:  # the config file's get_config refused its argument
      _fail(str(e))

  def body(argv):
    del argv
    logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
    errors = _input_errors()
    import jax  # pylint: disable=g-import-not-at-top
    from fdl.train.workdir import WorkdirLock  # pylint: disable=g-import-not-at-top
    if jax.process_index() == 0:
      print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}, "
            f"processes: {jax.process_count()}", flush=True)
    config_value = None if config_flag is None else config_flag.value
    try:
      if config_value is not None:
        config_value.to_dict()  # a config file that failed to load raises here
    except OSError as e:
      _fail(f"--config: {str(e).strip().splitlines()[-1].strip()}")
    try:
      with WorkdirLock(workdir_flag.value):
        summary = run(config_value, workdir_flag.value)
    except errors as e:
      if verbose.value:
        raise
      _fail(str(e) + "  (--verbose for the traceback)")
    if jax.process_index() == 0:
      if summary.get("interrupted"):
        where = f" in {summary['subrun']}" if summary.get("subrun") else ""
        print(f"interrupted{where}; run the same command again to resume "
              f"(from the checkpoints)", flush=True)
      elif report is not None:
        print(report(summary), flush=True)
    sys.exit(exit_code(summary))

  app.run(body, flags_parser=parse)
