"""A small, deterministic image classification set with learnable structure.

Each class is a sinusoidal grating at its own orientation (class k at k*180/K
degrees), tinted with its own colour, over a random smooth background and pixel
noise. A small CNN separates the classes well above chance within a few epochs,
which makes it the data of smoke tests and examples; it says nothing about
natural images.
"""

from __future__ import annotations

import numpy as np


def synthetic_images(num_train: int = 512, num_test: int = 128, *,
                     image_size: int = 32, num_classes: int = 10,
                     noise: float = 0.08, seed: int = 0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
  """Class-specific oriented, coloured gratings plus noise.

  Labels are balanced (``arange(n) % num_classes``, shuffled). Orientation,
  spatial frequency, phase, contrast, tint and background vary per image, so
  no single pixel gives the class away.

  Args:
    num_train: training images (>= 1).
    num_test: test images (>= 0), drawn after the training ones.
    image_size: side of the square images in pixels (>= 4).
    num_classes: number of classes, i.e. of orientations (>= 2).
    noise: standard deviation of the per-pixel Gaussian noise, in [0, 1] units.
    seed: seed of the NumPy generator; same arguments, same bytes.

  Returns:
    ``(train_images, train_labels, test_images, test_labels)``: uint8
    ``[N, image_size, image_size, 3]`` and int32 ``[N]``.

  >>> x, y, xt, yt = synthetic_images(20, 10, image_size=8, seed=1)
  >>> x.shape, x.dtype, y.dtype, xt.shape, sorted(set(y.tolist())) == list(range(10))
  ((20, 8, 8, 3), dtype('uint8'), dtype('int32'), (10, 8, 8, 3), True)
  """
  if num_train < 1 or num_test < 0:
    raise ValueError(f"num_train must be >= 1 and num_test >= 0; got "
                     f"{num_train}, {num_test}")
  if image_size < 4 or num_classes < 2:
    raise ValueError(f"image_size must be >= 4 and num_classes >= 2; got "
                     f"{image_size}, {num_classes}")
  rng = np.random.default_rng(seed)
  n = num_train + num_test
  labels = np.concatenate([
      rng.permutation(np.arange(num_train) % num_classes),
      rng.permutation(np.arange(num_test) % num_classes)]).astype(np.int32)

  # Class tints around the colour wheel, fixed for all seeds.
  hue = np.arange(num_classes) / num_classes
  tints = 0.5 + 0.5 * np.cos(
      2 * np.pi * (hue[:, None] - np.array([0.0, 1 / 3, 2 / 3])[None, :]))

  angle = (np.pi * labels / num_classes
           + rng.normal(0.0, 0.15 * np.pi / num_classes, n))
  freq = rng.uniform(0.10, 0.22, n)  # cycles per pixel
  phase = rng.uniform(0.0, 2 * np.pi, n)
  contrast = rng.uniform(0.25, 0.45, n)
  tint = np.clip(tints[labels] + rng.normal(0.0, 0.15, (n, 3)), 0.0, 1.0)
  background = rng.uniform(0.3, 0.7, (n, 3))
  # A smooth random ramp per image, so brightness alone does not separate.
  ramp = rng.normal(0.0, 0.1, (n, 2))

  coords = np.arange(image_size) - (image_size - 1) / 2
  yy, xx = np.meshgrid(coords, coords, indexing="ij")  # [S, S]
  along = (np.cos(angle)[:, None, None] * xx[None]
           + np.sin(angle)[:, None, None] * yy[None])  # [n, S, S]
  grating = np.sin(2 * np.pi * freq[:, None, None] * along + phase[:, None, None])
  shade = (ramp[:, 0, None, None] * yy[None] + ramp[:, 1, None, None] * xx[None]
           ) / image_size
  images = (background[:, None, None, :] + shade[..., None]
            + (contrast[:, None, None] * grating)[..., None]
            * (2 * tint[:, None, None, :] - 1))
  images = images + rng.normal(0.0, noise, images.shape)
  images = np.clip(np.rint(images * 255), 0, 255).astype(np.uint8)
  return (images[:num_train], labels[:num_train], images[num_train:],
          labels[num_train:])
