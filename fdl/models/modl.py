"""MoDL: model-based deep learning, an unrolled alternation of a CNN denoiser and SENSE.

With the SENSE operator ``A = M F S`` (`fdl.mri.sense`) and measured k-space ``y``, MoDL
(Aggarwal, Mani & Jacob 2018) alternates a learned denoising step with the minimizer (by CG)
of ``||A x - y||^2 + lam ||x - z||^2``, unrolled for ``K`` iterations:

  x_0     = A^H y
  z_k     = x_k + D(x_k)                                        (denoiser, residual CNN)
  x_{k+1} = (A^H A + lam I)^{-1} (A^H y + lam z_k)              (data consistency, by CG)

for k = 0..K-1. The denoiser ``D`` (one set of weights, shared by every iteration) sees the
complex image as 2 real channels. The data-consistency solve runs ``cg_iters`` conjugate-
gradient iterations warm-started at ``z_k`` (`fdl.mri.cg.cg`), and gradients flow through
them. ``lam > 0`` is learned as ``exp(log_lam)``. The output is ``|x_K|``.

References:
  H. K. Aggarwal, M. P. Mani, M. Jacob, "MoDL: Model-based deep learning architecture for
  inverse problems", IEEE Trans. Med. Imaging 38 (2019) 394-405 (arXiv:1712.02862, 2018).

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = MoDL(num_iters=2, cg_iters=2, depth=3, width=4)
  >>> kspace = jax.ShapeDtypeStruct((2, 3, 13, 10), jnp.complex64)
  >>> mask = jax.ShapeDtypeStruct((2, 1, 1, 10), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> image, variables = jax.eval_shape(init, jax.random.key(0), kspace, mask, kspace)
  >>> image.shape, image.dtype, sorted(variables)
  ((2, 13, 10), dtype('float32'), ['params'])
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from fdl.models import _checks
from fdl.models.conv import Conv
from fdl.models.norm_unet import channels_to_complex, complex_to_channels
from fdl.models.reconstruct import check_recon_inputs
from fdl.mri.cg import cg
from fdl.mri.sense import sense_adjoint, sense_normal


class ResidualDenoiser(nn.Module):
  """The MoDL regularizer's CNN: ``D(x)``, the correction added to ``x`` (``z = x + D(x)``).

  ``depth`` 3x3 convolutions (with bias): ``depth - 1`` of ``width`` channels, each followed
  by a ReLU, then one back to the 2 channels (real, imaginary) with no activation.

  There is no batch norm (the paper has it): the same weights run at every unrolled
  iteration on inputs whose statistics change from one iteration to the next, MRI batches
  are 1-4 slices (noisy batch statistics), and without it a slice's output does not depend
  on the other slices of its batch. So the model state is ``params`` only (no
  ``batch_stats``), and with ``dropout=0`` (the default) train and eval compute the
  same function.

  Attributes:
    depth: number of convolutions, >= 1.
    width: channels of the hidden convolutions.
    dropout: channel-wise drop probability after every hidden ReLU, in [0, 1); for
      Monte-Carlo dropout (`fdl.evaluate.uncertainty`). 0 adds nothing.
  """

  depth: int = 5  # Convolutions, the last back to 2 channels.
  width: int = 64  # Hidden channels.
  dropout: float = 0.0  # Channel-wise dropout after each hidden ReLU.

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps a complex image ``[B, H, W]`` to its complex64 correction ``[B, H, W]``.

    ``train=True`` with ``dropout > 0`` needs a ``'dropout'`` RNG.
    """
    h = complex_to_channels(x)
    for layer in range(self.depth - 1):
      h = nn.relu(Conv(self.width, (3, 3), padding=1, name=f"conv_{layer}")(h))
      # 2D dropout, as in the U-Net: one draw per (sample, channel), shared over H, W.
      h = nn.Dropout(self.dropout, broadcast_dims=(1, 2), deterministic=not train)(h)
    h = Conv(2, (3, 3), padding=1, name=f"conv_{self.depth - 1}")(h)
    return channels_to_complex(h)


