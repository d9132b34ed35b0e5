"""Conjugate gradient for batched Hermitian positive-definite systems, in JAX."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def _batch_dot(a: jax.Array, b: jax.Array) -> jax.Array:
  """Re <a, b> per batch element: sum over all non-batch axes of conj(a) b."""
  axes = tuple(range(1, a.ndim))
  return jnp.real(jnp.sum(jnp.conj(a) * b, axis=axes))


def _safe_div(num: jax.Array, den: jax.Array) -> jax.Array:
  # Double `where`, so that neither the value nor the gradient is NaN when a
  # system has converged exactly (residual and search direction both zero).
  ok = den > 0
  return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def cg(normal_op: Callable[[jax.Array], jax.Array], rhs: jax.Array,
       x0: jax.Array | None = None, num_iters: int = 10, tol: float = 0.0
       ) -> jax.Array:
  """Solves ``normal_op(x) = rhs`` by conjugate gradient, for each batch element.

  ``normal_op`` must be linear, Hermitian and positive definite on each batch
  element separately (e.g. ``x -> sense_normal(x, maps, mask) + lam * x``).
  Iterations run in a `lax.fori_loop` of fixed length, so the solver is
  jit-able and reverse-differentiable; an element whose residual norm has
  reached ``tol * ||rhs||`` (a *relative* tolerance) stops changing.

  Args:
    normal_op: ``x [B, ...] -> [B, ...]``.
    rhs: right-hand side ``[B, ...]``, real or complex.
    x0: initial guess like `rhs`; zeros by default.
    num_iters: number of iterations (>= 0).
    tol: relative residual tolerance ``||r|| / ||rhs||`` (>= 0). Values below
      10 machine epsilons of the dtype (1.2e-6 for float32) act as that floor.

  Returns:
    The approximate solution, shaped like `rhs`.

  Examples:
    >>> import jax.numpy as jnp
    >>> a = jnp.array([[4.0, 1.0], [1.0, 3.0]])
    >>> x = cg(lambda v: v @ a.T, jnp.array([[1.0, 2.0]]), num_iters=2)
    >>> [round(float(v), 5) for v in x[0]]  # = solve(a, [1, 2])
    [0.09091, 0.63636]
  """
  if num_iters < 0:
    raise ValueError(f"num_iters must be >= 0; got {num_iters}")
  if tol < 0:
    raise ValueError(f"tol must be >= 0 (relative); got {tol}")
  rhs = jnp.asarray(rhs)
  if rhs.ndim < 1:
    raise ValueError(f"rhs must have a batch axis [B, ...]; got shape {rhs.shape}")
  x = jnp.zeros_like(rhs) if x0 is None else jnp.asarray(x0, rhs.dtype)
  if x.shape != rhs.shape:
    raise ValueError(f"x0 {x.shape} must have the shape of rhs {rhs.shape}")
  expand = lambda v: v.reshape(v.shape + (1,) * (rhs.ndim - 1))
  # Below ~10 machine epsilons the relative residual is rounding noise; going on
  # would divide ever tinier numbers and overflow the gradient.
  floor = 10 * float(jnp.finfo(jnp.real(rhs).dtype).eps)
  threshold = (max(tol, floor) ** 2) * _batch_dot(rhs, rhs)

  r = rhs - normal_op(x) if x0 is not None else rhs
  p = r
  rs = _batch_dot(r, r)

  def body(_, carry):
    x, r, p, rs = carry
    active = rs > threshold
    ap = normal_op(p)
    alpha = _safe_div(rs, _batch_dot(p, ap))
    alpha = jnp.where(active, alpha, 0.0)
    x = x + expand(alpha).astype(rhs.dtype) * p
    r = r - expand(alpha).astype(rhs.dtype) * ap
    rs_new = _batch_dot(r, r)
    beta = jnp.where(active, _safe_div(rs_new, rs), 0.0)
    p = jnp.where(expand(active), r + expand(beta).astype(rhs.dtype) * p, p)
    return x, r, p, jnp.where(active, rs_new, rs)

  x, *_ = jax.lax.fori_loop(0, num_iters, body, (x, r, p, rs))
  return x
