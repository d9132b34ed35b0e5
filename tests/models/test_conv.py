"""Tests of fdl.models.conv: the custom CPU kernel gradient against autodiff and NumPy,
bfloat16, the lowering choice and compiler options, the fallback, whole-model gradients
and unchanged parameters.

Gradients are of ``sum(y * g)`` with a fixed random cotangent ``g``; errors are
``max |a - b| / max |b|``. The lowering is chosen at trace time, so every comparison jits a
fresh function inside its ``conv_lowering`` block.
"""

import functools
import math
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from fdl.models import CNN, ResNet, UNet, conv, resnet18

NHWC = ('NHWC', 'HWIO', 'NHWC')


def rel_err(a, b):
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def normal(shape, seed, dtype=jnp.float32):
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), dtype)


def _value_and_grads(x, w, g, *, lowering, strides, padding):
  """``(y, dx, dw)`` of ``sum(y * g)``, ``y = conv.conv_general_dilated(x, w)`` traced
  under ``lowering`` (a static argument, so each lowering gets its own trace); ``'lax'``
  differentiates plain ``lax.conv_general_dilated``, the reference."""
  fn = lax.conv_general_dilated if lowering == 'lax' else conv.conv_general_dilated

  def loss(x, w):
    y = fn(x, w, strides, padding, dimension_numbers=NHWC)
    return jnp.sum(y.astype(jnp.float32) * g), y

  with conv.conv_lowering('xla' if lowering == 'lax' else lowering):
    (_, y), (dx, dw) = jax.value_and_grad(loss, (0, 1), has_aux=True)(x, w)
  return y, dx, dw


_STATIC = ('lowering', 'strides', 'padding')
# cpu_vjp is compiled as fdl's steps compile it (`conv.compiler_options`); xla and the
# lax reference with XLA's defaults.
_JITTED = {
    'cpu_vjp': jax.jit(_value_and_grads, static_argnames=_STATIC,
                       compiler_options=conv.compiler_options('cpu')),
    'default': jax.jit(_value_and_grads, static_argnames=_STATIC),
}


def conv_value_and_grads(x, w, g, *, lowering, strides, padding):
  fn = _JITTED['cpu_vjp' if lowering == 'cpu_vjp' else 'default']
  return fn(x, w, g, lowering=lowering, strides=strides, padding=padding)


def explicit_pads(x_shape, k_shape, strides, padding):
  if isinstance(padding, str):
    return lax.padtype_to_pads(x_shape[1:3], k_shape[:2], strides, padding)
  return padding


def numpy_conv(x, w, g, strides, pads):
  """Float64 ``(y, dx, dw)`` by one ``einsum`` per kernel tap over the padded input."""
  x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
  (pt, pb), (pl, pr) = pads
  xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  kh, kw = w.shape[:2]
  sh, sw = strides
  ho = (xp.shape[1] - kh) // sh + 1
  wo = (xp.shape[2] - kw) // sw + 1
  y = np.zeros(x.shape[:1] + (ho, wo, w.shape[3]))
  dw = np.zeros_like(w)
  dxp = np.zeros_like(xp)
  for a in range(kh):
    for b in range(kw):
      rows, cols = slice(a, a + sh * (ho - 1) + 1, sh), slice(b, b + sw * (wo - 1) + 1, sw)
      y += np.einsum('nijc,co->nijo', xp[:, rows, cols], w[a, b])
      dw[a, b] = np.einsum('nijc,nijo->co', xp[:, rows, cols], g)
      dxp[:, rows, cols] += np.einsum('nijo,co->nijc', g, w[a, b])
  return y, dxp[:, pt:pt + x.shape[1], pl:pl + x.shape[2]], dw


