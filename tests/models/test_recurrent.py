"""RNNClassifier: flax's cells against a float64 NumPy recursion, shapes, counts, checks."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import MODELS, RNNClassifier, create_model
from fdl.models.recurrent import _TinyRNNClassifier, cell_num_params


def _sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def _np(tree):
  return jax.tree.map(lambda a: np.asarray(a, np.float64), tree)


def _lstm_step(p, c, h, x):
  """One LSTM step from flax's layout: input kernels i*, recurrent kernels (+ bias) h*."""
  def pre(gate):
    return x @ p[f'i{gate}']['kernel'] + h @ p[f'h{gate}']['kernel'] + p[f'h{gate}']['bias']
  i, f, g, o = _sigmoid(pre('i')), _sigmoid(pre('f')), np.tanh(pre('g')), _sigmoid(pre('o'))
  c = f * c + i * g
  return c, o * np.tanh(c)


def _gru_step(p, h, x):
  r = _sigmoid(x @ p['ir']['kernel'] + p['ir']['bias'] + h @ p['hr']['kernel'])
  z = _sigmoid(x @ p['iz']['kernel'] + p['iz']['bias'] + h @ p['hz']['kernel'])
  n = np.tanh(x @ p['in']['kernel'] + p['in']['bias']
              + r * (h @ p['hn']['kernel'] + p['hn']['bias']))
  return (1 - z) * n + z * h


def _rnn_step(p, h, x):
  return np.tanh(x @ p['i']['kernel'] + p['i']['bias'] + h @ p['h']['kernel'])


def _reference_layer(cell, p, xs):
  """Outputs [N, T, H] of one layer over xs [N, T, F], zero initial carry, float64."""
  n, t, _ = xs.shape
  hidden = next(iter(p.values()))['kernel'].shape[-1]
  h = np.zeros((n, hidden))
  c = np.zeros((n, hidden))
  out = []
  for step in range(t):
    x = xs[:, step]
    if cell == 'lstm':
      c, h = _lstm_step(p, c, h, x)
    elif cell == 'gru':
      h = _gru_step(p, h, x)
    else:
      h = _rnn_step(p, h, x)
    out.append(h)
  return np.stack(out, axis=1)


def _init(model, x):
  return model.init(jax.random.key(1), x, train=False)


def test_one_lstm_step_matches_the_gate_equations():
  """T = 1 from a zero carry: h = o * tanh(i * g), since c = f * 0 + i * g."""
  x = jax.random.normal(jax.random.key(0), (2, 1, 3), jnp.float32)
  model = RNNClassifier(num_classes=2, hidden=4, cell='lstm')
  variables = _init(model, x)
  p = _np(variables['params'])
  cell = p['layer_0']['cell']
  # flax's layout: 4 input kernels [F, H] without bias, 4 recurrent [H, H] with it.
  assert sorted(cell) == ['hf', 'hg', 'hi', 'ho', 'if', 'ig', 'ii', 'io']
  assert all(cell[f'i{g}']['kernel'].shape == (3, 4) and 'bias' not in cell[f'i{g}']
             for g in 'ifgo')
  assert all(cell[f'h{g}']['kernel'].shape == (4, 4) and cell[f'h{g}']['bias'].shape == (4,)
             for g in 'ifgo')
  # Random biases so that every gate's bias enters the check (init gives zeros).
  rng = np.random.default_rng(0)
  for g in 'ifgo':
    variables['params']['layer_0']['cell'][f'h{g}']['bias'] = jnp.asarray(
        rng.normal(size=4), jnp.float32)
  p = _np(variables['params'])
  cell = p['layer_0']['cell']
  x0 = np.asarray(x, np.float64)[:, 0]
  pre = {g: x0 @ cell[f'i{g}']['kernel'] + cell[f'h{g}']['bias'] for g in 'ifgo'}
  h = _sigmoid(pre['o']) * np.tanh(_sigmoid(pre['i']) * np.tanh(pre['g']))
  expected = h @ p['head']['kernel'] + p['head']['bias']
  logits = model.apply(variables, x, train=False)
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_last_hidden_state_matches_a_numpy_recursion(cell):
  x = jax.random.normal(jax.random.key(2), (3, 5, 2), jnp.float32)  # odd N, T
  model = RNNClassifier(num_classes=3, hidden=4, cell=cell)
  variables = _init(model, x)
  p = _np(variables['params'])
  hs = _reference_layer(cell, p['layer_0']['cell'], np.asarray(x, np.float64))
  expected = hs[:, -1] @ p['head']['kernel'] + p['head']['bias']
  logits = model.apply(variables, x, train=False)
  assert logits.shape == (3, 3) and logits.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


def test_two_bidirectional_layers_with_mean_readout_match_numpy():
  x = jax.random.normal(jax.random.key(3), (2, 3, 2), jnp.float32)
  model = RNNClassifier(num_classes=2, hidden=3, cell='lstm', num_layers=2,
                        bidirectional=True, readout='mean')
  variables = _init(model, x)
  p = _np(variables['params'])
  h = np.asarray(x, np.float64)
  for layer in range(2):
    fwd = _reference_layer('lstm', p[f'layer_{layer}']['cell'], h)
    # The backward layer reads the reversed sequence; its outputs are put back in order.
    bwd = _reference_layer('lstm', p[f'layer_{layer}_backward']['cell'], h[:, ::-1])[:, ::-1]
    h = np.concatenate([fwd, bwd], axis=-1)
  assert p['layer_1']['cell']['ii']['kernel'].shape == (6, 3)  # reads [fwd, bwd]
  expected = h.mean(axis=1) @ p['head']['kernel'] + p['head']['bias']
  logits = model.apply(variables, x, train=False)
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


