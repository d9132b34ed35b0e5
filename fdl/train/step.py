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
from fdl.models.conv import compiler_options
from fdl.train import mesh as mesh_lib
from fdl.train.state import TrainState

# loss_fn(outputs, batch) -> (scalar loss, {name: scalar metric}); means over the
# global batch, weighted by batch["weight"] when present.
LossFn = Callable[[jax.Array, Mapping[str, jax.Array]], tuple[jax.Array, dict]]

WEIGHT_KEY = "weight"


def _mean(values: jax.Array, batch: Mapping[str, jax.Array]) -> jax.Array:
  """Mean of per-example `values`, weighted by ``batch["weight"]`` if present.

  Evaluation pads the last batch to a multiple of the device count; padding
  examples carry weight 0 so they change neither sums nor counts.
  """
  if WEIGHT_KEY not in batch:
    return values.mean()
  weight = batch[WEIGHT_KEY].astype(values.dtype)
  return (values * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def classification_loss(*, label_smoothing: float = 0.0,
                        target_key: str = "label") -> LossFn:
  """Mean cross-entropy on integer labels, reporting accuracy too.

  Args:
    label_smoothing: epsilon of label smoothing, in [0, 1).
    target_key: batch key of the integer labels ``[batch]``.
  """
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(
        f"label_smoothing must be in [0, 1); got {label_smoothing!r}")

  def loss_fn(logits, batch):
    labels = batch[target_key]
    loss = _mean(losses.cross_entropy(logits, labels,
                                      label_smoothing=label_smoothing), batch)
    return loss, {"accuracy": _mean(losses.accuracy(logits, labels), batch)}

  loss_fn.target_key = target_key
  loss_fn.target_integer = True
  return loss_fn


def regression_loss(name: str = "mse", *, target_key: str = "target") -> LossFn:
  """Mean regression loss by name (``mse``, ``mae``, ``ssim_loss``)."""
  if name not in ("mse", "mae", "ssim_loss"):
    raise ValueError(
        f"regression loss must be one of ('mse', 'mae', 'ssim_loss'); got {name!r}")
  per_example = losses.get_loss(name)

  def loss_fn(outputs, batch):
    return _mean(per_example(outputs, batch[target_key]), batch), {}

  loss_fn.target_key = target_key
  loss_fn.target_integer = False
  return loss_fn


InputKeys = str | Sequence[str]


def _input_keys(input_key: InputKeys) -> tuple[str, ...]:
  keys = (input_key,) if isinstance(input_key, str) else tuple(input_key)
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f"input_key must be a key or a sequence of keys; got {input_key!r}")
  return keys


RECONSTRUCTION_LOSSES = ("l1", "ssim", "mixed")


def reconstruction_loss(name: str = "l1", *, ssim_weight: float = 0.84,
                        target_key: str = "target",
                        data_range_key: str = "data_range") -> LossFn:
  """Loss of a magnitude reconstruction ``[B, H, W]`` against ``batch["target"]``.

  The output is center-cropped to the target's ``[h, w]`` first (fastMRI
  targets are cropped to the reconstruction size). With ``e = |out - target|``
  and ``L = batch["data_range"]`` (``[B]``, the target volume's maximum):

  - ``l1``: ``mean(e)``;
  - ``ssim``: ``1 - SSIM(out, target; L)`` (7x7 box window, as fastMRI);
  - ``mixed``: ``ssim_weight * (1 - SSIM) + (1 - ssim_weight) * mean(e)``
    (Zhao et al., "Loss functions for image restoration with neural networks",
    IEEE TCI 2017, weight 0.84).

  Every variant also reports the per-batch means of ``l1``, ``ssim``, ``psnr``
  (dB, with ``L``) and ``nmse`` as metrics.
  """
  if name not in RECONSTRUCTION_LOSSES:
    raise ValueError(
        f"reconstruction loss must be one of {RECONSTRUCTION_LOSSES}; got {name!r}")
  if not 0.0 <= ssim_weight <= 1.0:
    raise ValueError(f"ssim_weight must be in [0, 1]; got {ssim_weight!r}")

  def loss_fn(outputs, batch):
    target = batch[target_key].astype(jnp.float32)
    top = (outputs.shape[-2] - target.shape[-2]) // 2
    left = (outputs.shape[-1] - target.shape[-1]) // 2
    outputs = outputs[..., top:top + target.shape[-2], left:left + target.shape[-1]]
    data_range = batch[data_range_key].astype(jnp.float32)
    l1 = losses.mae(outputs, target)
    ssim = losses.ssim(outputs, target, data_range=data_range)
    sq_err = jnp.sum(jnp.square(outputs - target), axis=(-2, -1))
    mse = sq_err / (target.shape[-2] * target.shape[-1])
    per_example = {"l1": l1, "ssim": 1.0 - ssim,
                   "mixed": ssim_weight * (1.0 - ssim) + (1.0 - ssim_weight) * l1}[name]
    metrics = {
        "l1": _mean(l1, batch), "ssim": _mean(ssim, batch),
        "psnr": _mean(20.0 * jnp.log10(data_range) - 10.0 * jnp.log10(mse), batch),
        "nmse": _mean(sq_err / jnp.sum(jnp.square(target), axis=(-2, -1)), batch)}
    return _mean(per_example, batch), metrics

  loss_fn.target_key = target_key
  loss_fn.target_integer = False
  return loss_fn


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