# (N, H, W, C, O, kernel, strides, padding)
CASES = [
    (1, 9, 7, 1, 2, (3, 3), (1, 1), 'SAME'),
    (1, 9, 7, 3, 4, (3, 3), (2, 2), 'SAME'),
    (1, 11, 13, 3, 2, (7, 7), (2, 2), ((3, 3), (3, 3))),  # ImageNet stem.
    (1, 11, 13, 1, 3, (7, 7), (1, 1), 'VALID'),
    (1, 9, 7, 3, 4, (1, 1), (1, 1), 'VALID'),
    (2, 9, 7, 3, 4, (1, 1), (2, 2), 'VALID'),  # ResNet projection.
    (1, 11, 13, 3, 2, (3, 3), (3, 3), 'SAME'),
    (1, 11, 13, 3, 2, (2, 2), (3, 3), 'VALID'),  # Stride > kernel: rows with no gradient.
    (1, 9, 7, 3, 2, (2, 2), (2, 2), 'VALID'),
    (1, 11, 13, 1, 2, (4, 4), (1, 1), 'SAME'),  # Even kernel: asymmetric SAME padding.
    (1, 9, 7, 3, 4, (3, 3), (1, 1), ((0, 1), (2, 0))),
    (1, 9, 7, 3, 4, (3, 3), (2, 2), ((0, 1), (2, 0))),
    (1, 9, 7, 3, 2, (3, 3), (1, 1), ((3, 3), (3, 3))),  # Padding wider than the kernel.
    (1, 11, 13, 16, 8, (3, 3), (2, 2), ((1, 1), (1, 1))),
    (2, 9, 7, 3, 4, (3, 1), (1, 2), ((1, 1), (0, 0))),  # Non-square kernel and strides.
    (1, 5, 4, 2, 3, (7, 7), (2, 2), 'SAME'),  # Kernel larger than the input.
    (3, 9, 7, 3, 4, (3, 3), (2, 2), 'SAME'),  # Batch > _MAX_TAPS_BATCH: autodiff's gradient.
    # Outputs of at most _MAX_PATCHES_AREA pixels: conv2d_patches, at any batch.
    (3, 2, 2, 8, 6, (3, 3), (1, 1), 'SAME'),  # VGG's last stage on 32 x 32 images.
    (2, 1, 1, 4, 5, (3, 3), (1, 1), 'SAME'),
    (1, 4, 3, 3, 2, (3, 3), (2, 2), ((0, 1), (2, 0))),  # 2 x 2 output, strided, asymmetric.
    (4, 3, 5, 2, 3, (2, 3), (2, 3), 'VALID'),  # 1 x 1 output, non-square kernel.
]
PATCH_CASES = CASES[-4:]


def case_id(case):
  n, h, w, c, o, k, s, p = case
  pad = p if isinstance(p, str) else 'x'.join(f'{lo}{hi}' for lo, hi in p)
  return f'n{n}-{h}x{w}x{c}-{o}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-{pad}'


def case_arrays(case, dtype=jnp.float32):
  n, h, w, c, o, k, s, p = case
  x = normal((n, h, w, c), 0, dtype)
  kernel = normal(k + (c, o), 1, dtype)
  pads = explicit_pads(x.shape, kernel.shape, s, p)
  ho = (h + sum(pads[0]) - k[0]) // s[0] + 1
  wo = (w + sum(pads[1]) - k[1]) // s[1] + 1
  return x, kernel, normal((n, ho, wo, o), 2)


# --------------------------------------------------------------------------- gradients


@pytest.mark.parametrize('case', CASES, ids=case_id)
def test_cpu_vjp_matches_autodiff(case):
  """Forward and both gradients equal those of lax.conv_general_dilated to 1e-5."""
  strides, padding = case[6], case[7]
  x, w, g = case_arrays(case)
  y, dx, dw = conv_value_and_grads(x, w, g, lowering='cpu_vjp', strides=strides,
                                   padding=padding)
  y_ref, dx_ref, dw_ref = conv_value_and_grads(x, w, g, lowering='lax', strides=strides,
                                               padding=padding)
  assert y.shape == y_ref.shape and dx.shape == x.shape and dw.shape == w.shape
  assert y.dtype == dx.dtype == dw.dtype == jnp.float32
  assert rel_err(y, y_ref) < 1e-5
  assert rel_err(dx, dx_ref) < 1e-5
  assert rel_err(dw, dw_ref) < 1e-5


@pytest.mark.parametrize('case', [CASES[2], CASES[7], CASES[11], CASES[14], PATCH_CASES[2]],
                         ids=case_id)