def test_bidirectional_last_readout_is_both_directions_after_the_whole_sequence():
  x = jax.random.normal(jax.random.key(4), (2, 4, 3), jnp.float32)
  model = RNNClassifier(num_classes=2, hidden=3, cell='gru', bidirectional=True)
  variables = _init(model, x)
  p = _np(variables['params'])
  xs = np.asarray(x, np.float64)
  fwd = _reference_layer('gru', p['layer_0']['cell'], xs)[:, -1]
  bwd = _reference_layer('gru', p['layer_0_backward']['cell'], xs[:, ::-1])[:, -1]
  expected = np.concatenate([fwd, bwd], -1) @ p['head']['kernel'] + p['head']['bias']
  logits = model.apply(variables, x, train=False)
  np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-5, atol=1e-6)


def _abstract(model, shape, dtype=jnp.float32):
  init = functools.partial(model.init_with_output, train=False)
  return jax.eval_shape(init, jax.random.key(0), jax.ShapeDtypeStruct(shape, dtype))


def _count(variables):
  return sum(int(np.prod(a.shape)) for a in jax.tree.leaves(variables))


@pytest.mark.parametrize('shape', [(1, 1, 1), (3, 5, 7), (7, 13, 2), (2, 64, 1)])
@pytest.mark.parametrize('bidirectional', [False, True])
def test_output_shapes_on_odd_sizes(shape, bidirectional):
  model = RNNClassifier(num_classes=5, hidden=6, cell='lstm', num_layers=2,
                        bidirectional=bidirectional)
  logits, _ = _abstract(model, shape)
  assert logits.shape == (shape[0], 5) and logits.dtype == jnp.float32


@pytest.mark.parametrize('cell, expected', [
    # F = 8 inputs (a row of a digit), H = 64, 10 classes: cell + head (64 * 10 + 10).
    ('rnn', 64 * (8 + 64 + 1) + 650),        # 4,672 + 650
    ('lstm', 4 * 64 * (8 + 64 + 1) + 650),   # 18,688 + 650
    ('gru', 3 * 64 * (8 + 64 + 1) + 64 + 650),  # 14,080 + 650
])
def test_parameter_counts(cell, expected):
  _, variables = _abstract(RNNClassifier(num_classes=10, hidden=64, cell=cell), (2, 8, 8))
  assert _count(variables) == expected
  assert expected == {'rnn': 5322, 'lstm': 19338, 'gru': 14730}[cell]
  assert _count(variables['params']['layer_0']) == cell_num_params(cell, 8, 64)


def test_parameter_count_of_a_deep_bidirectional_stack():
  model = RNNClassifier(num_classes=10, hidden=16, cell='gru', num_layers=3,
                        bidirectional=True)
  _, variables = _abstract(model, (1, 9, 5))
  per_layer = [2 * cell_num_params('gru', 5, 16), 2 * cell_num_params('gru', 32, 16),
               2 * cell_num_params('gru', 32, 16)]
  assert per_layer == [2 * (3 * 16 * 22 + 16), 2 * (3 * 16 * 49 + 16)] + [2 * 2368]
  assert _count(variables) == sum(per_layer) + 32 * 10 + 10


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_bfloat16_compute_keeps_float32_params_and_logits(cell):
  model = RNNClassifier(num_classes=3, hidden=4, cell=cell, bidirectional=True,
                        dtype=jnp.bfloat16)
  logits, variables = _abstract(model, (2, 5, 3))
  assert logits.dtype == jnp.float32 and logits.shape == (2, 3)
  assert {a.dtype for a in jax.tree.leaves(variables)} == {jnp.dtype(jnp.float32)}


@pytest.mark.parametrize('build, message', [
    (lambda: RNNClassifier(num_classes=10, cell='transformer'),
     "cell must be one of ('rnn', 'lstm', 'gru'); got 'transformer'"),
    (lambda: RNNClassifier(num_classes=10, hidden=0), 'hidden must be a positive int; got 0'),
    (lambda: RNNClassifier(num_classes=10, num_layers=0),
     'num_layers must be a positive int; got 0'),
    (lambda: RNNClassifier(num_classes=1), 'num_classes must be >= 2; got 1'),
    (lambda: RNNClassifier(num_classes=10, readout='max'),
     "readout must be one of ('last', 'mean'); got 'max'"),
    (lambda: RNNClassifier(num_classes=10, bidirectional='yes'),
     "bidirectional must be a bool; got 'yes'"),
    (lambda: cell_num_params('lstm', 0, 4), 'features must be a positive int; got 0'),
])
def test_invalid_config_names_the_field(build, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    build()


@pytest.mark.parametrize('shape, dtype, error, message', [
    ((2, 8), jnp.float32, ValueError, 'x must be a float array of rank 3 [N, T, F]'),
    ((2, 8, 8, 1), jnp.float32, ValueError, 'x must be a float array of rank 3 [N, T, F]'),
    ((2, 8, 8), jnp.int32, TypeError, 'x must be a float array of rank 3 [N, T, F]; got int32'),
    ((2, 0, 8), jnp.float32, ValueError, 'x must have T >= 1 time steps and F >= 1'),
    ((2, 8, 0), jnp.float32, ValueError, 'got shape (2, 8, 0)'),
])
def test_bad_inputs_are_named(shape, dtype, error, message):
  with pytest.raises(error, match=re.escape(message)):
    _abstract(_TinyRNNClassifier(), shape, dtype)


def test_registered_by_name():
  assert MODELS['rnn_classifier'] is RNNClassifier
  model = create_model('rnn_classifier', num_classes=4, hidden=8, cell='gru')
  assert (model.cell, model.hidden, model.num_layers, model.readout) == ('gru', 8, 1, 'last')
