"""Builders of jit-compiled, pure train and eval steps.

``train_step(state, batch) -> (state, metrics)`` and
``eval_step(state, batch) -> metrics`` are compiled once for the mesh: the state is
replicated and donated, the batch is split along its leading axis. A batch may be
given as host arrays (it is then sharded onto the mesh) or as already sharded
`jax.Array`s.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh

from fdl import losses
from fdl.losses import WEIGHT_KEY
from fdl.models.conv import compiler_options
from fdl.train import mesh as mesh_lib
from fdl.train.state import TrainState

# loss_fn(outputs, batch) -> (scalar loss, {name: scalar metric}): a `fdl.losses.StepLoss`
# (which also says which batch key holds the target, for the batch checks) or any
# callable of that signature.
LossFn = Callable[[jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict]]


InputKeys = str | Sequence[str]


def _input_keys(input_key: InputKeys) -> tuple[str, ...]:
  keys = (input_key,) if isinstance(input_key, str) else tuple(input_key)
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f"input_key must be a key or a sequence of keys; got {input_key!r}")
  return keys


def _check_batch(batch: Any, input_keys: tuple[str, ...], loss_fn: LossFn) -> None:
  """Checks a batch's keys, dtypes and batch sizes before it reaches jit."""
  if not isinstance(batch, Mapping):
    raise TypeError(f"batch must be a mapping of arrays; got {type(batch).__name__}")
  target_key = getattr(loss_fn, "target_key", None)
  for key in (*input_keys, target_key):
    if key is not None and key not in batch:
      raise ValueError(
          f"batch must contain the key {key!r}; got keys {sorted(batch)}")
  input_key = input_keys[0]
  x = batch[input_key]
  for key in input_keys:
    # Real or complex (k-space) inputs; integers would be silently cast.
    if not jnp.issubdtype(batch[key].dtype, jnp.inexact):
      raise TypeError(f"batch[{key!r}] must be a float or complex array; got "
                      f"{batch[key].dtype} {tuple(batch[key].shape)}")
  if target_key is not None:
    y = batch[target_key]
    if getattr(loss_fn, "target_integer", False):
      if not jnp.issubdtype(y.dtype, jnp.integer) or y.ndim != 1:
        raise TypeError(
            f"batch[{target_key!r}] must be integer labels [batch]; got "
            f"{y.dtype} {tuple(y.shape)}")
    if y.shape[0] != x.shape[0]:
      raise ValueError(
          f"batch[{target_key!r}] must have the batch size of batch[{input_key!r}] "
          f"({x.shape[0]}); got {y.shape[0]}")


def _on_mesh(batch, mesh):
  if all(isinstance(x, jax.Array) for x in jax.tree.leaves(batch)):
    return batch
  return mesh_lib.shard_batch(batch, mesh)