def test_cpu_vjp_matches_numpy_float64(case):
  """Forward and gradients against a float64 NumPy reference (not JAX against JAX)."""
  strides, padding = case[6], case[7]
  x, w, g = case_arrays(case)
  y, dx, dw = conv_value_and_grads(x, w, g, lowering='cpu_vjp', strides=strides,
                                   padding=padding)
  y_ref, dx_ref, dw_ref = numpy_conv(x, w, g, strides,
                                     explicit_pads(x.shape, w.shape, strides, padding))
  assert y.shape == y_ref.shape
  assert rel_err(y, y_ref) < 1e-5
  assert rel_err(dx, dx_ref) < 1e-5
  assert rel_err(dw, dw_ref) < 1e-5


def test_numpy_reference_is_lax():
  """The NumPy reference itself agrees with lax (so the test above checks something)."""
  case = CASES[11]
  x, w, g = case_arrays(case)
  pads = explicit_pads(x.shape, w.shape, case[6], case[7])
  y = lax.conv_general_dilated(x, w, case[6], pads, dimension_numbers=NHWC)
  np.testing.assert_allclose(numpy_conv(x, w, g, case[6], pads)[0], y, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize('case', [CASES[1], CASES[2], CASES[11], PATCH_CASES[0]], ids=case_id)
def test_cpu_vjp_bfloat16(case):
  """In bfloat16 the outputs and gradients are bfloat16 and agree with XLA's to 2e-2."""
  strides, padding = case[6], case[7]
  x, w, g = case_arrays(case, jnp.bfloat16)
  fast = conv_value_and_grads(x, w, g, lowering='cpu_vjp', strides=strides,
                                   padding=padding)
  xla = conv_value_and_grads(x, w, g, lowering='xla', strides=strides, padding=padding)
  for a, b in zip(fast, xla):
    assert a.dtype == b.dtype == jnp.bfloat16
    assert a.shape == b.shape
    assert rel_err(a, b) < 2e-2
  x64 = numpy_conv(x, w, g, strides, explicit_pads(x.shape, w.shape, strides, padding))
  for a, ref in zip(fast, x64):
    assert rel_err(a, ref) < 2e-2


# --------------------------------------------------------------------------- lowering choice


def test_resolved_lowering():
  """'auto' is cpu_vjp on CPU; conv_lowering overrides it and is restored; bad names raise."""
  assert jax.default_backend() == 'cpu'
  assert conv.resolved_lowering() == 'cpu_vjp'
  with conv.conv_lowering('xla'):
    assert conv.resolved_lowering() == 'xla'
    with conv.conv_lowering('cpu_vjp'):
      assert conv.resolved_lowering() == 'cpu_vjp'
    assert conv.resolved_lowering() == 'xla'
  assert conv.resolved_lowering() == 'cpu_vjp'
  with pytest.raises(ValueError, match=r"'auto', 'xla', 'cpu_vjp'.*'bogus'"):
    with conv.conv_lowering('bogus'):
      pass
  assert conv.resolved_lowering() == 'cpu_vjp'


def _conv_sum(x, w):
  return jnp.sum(conv.conv_general_dilated(x, w, (2, 2), 'SAME', dimension_numbers=NHWC))


# A convolution's kernel gradient from autodiff: a conv with HWIO-shaped output.
KERNEL_GRAD_SPEC = 'out_spec=(2, 3, 0, 1)'


@pytest.mark.parametrize('lowering,batch', [('xla', 1), ('cpu_vjp', 1), ('auto', 2),
                                            ('cpu_vjp', 3)])
def test_lowering_in_jaxpr(lowering, batch):
  """cpu_vjp at batch <= 2 traces a custom_vjp call whose kernel gradient is matrix
  products (no kernel-gradient conv); xla, and cpu_vjp at batch 3, trace plain autodiff."""
  x, w = jnp.ones((batch, 7, 9, 2)), jnp.ones((3, 3, 2, 3))
  with warnings.catch_warnings():
    warnings.simplefilter('error')  # Neither is a fallback.
    with conv.conv_lowering(lowering):
      # Fresh functions: make_jaxpr / jit cache traces by function, not by lowering.
      forward = str(jax.make_jaxpr(lambda x, w: _conv_sum(x, w))(x, w))
      grad = str(jax.make_jaxpr(jax.grad(lambda x, w: _conv_sum(x, w), (0, 1)))(x, w))
  if lowering == 'xla' or batch > conv._MAX_TAPS_BATCH:
    assert 'custom_vjp' not in forward
    assert 'dot_general' not in grad
    assert grad.count(KERNEL_GRAD_SPEC) == 1
  else:
    assert 'custom_vjp_call' in forward and 'conv2d_nhwc' in forward
    assert grad.count('dot_general') == 9  # One per kernel tap.
    assert KERNEL_GRAD_SPEC not in grad
  assert 'lhs_dilation=(2, 2)' in grad  # The input gradient: autodiff's transposed conv.


@pytest.mark.parametrize('case', PATCH_CASES, ids=case_id)
def test_tiny_outputs_are_patches_without_convolutions(case):
  """cpu_vjp computes outputs of at most _MAX_PATCHES_AREA pixels as one matrix product:
  no convolution in the forward pass or the gradients; xla keeps its convolution."""
  x, w, _ = case_arrays(case)
  strides, padding = case[6], case[7]
  loss = lambda x, w: jnp.sum(conv.conv_general_dilated(x, w, strides, padding,
                                                         dimension_numbers=NHWC) ** 2)
  with conv.conv_lowering('cpu_vjp'):
    grad = str(jax.make_jaxpr(jax.grad(lambda x, w: loss(x, w), (0, 1)))(x, w))
  with conv.conv_lowering('xla'):
    grad_xla = str(jax.make_jaxpr(jax.grad(lambda x, w: loss(x, w), (0, 1)))(x, w))
  assert 'conv_general_dilated' not in grad and 'dot_general' in grad
  assert 'conv_general_dilated' in grad_xla


def test_compiler_options():
  """YNNPACK fusions off on CPU under cpu_vjp only; the options compile and run."""
  key = 'xla_cpu_experimental_ynn_fusion_type'
  with conv.conv_lowering('xla'):
    assert conv.compiler_options() == {} and conv.compiler_options('cpu') == {}
  assert conv.compiler_options('gpu') == {} and conv.compiler_options('tpu') == {}
  options = conv.compiler_options()
  assert options == conv.compiler_options('cpu') == {key: ''}
  x, w = normal((1, 7, 9, 2), 0), normal((3, 3, 2, 3), 1)
  y = jax.jit(lambda x, w: conv.conv_general_dilated(x, w, (1, 1), 'SAME',
                                                     dimension_numbers=NHWC),
              compiler_options=options)(x, w)
  assert rel_err(y, lax.conv_general_dilated(x, w, (1, 1), 'SAME',
                                             dimension_numbers=NHWC)) < 1e-5


# --------------------------------------------------------------------------- fallback

FALLBACKS = {
    'rhs_dilation': dict(rhs_dilation=(2, 2)),
    'lhs_dilation': dict(lhs_dilation=(2, 1), padding=((1, 1), (1, 1))),
    'feature_groups': dict(feature_group_count=2),
    'preferred_element_type': dict(preferred_element_type=jnp.float32),
    'negative_padding': dict(padding=((-1, 0), (1, 1))),
    'nchw': dict(dimension_numbers=('NCHW', 'OIHW', 'NCHW')),
}


@pytest.mark.parametrize('name', FALLBACKS)
def test_fallback_warns_and_equals_lax(name, monkeypatch):
  """An uncovered call warns once and returns lax's forward and gradient exactly."""
  monkeypatch.setattr(conv, '_warned', set())
  kwargs = dict(window_strides=(1, 1), padding='SAME', dimension_numbers=NHWC)
  kwargs.update(FALLBACKS[name])
  x, w = normal((1, 7, 9, 4), 0), normal((3, 3, 4, 4), 1)
  if name == 'feature_groups':
    w = w[:, :, :2]
  if name == 'nchw':
    x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)

  def loss(fn, x, w):
    return jnp.sum(jnp.sin(fn(x, w, **kwargs)))

  with conv.conv_lowering('cpu_vjp'):
    with pytest.warns(UserWarning, match='not covered'):
      y = conv.conv_general_dilated(x, w, **kwargs)
    with warnings.catch_warnings(record=True) as record:  # Once per reason: no new warning.
      warnings.simplefilter('always')
      grads = jax.grad(functools.partial(loss, conv.conv_general_dilated), (0, 1))(x, w)
    assert not record
  assert len(conv._warned) == 1
  np.testing.assert_array_equal(y, lax.conv_general_dilated(x, w, **kwargs))
  for a, b in zip(grads, jax.grad(functools.partial(loss, lax.conv_general_dilated),
                                  (0, 1))(x, w)):
    np.testing.assert_array_equal(a, b)


