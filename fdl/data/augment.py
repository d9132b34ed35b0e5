"""Training-time image augmentation in NumPy: crop, flip, rotation/scale, cutout.

Every random transform is a pure function of ``(image, rng)`` with `rng` a
``numpy.random.Generator``, built on a deterministic twin that takes the drawn
parameters explicitly (`crop_padded`, `horizontal_flip`, `affine_resample`,
`cutout`), which is what the tests check against hand-computed results.

Images are ``[H, W, C]``. The pipeline applies augmentation after
normalization, so the zeros that fill padding, the corners uncovered by a
rotation and the cutout square are the training mean colour.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

import numpy as np


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Which augmentations to apply; every field's zero/False switches it off.

  Attributes:
    crop_padding: pad each side with this many zero pixels, then crop a
      random window of the original size (0: off; CIFAR: 4).
    flip: mirror left-right with probability 1/2.
    rotation_degrees: rotate by an angle uniform in ``[-r, r]`` degrees
      (0: off).
    scale_range: scale by a factor uniform in ``[1 - s, 1 + s]`` (0: off);
      rotation and scaling are one bilinear resampling.
    cutout_size: set a random ``size x size`` square (clipped at the borders)
      to zero (0: off).
  """

  crop_padding: int = 0
  flip: bool = False
  rotation_degrees: float = 0.0
  scale_range: float = 0.0
  cutout_size: int = 0

  def __post_init__(self):
    if int(self.crop_padding) != self.crop_padding or self.crop_padding < 0:
      raise ValueError(f"crop_padding must be an integer >= 0; got "
                       f"{self.crop_padding!r}")
    if not isinstance(self.flip, (bool, np.bool_)):
      raise ValueError(f"flip must be a bool; got {self.flip!r}")
    if not 0 <= self.rotation_degrees <= 180:
      raise ValueError(f"rotation_degrees must be in [0, 180]; got "
                       f"{self.rotation_degrees!r}")
    if not 0 <= self.scale_range < 1:
      raise ValueError(f"scale_range must be in [0, 1); got {self.scale_range!r}")
    if int(self.cutout_size) != self.cutout_size or self.cutout_size < 0:
      raise ValueError(f"cutout_size must be an integer >= 0; got "
                       f"{self.cutout_size!r}")

  @classmethod
  def off(cls) -> AugmentConfig:
    """No augmentation at all."""
    return cls()

  @classmethod
  def cifar(cls) -> AugmentConfig:
    """The standard CIFAR recipe: 4-pixel padded random crop and flip."""
    return cls(crop_padding=4, flip=True)

  @classmethod
  def from_dict(cls, settings: Mapping[str, Any] | None) -> AugmentConfig:
    """From a dict of field values; unknown keys are an error, not ignored."""
    settings = dict(settings or {})
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(settings) - known)
    if unknown:
      raise ValueError(f"unknown augmentation settings {unknown}; known: "
                       f"{sorted(known)}")
    return cls(**settings)

  @property
  def enabled(self) -> bool:
    """Whether any augmentation is on."""
    return bool(self.crop_padding or self.flip or self.rotation_degrees or
                self.scale_range or self.cutout_size)

  def to_dict(self) -> dict[str, Any]:
    return {"crop_padding": int(self.crop_padding), "flip": bool(self.flip),
            "rotation_degrees": float(self.rotation_degrees),
            "scale_range": float(self.scale_range),
            "cutout_size": int(self.cutout_size)}


def as_augment_config(value: AugmentConfig | Mapping[str, Any] | None
                      ) -> AugmentConfig:
  """`value` as an `AugmentConfig` (None means off)."""
  if isinstance(value, AugmentConfig):
    return value
  return AugmentConfig.from_dict(value)


def _check_image(image: np.ndarray) -> None:
  if image.ndim != 3:
    raise ValueError(f"image must be [H, W, C]; got shape {image.shape}")


# --- deterministic transforms --------------------------------------------------


def crop_padded(image: np.ndarray, padding: int, top: int, left: int
                ) -> np.ndarray:
  """The ``H x W`` window at ``(top, left)`` of `image` zero-padded by `padding`.

  Args:
    image: ``[H, W, C]``, any dtype.
    padding: zero pixels added on each side.
    top, left: window origin in the padded image, in ``[0, 2 * padding]``;
      ``(padding, padding)`` returns `image` unchanged.

  Returns:
    ``[H, W, C]``, the dtype of `image`.

  >>> x = np.arange(4).reshape(2, 2, 1)
  >>> crop_padded(x, 1, 0, 0)[..., 0].tolist()
  [[0, 0], [0, 0]]
  >>> crop_padded(x, 1, 2, 2)[..., 0].tolist()
  [[3, 0], [0, 0]]
  """
  _check_image(image)
  if not (0 <= top <= 2 * padding and 0 <= left <= 2 * padding):
    raise ValueError(f"top and left must be in [0, {2 * padding}]; got "
                     f"{top}, {left}")
  h, w = image.shape[:2]
  out = np.zeros_like(image)
  # Overlap of the window [top, top + h) with the image at [padding, padding + h).
  r0, r1 = max(top, padding), min(top + h, padding + h)
  c0, c1 = max(left, padding), min(left + w, padding + w)
  if r0 < r1 and c0 < c1:
    out[r0 - top:r1 - top, c0 - left:c1 - left] = (
        image[r0 - padding:r1 - padding, c0 - padding:c1 - padding])
  return out


def horizontal_flip(image: np.ndarray) -> np.ndarray:
  """`image` mirrored left-right: ``image[:, ::-1]``."""
  _check_image(image)
  return image[:, ::-1]


