"""Activation functions selected by name, as one linen module.

Configs name activations by string; :func:`check_activation` validates the name when a model
is constructed, so a typo fails before anything is traced.

Examples:
  >>> import jax, jax.numpy as jnp
  >>> act = Activation('leaky_relu', negative_slope=0.1)
  >>> act.apply({}, jnp.array([-2.0, 3.0]))
  Array([-0.2,  3. ], dtype=float32)
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdl.models import _checks

KNOWN_ACTIVATIONS = ('sigmoid', 'tanh', 'relu', 'leaky_relu', 'prelu', 'gelu')

# PyTorch's nn.PReLU starts its slope at 0.25.
PRELU_INIT = 0.25


def check_activation(name: str) -> None:
  """Raises ``ValueError`` listing :data:`KNOWN_ACTIVATIONS` if ``name`` is not one."""
  _checks.check_choice('activation', name, KNOWN_ACTIVATIONS)


class Activation(nn.Module):
  """An elementwise activation chosen by name.

  ``prelu`` is the only one with a parameter: a single float32 scalar ``'alpha'`` (the slope
  for negative inputs, shared by all channels), initialised to 0.25. ``gelu`` is the exact
  (erf) form, as PyTorch's default, not the tanh approximation.

  Attributes:
    kind: one of :data:`KNOWN_ACTIVATIONS`. (Flax reserves the field ``name``.)
    negative_slope: slope for ``x < 0`` of ``leaky_relu``; ignored by the others.
  """

  kind: str  # One of KNOWN_ACTIVATIONS.
  negative_slope: float = 0.01  # leaky_relu only; PyTorch's default.

  def __post_init__(self):
    check_activation(self.kind)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Applies the activation.

    Args:
      x: any shape, floating dtype.

    Returns:
      Same shape and dtype as ``x``.
    """
    if self.kind == 'sigmoid':
      return nn.sigmoid(x)
    if self.kind == 'tanh':
      return jnp.tanh(x)
    if self.kind == 'relu':
      return nn.relu(x)
    if self.kind == 'leaky_relu':
      return nn.leaky_relu(x, self.negative_slope)
    if self.kind == 'gelu':
      return nn.gelu(x, approximate=False)
    # prelu: the parameter stays float32 and is cast to the compute dtype of x.
    alpha = self.param('alpha', nn.initializers.constant(PRELU_INIT), (), jnp.float32)
    return jnp.where(x >= 0, x, alpha.astype(x.dtype) * x)
