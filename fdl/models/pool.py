"""2x2, stride-2 max pooling as a reshape and a reduction (fast to differentiate on CPU).

``nn.max_pool(x, (2, 2), strides=(2, 2))`` is a ``reduce_window``; its gradient is a
``select_and_scatter_add``, which XLA:CPU (jaxlib 0.10) runs slowly: it took a quarter
of a ResNet-9 training step (``benchmarks/NOTES.md``). The windows of a 2x2 pool with
stride 2 do not overlap, so the same maximum is a reshape to
``[B, H/2, 2, W/2, 2, C]`` and a max over the two window axes, whose gradient is
elementwise.

The one difference is the gradient at ties: ``reduce_window`` gives a window's whole
gradient to its first maximum, this function splits it equally between tied maxima
(both are subgradients). Ties of real-valued activations are rare except at exact zeros
after a ReLU, where the ReLU's own gradient is zero.

Examples:
  >>> import jax.numpy as jnp
  >>> x = jnp.arange(2 * 5 * 4 * 1.0).reshape(2, 5, 4, 1)  # odd H: the last row is dropped
  >>> max_pool_2x2(x).shape
  (2, 2, 2, 1)
  >>> float(max_pool_2x2(x)[0, 0, 0, 0])
  5.0
"""

import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
  """Max over 2x2 windows with stride 2 (``padding='VALID'``: odd sizes are floored).

  Args:
    x: ``[B, H, W, C]`` with ``H, W >= 2``.

  Returns:
    ``[B, H // 2, W // 2, C]``, equal to ``nn.max_pool(x, (2, 2), strides=(2, 2))``.
  """
  if x.ndim != 4 or min(x.shape[1:3]) < 2:
    raise ValueError(f'x must be [B, H, W, C] with H, W >= 2; got shape {x.shape}')
  b, h, w, c = x.shape
  x = x[:, :h - h % 2, :w - w % 2]
  return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))
