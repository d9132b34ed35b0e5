"""Audit of k-space for the marks of processing ("implicit data crimes").

Public MRI data are often not raw: k-space synthesized from magnitude images,
from zero-padded (interpolated) reconstructions or from compressed images makes
reconstruction look better than it is on raw data (Shimron, Tamir, Wang and
Lustig, "Implicit data crimes: machine learning bias arising from misuse of
public data", PNAS 2022). `audit` looks for two such marks:

- ``zero_padded``: a border band of k-space rows or columns carries no signal
  and no noise, as after zero-padding k-space (the image was interpolated to a
  larger matrix). Acquired k-space has a noise floor everywhere it was sampled;
  its emptiest border line holds noise energy of the order of the median line's
  noise, never ``1e-8`` of it. The padding factor is the full size over the size
  of the non-empty block.
- ``conjugate_symmetric``: ``k(-u) = conj(k(u))`` up to one global phase, the
  k-space of a real-valued image, as synthesized from magnitude images. Coil
  images of an acquisition are complex (coil phase, B0 and receiver phase), so
  their k-space has an antisymmetric part of the order of the symmetric one; a
  real image plus acquisition-like noise keeps only the noise there.

Zeros of an under-sampling mask are not evidence: pass the mask and only
sampled positions are read.

Multi-coil k-space synthesized from a magnitude image through coil maps,
``k_c = F(S_c x)`` with ``x`` real, is not conjugate symmetric coil by coil (the
maps are complex); its SENSE combination ``sum_c conj(S_c) F^-1(k_c) = x`` is
real. Given the maps of fully sampled k-space, `audit` therefore tests the
k-space of that combined image instead.
"""

from __future__ import annotations

import numpy as np

from fdl.mri.fft import fft2c_host, ifft2c_host

# Below this energy ratio to the median sampled line a border line is empty: noise
# of acquired data is far above it, rounding errors of float32 far below.
EMPTY_LINE_RATIO = 1e-8
# Antisymmetric over symmetric energy at or below which k-space is taken as that of a
# real image. Measured on simulated 8-coil data: raw coil k-space 0.07-0.17; a real
# image 1e-15 without noise and about 0.02 with complex noise 30 dB below the peak
# sample over 8 (tests/mri/test_data_audit.py).
SYMMETRY_RATIO = 0.03


def _as_array(kspace) -> np.ndarray:
  k = np.asarray(kspace)
  if not np.iscomplexobj(k):
    raise ValueError(f"kspace must be complex [..., H, W]; got {k.dtype} {k.shape}")
  if k.ndim < 2 or min(k.shape[-2:]) < 2:
    raise ValueError(f"kspace must be complex [..., H, W] with H, W >= 2; got shape "
                     f"{k.shape}")
  if not np.all(np.isfinite(k)):
    raise ValueError("kspace contains NaN or Inf values")
  return k.astype(np.complex128)


def _sampled(k: np.ndarray, mask) -> np.ndarray:
  """Boolean array of k's shape: True where a sample was acquired."""
  if mask is None:
    return np.ones(k.shape, bool)
  m = np.asarray(mask)
  try:
    return np.broadcast_to(m != 0, k.shape)
  except ValueError:
    raise ValueError(f"mask of shape {m.shape} does not broadcast to kspace "
                     f"{k.shape}") from None


