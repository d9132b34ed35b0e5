"""Recurrent sequence classifiers: stacked Elman RNN, LSTM or GRU layers, a linear head.

The network reads a batch of sequences ``[N, T, F]`` (T time steps of F features) with
flax's recurrent cells, scanned over time by `flax.linen.RNN`, and maps a summary of the
hidden states to class logits ``[N, num_classes]``. The cells are flax's own:

* ``'rnn'``: `flax.linen.SimpleCell`, ``h' = tanh(W_i x + b + W_h h)``;
* ``'lstm'``: `flax.linen.OptimizedLSTMCell` (parameters laid out as
  `flax.linen.LSTMCell`'s: input kernels ``ii, if, ig, io`` without bias, recurrent kernels
  ``hi, hf, hg, ho`` with the bias), ``i, f, o = sigmoid(.)``, ``g = tanh(.)``,
  ``c' = f * c + i * g``, ``h' = o * tanh(c')``;
* ``'gru'``: `flax.linen.GRUCell`, ``r, z = sigmoid(.)``,
  ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``.

All carries start at zero. Each layer's output sequence is the next layer's input.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = RNNClassifier(num_classes=10, hidden=16, cell='lstm')
  >>> x = jnp.zeros((3, 8, 8))  # 3 digits, read as 8 rows of 8 pixels
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, logits.dtype
  ((3, 10), dtype('float32'))
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks

CELLS = ('rnn', 'lstm', 'gru')
READOUTS = ('last', 'mean')


def _make_cell(kind: str, features: int, dtype: Dtype) -> nn.RNNCellBase:
  # parent=None: the cell belongs to the `nn.RNN` it is handed to, so its parameters sit
  # under ``layer_k/cell`` instead of being adopted by the classifier as ``*Cell_k``.
  if kind == 'rnn':
    return nn.SimpleCell(features=features, dtype=dtype, parent=None)
  if kind == 'lstm':
    return nn.OptimizedLSTMCell(features=features, dtype=dtype, parent=None)
  return nn.GRUCell(features=features, dtype=dtype, parent=None)


def cell_num_params(cell: str, features: int, hidden: int) -> int:
  """Parameters of one flax cell of kind `cell` from `features` inputs to `hidden` units.

  ``'rnn'``: ``H (F + H + 1)``; ``'lstm'``: ``4 H (F + H + 1)`` (one bias per gate);
  ``'gru'``: ``3 H (F + H + 1) + H`` (the candidate's recurrent part has its own bias).
  """
  _checks.check_choice('cell', cell, CELLS)
  _checks.check_positive('features', features)
  _checks.check_positive('hidden', hidden)
  base = hidden * (features + hidden + 1)
  return {'rnn': base, 'lstm': 4 * base, 'gru': 3 * base + hidden}[cell]


class RNNClassifier(nn.Module):
  """Classifies sequences ``[N, T, F]`` with stacked recurrent layers and a linear head.

  ``readout='last'`` classifies the hidden state after the last time step (for a
  bidirectional layer: the forward state after step T-1 concatenated with the backward
  state after step 0, each having read the whole sequence); ``readout='mean'`` the mean of
  the top layer's outputs over time. The head is one `flax.linen.Dense`.

  Attributes:
    num_classes: number of classes, >= 2; one logit each.
    hidden: hidden units per direction of every layer (the LSTM's cell state has as many).
    cell: ``'rnn'`` (Elman, tanh), ``'lstm'`` or ``'gru'``; see the module docstring.
    num_layers: stacked recurrent layers, >= 1.
    bidirectional: every layer also reads the sequence backwards; its outputs are the
      concatenation ``[forward, backward]`` (2 * hidden features), aligned in time.
    readout: ``'last'`` or ``'mean'`` (above).
    dtype: compute dtype; parameters and logits are always float32.
  """

  num_classes: int  # Classes; one logit each.
  hidden: int = 128  # Hidden units per direction and layer.
  cell: str = 'lstm'  # 'rnn', 'lstm' or 'gru'.
  num_layers: int = 1  # Stacked recurrent layers.
  bidirectional: bool = False  # Also read each sequence backwards.
  readout: str = 'last'  # 'last' hidden state or 'mean' over time.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive('num_classes', self.num_classes)
    if self.num_classes < 2:
      raise ValueError(f'num_classes must be >= 2; got {self.num_classes!r}')
    _checks.check_positive('hidden', self.hidden)
    _checks.check_choice('cell', self.cell, CELLS)
    _checks.check_positive('num_layers', self.num_layers)
    if not isinstance(self.bidirectional, bool):
      raise ValueError(f'bidirectional must be a bool; got {self.bidirectional!r}')
    _checks.check_choice('readout', self.readout, READOUTS)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Class logits of each sequence.

    Args:
      x: float sequences ``[N, T, F]``: batch, time steps (T >= 1), features per step
        (F >= 1); e.g. 8x8 digits read row by row are ``[N, 8, 8]``.
      train: unused (the network has neither dropout nor batch statistics); accepted so
        that it is called like every fdl model.

    Returns:
      float32 logits ``[N, num_classes]``.

    Raises:
      ValueError: ``x`` is not rank 3, or T or F is 0.
      TypeError: ``x`` is not floating (integer, bool or complex).
    """
    del train
    _checks.check_input(x, rank=3, layout='[N, T, F]')
    if x.shape[1] < 1 or x.shape[2] < 1:
      raise ValueError(f'x must have T >= 1 time steps and F >= 1 features [N, T, F]; '
                       f'got shape {x.shape}')
    h = x.astype(self.dtype)
    for layer in range(self.num_layers):
      forward = self._layer(h, name=f'layer_{layer}')
      if self.bidirectional:
        # keep_order: the backward outputs come back in time order, so that output t
        # has read steps t..T-1 and is aligned with the forward output t.
        backward = self._layer(h, name=f'layer_{layer}_backward', reverse=True)
        h = jnp.concatenate([forward, backward], axis=-1)
      else:
        h = forward
    if self.readout == 'mean':
      features = jnp.mean(h, axis=1)
    elif self.bidirectional:
      features = jnp.concatenate([h[:, -1, :self.hidden], h[:, 0, self.hidden:]], axis=-1)
    else:
      features = h[:, -1]
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='head')(features)
    return logits.astype(jnp.float32)

  def _layer(self, h: jax.Array, *, name: str, reverse: bool = False) -> jax.Array:
    """One recurrent layer over ``h [N, T, F]``: outputs ``[N, T, hidden]`` in time order."""
    cell = _make_cell(self.cell, self.hidden, self.dtype)
    # Zero carries in the compute dtype (flax makes them in the float32 param dtype): the
    # scan needs the carry's dtype unchanged by a step, and a bfloat16 step returns bfloat16.
    carry = jax.tree.map(lambda c: c.astype(self.dtype),
                         cell.initialize_carry(jax.random.key(0), h[:, 0].shape))
    return nn.RNN(cell, reverse=reverse, keep_order=True, name=name)(h, initial_carry=carry)


# For tests: an LSTM with four hidden units over three classes.
_TinyRNNClassifier = functools.partial(RNNClassifier, num_classes=3, hidden=4, cell='lstm')
