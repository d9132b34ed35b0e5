"""Segmentation from under-sampled k-space: a reconstruction network and a segmenter, end to end.

``ReconSegmenter`` chains a reconstruction network (MoDL by default, `fdl.models.MoDL`) and a
segmenter (`fdl.models.Segmenter`) into one module, so that one loss on the segmentation (and,
optionally, on the reconstruction) trains both through the data-consistency steps:

  x      = |R(y, M, S)|                               magnitude reconstruction  [B, H, W]
  s      = stop_gradient(q99(x))                      per slice, the 99th percentile
  logits = G(x / s)                                   [B, H, W, K]

The division by the 99th percentile is the normalization every segmenter input of
`fdl.tasks.segmentation` gets (`normalize_input`), so a segmenter trained on fully sampled
images starts from inputs it knows. The scale is held constant in the gradient (a percentile's
derivative picks a single pixel; scaling is not what the loss should learn).

This is the K2S challenge's task (Tolpadi et al., "K2S Challenge: From Undersampled K-Space to
Automatic Segmentation", Bioengineering 10 (2023) 267): segmentation straight from 8x
under-sampled k-space. Its parameters are the two networks' own, under ``recon`` and
``segmenter``, so trained networks of either kind initialize it by path
(`fdl.train.transfer.init_state_from` with ``{"params": {"recon": ..., "segmenter": ...}}``).

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> from fdl.models.modl import MoDL
  >>> from fdl.models.segmenter import Segmenter
  >>> model = ReconSegmenter(recon=MoDL(num_iters=1, cg_iters=1, depth=2, width=4),
  ...                        segmenter=Segmenter(num_classes=3, base_channels=4, num_pools=1))
  >>> kspace = jax.ShapeDtypeStruct((2, 3, 11, 10), jnp.complex64)
  >>> mask = jax.ShapeDtypeStruct((2, 1, 1, 10), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> (image, logits), variables = jax.eval_shape(init, jax.random.key(0), kspace, mask, kspace)
  >>> image.shape, logits.shape, sorted(variables['params'])
  ((2, 11, 10), (2, 11, 10, 3), ['recon', 'segmenter'])
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

INPUT_PERCENTILE = 99.0  # as `fdl.tasks.segmentation.normalize_input`


def normalize_by_percentile(image: jax.Array, percentile: float = INPUT_PERCENTILE
                            ) -> jax.Array:
  """``image / q`` per slice, ``q`` its `percentile` (held constant in gradients).

  Args:
    image: real ``[B, H, W]``.
    percentile: in (0, 100].

  Returns:
    ``[B, H, W, 1]`` float32 (a slice whose percentile is 0 is divided by 1).
  """
  image = jnp.abs(image).astype(jnp.float32)
  scale = jnp.percentile(image.reshape(image.shape[0], -1), percentile, axis=1)
  scale = jax.lax.stop_gradient(jnp.where(scale > 0, scale, 1.0))
  return (image / scale[:, None, None])[..., None]


class ReconSegmenter(nn.Module):
  """Reconstruction then segmentation (module docstring), trained as one network.

  Attributes:
    recon: a reconstruction module called as ``recon(kspace, mask, maps, train=...)`` that
      returns magnitude images ``[B, H, W]`` (`MoDL`, `VarNet`, `ReconUNet`).
    segmenter: a module mapping ``[B, H, W, 1]`` to logits ``[B, H, W, K]`` (`Segmenter`).
  """

  recon: nn.Module
  segmenter: nn.Module

  needs_maps = True  # Not a field: the default reconstruction (MoDL) reads coil maps.

  def __call__(self, kspace: jax.Array, mask: jax.Array, maps: jax.Array | None = None, *,
               train: bool) -> tuple[jax.Array, jax.Array]:
    """The reconstruction and the segmentation logits.

    Args:
      kspace: complex64 ``[B, C, H, W]`` under-sampled k-space (zeros where not sampled).
      mask: real, broadcastable to ``[B, C, H, W]``.
      maps: complex64 ``[B, C, H, W]`` coil maps (for a reconstruction that needs them).
      train: passed to both networks (dropout).

    Returns:
      ``(image, logits)``: float32 ``[B, H, W]`` and float32 ``[B, H, W, K]``.
    """
    image = self.recon(kspace, mask, maps, train=train)
    logits = self.segmenter(normalize_by_percentile(image), train=train)
    return image, logits


def recon_segmenter(num_classes: int, *, recon: str = "modl", recon_kwargs=None,
                    segmenter_kwargs=None) -> ReconSegmenter:
  """A `ReconSegmenter` from names and settings (for configs and the model registry).

  Args:
    num_classes: the segmenter's classes, background included.
    recon: ``"modl"``, ``"varnet"`` or ``"recon_unet"``.
    recon_kwargs: keyword arguments of that reconstruction model.
    segmenter_kwargs: keyword arguments of `Segmenter` other than ``num_classes``.
  """
  from fdl.models.modl import MoDL  # pylint: disable=g-import-not-at-top
  from fdl.models.recon_unet import ReconUNet  # pylint: disable=g-import-not-at-top
  from fdl.models.segmenter import Segmenter  # pylint: disable=g-import-not-at-top
  from fdl.models.varnet import VarNet  # pylint: disable=g-import-not-at-top
  recons = {"modl": MoDL, "varnet": VarNet, "recon_unet": ReconUNet}
  if recon not in recons:
    raise ValueError(f"recon must be one of {sorted(recons)}; got {recon!r}")
  return ReconSegmenter(recon=recons[recon](**dict(recon_kwargs or {})),
                        segmenter=Segmenter(num_classes=num_classes,
                                            **dict(segmenter_kwargs or {})))
