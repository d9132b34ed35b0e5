"""Receive-coil sensitivities from a physical model: loop coils and Biot-Savart.

Geometry, in the normalized units of `fdl.mri.phantoms.image_grid` (the field
of view is ``[-1, 1)`` on each axis; x to the right, y up): the imaging plane
is ``z = 0`` and the main field B0 points along z. ``C`` circular loops of
radius ``a`` are centred on a circle of radius ``R`` around the object,
loop ``c`` at angle ``theta_c = 2 pi c / C`` counter-clockwise from +x, at
``R (cos theta_c, sin theta_c, 0)``. Each loop lies in the plane spanned by z
and the tangent of that circle, so its normal points at the centre of the
field of view. Its wire is at distance ``sqrt(R^2 + a^2) > sqrt(2)`` from the
origin, outside every pixel when ``R > sqrt(2)``.

A unit current in loop c creates, by the Biot-Savart law,

  B_c(r) = mu0 / (4 pi) * contour_integral dl x (r - r') / |r - r'|^3,

integrated numerically (midpoint rule on ``num_segments`` segments, which
converges exponentially for a smooth periodic integrand). By reciprocity the
receive sensitivity is proportional to the transverse field; this module
uses

  S_c(x, y) = B_{c,x}(x, y, 0) - i B_{c,y}(x, y, 0),

dropping the constant ``mu0 / (4 pi)`` (the scale is fixed by normalization).
The magnitude falls off smoothly away from the coil and the phase rotates with
the field direction, so the maps are smooth, complex and mutually distinct,
as measured maps are.

References:
  D. I. Hoult, "The principle of reciprocity in signal strength calculations",
  Concepts Magn. Reson. 12 (2000).
  J. D. Jackson, "Classical Electrodynamics", 3rd ed., section 5.5.
"""

from __future__ import annotations

import functools
from typing import Sequence

import numpy as np

from fdl.mri.phantoms import image_grid


def loop_coil_maps(shape: Sequence[int] = (128, 128), num_coils: int = 8, *,
                   array_radius: float = 1.6, loop_radius: float | None = None,
                   num_segments: int = 64, normalize: bool = True) -> np.ndarray:
  """Sensitivity maps of a ring of circular loop coils (Biot-Savart model).

  Args:
    shape: image size ``(H, W)``; odd and non-square allowed.
    num_coils: number of loops ``C`` (>= 1; arrays of 4 to 16 are typical).
    array_radius: ``R``, distance of the loop centres from the origin in
      normalized field-of-view units; must exceed ``sqrt(2)`` so that no wire
      crosses the field of view ``[-1, 1)^2``.
    loop_radius: ``a``, radius of each loop in the same units; by default
      ``R * sin(min(pi / C, pi / 4))``, so neighbouring loops nearly touch.
    num_segments: number of straight segments per loop for the integral.
    normalize: if True, scale pixel-wise so that ``sum_c |S_c|^2 = 1`` at
      every pixel of the field of view (the field is nonzero everywhere
      inside it); if False, scale all maps by one constant so that
      ``max |S| = 1``, keeping the physical fall-off.

  Returns:
    complex64 ``[C, H, W]``. Deterministic: the same arguments give the same
    bytes.

  Examples:
    >>> import numpy as np
    >>> maps = loop_coil_maps((32, 24), 4)
    >>> maps.shape, maps.dtype
    ((4, 32, 24), dtype('complex64'))
    >>> bool(np.allclose((abs(maps) ** 2).sum(0), 1.0, atol=1e-5))
    True
  """
  h, w = (int(s) for s in shape)
  if h < 1 or w < 1 or len(tuple(shape)) != 2:
    raise ValueError(f"shape must be (H, W) with H, W >= 1; got {tuple(shape)}")
  if int(num_coils) < 1:
    raise ValueError(f"num_coils must be >= 1; got {num_coils}")
  if not array_radius > np.sqrt(2.0):
    raise ValueError(f"array_radius must be > sqrt(2) (outside the field of view); "
                     f"got {array_radius}")
  if loop_radius is None:
    loop_radius = array_radius * np.sin(min(np.pi / num_coils, np.pi / 4))
  if not loop_radius > 0:
    raise ValueError(f"loop_radius must be > 0; got {loop_radius}")
  if int(num_segments) < 8:
    raise ValueError(f"num_segments must be >= 8; got {num_segments}")
  maps = _cached_maps(h, w, int(num_coils), float(array_radius), float(loop_radius),
                      int(num_segments), bool(normalize))
  return maps.copy()


@functools.lru_cache(maxsize=16)
def _cached_maps(h, w, num_coils, array_radius, loop_radius, num_segments, normalize):
  # Simulating many slices and files reuses one coil array; computing it costs
  # O(C H W segments), so keep the last few arrays.
  x, y = image_grid((h, w))
  points = np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=-1)  # [N, 3]
  maps = np.empty((num_coils, h, w), np.complex128)
  for c in range(num_coils):
    theta = 2.0 * np.pi * c / num_coils
    field = _loop_field(points, theta, array_radius, loop_radius, num_segments)
    maps[c] = (field[:, 0] - 1j * field[:, 1]).reshape(h, w)
  if normalize:
    maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=0, keepdims=True))
  else:
    maps /= np.abs(maps).max()
  out = maps.astype(np.complex64)
  out.flags.writeable = False
  return out


def _loop_field(points, theta, array_radius, loop_radius, num_segments):
  """Biot-Savart field ``[N, 3]`` of a unit-current loop at ``points [N, 3]``.

  The loop is centred at ``R (cos theta, sin theta, 0)`` in the plane of the
  tangent ``t = (-sin theta, cos theta, 0)`` and ``z``; the current runs
  from ``t`` towards ``z``, so the field at the loop centre points along
  ``t x z``, the outward radial direction.
  """
  centre = array_radius * np.array([np.cos(theta), np.sin(theta), 0.0])
  tangent = np.array([-np.sin(theta), np.cos(theta), 0.0])
  axis_z = np.array([0.0, 0.0, 1.0])
  phi = (np.arange(num_segments) + 0.5) * (2.0 * np.pi / num_segments)
  wire = (centre + loop_radius * (np.cos(phi)[:, None] * tangent
                                  + np.sin(phi)[:, None] * axis_z))  # [K, 3]
  dl = (loop_radius * (2.0 * np.pi / num_segments)
        * (-np.sin(phi)[:, None] * tangent + np.cos(phi)[:, None] * axis_z))
  field = np.zeros_like(points)
  # Chunk the segments so the [N, chunk, 3] temporaries stay small.
  for start in range(0, num_segments, 16):
    sl = slice(start, start + 16)
    d = points[:, None, :] - wire[None, sl, :]  # r - r'
    inv_r3 = np.sum(d * d, axis=-1) ** -1.5
    field += np.einsum("nk,nkj->nj", inv_r3, np.cross(dl[None, sl, :], d))
  return field
