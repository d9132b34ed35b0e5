"""Transfer learning: partial restore of a finished run, frozen parameters.

Three pieces, each usable on its own:

* `load_variables`: the ``params`` (and ``batch_stats``) of a checkpoint, read
  without knowing the model that wrote it (the checkpoint's own tree).
* `partial_restore`: copies every leaf of a source tree whose '/'-joined path
  and shape match a leaf of the target tree; the other target leaves keep
  their (fresh) values. A `TransferReport` lists what was copied, skipped for
  a shape mismatch, missing from the source, or left unused.
* `frozen_labels` / `freeze_optimizer`: parameters whose path matches a
  pattern get ``optax.set_to_zero()`` through ``optax.multi_transform``, so
  they stay bit-identical through training; the rest get the run's optimizer.

`init_state_from` and `freeze_state` apply them to a `TrainState`, which is
how `fdl.tasks.reconstruction` uses them (``config.init_from``,
``config.freeze``).

Parameter paths are the dict keys from the root of the collection joined by
'/', e.g. ``"norm_unet/unet/down_0/conv_0/kernel"``. Patterns are shell globs
(`fnmatch.fnmatchcase` on the whole path, so ``*`` also crosses '/'), or,
with the prefix ``"re:"``, Python regular expressions that must match the
whole path (`re.fullmatch`).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from typing import Any, Mapping, Sequence

import jax
import numpy as np
import optax
import orbax.checkpoint as ocp
from jax.sharding import Mesh

from fdl.train import mesh as mesh_lib
from fdl.train.state import TrainState

TRAINABLE, FROZEN = "trainable", "frozen"
COLLECTIONS = ("params", "batch_stats")  # what a partial restore carries over


# --- paths ------------------------------------------------------------------------


def _key_name(key) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return str(getattr(key, attr))
  return str(key)


def flatten_paths(tree: Any) -> dict[str, Any]:
  """The leaves of `tree` by '/'-joined path, in tree order.

  >>> flatten_paths({"dense": {"kernel": 1, "bias": 2}})
  {'dense/bias': 2, 'dense/kernel': 1}
  """
  leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
  return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _matcher(pattern: str):
  if not isinstance(pattern, str) or not pattern:
    raise ValueError(f"freeze patterns must be non-empty strings; got {pattern!r}")
  if pattern.startswith("re:"):
    try:
      regex = re.compile(pattern[3:])
    except re.error as e:
      raise ValueError(f"freeze pattern {pattern!r} is not a valid regular "
                       f"expression: {e}") from e
    return lambda path: regex.fullmatch(path) is not None
  return lambda path: fnmatch.fnmatchcase(path, pattern)


def match_paths(paths: Sequence[str], patterns: Sequence[str]) -> list[str]:
  """The paths matched by at least one of `patterns` (module docstring syntax).

  Raises:
    ValueError: a pattern matches no path (naming it and showing some paths),
      or `patterns` is a bare string rather than a sequence of them.

  >>> match_paths(["a/kernel", "a/bias", "b/kernel"], ["*/kernel"])
  ['a/kernel', 'b/kernel']
  >>> match_paths(["a/kernel", "a/bias"], ["re:a/(bias|scale)"])
  ['a/bias']
  """
  if isinstance(patterns, str):
    raise ValueError(f"patterns must be a sequence of strings, not one string; got "
                     f"{patterns!r} (write ({patterns!r},))")
  paths = list(paths)
  matched = set()
  for pattern in patterns:
    hits = [p for p in paths if _matcher(pattern)(p)]
    if not hits:
      shown = ", ".join(paths[:8]) + (f", ... ({len(paths)} in all)"
                                      if len(paths) > 8 else "")
      raise ValueError(f"freeze pattern {pattern!r} matches no parameter path; the "
                       f"paths are '/'-joined, e.g. {shown}")
    matched.update(hits)
  return [p for p in paths if p in matched]


# --- partial restore --------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TransferReport:
  """What `partial_restore` did, path by path ('/'-joined).

  Attributes:
    copied: target paths that received the source leaf (same path and shape).
    skipped: target path -> ``{"source": shape, "target": shape}`` for paths
      in both trees whose shapes differ; the target keeps its own value.
    missing: target paths the source does not have; the target keeps its value.
    unused: source paths the target does not have.
  """

  copied: tuple[str, ...]
  skipped: dict[str, dict[str, list[int]]]
  missing: tuple[str, ...]
  unused: tuple[str, ...]

  def to_dict(self) -> dict:
    """A JSON-able dict, with the counts first."""
    return {"num_copied": len(self.copied), "num_skipped": len(self.skipped),
            "num_missing": len(self.missing), "num_unused": len(self.unused),
            "copied": list(self.copied), "skipped": dict(self.skipped),
            "missing": list(self.missing), "unused": list(self.unused)}


def partial_restore(target: Any, source: Any) -> tuple[Any, TransferReport]:
  """Copies the leaves of `source` into `target` where path and shape match.

  Args:
    target: a pytree of arrays (e.g. a fresh model's ``params``); its
      structure, shapes and dtypes are those of the result.
    source: a pytree of arrays (e.g. a finished run's ``params``), any
      structure.

  Returns:
    ``(restored, report)``: `restored` has `target`'s structure; a leaf whose
    path is in `source` with the same shape is the source's values cast to the
    target leaf's dtype (an exact copy when the dtypes agree, placed like the
    target leaf), every other leaf is the target's own object.

  >>> new, report = partial_restore({"a": np.zeros(2), "b": np.zeros(3)},
  ...                               {"a": np.ones(2), "b": np.ones(4)})
  >>> new["a"].tolist(), new["b"].tolist(), report.copied, list(report.skipped)
  ([1.0, 1.0], [0.0, 0.0, 0.0], ('a',), ['b'])
  """
  source_leaves = flatten_paths(source)
  paths_and_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
  copied, skipped, missing, out = [], {}, [], []
  for key_path, leaf in paths_and_leaves:
    path = "/".join(_key_name(k) for k in key_path)
    if path not in source_leaves:
      missing.append(path)
      out.append(leaf)
      continue
    value = source_leaves[path]
    if tuple(np.shape(value)) != tuple(np.shape(leaf)):
      skipped[path] = {"source": list(np.shape(value)), "target": list(np.shape(leaf))}
      out.append(leaf)
      continue
    copied.append(path)
    dtype = leaf.dtype if hasattr(leaf, "dtype") else np.asarray(leaf).dtype
    value = np.asarray(jax.device_get(value)).astype(dtype, copy=False)
    sharding = getattr(leaf, "sharding", None)
    out.append(jax.device_put(value, sharding) if sharding is not None else value)
  target_paths = set(copied) | set(skipped) | set(missing)
  unused = tuple(p for p in source_leaves if p not in target_paths)
  report = TransferReport(copied=tuple(copied), skipped=skipped,
                          missing=tuple(missing), unused=unused)
  return jax.tree_util.tree_unflatten(treedef, out), report


def _checkpoint_dir_and_step(path: str) -> tuple[str, int | None]:
  """A run's checkpoint folder and the step it evaluated (None: the latest)."""
  summary = os.path.join(path, "summary.json")
  if os.path.isdir(os.path.join(path, "checkpoints")):
    step = None
    if os.path.exists(summary):
      with open(summary, encoding="utf-8") as f:
        step = json.load(f).get("evaluated_checkpoint_step")
    return os.path.join(path, "checkpoints"), step
  return path, None


def load_variables(path: str, step: int | None = None) -> dict[str, Any]:
  """The ``params`` and ``batch_stats`` of a checkpoint, as host NumPy trees.

  The checkpoint is read with its own stored tree structure, so neither the
  model nor the config that wrote it is needed.

  Args:
    path: a finished run's work directory (its ``checkpoints/`` folder is
      read at the step its ``summary.json`` evaluated, the best validation
      epoch; without a summary, the latest step), or a `Checkpointer` folder.
    step: a checkpoint step, overriding the choice above.

  Returns:
    ``{"params": ..., "batch_stats": ...}`` (``batch_stats`` ``{}`` when the
    model has none).

  Raises:
    FileNotFoundError: `path` does not exist or holds no checkpoint.
  """
  if not os.path.isdir(path):
    raise FileNotFoundError(f"init_from path {path!r} is not a directory: give a "
                            "finished run's work directory or a checkpoint folder")
  directory, evaluated = _checkpoint_dir_and_step(os.path.abspath(path))
  manager = ocp.CheckpointManager(directory, item_names=("state", "meta"))
  try:
    if step is None:
      step = evaluated if evaluated is not None else manager.latest_step()
    if step is None or step not in manager.all_steps():
      raise FileNotFoundError(f"no checkpoint at step {step} in {directory} (steps "
                              f"there: {list(manager.all_steps())})")
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  finally:
    manager.close()
  state = restored["state"]
  if "params" not in state:
    raise FileNotFoundError(f"the checkpoint at step {step} in {directory} holds no "
                            f"'params'; its keys are {sorted(state)}")
  to_host = lambda tree: jax.tree.map(lambda x: np.asarray(jax.device_get(x)), tree)
  return {name: to_host(state.get(name) or {}) for name in COLLECTIONS}


def init_state_from(state: TrainState, source: str | Mapping[str, Any], *,
                    mesh: Mesh | None = None, step: int | None = None
                    ) -> tuple[TrainState, TransferReport]:
  """`state` with the matching ``params`` / ``batch_stats`` of `source` copied in.

  The optimizer state is initialized afresh for the new parameters (fine-tuning
  starts its own moments); the step counter and RNG key stay those of `state`.

  Args:
    state: a freshly created state (`create_train_state`), replicated over `mesh`.
    source: a path for `load_variables`, or variables ``{"params": ...,
      "batch_stats": ...}`` (e.g. from `fdl.tasks.reconstruction.load_trained`).
    mesh: the state's mesh; None means all devices.
    step: for a path, the checkpoint step (see `load_variables`).

  Returns:
    ``(state, report)``; the report covers both collections, ``batch_stats``
    paths prefixed with ``"batch_stats/"``.

  Raises:
    ValueError: not a single parameter matched (a source of another model?).
  """
  variables = load_variables(source, step) if isinstance(source, str) else source
  params, report = partial_restore(state.params, variables["params"])
  if not report.copied:
    raise ValueError(
        f"init_from: no parameter of the source matches this model by path and "
        f"shape (source paths e.g. {list(flatten_paths(variables['params']))[:4]}, "
        f"model paths e.g. {list(flatten_paths(state.params))[:4]})")
  batch_stats = state.batch_stats
  if state.batch_stats:
    batch_stats, stats_report = partial_restore(state.batch_stats,
                                                variables.get("batch_stats") or {})
    prefix = lambda paths: tuple(f"batch_stats/{p}" for p in paths)
    report = TransferReport(
        copied=report.copied + prefix(stats_report.copied),
        skipped={**report.skipped, **{f"batch_stats/{k}": v
                                      for k, v in stats_report.skipped.items()}},
        missing=report.missing + prefix(stats_report.missing),
        unused=report.unused + prefix(stats_report.unused))
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  opt_state = jax.jit(state.tx.init, out_shardings=mesh_lib.replicated(mesh))(params)
  return state.replace(params=params, batch_stats=batch_stats,
                       opt_state=opt_state), report


# --- frozen parameters ------------------------------------------------------------


def frozen_labels(params: Any, patterns: Sequence[str]) -> Any:
  """``"frozen"`` / ``"trainable"`` per leaf of `params`, by path pattern.

  Args:
    params: a parameter pytree (arrays or `jax.ShapeDtypeStruct` s).
    patterns: globs or ``"re:"`` regexes (module docstring); a leaf is frozen
      when any pattern matches its path.

  Returns:
    A pytree of `params`' structure with string leaves, as
    `optax.multi_transform` takes.

  Raises:
    ValueError: a pattern matches nothing, or every parameter would be frozen.
  """
  paths = list(flatten_paths(params))
  frozen = set(match_paths(paths, patterns))
  if len(frozen) == len(paths):
    raise ValueError(f"freeze patterns {list(patterns)} match all {len(paths)} "
                     "parameters; nothing would be trained")
  leaves, treedef = jax.tree_util.tree_flatten(params)
  labels = [FROZEN if path in frozen else TRAINABLE for path in paths]
  assert len(labels) == len(leaves)
  return jax.tree_util.tree_unflatten(treedef, labels)


def freeze_optimizer(tx: optax.GradientTransformation, labels: Any
                     ) -> optax.GradientTransformation:
  """`tx` for the ``"trainable"`` leaves, zero updates for the ``"frozen"`` ones.

  Args:
    tx: the run's optimizer (clipping, decay and schedule included; clipping
      then sees only the trainable gradients).
    labels: from `frozen_labels`.

  Returns:
    ``optax.multi_transform({"trainable": tx, "frozen": set_to_zero()}, labels)``.
  """
  return optax.multi_transform({TRAINABLE: tx, FROZEN: optax.set_to_zero()}, labels)


def freeze_state(state: TrainState, patterns: Sequence[str], *,
                 mesh: Mesh | None = None) -> tuple[TrainState, list[str]]:
  """`state` whose optimizer leaves the parameters matching `patterns` alone.

  Returns:
    ``(state, frozen_paths)``: the state with ``tx`` replaced by
    `freeze_optimizer` and its ``opt_state`` initialized for it (replicated
    over `mesh`), and the frozen parameter paths.

  Raises:
    ValueError: as `frozen_labels`.
  """
  labels = frozen_labels(state.params, patterns)
  tx = freeze_optimizer(state.tx, labels)
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  opt_state = jax.jit(tx.init, out_shardings=mesh_lib.replicated(mesh))(state.params)
  frozen = [p for p, label in flatten_paths(labels).items() if label == FROZEN]
  return state.replace(tx=tx, opt_state=opt_state), frozen
