"""Argument checks shared by the model modules.

Models validate their configuration when they are constructed and their input at the top of
``__call__``, on static shapes and dtypes only, so a mistake surfaces as a clear ``ValueError``
or ``TypeError`` at the public boundary instead of as a shape error deep inside a trace.
"""

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp


def check_choice(field: str, value: Any, allowed: Sequence[Any]) -> None:
  """Raises ``ValueError`` unless ``value`` is one of ``allowed``."""
  if value not in allowed:
    raise ValueError(f'{field} must be one of {tuple(allowed)}; got {value!r}')


def check_positive(field: str, value: Any) -> None:
  """Raises ``ValueError`` unless ``value`` is a positive int."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{field} must be a positive int; got {value!r}')


def check_positive_sequence(field: str, values: Any, *, allow_empty: bool) -> None:
  """Raises ``ValueError`` unless ``values`` is a sequence of positive ints."""
  ok = isinstance(values, Sequence) and not isinstance(values, str)
  ok = ok and (allow_empty or len(values) > 0)
  ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
  if not ok:
    kind = 'a' if allow_empty else 'a non-empty'
    raise ValueError(f'{field} must be {kind} sequence of positive ints; got {values!r}')


def check_rate(field: str, value: Any) -> None:
  """Raises ``ValueError`` unless ``0 <= value < 1`` (a drop probability)."""
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
    raise ValueError(f'{field} must be a float in [0, 1); got {value!r}')


def check_input(x: Any, *, rank: int, layout: str, at_least: bool = False) -> None:
  """Checks a network input's dtype (floating) and rank.

  Args:
    x: the input array; only its static ``dtype`` and ``shape`` are read, so this is safe
      under ``jax.jit`` tracing.
    rank: the expected rank (or the minimum rank when ``at_least``).
    layout: the axes for the message, e.g. ``'[batch, H, W, C]'``.
    at_least: accept any rank ``>= rank``.

  Raises:
    TypeError: ``x`` is not a floating-point array (integer, bool and complex are rejected:
      complex MRI images enter networks as two real channels).
    ValueError: ``x`` has the wrong rank.
  """
  dtype = getattr(x, 'dtype', None)
  shape = getattr(x, 'shape', None)
  rank_text = f'rank >= {rank}' if at_least else f'rank {rank}'
  got = f'got {dtype} with shape {shape}' if dtype is not None else f'got {type(x).__name__}'
  message = f'x must be a float array of {rank_text} {layout}; {got}'
  if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
    raise TypeError(message)
  if len(shape) < rank or (not at_least and len(shape) != rank):
    raise ValueError(message)