def affine_resample(image: np.ndarray, degrees: float, scale: float
                    ) -> np.ndarray:
  """Rotation by `degrees` and scaling by `scale` about the centre, bilinear.

  Output pixel ``(i, j)`` takes the bilinear interpolation of `image` at

      p = c + R(-degrees) (i - c_i, j - c_j) / scale,

  ``c = ((H - 1) / 2, (W - 1) / 2)``, with zeros outside the image. Positive
  angles turn the picture counter-clockwise as displayed (rows down), so 90
  degrees on a square image is ``np.rot90(image)``. ``scale > 1`` zooms in.

  Args:
    image: ``[H, W, C]``, any real dtype.
    degrees: rotation angle in degrees.
    scale: zoom factor (> 0).

  Returns:
    float32 ``[H, W, C]``.

  >>> x = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
  >>> affine_resample(x, 90.0, 1.0)[..., 0].round(4).tolist() == np.rot90(x)[..., 0].tolist()
  True
  """
  _check_image(image)
  if not scale > 0:
    raise ValueError(f"scale must be > 0; got {scale!r}")
  h, w = image.shape[:2]
  theta = math.radians(degrees)
  cos, sin = math.cos(theta), math.sin(theta)
  u = (np.arange(h, dtype=np.float64) - (h - 1) / 2)[:, None]  # row offset
  v = (np.arange(w, dtype=np.float64) - (w - 1) / 2)[None, :]  # column offset
  rows = (h - 1) / 2 + (cos * u + sin * v) / scale
  cols = (w - 1) / 2 + (-sin * u + cos * v) / scale
  row_floor, col_floor = np.floor(rows), np.floor(cols)
  fr = (rows - row_floor).astype(np.float32)[..., None]
  fc = (cols - col_floor).astype(np.float32)[..., None]
  # A one-pixel zero border makes "outside" an index like any other: every
  # tap outside the image is clipped onto the border, which reads zero.
  padded = np.zeros((h + 2, w + 2, image.shape[2]), np.float32)
  padded[1:-1, 1:-1] = image
  flat = padded.reshape(-1, image.shape[2])

  def index(coord, size):
    return np.clip(coord, -1, size).astype(np.int64) + 1

  r0, r1 = index(row_floor, h), index(row_floor + 1, h)
  c0, c1 = index(col_floor, w), index(col_floor + 1, w)

  def tap(r, c):
    return np.take(flat, r * (w + 2) + c, axis=0)

  out = ((1 - fr) * ((1 - fc) * tap(r0, c0) + fc * tap(r0, c1))
         + fr * ((1 - fc) * tap(r1, c0) + fc * tap(r1, c1)))
  return out.astype(np.float32)


def cutout(image: np.ndarray, top: int, left: int, size: int,
           fill: float = 0.0) -> np.ndarray:
  """`image` with rows ``[top, top+size)`` x columns ``[left, left+size)`` set to `fill`.

  The square may stick out of the image (negative `top`/`left` included); only
  its part inside is filled.

  >>> cutout(np.ones((3, 3, 1)), -1, 1, 2)[..., 0].tolist()
  [[1.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 1.0, 1.0]]
  """
  _check_image(image)
  h, w = image.shape[:2]
  out = image.copy()
  out[max(top, 0):max(min(top + size, h), 0),
      max(left, 0):max(min(left + size, w), 0)] = fill
  return out


# --- random transforms -------------------------------------------------------


def random_crop(image: np.ndarray, rng: np.random.Generator, padding: int
                ) -> np.ndarray:
  """`crop_padded` at an origin uniform over ``[0, 2 * padding]^2``."""
  top, left = rng.integers(0, 2 * padding + 1, size=2)
  return crop_padded(image, padding, int(top), int(left))


def random_flip(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
  """`horizontal_flip` with probability 1/2."""
  return horizontal_flip(image) if rng.random() < 0.5 else image


def random_rotate_scale(image: np.ndarray, rng: np.random.Generator,
                        max_degrees: float, scale_range: float) -> np.ndarray:
  """`affine_resample` by an angle in ``[-max_degrees, max_degrees]`` and a
  factor in ``[1 - scale_range, 1 + scale_range]``, both uniform."""
  degrees = rng.uniform(-max_degrees, max_degrees)
  scale = rng.uniform(1.0 - scale_range, 1.0 + scale_range)
  return affine_resample(image, degrees, scale)


def random_cutout(image: np.ndarray, rng: np.random.Generator, size: int,
                  fill: float = 0.0) -> np.ndarray:
  """`cutout` of a square whose centre is uniform over the image pixels."""
  h, w = image.shape[:2]
  cy, cx = int(rng.integers(0, h)), int(rng.integers(0, w))
  return cutout(image, cy - size // 2, cx - size // 2, size, fill)


def augment_image(image: np.ndarray, rng: np.random.Generator,
                  config: AugmentConfig) -> np.ndarray:
  """Applies the augmentations `config` switches on, in a fixed order.

  Order: rotation/scale, padded crop, flip, cutout. Draws are taken from `rng`
  only for the transforms that are on.

  Args:
    image: ``[H, W, C]``, normally float32 and normalized.
    rng: the generator; the same state gives the same result.
    config: the settings.

  Returns:
    ``[H, W, C]``; float32 if rotation/scale ran, else the dtype of `image`.
  """
  if config.rotation_degrees or config.scale_range:
    image = random_rotate_scale(image, rng, config.rotation_degrees,
                                config.scale_range)
  if config.crop_padding:
    image = random_crop(image, rng, config.crop_padding)
  if config.flip:
    image = random_flip(image, rng)
  if config.cutout_size:
    image = random_cutout(image, rng, config.cutout_size)
  return image
