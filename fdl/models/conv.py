"""The one 2-D convolution of fdl's models, with a fast gradient on XLA:CPU.

`Conv` is ``flax.linen.Conv`` (same fields, parameter names ``kernel [kh, kw, in, out]``
and ``bias [out]``, shapes, initializers and auto-names ``Conv_0, Conv_1, ...``), so
checkpoints and parameter counts do not change. Only the lowering of its convolution
is chosen, at trace time, per backend:

- ``'xla'``: ``lax.conv_general_dilated``; its gradient is what autodiff emits. The
  default on GPU and TPU, where XLA calls cuDNN or its TPU convolution emitter.
- ``'cpu_vjp'``: the same forward convolution, with a `jax.custom_vjp` whose backward
  pass avoids the convolutions that XLA:CPU runs 10-20x slower than its forward one
  (``benchmarks/NOTES.md``). For ``y = conv(x, w)`` with strides ``s`` and padding
  ``p`` (``xp`` = ``x`` zero-padded by ``p``):

    y[n, i, j, o]   = sum_{a, b, c} xp[n, s_h i + a, s_w j + b, c] w[a, b, c, o]
    dw[a, b, c, o]  = sum_{n, i, j} xp[n, s_h i + a, s_w j + b, c] g[n, i, j, o]
    dxp[n, s_h m + r, s_w l + q, c]
                    = sum_{t, u, o} g[n, m - t, l - u, o] w[r + s_h t, q + s_w u, c, o]

  ``dw`` is ``kh * kw`` matrix products ``xp_slice^T g`` of shifted, strided slices of
  ``xp``. ``dxp`` is one *forward* convolution of ``g`` with the spatially flipped,
  in/out-transposed kernel; for strides > 1, the kernel's ``s_h * s_w`` phases
  ``w[r::s_h, q::s_w]`` are stacked as output channels of that one convolution, whose
  output is then interleaved (depth-to-space) and cropped back to ``x``'s size. The
  default on CPU.

The choice never changes parameters or the function computed (tests compare both to
1e-5). `conv_lowering` overrides it, e.g. for tests, and so does the environment
variable ``FDL_CONV_LOWERING`` for a whole process. A case the fast gradient does not
cover (not 2-D NHWC/HWIO, dilation, feature groups, negative padding,
``preferred_element_type``) falls back to ``'xla'`` with a warning.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> conv = Conv(8, (3, 3), strides=2)
  >>> x = jnp.ones((2, 9, 9, 3))
  >>> variables = conv.init(jax.random.key(0), x)
  >>> conv.apply(variables, x).shape, variables['params']['kernel'].shape
  ((2, 5, 5, 8), (3, 3, 3, 8))
  >>> with conv_lowering('xla'):
  ...   y_xla = jax.jit(conv.apply)(variables, x)
  >>> bool(jnp.allclose(y_xla, conv.apply(variables, x), atol=1e-6))
  True
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

LOWERINGS = ('auto', 'xla', 'cpu_vjp')
_NHWC = ('NHWC', 'HWIO', 'NHWC')

# The process-wide default: $FDL_CONV_LOWERING (for whole-program comparisons, e.g. the
# step benchmark's before / after), else 'auto'.
_lowering = contextvars.ContextVar('fdl_conv_lowering',
                                   default=os.environ.get('FDL_CONV_LOWERING', 'auto'))
_warned: set[str] = set()


@contextlib.contextmanager
def conv_lowering(name: str) -> Iterator[None]:
  """Within the block, `Conv` traces with lowering ``name`` (one of `LOWERINGS`).

  The choice is made when a function is traced: a function that ``jax.jit`` already
  compiled keeps the lowering it was traced with, so jit a fresh function (or call it
  on new shapes) inside the block.
  """
  if name not in LOWERINGS:
    raise ValueError(f'conv lowering must be one of {LOWERINGS}; got {name!r}')
  token = _lowering.set(name)
  try:
    yield
  finally:
    _lowering.reset(token)


def resolved_lowering() -> str:
  """The lowering `Conv` uses if traced now: ``'xla'`` or ``'cpu_vjp'``."""
  name = _lowering.get()
  if name not in LOWERINGS:
    raise ValueError(f'FDL_CONV_LOWERING must be one of {LOWERINGS}; got {name!r}')
  if name == 'auto':
    return 'cpu_vjp' if jax.default_backend() == 'cpu' else 'xla'
  return name


def _normalize_dimension_numbers(dimension_numbers, ndim: int):
  if dimension_numbers is None:
    return None
  if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
    return dimension_numbers
  return lax.conv_dimension_numbers((1,) * ndim, (1,) * ndim, dimension_numbers)


def _unsupported(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                 feature_group_count, batch_group_count, preferred_element_type):
  """Why the fast gradient does not cover a call, or None when it does."""
  if lhs.ndim != 4 or rhs.ndim != 4:
    return f'rank {lhs.ndim} input (only 2-D convolutions, rank 4)'
  nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
  if _normalize_dimension_numbers(dimension_numbers, lhs.ndim) != nhwc:
    return f'dimension_numbers {dimension_numbers} (only NHWC / HWIO / NHWC)'
  if any(d != 1 for d in (lhs_dilation or ())) or any(d != 1 for d in (rhs_dilation or ())):
    return f'dilation lhs={lhs_dilation} rhs={rhs_dilation}'
  if feature_group_count != 1 or batch_group_count != 1:
    return f'feature_group_count={feature_group_count}, batch_group_count={batch_group_count}'
  if preferred_element_type is not None:
    return f'preferred_element_type={preferred_element_type}'
  if not isinstance(padding, str) and any(lo < 0 or hi < 0 for lo, hi in padding):
    return f'negative padding {padding}'
  if lhs.dtype != rhs.dtype:
    return f'mixed dtypes {lhs.dtype} and {rhs.dtype}'
  return None


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """``lax.conv_general_dilated`` with the lowering of `resolved_lowering` (same signature).

  ``'cpu_vjp'`` covers 2-D NHWC / HWIO convolutions with any strides and non-negative
  padding; other calls run ``lax.conv_general_dilated`` and warn once per kind of call.
  """
  xla = functools.partial(
      lax.conv_general_dilated, lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
      rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
      feature_group_count=feature_group_count, batch_group_count=batch_group_count,
      precision=precision, preferred_element_type=preferred_element_type)
  if resolved_lowering() == 'xla':
    return xla()
  reason = _unsupported(lhs, rhs, padding, lhs_dilation, rhs_dilation, dimension_numbers,
                        feature_group_count, batch_group_count, preferred_element_type)
  if reason is not None:
    if reason not in _warned:
      _warned.add(reason)
      warnings.warn(f'fdl.models.conv: {reason} is not covered by the fast CPU gradient; '
                    'using lax.conv_general_dilated and its autodiff gradient', stacklevel=2)
    return xla()
  strides = tuple(int(s) for s in window_strides)
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:3], rhs.shape[:2], strides, padding)
  pads = tuple((int(lo), int(hi)) for lo, hi in padding)
  return conv2d_nhwc(lhs, rhs, strides, pads, precision)


def _forward(x, w, strides, pads, precision):
  """``lax.conv_general_dilated`` (NHWC / HWIO), computed through one extra padding row.

  XLA:CPU (jaxlib 0.10) runs convolutions with 'SAME'- or 'VALID'-like padding on a
  single thread, and others on all cores, 1.8-2x faster on 2 cores
  (``benchmarks/NOTES.md``). One more zero row at the bottom moves every call onto
  the fast path; the output row it may add is sliced off.
  """
  (pt, pb), (pl, pr) = pads
  ho = (x.shape[1] + pt + pb - w.shape[0]) // strides[0] + 1
  y = lax.conv_general_dilated(x, w, strides, ((pt, pb + 1), (pl, pr)),
                               dimension_numbers=_NHWC, precision=precision)
  return y[:, :ho] if y.shape[1] != ho else y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_nhwc(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                pads: tuple[tuple[int, int], tuple[int, int]], precision=None) -> jax.Array:
  """2-D cross-correlation with the fast CPU gradient.

  Args:
    x: ``[N, H, W, C]``.
    w: ``[kh, kw, C, O]``, the same dtype as ``x``.
    strides: ``(s_h, s_w)``.
    pads: ``((top, bottom), (left, right))``, non-negative.
    precision: passed to every convolution and matrix product.

  Returns:
    ``[N, Ho, Wo, O]`` with ``Ho = (H + top + bottom - kh) // s_h + 1`` (same for W),
    equal to ``lax.conv_general_dilated`` with NHWC / HWIO / NHWC dimension numbers.
  """
  return _forward(x, w, strides, pads, precision)


def _conv2d_fwd(x, w, strides, pads, precision):
  return _forward(x, w, strides, pads, precision), (x, w)


def _kernel_grad(xp, g, kernel_shape, strides, precision):
  """``dw[a, b] = xp[:, a::s_h, b::s_w]^T g``: one matrix product per kernel tap."""
  kh, kw, c, o = kernel_shape
  n, ho, wo, _ = g.shape
  sh, sw = strides
  g2 = g.reshape(n * ho * wo, o)
  taps = []
  for a in range(kh):
    for b in range(kw):
      xs = lax.slice(xp, (0, a, b, 0), (n, a + sh * (ho - 1) + 1, b + sw * (wo - 1) + 1, c),
                     (1, sh, sw, 1))
      taps.append(jnp.dot(xs.reshape(n * ho * wo, c).T, g2, precision=precision,
                          preferred_element_type=jnp.float32))
  return jnp.stack(taps).reshape(kh, kw, c, o)


def _input_grad(g, w, padded_shape, strides, precision):
  """``dxp`` (the gradient w.r.t. the padded input, ``[N, Hp, Wp, C]``) by one forward conv."""
  kh, kw, c, o = w.shape
  n, hp, wp, _ = padded_shape
  sh, sw = strides
  th, tw = -(-kh // sh), -(-kw // sw)  # Taps per phase (the longest phase).
  mh, mw = -(-hp // sh), -(-wp // sw)  # Output rows / columns per phase.
  # Phase (r, q) of the kernel, zero-padded at its end to th x tw taps: w[r + s_h t, q + s_w u].
  wz = jnp.pad(w, ((0, th * sh - kh), (0, tw * sw - kw), (0, 0), (0, 0)))
  phases = wz.reshape(th, sh, tw, sw, c, o)
  # Flip the taps (a correlation with g[m - t] becomes one with g[m - th + 1 + t']) and
  # transpose in/out: kernel [th, tw, O, s_h * s_w * C] with phases as output channels.
  kernel = phases[::-1, :, ::-1].transpose(0, 2, 5, 1, 3, 4).reshape(th, tw, o, sh * sw * c)
  ho, wo = g.shape[1:3]
  out = _forward(g, kernel, (1, 1), ((th - 1, max(mh - ho, 0)), (tw - 1, max(mw - wo, 0))),
                 precision)[:, :mh, :mw]
  if sh == sw == 1:
    return out[:, :hp, :wp]
  # Depth to space: out[n, m, l, (r, q, c)] is dxp[n, s_h m + r, s_w l + q, c].
  out = out.reshape(n, mh, mw, sh, sw, c).transpose(0, 1, 3, 2, 4, 5)
  return out.reshape(n, mh * sh, mw * sw, c)[:, :hp, :wp]


def _conv2d_bwd(strides, pads, precision, residuals, g):
  x, w = residuals
  (pt, pb), (pl, pr) = pads
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  g = g.astype(x.dtype)
  dw = _kernel_grad(xp, g, w.shape, strides, precision).astype(w.dtype)
  dxp = _input_grad(g, w, xp.shape, strides, precision)
  h, wd = x.shape[1:3]
  return dxp[:, pt:pt + h, pl:pl + wd].astype(x.dtype), dw


conv2d_nhwc.defvjp(_conv2d_fwd, _conv2d_bwd)


class Conv(nn.Conv):
  """``flax.linen.Conv`` whose convolution is `conv_general_dilated` (see the module doc).

  Every field, parameter and auto-name is ``nn.Conv``'s; only the lowering differs.
  """

  conv_general_dilated: Any = conv_general_dilated
