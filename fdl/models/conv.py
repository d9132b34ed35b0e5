"""The one 2-D convolution of fdl's models, with CPU lowerings that were measured to help.

`Conv` is ``flax.linen.Conv`` (same fields, parameter names ``kernel [kh, kw, in, out]``
and ``bias [out]``, shapes, initializers and auto-names ``Conv_0, Conv_1, ...``), so
checkpoints and parameter counts do not change. Only how its convolution is lowered is
chosen, at trace time, per backend (`resolved_lowering`):

- ``'xla'``: ``lax.conv_general_dilated`` and its autodiff gradient, compiled with
  XLA's default options. The default on GPU and TPU (cuDNN, the TPU emitter).
- ``'cpu_vjp'``, the default on CPU, two measured changes (``benchmarks/NOTES.md``):

  1. programs are compiled with `compiler_options`, which keep XLA:CPU's convolutions
     (forward and both gradients) on its multi-threaded Eigen kernels. On jaxlib 0.10
     the YNNPACK path that XLA:CPU picks by default ran 'SAME'-padded convolutions on
     one core and the gradient convolutions 2-3x slower. fdl's step builders apply
     them; code that jits fdl models itself passes ``compiler_options()`` to ``jax.jit``.
  2. for batches of at most ``_MAX_TAPS_BATCH`` images (unrolled MRI networks train on
     one slice), a `jax.custom_vjp` computes the kernel gradient as ``kh * kw`` matrix
     products of shifted, strided slices of the zero-padded input ``xp``:

       dw[a, b, c, o] = sum_{n, i, j} xp[n, s_h i + a, s_w j + b, c] g[n, i, j, o]

     where XLA's own kernel-gradient convolution is slow at large H, W and small
     batch. The input gradient stays autodiff's transposed convolution.
  3. when the output has at most ``_MAX_PATCHES_AREA`` pixels (``Ho * Wo``; VGG's last
     stage on 32 x 32 images runs at 2 x 2), `conv2d_patches` computes the convolution
     as one matrix product of the ``kh * kw`` shifted slices, concatenated along the
     channels, with the flattened kernel; autodiff differentiates that. XLA:CPU ran a
     3 x 3 convolution on a [256, 2, 2, 512] input in 4.8 s forward and 9.1 s with both
     gradients (about 1 GFLOP/s); as patches it took 45 and 114 ms.

The choice never changes parameters or the function computed (tests compare both to
1e-5). `conv_lowering` overrides it, e.g. for tests, and so does the environment
variable ``FDL_CONV_LOWERING`` for a whole process. A call the custom gradient does not
cover (not 2-D NHWC/HWIO, dilation, feature groups, negative padding,
``preferred_element_type``) falls back to ``lax.conv_general_dilated`` with a warning.

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
from collections.abc import Iterator
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
# Batches up to this size take the custom kernel gradient (`conv2d_nhwc`); larger ones
# XLA's own. Measured with jaxlib 0.10 on 2 cores, compiled with `compiler_options()`:
# MoDL's [1, 256, 256, 48] -> 48 layer's kernel gradient took 92 ms as taps and 174 ms
# from autodiff; at batch 4 and above autodiff's was faster (U-Net [4, 320, 320, 32]:
# 178 vs 305 ms; ResNet [128, 32, 32, 64]: 155 vs 270 ms).
_MAX_TAPS_BATCH = 2
# Outputs of at most this many pixels (Ho * Wo) are computed as one patches matrix
# product (`conv2d_patches`). Measured with jaxlib 0.10 on 2 cores (Intel Xeon), 3 x 3
# convolutions 512 -> 512 at batch 64, forward / both gradients in ms: 2 x 2: XLA
# 1197 / 2301, patches 13 / 59; 1 x 1: 14 / 37 against 5 / 14; 3 x 3: XLA was faster
# (16 / 63 against 20 / 77), and so it was at 4 x 4 and above.
_MAX_PATCHES_AREA = 4


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

  Under ``'cpu_vjp'``, 2-D NHWC / HWIO convolutions with any strides and non-negative
  padding whose output has at most ``_MAX_PATCHES_AREA`` pixels are `conv2d_patches`;
  the others of at most ``_MAX_TAPS_BATCH`` images take `conv2d_nhwc`'s kernel gradient;
  larger batches run ``lax.conv_general_dilated`` as they are; other calls do too, with
  a warning once per kind of call.
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
  ho, wo = _output_size(lhs.shape, rhs.shape, strides, pads)
  if ho < 1 or wo < 1:
    return xla()  # An empty output: lax's own error message.
  if ho * wo <= _MAX_PATCHES_AREA:
    return conv2d_patches(lhs, rhs, strides, pads, precision)
  if lhs.shape[0] > _MAX_TAPS_BATCH:
    return xla()
  return conv2d_nhwc(lhs, rhs, strides, pads, precision)


def _output_size(x_shape, w_shape, strides, pads) -> tuple[int, int]:
  return tuple((x_shape[1 + i] + sum(pads[i]) - w_shape[i]) // strides[i] + 1
               for i in range(2))


def _shifted_slices(xp, kernel_hw, strides, out_hw):
  """``[xp[:, a::s_h, b::s_w][:, :Ho, :Wo] for a < kh for b < kw]``, tap-major."""
  n, c = xp.shape[0], xp.shape[3]
  (kh, kw), (sh, sw), (ho, wo) = kernel_hw, strides, out_hw
  return [lax.slice(xp, (0, a, b, 0), (n, a + sh * (ho - 1) + 1, b + sw * (wo - 1) + 1, c),
                    (1, sh, sw, 1))
          for a in range(kh) for b in range(kw)]


def conv2d_patches(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                   pads: tuple[tuple[int, int], tuple[int, int]], precision=None) -> jax.Array:
  """2-D cross-correlation as one matrix product of patches (for tiny outputs).

  ``y[n, i, j] = concat_{a, b} xp[n, s_h i + a, s_w j + b, :] @ w.reshape(kh kw C, O)``
  with ``xp`` the zero-padded input; its gradients are autodiff's (slices, pads and
  matrix products, no convolution).

  Args:
    x: ``[N, H, W, C]``.
    w: ``[kh, kw, C, O]``, the same dtype as ``x``.
    strides: ``(s_h, s_w)``.
    pads: ``((top, bottom), (left, right))``, non-negative.
    precision: passed to the matrix product.

  Returns:
    ``[N, Ho, Wo, O]`` in ``x``'s dtype, equal to ``lax.conv_general_dilated`` with NHWC /
    HWIO / NHWC dimension numbers.
  """
  kh, kw, c, o = w.shape
  ho, wo = _output_size(x.shape, w.shape, strides, pads)
  xp = jnp.pad(x, ((0, 0),) + tuple(pads) + ((0, 0),))
  patches = jnp.concatenate(_shifted_slices(xp, (kh, kw), strides, (ho, wo)), axis=-1)
  return jnp.dot(patches, w.reshape(kh * kw * c, o), precision=precision)


def _forward(x, w, strides, pads, precision):
  return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC,
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d_nhwc(x: jax.Array, w: jax.Array, strides: tuple[int, int],
                pads: tuple[tuple[int, int], tuple[int, int]], precision=None) -> jax.Array:
  """2-D cross-correlation whose kernel gradient is ``kh * kw`` matrix products.

  Args:
    x: ``[N, H, W, C]``.
    w: ``[kh, kw, C, O]``, the same dtype as ``x``.
    strides: ``(s_h, s_w)``.
    pads: ``((top, bottom), (left, right))``, non-negative.
    precision: passed to every convolution and matrix product.

  Returns:
    ``[N, Ho, Wo, O]`` with ``Ho = (H + top + bottom - kh) // s_h + 1`` (same for W),
    equal to ``lax.conv_general_dilated`` with NHWC / HWIO / NHWC dimension numbers.
    The input gradient is autodiff's; the kernel gradient is `_kernel_grad`.
  """
  return _forward(x, w, strides, pads, precision)


def _conv2d_fwd(x, w, strides, pads, precision):
  return _forward(x, w, strides, pads, precision), (x, w)


def _kernel_grad(xp, g, kernel_shape, strides, precision):
  """``dw[a, b] = xp[:, a::s_h, b::s_w]^T g``: one matrix product per kernel tap."""
  kh, kw, c, o = kernel_shape
  n, ho, wo, _ = g.shape
  g2 = g.reshape(n * ho * wo, o)
  taps = [jnp.dot(xs.reshape(n * ho * wo, c).T, g2, precision=precision,
                  preferred_element_type=jnp.float32)
          for xs in _shifted_slices(xp, (kh, kw), strides, (ho, wo))]
  return jnp.stack(taps).reshape(kh, kw, c, o)


def _conv2d_bwd(strides, pads, precision, residuals, g):
  x, w = residuals
  (pt, pb), (pl, pr) = pads
  g = g.astype(x.dtype)
  # The input gradient is linear in x: autodiff's transposed convolution (no forward
  # pass is left in the compiled program once the unused primal output is dropped).
  _, input_vjp = jax.vjp(lambda x_: _forward(x_, w, strides, pads, precision), x)
  (dx,) = input_vjp(g)
  xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  dw = _kernel_grad(xp, g, w.shape, strides, precision).astype(w.dtype)
  return dx, dw


conv2d_nhwc.defvjp(_conv2d_fwd, _conv2d_bwd)


def _supported_compiler_options(options: dict) -> dict:
  """`options` if this jaxlib compiles with them, else {} (with a warning, once)."""
  key = tuple(sorted(options.items()))
  if key not in _options_checked:
    try:
      jax.jit(lambda x: x + 1, compiler_options=options).lower(
          jnp.zeros((), jnp.float32)).compile()
      _options_checked[key] = True
    except Exception as error:  # pylint: disable=broad-except
      _options_checked[key] = False
      warnings.warn(f'fdl.models.conv: this jaxlib rejects the compiler options {options} '
                    f'({type(error).__name__}: {error}); compiling with XLA\'s defaults')
  return options if _options_checked[key] else {}


_options_checked: dict = {}


def compiler_options(backend: str | None = None) -> dict:
  """XLA compiler options for a jitted program whose convolutions use `Conv`'s lowering.

  On CPU under ``'cpu_vjp'`` (the default there): ``xla_cpu_experimental_ynn_fusion_type=''``,
  which keeps XLA:CPU's convolutions on its Eigen kernels instead of YNNPACK. With
  jaxlib 0.10 on this project's 2-core machines YNNPACK ran the convolutions with
  'SAME' / 'VALID' padding on one core and the gradient convolutions 2-3x slower
  (``benchmarks/NOTES.md``). ``{}`` (XLA's defaults) on other backends, under
  ``'xla'``, or when the installed jaxlib does not know the option. fdl's step
  builders pass these to ``jax.jit``; pass them too when jitting `Conv` models yourself:
  ``jax.jit(f, compiler_options=compiler_options())``.
  """
  backend = backend or jax.default_backend()
  if backend != 'cpu' or resolved_lowering() == 'xla':
    return {}
  return _supported_compiler_options({'xla_cpu_experimental_ynn_fusion_type': ''})


class Conv(nn.Conv):
  """``flax.linen.Conv`` whose convolution is `conv_general_dilated` (see the module doc).

  Every field, parameter and auto-name is ``nn.Conv``'s; only the lowering differs.
  """

  conv_general_dilated: Any = conv_general_dilated
