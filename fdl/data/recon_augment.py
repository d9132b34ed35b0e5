"""Augmentation of fully sampled multi-coil k-space for learned reconstruction.

A training slice is a fully sampled k-space ``k_c`` (coils c), its coil maps
``S_c`` and a magnitude target. An augmentation with a geometric transform T
(flips, then one bilinear rotation + scaling about the image centre, as
`fdl.data.augment.affine_resample`) acts in the image domain:

  x_c = ifft2c(k_c),   k'_c = fft2c(T x_c),   S'_c = T S_c,

so object, coil sensitivities and k-space move together, as if the object and
the array had been turned in the scanner, and the mask is applied to ``k'``
afterwards. The target follows by one of two rules (`ReconAugment.target`):

* ``"transform"`` (default): ``target' = crop(T pad(target))``, the reference
  moved with the data (``pad`` places the ``[h, w]`` target in an ``[H, W]``
  canvas where `fdl.mri.metrics.center_crop` takes it from, ``crop`` takes it
  back). For simulated data, whose target is the noiseless RSS, it stays
  noiseless. If the target is the RSS of the noiseless coil images, a flip
  keeps it exactly the RSS of the flipped noiseless coil images (when
  ``H - h`` and ``W - w`` are even, else the crop shifts by a pixel), a
  rotation or scaling up to the difference between interpolating ``|x|`` and
  taking ``|x|`` of the interpolated ``x`` (at edges).
* ``"rss"``: ``target' = crop(RSS_c(T x_c))``, recomputed from the augmented
  (noisy) data, fastMRI's ``reconstruction_rss`` definition.

Flips are exact index reversals. Rotation and scaling fill the uncovered
corners with zeros; the bilinear interpolation also low-passes (and
correlates) the k-space noise a little. The identity transform returns the
inputs unchanged.

Each training slice of each epoch draws its own transform from a NumPy
generator seeded by a `jax.random` key (`fdl.data.ReconPipeline` uses
``fold_in(fold_in(fold_in(PRNGKey(seed), 3), epoch), slice)``, next to the
masks' stream 1), so a run is reproducible and resumable.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, NamedTuple

import numpy as np

from fdl.data.augment import affine_resample
from fdl.mri.fft import fft2c_host, ifft2c_host
from fdl.mri.phantoms import numpy_rng

TARGET_RULES = ("transform", "rss")


@dataclasses.dataclass(frozen=True)
class ReconAugment:
  """Which transforms to draw, and how the target follows them.

  Attributes:
    hflip: probability of a left-right flip (reverses W), in [0, 1].
    vflip: probability of an up-down flip (reverses H), in [0, 1].
    max_degrees: rotation angle uniform in ``[-max_degrees, max_degrees]``
      (>= 0; 0: no rotation).
    scale_range: zoom factor uniform in ``[1 - scale_range, 1 + scale_range]``
      (in [0, 1); 0: no scaling).
    target: ``"transform"`` or ``"rss"`` (module docstring).
  """

  hflip: float = 0.5  # probability of a left-right flip
  vflip: float = 0.0  # probability of an up-down flip
  max_degrees: float = 0.0  # rotation range, degrees
  scale_range: float = 0.0  # zoom range around 1
  target: str = "transform"  # "transform" or "rss"

  def __post_init__(self):
    for name in ("hflip", "vflip"):
      value = getattr(self, name)
      if isinstance(value, bool) or not 0.0 <= value <= 1.0:
        raise ValueError(f"ReconAugment.{name} must be a probability in [0, 1]; got "
                         f"{value!r}")
    if not self.max_degrees >= 0:
      raise ValueError(f"ReconAugment.max_degrees must be >= 0; got "
                       f"{self.max_degrees!r}")
    if not 0.0 <= self.scale_range < 1.0:
      raise ValueError(f"ReconAugment.scale_range must be in [0, 1); got "
                       f"{self.scale_range!r}")
    if self.target not in TARGET_RULES:
      raise ValueError(f"ReconAugment.target must be one of {TARGET_RULES}; got "
                       f"{self.target!r}")

  @classmethod
  def from_dict(cls, settings: Mapping[str, Any] | None) -> ReconAugment | None:
    """A config from a dict (e.g. ``config.augment``); None if it is switched off.

    ``settings["enabled"]`` (default True) switches it on; the other keys are
    the fields. None or ``enabled=False`` gives None (no augmentation).

    Raises:
      ValueError: an unknown key, naming it and the known ones.
    """
    if settings is None:
      return None
    settings = dict(settings)
    if not settings.pop("enabled", True):
      return None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
      raise ValueError(f"unknown augmentation settings {unknown}; known: "
                       f"{sorted(known | {'enabled'})}")
    return cls(**settings)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


class Transform(NamedTuple):
  """One drawn transform: flips first, then rotation and scaling."""

  hflip: bool
  vflip: bool
  degrees: float
  scale: float

  @property
  def is_identity(self) -> bool:
    return not self.hflip and not self.vflip and self.degrees == 0 and self.scale == 1


IDENTITY = Transform(False, False, 0.0, 1.0)


def draw_transform(key, config: ReconAugment) -> Transform:
  """The transform of one slice, drawn in a fixed order from `key`.

  Args:
    key: a raw ``uint32[2]`` or typed `jax.random` key, an int seed or a
      `numpy.random.Generator` (see `fdl.mri.phantoms.numpy_rng`).
    config: the ranges.

  Returns:
    A `Transform`; the same key and config give the same transform.
  """
  rng = numpy_rng(key)
  # Always four draws, so one setting switched off does not shift the others.
  u_h, u_v, u_angle, u_scale = rng.random(4)
  return Transform(
      hflip=bool(u_h < config.hflip), vflip=bool(u_v < config.vflip),
      degrees=float((2 * u_angle - 1) * config.max_degrees),
      scale=float(1 + (2 * u_scale - 1) * config.scale_range))


def transform_images(images: np.ndarray, transform: Transform) -> np.ndarray:
  """Applies `transform` to every ``[H, W]`` image of ``images [..., H, W]``.

  Args:
    images: real or complex ``[..., H, W]``.
    transform: flips, then `affine_resample` (bilinear, zeros outside) when
      the angle or the scale differ from 0 and 1.

  Returns:
    ``[..., H, W]``, the input's dtype (complex images are resampled as real
    and imaginary parts, which is complex linear interpolation).
  """
  images = np.asarray(images)
  out = images
  if transform.hflip:
    out = out[..., :, ::-1]
  if transform.vflip:
    out = out[..., ::-1, :]
  if transform.degrees != 0 or transform.scale != 1:
    lead, (h, w) = out.shape[:-2], out.shape[-2:]
    flat = out.reshape(-1, h, w)
    parts = [flat.real, flat.imag] if np.iscomplexobj(flat) else [flat]
    stacked = np.concatenate(parts, axis=0).transpose(1, 2, 0)  # [H, W, channels]
    moved = affine_resample(stacked, transform.degrees, transform.scale)
    moved = moved.transpose(2, 0, 1).astype(np.float64)
    if np.iscomplexobj(flat):
      half = len(flat)
      moved = moved[:half] + 1j * moved[half:]
    out = moved.reshape(*lead, h, w)
  return np.ascontiguousarray(out).astype(images.dtype, copy=False)


def _crop_offsets(full: tuple[int, int], crop: tuple[int, int]) -> tuple[int, int]:
  # fastMRI's centre crop, as fdl.mri.metrics.center_crop.
  return (full[0] - crop[0]) // 2, (full[1] - crop[1]) // 2


def augment_slice(kspace: np.ndarray, maps: np.ndarray | None, target: np.ndarray,
                  transform: Transform, *, target_rule: str = "transform"
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
  """One fully sampled slice moved by `transform` (module docstring).

  Args:
    kspace: complex64 ``[C, H, W]``, fully sampled, centred.
    maps: complex64 ``[C, H, W]`` coil maps, or None.
    target: float32 ``[h, w]`` with ``h <= H``, ``w <= W`` (centre crop of
      the image grid).
    transform: from `draw_transform`, or `IDENTITY`.
    target_rule: ``"transform"`` or ``"rss"``.

  Returns:
    ``(kspace, maps, target)`` with the input shapes and dtypes; the inputs
    themselves for the identity transform.

  Raises:
    ValueError: bad shapes or an unknown `target_rule`.
  """
  if target_rule not in TARGET_RULES:
    raise ValueError(f"target_rule must be one of {TARGET_RULES}; got {target_rule!r}")
  if kspace.ndim != 3 or not np.iscomplexobj(kspace):
    raise ValueError(f"kspace must be complex [C, H, W]; got {kspace.dtype} "
                     f"{kspace.shape}")
  if maps is not None and maps.shape != kspace.shape:
    raise ValueError(f"maps must be None or shaped like kspace {kspace.shape}; got "
                     f"{maps.shape}")
  full = kspace.shape[-2:]
  if target.ndim != 2 or target.shape[0] > full[0] or target.shape[1] > full[1]:
    raise ValueError(f"target must be [h, w] with h <= {full[0]}, w <= {full[1]}; got "
                     f"{target.shape}")
  if transform.is_identity:
    return kspace, maps, target
  coil_images = transform_images(ifft2c_host(kspace.astype(np.complex128)), transform)
  new_kspace = fft2c_host(coil_images).astype(kspace.dtype)
  new_maps = None if maps is None else transform_images(maps, transform)
  top, left = _crop_offsets(full, target.shape)
  window = (slice(top, top + target.shape[0]), slice(left, left + target.shape[1]))
  if target_rule == "rss":
    new_target = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))[window]
  else:
    canvas = np.zeros(full, np.float32)
    canvas[window] = target
    new_target = transform_images(canvas, transform)[window]
  return new_kspace, new_maps, np.ascontiguousarray(new_target).astype(target.dtype)


def augment_batch(kspace: np.ndarray, maps: np.ndarray | None, target: np.ndarray,
                  keys: np.ndarray, config: ReconAugment
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
  """`augment_slice` of every row, row i with the transform drawn from ``keys[i]``.

  Args:
    kspace: complex64 ``[b, C, H, W]`` fully sampled.
    maps: complex64 ``[b, C, H, W]`` or None.
    target: float32 ``[b, h, w]``.
    keys: ``[b, 2]`` raw `jax.random` keys (or any ``b`` keys `draw_transform`
      takes).
    config: the ranges and the target rule.

  Returns:
    ``(kspace, maps, target)``, new arrays of the input shapes and dtypes.
  """
  if len(keys) != len(kspace):
    raise ValueError(f"need one key per row: {len(kspace)} rows, {len(keys)} keys")
  rows = [augment_slice(kspace[i], None if maps is None else maps[i], target[i],
                        draw_transform(keys[i], config), target_rule=config.target)
          for i in range(len(kspace))]
  return (np.stack([r[0] for r in rows]),
          None if maps is None else np.stack([r[1] for r in rows]),
          np.stack([r[2] for r in rows]))