def test_mixed_dtypes_and_rank_fall_back(monkeypatch):
  """Mixed input/kernel dtypes and 1-D convolutions also fall back to lax (mixed dtypes
  then fail as in lax)."""
  monkeypatch.setattr(conv, '_warned', set())
  x, w = normal((1, 7, 9, 2), 0), normal((3, 3, 2, 3), 1)
  nwc = ('NWC', 'WIO', 'NWC')
  with conv.conv_lowering('cpu_vjp'):
    with pytest.warns(UserWarning, match='mixed dtypes.*not covered'):
      with pytest.raises(TypeError, match='same dtypes'):
        conv.conv_general_dilated(x, w.astype(jnp.bfloat16), (1, 1), 'SAME',
                                  dimension_numbers=NHWC)
    with pytest.warns(UserWarning, match='rank 3.*not covered'):
      y = conv.conv_general_dilated(x[0], w[0], (1,), 'SAME', dimension_numbers=nwc)
  np.testing.assert_array_equal(
      y, lax.conv_general_dilated(x[0], w[0], (1,), 'SAME', dimension_numbers=nwc))


def test_covered_and_xla_calls_do_not_warn(monkeypatch):
  """No warning for a covered call under cpu_vjp, nor for any call under xla."""
  monkeypatch.setattr(conv, '_warned', set())
  x, w = normal((1, 7, 9, 2), 0), normal((3, 3, 2, 3), 1)
  with warnings.catch_warnings(record=True) as record:
    warnings.simplefilter('always')
    with conv.conv_lowering('cpu_vjp'):
      conv.conv_general_dilated(x, w, (2, 2), ((0, 1), (2, 0)), dimension_numbers=NHWC)
    with conv.conv_lowering('xla'):
      conv.conv_general_dilated(x, w, (1, 1), 'SAME', rhs_dilation=(2, 2),
                                dimension_numbers=NHWC)
  assert not record
  assert not conv._warned


