"""Two-class point sets in 2-D that no straight line separates.

They are the smallest honest test of why networks need non-linear activations:
a linear classifier cannot exceed chance by much on `xor`, and stays well below
a small MLP on `two_moons`.
"""

from __future__ import annotations

import numpy as np


def two_moons(num_points: int, *, noise: float = 0.1, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray]:
  """Two interleaved half circles with Gaussian noise.

  Class 0 is the upper half circle of radius 1 centred at (0, 0); class 1 the
  lower half circle centred at (1, 0.5). Points are shuffled.

  Args:
    num_points: total number of points (half per class, rounded down for 0).
    noise: standard deviation of the isotropic Gaussian noise added.
    seed: seed of the NumPy generator; same seed, same points.

  Returns:
    ``(x, y)``: float32 ``[num_points, 2]`` and int32 ``[num_points]`` in {0, 1}.
  """
  _check(num_points, noise)
  rng = np.random.default_rng(seed)
  n0 = num_points // 2
  n1 = num_points - n0
  t0 = rng.uniform(0.0, np.pi, n0)
  t1 = rng.uniform(0.0, np.pi, n1)
  upper = np.stack([np.cos(t0), np.sin(t0)], axis=1)
  lower = np.stack([1.0 - np.cos(t1), 0.5 - np.sin(t1)], axis=1)
  x = np.concatenate([upper, lower]) + noise * rng.standard_normal((num_points, 2))
  y = np.concatenate([np.zeros(n0), np.ones(n1)])
  order = rng.permutation(num_points)
  return x[order].astype(np.float32), y[order].astype(np.int32)


def xor(num_points: int, *, noise: float = 0.1, seed: int = 0
        ) -> tuple[np.ndarray, np.ndarray]:
  """Four Gaussian blobs at (±1, ±1); the label is 1 where x·y < 0 (XOR of signs).

  Args:
    num_points: total number of points.
    noise: standard deviation of each blob.
    seed: seed of the NumPy generator.

  Returns:
    ``(x, y)``: float32 ``[num_points, 2]`` and int32 ``[num_points]`` in {0, 1}.
  """
  _check(num_points, noise)
  rng = np.random.default_rng(seed)
  centres = np.array([[1, 1], [-1, -1], [1, -1], [-1, 1]], np.float64)
  which = rng.integers(0, 4, num_points)
  x = centres[which] + noise * rng.standard_normal((num_points, 2))
  y = (which >= 2).astype(np.int32)
  return x.astype(np.float32), y


TOY_DATASETS = {"moons": two_moons, "xor": xor}


def make_toy_dataset(name: str, num_points: int, *, noise: float, seed: int):
  """A toy dataset by name (``moons`` or ``xor``); see `two_moons` and `xor`."""
  if name not in TOY_DATASETS:
    raise ValueError(
        f"dataset must be one of {tuple(TOY_DATASETS)}; got {name!r}")
  return TOY_DATASETS[name](num_points, noise=noise, seed=seed)


def _check(num_points, noise):
  if int(num_points) != num_points or num_points < 2:
    raise ValueError(f"num_points must be an integer >= 2; got {num_points!r}")
  if noise < 0:
    raise ValueError(f"noise must be >= 0; got {noise!r}")
