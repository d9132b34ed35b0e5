"""The interface shared by the learned MRI reconstruction models, and batched inference.

Every reconstruction model (:class:`~fdl.models.recon_unet.ReconUNet`,
:class:`~fdl.models.modl.MoDL`, :class:`~fdl.models.varnet.VarNet`) is called as

  model.apply(variables, kspace, mask, maps, train=False) -> float32 [B, H, W]

with k-space complex64 ``[B, C, H, W]``, a real mask broadcastable to it (``[B, 1, 1, W]``
for Cartesian line masks, ``[B, 1, H, W]`` for 2-D masks), and coil maps complex64
``[B, C, H, W]`` or ``None``; a model's ``needs_maps`` says whether it reads them.
:func:`check_recon_inputs` is the argument check they all run, and :func:`reconstruct` is
the entry point for one's own data: it checks, masks, chunks and runs a compiled forward
pass.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from fdl.mri.sense import check_mask


def check_recon_inputs(kspace, mask, maps, *, needs_maps: bool, model_name: str) -> None:
  """Validates a reconstruction model's ``(kspace, mask, maps)``.

  Shapes and dtypes are always checked; the NaN/Inf checks need values, so they are skipped
  under tracing (inside `jax.jit`) and run on concrete NumPy or JAX arrays.

  Args:
    kspace: complex ``[B, C, H, W]``.
    mask: real, broadcastable to ``[B, C, H, W]``.
    maps: complex ``[B, C, H, W]`` or ``None``.
    needs_maps: whether ``maps=None`` is an error.
    model_name: the model's name, for the messages.

  Raises:
    ValueError: naming the argument (`kspace`, `mask` or `maps`), what was expected and
      what came.
  """
  shape = tuple(np.shape(kspace))
  dtype = jnp.result_type(kspace)
  if len(shape) != 4 or not jnp.issubdtype(dtype, jnp.complexfloating):
    raise ValueError(f"kspace must be complex64 [batch, coils, H, W]; got {dtype} {shape}")
  _check_finite("kspace contains", kspace)
  check_mask(mask, shape)
  _check_finite("mask contains", mask)
  if maps is None:
    if needs_maps:
      raise ValueError(
          f"maps are required by {model_name}: pass coil sensitivity maps complex64 "
          f"{shape} [batch, coils, H, W] (e.g. from fdl.mri.coils.estimate_maps)")
    return
  maps_shape = tuple(np.shape(maps))
  maps_dtype = jnp.result_type(maps)
  if maps_shape != shape or not jnp.issubdtype(maps_dtype, jnp.complexfloating):
    raise ValueError(f"maps must be complex64 with the k-space's shape {shape} "
                     f"[batch, coils, H, W]; got {maps_dtype} {maps_shape}")
  _check_finite("maps contain", maps)


def _check_finite(subject: str, x) -> None:
  if isinstance(x, jax.core.Tracer):
    return
  if isinstance(x, np.ndarray):  # checked on the host: no transfer just to look at it
    finite = np.all(np.isfinite(x))
  else:
    # A concrete JAX array met while tracing (a constant closed over by a jitted
    # function) is checked now, instead of becoming a tracer that bool() rejects.
    with jax.ensure_compile_time_eval():
      finite = jnp.all(jnp.isfinite(x))
  if not bool(finite):
    raise ValueError(f"{subject} NaN or Inf values")


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: nn.Module):
  """One jitted ``model.apply(..., train=False)`` per model; jax caches it per input shape.

  Linen modules are frozen dataclasses, hashed by their fields, so equal models share it.
  """

  def apply(variables, kspace, mask, maps):
    return model.apply(variables, kspace, mask, maps, train=False)

  return jax.jit(apply)


def _check_batch_size(batch_size) -> int:
  if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or (
      batch_size < 1):
    raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
  return int(batch_size)


def _pad_batch(x: np.ndarray, size: int) -> np.ndarray:
  # Repeats the last slice: a real slice keeps every statistic (norms, CG residuals)
  # ordinary, where zeros would be a degenerate input.
  return np.pad(x, [(0, size - x.shape[0])] + [(0, 0)] * (x.ndim - 1), mode="edge")


def reconstruct(model: nn.Module, variables, kspace, mask, maps=None, *,
                batch_size: int = 8) -> np.ndarray:
  """Reconstructs magnitude images from multi-coil k-space with a trained model.

  The inputs are checked on the host, ``kspace`` is multiplied by ``mask`` (so unsampled
  entries may hold anything finite), and the slices run through
  ``model.apply(variables, kspace, mask, maps, train=False)`` in chunks of
  ``min(batch_size, B)`` slices. The forward pass is jitted once per model and input shape
  and cached across calls; a last, partial chunk is padded to the chunk size (repeating its
  last slice) so it reuses that compilation, and the padding is dropped from the result.

  Args:
    model: a reconstruction model (see the module docstring); if it has a ``needs_maps``
      attribute that is true, ``maps`` must be given.
    variables: the model's variables, e.g. ``{"params": params}``.
    kspace: complex ``[C, H, W]`` (one slice) or ``[B, C, H, W]``, NumPy or JAX.
    mask: real 0/1 mask (or sampling weights) broadcastable to ``kspace``'s shape, e.g.
      ``[1, 1, W]`` or ``[1, H, W]`` for one slice, ``[B, 1, 1, W]`` or ``[B, 1, H, W]``
      (or with batch 1) for a batch. For one slice, a mask with a leading batch axis of 1
      is accepted too.
    maps: complex coil sensitivities with ``kspace``'s shape, or ``None``.
    batch_size: the most slices per forward pass (bounds the memory), >= 1.

  Returns:
    float32 NumPy images ``[H, W]`` for ``[C, H, W]`` input, else ``[B, H, W]``.

  Raises:
    ValueError: naming the argument: ``kspace`` not complex or not of rank 3 or 4, NaN or
      Inf in ``kspace``, ``mask`` or ``maps``, a ``mask`` that does not broadcast to
      ``kspace``, ``maps`` of another shape than ``kspace``, ``maps`` missing for a model
      that needs them, or a bad ``batch_size``.

  Examples:
    >>> import jax, numpy as np
    >>> from fdl.models import MoDL
    >>> model = MoDL(num_iters=1, cg_iters=2, depth=1, width=2)
    >>> kspace = np.ones((2, 12, 10), np.complex64)             # one slice, 2 coils
    >>> maps = np.full((2, 12, 10), 2**-0.5, np.complex64)      # sum_c |S_c|^2 = 1
    >>> mask = np.ones((1, 1, 10), np.float32)                  # fully sampled
    >>> variables = model.init(jax.random.key(0), kspace[None], mask[None], maps[None],
    ...                        train=False)
    >>> image = reconstruct(model, variables, kspace, mask, maps)
    >>> image.shape, image.dtype
    ((12, 10), dtype('float32'))
  """
  batch_size = _check_batch_size(batch_size)
  kspace = np.asarray(jax.device_get(kspace))
  if kspace.ndim not in (3, 4) or not np.iscomplexobj(kspace):
    raise ValueError("kspace must be complex [coils, H, W] or [batch, coils, H, W]; got "
                     f"{kspace.dtype} {kspace.shape}")
  one_slice = kspace.ndim == 3
  given_shape = kspace.shape
  kspace = kspace.astype(np.complex64)[None] if one_slice else kspace.astype(np.complex64)

  mask = np.asarray(jax.device_get(mask))
  if np.iscomplexobj(mask) or not (np.issubdtype(mask.dtype, np.number)
                                   or mask.dtype == bool):
    raise ValueError(f"mask must be real (0/1 or weights); got {mask.dtype}")
  try:
    broadcast = np.broadcast_shapes(mask.shape, kspace.shape)
  except ValueError:
    broadcast = None
  if broadcast != kspace.shape:
    raise ValueError(f"mask of shape {mask.shape} does not broadcast to kspace of shape "
                     f"{given_shape}; use e.g. [batch, 1, 1, W] for line masks or "
                     "[batch, 1, H, W] for 2-D masks (without the batch axis for one slice)")
  mask = mask.astype(np.float32)
  mask = mask.reshape((1,) * (4 - mask.ndim) + mask.shape)
  mask = np.broadcast_to(mask, kspace.shape[:1] + mask.shape[1:])

  if maps is not None:
    maps = np.asarray(jax.device_get(maps))
    if maps.shape != given_shape or not np.iscomplexobj(maps):
      raise ValueError(f"maps must be complex with kspace's shape {given_shape}; got "
                       f"{maps.dtype} {maps.shape}")
    maps = maps.astype(np.complex64)[None] if one_slice else maps.astype(np.complex64)
  check_recon_inputs(kspace, mask, maps, needs_maps=bool(getattr(model, "needs_maps", False)),
                     model_name=type(model).__name__)

  kspace = kspace * mask
  num_slices = kspace.shape[0]
  chunk = min(batch_size, num_slices)
  apply = _jitted_apply(model)
  outputs = []
  for start in range(0, num_slices, chunk):
    stop = min(start + chunk, num_slices)
    inputs = [x if x is None else _pad_batch(x[start:stop], chunk)
              for x in (kspace, mask, maps)]
    # Explicit transfers, so this also runs under jax_transfer_guard="disallow".
    out = apply(variables, *jax.device_put(inputs))
    outputs.append((out, stop - start))  # dispatch every chunk before fetching any
  images = np.concatenate([np.asarray(jax.device_get(out))[:size] for out, size in outputs])
  images = images.astype(np.float32)
  return images[0] if one_slice else images