# --------------------------------------------------------------------------- models


def numpy_variables(model, x):
  """Variables shaped as ``model.init``'s, drawn with NumPy (threefry init compiles slowly)."""
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)
  rng = np.random.default_rng(0)

  def draw(path, leaf):
    name = path[-1].key
    if name == 'kernel':
      value = rng.normal(0, math.sqrt(2 / math.prod(leaf.shape[:-1])), leaf.shape)
    elif name in ('scale', 'var'):
      value = rng.uniform(0.5, 1.5, leaf.shape)
    else:
      value = 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree.map_with_path(draw, shapes)


MODEL_CASES = {
    'cnn': (CNN(features=(4, 8), dense=(16,), num_classes=10), (2, 9, 11, 1), False),
    'cnn_bn': (CNN(features=(4, 8), dense=(16,), num_classes=10, batch_norm=True),
               (2, 9, 11, 3), True),
    'resnet': (ResNet(stage_sizes=(1, 1), width=4, stem='cifar', num_classes=10),
               (2, 9, 9, 3), True),
    'resnet_imagenet_stem': (ResNet(stage_sizes=(1, 1), width=4, stem='imagenet',
                                    num_classes=10), (1, 19, 17, 3), True),
    'unet': (UNet(out_channels=1, base_channels=4, num_pools=2), (1, 11, 9, 1), False),
}