def make_train_step(
    loss_fn: LossFn,
    *,
    mesh: Mesh | None = None,
    learning_rate: float | optax.Schedule | None = None,
    l1: float = 0.0,
    l2: float = 0.0,
    input_key: InputKeys = "image",
    donate: bool = True,
) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
  """Builds ``train_step(state, batch) -> (state, metrics)``, compiled for `mesh`.

  The step draws its dropout key from ``fold_in(state.rng, state.step)``, updates
  batch statistics when the model has them, adds ``l1 * sum|w| + l2 * sum w^2``
  over kernels to the loss, and applies ``state.tx``.

  Args:
    loss_fn: ``(outputs, batch) -> (loss, metrics)``, e.g. `classification_loss()`.
    mesh: the data-parallel mesh; None means all devices.
    learning_rate: the schedule (or float) the optimizer was built with; it is
      only reported in the metrics as ``learning_rate``.
    l1, l2: weight-penalty coefficients (>= 0).
    input_key: batch key of the model input (NHWC or ``[batch, features]``), or
      a sequence of keys whose arrays are passed to the model positionally
      (e.g. ``("kspace", "mask", "maps")`` for a reconstruction network).
    donate: donate the input state's buffers (the caller must not reuse it).

  Returns:
    ``train_step``; its metrics are float32 scalars: ``loss`` (data term),
    ``total_loss`` (with penalties), the loss function's metrics,
    ``learning_rate``, and the global L2 norms ``grad_norm``, ``param_norm`` and
    ``update_norm``.
  """
  if l1 < 0 or l2 < 0:
    raise ValueError(f"l1 and l2 must be >= 0; got l1={l1!r}, l2={l2!r}")
  input_keys = _input_keys(input_key)
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  schedule = None if learning_rate is None else (
      learning_rate if callable(learning_rate)
      else optax.constant_schedule(learning_rate))

  def step(state: TrainState, batch):
    dropout_key = state.step_key()
    has_bn = bool(state.batch_stats)

    def objective(params):
      variables = {"params": params}
      if has_bn:
        variables["batch_stats"] = state.batch_stats
      outputs, updates = state.apply_fn(
          variables, *(batch[k] for k in input_keys), train=True,
          rngs={"dropout": dropout_key},
          mutable=["batch_stats"] if has_bn else [])
      loss, metrics = loss_fn(outputs, batch)
      total = loss
      if l1:
        total = total + l1 * losses.l1_penalty(params)
      if l2:
        total = total + l2 * losses.l2_penalty(params)
      return total, (loss, metrics, updates)

    (total, (loss, metrics, updates)), grads = jax.value_and_grad(
        objective, has_aux=True)(state.params)
    param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, param_updates)
    new_state = state.replace(
        step=state.step + 1,
        params=params,
        opt_state=opt_state,
        batch_stats=updates["batch_stats"] if has_bn else state.batch_stats)
    metrics = dict(metrics)
    metrics["loss"] = loss
    metrics["total_loss"] = total
    metrics["grad_norm"] = optax.tree.norm(grads)
    metrics["param_norm"] = optax.tree.norm(params)
    metrics["update_norm"] = optax.tree.norm(param_updates)
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(
      step,
      in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
      out_shardings=(replicated, replicated),
      donate_argnums=(0,) if donate else (),
      compiler_options=compiler_options())

  def train_step(state: TrainState, batch):
    _check_batch(batch, input_keys, loss_fn)
    return compiled(state, _on_mesh(batch, mesh))

  train_step.jitted = compiled
  return train_step


def make_eval_step(
    loss_fn: LossFn,
    *,
    mesh: Mesh | None = None,
    input_key: InputKeys = "image",
) -> Callable[[TrainState, Any], dict]:
  """Builds ``eval_step(state, batch) -> metrics`` (model in eval mode).

  Metrics are means over the batch, plus ``count``, the number of examples
  (the sum of ``batch["weight"]`` when given, so padding does not count), so
  that callers can weight batches of different sizes. `input_key` is as in
  `make_train_step`.
  """
  input_keys = _input_keys(input_key)
  if mesh is None:
    mesh = mesh_lib.make_mesh()

  def step(state: TrainState, batch):
    outputs = state.apply_fn(state.variables, *(batch[k] for k in input_keys),
                             train=False)
    loss, metrics = loss_fn(outputs, batch)
    metrics = dict(metrics, loss=loss)
    metrics = jax.tree.map(lambda m: m.astype(jnp.float32), metrics)
    if WEIGHT_KEY in batch:
      metrics["count"] = batch[WEIGHT_KEY].astype(jnp.float32).sum()
    else:
      metrics["count"] = jnp.asarray(batch[input_keys[0]].shape[0], jnp.float32)
    return metrics

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                     out_shardings=replicated, compiler_options=compiler_options())

  def eval_step(state: TrainState, batch):
    _check_batch(batch, input_keys, loss_fn)
    return compiled(state, _on_mesh(batch, mesh))

  eval_step.jitted = compiled
  return eval_step


def predict(state: TrainState, x: np.ndarray) -> np.ndarray:
  """Model outputs in eval mode for host inputs ``x`` (single process helper)."""
  return np.asarray(state.apply_fn(state.variables, jnp.asarray(x), train=False))
