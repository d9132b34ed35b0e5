"""Optimizers and learning-rate schedules by name, composed from Optax.

Names are validated when the optimizer is built, so a typo in a config fails at
start-up with the list of known names, not deep inside a compiled step.
"""

from __future__ import annotations

import warnings
from typing import Callable, Sequence

import jax
import optax

SCHEDULES = ("constant", "step", "cosine", "warmup_cosine")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adam", "adamw")


def _check_positive(name: str, value, *, allow_zero: bool = False):
  ok = value >= 0 if allow_zero else value > 0
  if not ok:
    bound = ">= 0" if allow_zero else "> 0"
    raise ValueError(f"{name} must be {bound}; got {value!r}")


def make_schedule(
    name: str,
    *,
    learning_rate: float,
    total_steps: int,
    warmup_steps: int = 0,
    boundaries: Sequence[float] = (0.5, 0.75),
    decay_factor: float = 0.1,
    end_learning_rate: float = 0.0,
) -> optax.Schedule:
  """Builds a learning-rate schedule ``step -> learning rate``.

  Args:
    name: one of ``constant``, ``step`` (multiply by `decay_factor` at each of
      `boundaries`, given as fractions of `total_steps`), ``cosine`` (cosine
      decay from `learning_rate` to `end_learning_rate` over `total_steps`),
      ``warmup_cosine`` (linear warm-up from 0 over `warmup_steps`, then cosine).
    learning_rate: peak learning rate.
    total_steps: number of optimizer steps in the run (> 0).
    warmup_steps: linear warm-up steps, for ``warmup_cosine`` (>= 0). A value
      that leaves no step for the decay (``>= total_steps``, as a warm-up given
      in epochs does in a one-epoch run) is clamped to ``total_steps - 1``
      with a warning.
    boundaries: fractions in (0, 1) of `total_steps`, for ``step``.
    decay_factor: multiplier applied at each boundary, for ``step``.
    end_learning_rate: final value of the cosine schedules.

  Returns:
    An Optax schedule.

  Raises:
    ValueError: an unknown `name`, a non-positive `learning_rate` or
      `total_steps`, a negative `warmup_steps`, or `boundaries` outside (0, 1).
  """
  if name not in SCHEDULES:
    raise ValueError(f"schedule must be one of {SCHEDULES}; got {name!r}")
  _check_positive("learning_rate", learning_rate)
  _check_positive("total_steps", total_steps)
  _check_positive("warmup_steps", warmup_steps, allow_zero=True)
  if name == "constant":
    return optax.constant_schedule(learning_rate)
  if name == "step":
    if any(not 0 < b < 1 for b in boundaries):
      raise ValueError(
          f"boundaries must be fractions in (0, 1) of total_steps; got "
          f"{tuple(boundaries)}")
    return optax.piecewise_constant_schedule(
        learning_rate,
        {int(round(b * total_steps)): decay_factor for b in boundaries})
  if name == "cosine":
    return optax.cosine_decay_schedule(
        learning_rate, total_steps, alpha=end_learning_rate / learning_rate)
  if warmup_steps >= total_steps:
    # Usually derived (warm-up epochs times steps per epoch), so a short run
    # should still train: keep at least one step of decay to the end value.
    used = total_steps - 1
    warnings.warn(
        f"warmup_steps={warmup_steps} leaves no decay step in total_steps="
        f"{total_steps}; using warmup_steps={used}", stacklevel=2)
    warmup_steps = used
  return optax.warmup_cosine_decay_schedule(
      0.0, learning_rate, warmup_steps, total_steps, end_value=end_learning_rate)


def _kernels_mask(params):
  # Decay multi-dimensional weights (conv and dense kernels) only: biases, norm
  # scales and PReLU slopes are not regularized, the usual practice.
  return jax.tree.map(lambda p: p.ndim > 1, params)


def make_optimizer(
    name: str,
    learning_rate: float | optax.Schedule,
    *,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    grad_clip_norm: float | None = None,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
) -> optax.GradientTransformation:
  """Builds an Optax optimizer by name.

  Args:
    name: ``sgd``, ``momentum`` (heavy ball), ``nesterov``, ``adam`` or ``adamw``.
    learning_rate: a float or an Optax schedule.
    momentum: momentum coefficient for ``momentum`` and ``nesterov``.
    weight_decay: for ``adamw`` the decoupled decay; for the others an L2 term
      ``weight_decay * w`` added to the gradient (as PyTorch's SGD does). Only
      kernels (ndim > 1) are decayed.
    grad_clip_norm: if set, gradients are clipped to this global L2 norm first.
    b1, b2, eps: Adam moments' decay rates and epsilon.

  Returns:
    An `optax.GradientTransformation`.
  """
  if name not in OPTIMIZERS:
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}; got {name!r}")
  if not callable(learning_rate):
    _check_positive("learning_rate", learning_rate)
  _check_positive("weight_decay", weight_decay, allow_zero=True)
  if not 0 <= momentum < 1:
    raise ValueError(f"momentum must be in [0, 1); got {momentum!r}")
  if grad_clip_norm is not None:
    _check_positive("grad_clip_norm", grad_clip_norm)

  parts = []
  if grad_clip_norm is not None:
    parts.append(optax.clip_by_global_norm(grad_clip_norm))
  if name == "adamw":
    parts.append(optax.adamw(learning_rate, b1=b1, b2=b2, eps=eps,
                             weight_decay=weight_decay, mask=_kernels_mask))
  else:
    if weight_decay:
      parts.append(optax.add_decayed_weights(weight_decay, mask=_kernels_mask))
    if name == "sgd":
      parts.append(optax.sgd(learning_rate))
    elif name == "momentum":
      parts.append(optax.sgd(learning_rate, momentum=momentum))
    elif name == "nesterov":
      parts.append(optax.sgd(learning_rate, momentum=momentum, nesterov=True))
    else:
      parts.append(optax.adam(learning_rate, b1=b1, b2=b2, eps=eps))
  return optax.chain(*parts)


def as_schedule(learning_rate: float | optax.Schedule) -> Callable:
  """Returns `learning_rate` as a schedule (a constant one for a float)."""
  if callable(learning_rate):
    return learning_rate
  return optax.constant_schedule(learning_rate)