@pytest.mark.parametrize('name', MODEL_CASES)
def test_model_gradients_match_xla(name):
  """Whole-model parameter gradients and outputs under cpu_vjp equal those under xla."""
  model, x_shape, batch_stats = MODEL_CASES[name]
  x = normal(x_shape, 3)
  variables = numpy_variables(model, x)

  def apply(params, x):
    if batch_stats:
      out, _ = model.apply({**variables, 'params': params}, x, train=True,
                           mutable=['batch_stats'])
      return out
    return model.apply({**variables, 'params': params}, x, train=True)

  out_shape = jax.eval_shape(apply, variables['params'], x).shape
  g = normal(out_shape, 4)

  def loss(params, x):
    out = apply(params, x)
    return jnp.sum(out * g), out

  results, jaxprs = {}, {}
  for lowering in ('cpu_vjp', 'xla'):
    with conv.conv_lowering(lowering):
      fn = jax.value_and_grad(lambda p, x: loss(p, x), has_aux=True)
      jaxprs[lowering] = str(jax.make_jaxpr(lambda p, x: apply(p, x))(variables['params'], x))
      options = conv.compiler_options()  # {} under xla.
      results[lowering] = jax.jit(fn, compiler_options=options)(variables['params'], x)
  assert 'custom_vjp_call' in jaxprs['cpu_vjp'] and 'custom_vjp' not in jaxprs['xla']
  (_, out), grads = results['cpu_vjp']
  (_, out_ref), grads_ref = results['xla']
  assert rel_err(out, out_ref) < 1e-5
  paths = jax.tree_util.tree_flatten_with_path(grads)[0]
  ref_leaves = jax.tree.leaves(grads_ref)
  assert jax.tree.structure(grads) == jax.tree.structure(grads_ref)
  errors = {jax.tree_util.keystr(path): rel_err(a, b)
            for (path, a), b in zip(paths, ref_leaves)}
  assert max(errors.values()) < 1e-5, errors
  assert any('conv' in p.lower() for p in errors)


# --------------------------------------------------------------------------- parameters


class TwoConvs(nn.Module):
  conv_cls: type

  @nn.compact
  def __call__(self, x):
    x = self.conv_cls(4, (3, 3), strides=2, padding=((0, 1), (2, 0)))(x)
    return self.conv_cls(2, (1, 1), use_bias=False, kernel_init=nn.initializers.ones)(x)


def tree_signature(tree):
  return [(jax.tree_util.keystr(path), leaf.shape, leaf.dtype)
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def test_conv_parameters_equal_flax():
  """Same parameter paths, shapes, dtypes, auto-names and initial values as nn.Conv."""
  x = normal((1, 9, 7, 3), 0)
  key = jax.random.key(7)
  ours, theirs = TwoConvs(conv.Conv), TwoConvs(nn.Conv)
  v_ours, v_theirs = ours.init(key, x), theirs.init(key, x)
  assert tree_signature(v_ours) == tree_signature(v_theirs)
  assert set(v_ours['params']) == {'Conv_0', 'Conv_1'}
  assert v_ours['params']['Conv_0']['kernel'].shape == (3, 3, 3, 4)
  assert set(v_ours['params']['Conv_1']) == {'kernel'}
  for a, b in zip(jax.tree.leaves(v_ours), jax.tree.leaves(v_theirs)):
    np.testing.assert_array_equal(a, b)
  assert rel_err(ours.apply(v_ours, x), theirs.apply(v_theirs, x)) < 1e-5

  single = dict(features=5, kernel_size=(7, 7), strides=2, padding=3, param_dtype=jnp.bfloat16)
  s_ours = jax.eval_shape(conv.Conv(**single).init, key, x)
  s_theirs = jax.eval_shape(nn.Conv(**single).init, key, x)
  assert tree_signature(s_ours) == tree_signature(s_theirs)
  assert s_ours['params']['kernel'].dtype == jnp.bfloat16


def test_resnet18_parameter_count():
  """resnet18(num_classes=10, stem='cifar') keeps 11,173,962 parameters."""
  model = resnet18(num_classes=10, stem='cifar')
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32))
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(shapes['params'])) == 11_173_962
