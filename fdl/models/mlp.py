"""Multilayer perceptron classifier.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> model = MLP(hidden=(16,), num_classes=3)
  >>> x = jnp.zeros((2, 8, 8, 1))  # images are flattened
  >>> variables = model.init(jax.random.key(0), x, train=False)
  >>> model.apply(variables, x, train=False).shape
  (2, 3)
"""

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.activations import Activation, check_activation


class MLP(nn.Module):
  """Fully connected classifier: ``[Dense -> activation -> dropout] * len(hidden) -> Dense``.

  With ``hidden=()`` it is a linear (multinomial logistic-regression) classifier.

  Attributes:
    hidden: widths of the hidden layers.
    num_classes: number of output logits.
    activation: one of ``KNOWN_ACTIVATIONS``.
    negative_slope: slope of ``leaky_relu`` for negative inputs.
    dropout: drop probability after each hidden activation, in [0, 1).
    dtype: compute dtype; parameters are always float32.
  """

  hidden: Sequence[int] = (128,)  # Hidden layer widths; () gives a linear classifier.
  num_classes: int = 10  # Number of logits.
  activation: str = 'relu'  # One of KNOWN_ACTIVATIONS.
  negative_slope: float = 0.01  # leaky_relu slope.
  dropout: float = 0.0  # Drop probability after each hidden layer.
  dtype: Dtype = jnp.float32  # Compute dtype (e.g. jnp.bfloat16); params stay float32.

  def __post_init__(self):
    _checks.check_positive_sequence('hidden', self.hidden, allow_empty=True)
    _checks.check_positive('num_classes', self.num_classes)
    check_activation(self.activation)
    _checks.check_rate('dropout', self.dropout)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float array ``[batch, ...]``: points ``[batch, D]`` or images ``[batch, H, W, C]``;
        all axes after the batch axis are flattened.
      train: enables dropout (needs a ``'dropout'`` RNG when ``dropout > 0``).

    Returns:
      float32 logits ``[batch, num_classes]``.
    """
    _checks.check_input(x, rank=2, layout='[batch, ...]', at_least=True)
    x = x.reshape(x.shape[0], -1)
    for width in self.hidden:
      x = nn.Dense(width, dtype=self.dtype, param_dtype=jnp.float32)(x)
      x = Activation(self.activation, self.negative_slope)(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)