def _empty_border(energy: np.ndarray, sampled: np.ndarray) -> tuple[int, int, float]:
  """Empty lines at each end of a line-energy profile, and the emptiest border ratio.

  Args:
    energy: ``[N]`` mean |k|^2 per line over its sampled points.
    sampled: ``[N]`` whether the line has any sampled point.
  """
  # The median over lines that hold anything: interior zero lines (an unmasked
  # under-sampling pattern) must not drag the reference to zero.
  holding = sampled & (energy > 0)
  if not holding.any():
    return 0, 0, 0.0
  reference = np.median(energy[holding])
  ratio = np.where(sampled, energy / reference, np.inf)  # unsampled: no evidence
  empty = ratio <= EMPTY_LINE_RATIO
  lead = int(np.argmin(empty)) if not empty.all() else len(empty)
  trail = int(np.argmin(empty[::-1])) if not empty.all() else len(empty)
  border = np.concatenate([ratio[:max(1, len(ratio) // 16)],
                           ratio[-max(1, len(ratio) // 16):]])
  border = border[np.isfinite(border)]
  return lead, trail, float(border.min()) if border.size else float("inf")


def _mirror(k: np.ndarray) -> np.ndarray:
  """``k(-u)`` on the centered grid: index ``i`` holds frequency ``i - N // 2``."""
  out = k
  for axis in (-2, -1):
    n = k.shape[axis]
    index = (-(np.arange(n) - n // 2)) + n // 2  # frequency -f at index n//2 - f
    valid = (index >= 0) & (index < n)
    out = np.take(out, np.where(valid, index, 0), axis=axis)
    shape = [1] * k.ndim
    shape[axis] = n
    out = out * valid.reshape(shape)
  return out


def _asymmetry(k: np.ndarray, sampled: np.ndarray) -> float:
  """Median over images of ``||k - e^{2i phi} conj(k_m)||^2 / ||k + e^{2i phi} conj(k_m)||^2``.

  ``phi`` is each image's best global phase: for ``k = e^{i phi} K`` with
  ``K`` the k-space of a real image, ``k(u) k(-u) = e^{2i phi} |K(u)|^2``.
  Only pairs where both points were sampled count.
  """
  images = k.reshape((-1,) + k.shape[-2:])
  both = (sampled & _mirror(sampled.astype(np.int8)).astype(bool)).reshape(images.shape)
  ratios = []
  for image, use in zip(images, both):
    mirrored = _mirror(image)
    phase2 = np.sum(image * mirrored * use)
    rotation = np.exp(1j * np.angle(phase2)) if abs(phase2) > 0 else 1.0
    conj = rotation * np.conj(mirrored)
    anti = np.sum(np.abs(image - conj) ** 2 * use)
    sym = np.sum(np.abs(image + conj) ** 2 * use)
    if sym > 0:
      ratios.append(anti / sym)
  return float(np.median(ratios)) if ratios else float("inf")


def _combined_kspace(k: np.ndarray, maps) -> np.ndarray:
  """``F(sum_c conj(S_c) F^-1(k_c))``, complex128 ``[..., H, W]``, of k ``[..., C, H, W]``."""
  m = np.asarray(maps)
  if m.shape != k.shape or k.ndim < 3 or not np.iscomplexobj(m):
    raise ValueError(f"maps must be complex with the k-space's shape [..., coils, H, W] "
                     f"{k.shape}; got {m.dtype} {m.shape}")
  if not np.all(np.isfinite(m)):
    raise ValueError("maps contain NaN or Inf values")
  combined = np.sum(np.conj(m.astype(np.complex128)) * ifft2c_host(k), axis=-3)
  return fft2c_host(combined)


def audit(kspace, mask=None, maps=None) -> dict:
  """Flags the marks of processing in k-space (see the module docstring).

  Args:
    kspace: complex ``[..., H, W]`` (e.g. ``[slices, coils, H, W]``), centered
      (the DC sample at ``(H // 2, W // 2)``), as `fdl.mri.fft2c` gives it.
    mask: optional real array broadcastable to `kspace`, nonzero where a sample
      was acquired; zeros elsewhere are then not read. Without it, every
      position counts as acquired.
    maps: optional complex coil maps of `kspace`'s shape ``[..., coils, H, W]``
      (fully sampled k-space only, ``mask=None``): the symmetry test then reads
      the k-space of the SENSE-combined image (module docstring).

  Returns:
    A JSON-ready dict: ``zero_padded`` and ``conjugate_symmetric`` (bools, True
    when detected), ``zero_pad_factor`` (full size over the non-empty block,
    the larger of the two axes; 1.0 when none), ``empty_border_lines``
    (``{"rows": [top, bottom], "cols": [left, right]}``),
    ``min_border_energy_ratio`` (the emptiest border line's energy over the
    median line's), ``asymmetry_ratio`` and ``flags`` (the names of the flags
    that fired).

  Raises:
    ValueError: naming the argument: real or NaN/Inf k-space, a mask that does
      not broadcast.

  Examples:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> raw = rng.standard_normal((4, 32, 32)) + 1j * rng.standard_normal((4, 32, 32))
    >>> audit(raw)["flags"]
    []
  """
  k = _as_array(kspace)
  if maps is not None and mask is not None:
    raise ValueError("maps are for the symmetry test of fully sampled k-space; pass "
                     "mask=None with maps (the coil combination of under-sampled "
                     "k-space mixes sampled and missing frequencies)")
  sampled = _sampled(k, mask)
  power = np.abs(k) ** 2
  result = {"empty_border_lines": {}}
  factors = []
  min_ratio = float("inf")
  for name, axis in (("rows", -2), ("cols", -1)):
    other = tuple(a for a in range(k.ndim) if a != k.ndim + axis)
    count = sampled.sum(axis=other)
    energy = np.where(count > 0, (power * sampled).sum(axis=other) / np.maximum(count, 1),
                      0.0)
    lead, trail, border_ratio = _empty_border(energy, count > 0)
    n = k.shape[axis]
    result["empty_border_lines"][name] = [lead, trail]
    factors.append(n / max(n - lead - trail, 1))
    min_ratio = min(min_ratio, border_ratio)
  result["zero_pad_factor"] = float(max(factors))
  result["zero_padded"] = bool(result["zero_pad_factor"] > 1.0)
  result["min_border_energy_ratio"] = min_ratio
  if maps is None:
    result["asymmetry_ratio"] = _asymmetry(k, sampled)
  else:
    combined = _combined_kspace(k, maps)
    result["asymmetry_ratio"] = _asymmetry(combined, np.ones(combined.shape, bool))
  result["conjugate_symmetric"] = bool(result["asymmetry_ratio"] <= SYMMETRY_RATIO)
  result["flags"] = [f for f in ("zero_padded", "conjugate_symmetric") if result[f]]
  return result