class MoDL(nn.Module):
  """MoDL (see the module docstring): ``K`` x (shared CNN denoiser, CG data consistency).

  With the defaults it has 113,155 parameters: the denoiser's 113,154 and ``log_lam``.

  Attributes:
    num_iters: ``K``, the number of unrolled iterations (>= 1).
    cg_iters: conjugate-gradient iterations per data-consistency solve (>= 1).
    depth: convolutions in the denoiser (>= 1).
    width: hidden channels of the denoiser.
    lam_init: initial data-consistency weight ``lam > 0`` (learned as ``log lam``), in the
      units of ``A^H A`` (1 ~ the identity for normalized maps and a full mask).
    dropout: the denoiser's channel-wise dropout, in [0, 1) (0: none, the paper's
      model); with ``train=True`` it needs a ``'dropout'`` RNG.
  """

  num_iters: int = 5  # K unrolled iterations.
  cg_iters: int = 5  # CG iterations per data-consistency step.
  depth: int = 5  # Denoiser convolutions.
  width: int = 64  # Denoiser hidden channels.
  lam_init: float = 0.05  # Initial lam.
  dropout: float = 0.0  # Denoiser dropout (Monte-Carlo dropout); 0: none.

  needs_maps = True  # Not a field: MoDL always reads coil maps (see fdl.models.reconstruct).

  def __post_init__(self):
    _checks.check_positive("num_iters", self.num_iters)
    _checks.check_positive("cg_iters", self.cg_iters)
    _checks.check_positive("depth", self.depth)
    _checks.check_positive("width", self.width)
    _checks.check_rate("dropout", self.dropout)
    if isinstance(self.lam_init, bool) or not isinstance(self.lam_init, (int, float)) or (
        not self.lam_init > 0 or not math.isfinite(self.lam_init)):
      raise ValueError(f"lam_init must be a finite number > 0; got {self.lam_init!r}")
    super().__post_init__()

  def setup(self):
    self.denoiser = ResidualDenoiser(self.depth, self.width, self.dropout)
    self.log_lam = self.param("log_lam", nn.initializers.constant(math.log(self.lam_init)),
                              (), jnp.float32)

  def complex_image(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array | None = None,
                    *, train: bool) -> jax.Array:
    """The complex reconstruction ``x_K``; call with ``method=MoDL.complex_image``.

    Args: as :meth:`__call__`.

    Returns:
      complex64 ``[B, H, W]``.
    """
    check_recon_inputs(kspace, mask, maps, needs_maps=True, model_name="MoDL")
    lam = jnp.exp(self.log_lam)
    rhs_data = sense_adjoint(kspace, maps, mask)  # A^H y

    def normal_op(x):  # (A^H A + lam I) x
      return sense_normal(x, maps, mask) + lam * x

    x = rhs_data
    for _ in range(self.num_iters):
      z = x + self.denoiser(x, train=train)
      x = cg(normal_op, rhs_data + lam * z, x0=z, num_iters=self.cg_iters)
    return x

  def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array | None = None, *,
               train: bool) -> jax.Array:
    """Reconstructs magnitude images ``|x_K|``.

    Args:
      kspace: complex64 ``[B, C, H, W]``, the measured ``y``; only entries where ``mask``
        is nonzero are read.
      mask: real, broadcastable to ``[B, C, H, W]``.
      maps: complex64 ``[B, C, H, W]`` with ``sum_c |S_c|^2 = 1``; required.
      train: enables the denoiser's dropout (if ``dropout > 0``; no other train-only
        behaviour).

    Returns:
      float32 ``[B, H, W]``.

    Raises:
      ValueError: bad shapes or dtypes, or ``maps`` is None.
    """
    return jnp.abs(self.complex_image(kspace, mask, maps, train=train)).astype(jnp.float32)
