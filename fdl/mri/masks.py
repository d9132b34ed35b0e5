"""Under-sampling masks for Cartesian k-space, as functions of an explicit key.

Every mask is a deterministic function of a `jax.random` key and its static
arguments: the same key gives the same mask, nothing global is read or
advanced. For validation and test, derive the key from a fixed id so every
run and epoch sees the same mask: from the slice id, as
`fdl.data.ReconPipeline` does, or from the volume id (for example
``jax.random.fold_in(key, volume_index)``) so that all slices of a volume
share one mask.

* `random_mask` and `equispaced_mask` are 1-D line masks over the
  phase-encoding (last) axis, float32 ``[num_cols]`` of 0/1, following
  fastMRI's ``RandomMaskFunc`` and ``EquispacedMaskFractionFunc``
  (``fastmri/data/subsample.py``). They use `jax.random`, so they also run
  under `jax.jit` / `jax.vmap` with a traced key (the other arguments are
  static Python numbers).
* `poisson_mask` is a 2-D variable-density Poisson-disc mask ``[H, W]``,
  built on the host with NumPy from the key's bits (not traceable).
* `mask_for_kspace` reshapes a mask to broadcast against k-space
  ``[batch, coils, H, W]``.

"Acceleration" is the number of grid points divided by the number of sampled
ones; centre (calibration) lines count as sampled.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "equispaced_mask",
    "mask_for_kspace",
    "num_low_frequencies",
    "poisson_mask",
    "random_mask",
]


# ---------------------------------------------------------------------------
# Argument checks (static: Python numbers only).


def _check_num_cols(num_cols) -> int:
  if (isinstance(num_cols, bool) or not isinstance(num_cols, (int, np.integer))
      or num_cols < 2):
    raise ValueError(f"num_cols must be an int >= 2; got {num_cols!r}")
  return int(num_cols)


def _check_acceleration(acceleration) -> float:
  if (isinstance(acceleration, bool)
      or not isinstance(acceleration, (int, float, np.integer, np.floating))
      or not acceleration > 1):
    raise ValueError(f"acceleration must be a number > 1; got {acceleration!r}")
  return float(acceleration)


def _check_center_fraction(center_fraction) -> float:
  if (isinstance(center_fraction, bool)
      or not isinstance(center_fraction, (int, float, np.integer, np.floating))
      or not 0 < center_fraction < 1):
    raise ValueError(
        f"center_fraction must be in the open interval (0, 1); got {center_fraction!r}")
  return float(center_fraction)


def _check_key(key) -> None:
  dtype = getattr(key, "dtype", None)
  if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
    ok = key.shape == ()
  else:
    ok = dtype == jnp.uint32 and getattr(key, "ndim", 0) == 1
  if not ok:
    shape = getattr(key, "shape", None)
    raise ValueError("key must be a single jax.random key (jax.random.key(seed) or "
                     f"jax.random.PRNGKey(seed)); got {dtype} {shape}")


def _centre_start(n: int, num: int) -> int:
  # fastMRI's centring: for even n the block is symmetric about the DC index
  # n // 2; for odd n and an even block it extends one further to the right.
  return (n - num + 1) // 2


def _centre_mask(num_cols: int, num_low: int) -> np.ndarray:
  mask = np.zeros(num_cols, np.float32)
  start = _centre_start(num_cols, num_low)
  mask[start:start + num_low] = 1.0
  return mask


def num_low_frequencies(num_cols: int, center_fraction: float) -> int:
  """Number of fully sampled centre columns, ``round(num_cols * center_fraction)``.

  Python's ``round`` (half to even), as fastMRI's ``MaskFunc`` uses. The block
  occupies columns ``pad : pad + num_low`` with
  ``pad = (num_cols - num_low + 1) // 2``.

  Args:
    num_cols: number of phase-encoding columns ``W`` (int >= 2).
    center_fraction: fraction of columns in the centre block, in (0, 1).

  Returns:
    The number of centre columns, a Python int (may be 0 for tiny fractions).

  Raises:
    ValueError: naming the bad argument.

  Examples:
    >>> num_low_frequencies(320, 0.08)  # 25.6 -> 26
    26
    >>> num_low_frequencies(368, 0.04)  # 14.72 -> 15
    15
  """
  num_cols = _check_num_cols(num_cols)
  center_fraction = _check_center_fraction(center_fraction)
  return round(num_cols * center_fraction)


def _line_mask_args(num_cols, acceleration, center_fraction):
  num_cols = _check_num_cols(num_cols)
  acceleration = _check_acceleration(acceleration)
  num_low = num_low_frequencies(num_cols, center_fraction)
  return num_cols, acceleration, num_low


# ---------------------------------------------------------------------------
# 1-D line masks (fastMRI subsample.py semantics).


def random_mask(key: jax.Array, num_cols: int, acceleration: float,
                center_fraction: float) -> jax.Array:
  """Random line mask: a centre block plus columns drawn independently.

  Follows fastMRI's ``RandomMaskFunc``: ``num_low = round(num_cols *
  center_fraction)`` centre columns are always sampled, and every column is
  also sampled independently with probability

    p = (num_cols / acceleration - num_low) / (num_cols - num_low),

  so the *expected* number of sampled columns is ``num_cols / acceleration``
  (the achieved acceleration varies from key to key).

  Args:
    key: a `jax.random` key (typed or raw ``uint32 [2]``); may be traced.
    num_cols: number of phase-encoding columns ``W``, a Python int >= 2.
    acceleration: target acceleration (> 1), a Python number.
    center_fraction: fraction of fully sampled centre columns, in (0, 1).

  Returns:
    float32 ``[num_cols]`` of 0/1.

  Raises:
    ValueError: ``num_cols < 2``, ``acceleration <= 1``, ``center_fraction``
      outside (0, 1), a bad ``key``, or an ``acceleration`` that the centre
      block alone already exceeds (``num_low > num_cols / acceleration``).

  Examples:
    >>> import jax
    >>> m = random_mask(jax.random.key(0), 320, 4, 0.08)
    >>> m.shape, m.dtype, float(m[147:173].min())  # 26 centre columns
    ((320,), dtype('float32'), 1.0)
  """
  num_cols, acceleration, num_low = _line_mask_args(num_cols, acceleration,
                                                    center_fraction)
  _check_key(key)
  if num_low > num_cols / acceleration:
    raise ValueError(
        f"acceleration={acceleration:g} is unreachable: the centre block of "
        f"{num_low} columns (center_fraction={center_fraction:g}) already samples "
        f"more than num_cols / acceleration = {num_cols / acceleration:g} columns")
  prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
  outer = (jax.random.uniform(key, (num_cols,)) < prob).astype(jnp.float32)
  return jnp.maximum(outer, jnp.asarray(_centre_mask(num_cols, num_low)))


def _adjusted_acceleration(num_cols: int, acceleration: float, num_low: int) -> float:
  # Spacing of the equispaced lines such that num_low + (num_cols - num_low) /
  # spacing == num_cols / acceleration: the lines outside the centre block
  # make up the rest of the budget (fastMRI EquispacedMaskFractionFunc).
  return acceleration * (num_low - num_cols) / (num_low * acceleration - num_cols)


@functools.lru_cache(maxsize=64)
def _equispaced_table(num_cols: int, acceleration: float, num_low: int) -> np.ndarray:
  """All masks an equispaced draw can give, one row per offset (float64 maths)."""
  spacing = _adjusted_acceleration(num_cols, acceleration, num_low)
  num_offsets = round(spacing)
  table = np.zeros((num_offsets, num_cols), np.float32)
  for offset in range(num_offsets):
    # Positions in float64 and np.around (half to even), exactly as fastMRI
    # computes them; float32 arithmetic under jit could round differently.
    cols = np.around(np.arange(offset, num_cols - 1, spacing)).astype(np.int64)
    table[offset, cols] = 1.0
  table = np.maximum(table, _centre_mask(num_cols, num_low))
  table.setflags(write=False)
  return table


def equispaced_mask(key: jax.Array, num_cols: int, acceleration: float,
                    center_fraction: float) -> jax.Array:
  """Equispaced line mask whose *total* sampled fraction is ``1 / acceleration``.

  Follows fastMRI's ``EquispacedMaskFractionFunc``: ``num_low =
  round(num_cols * center_fraction)`` centre columns, plus columns
  ``around(arange(offset, num_cols - 1, a))`` with the adjusted spacing

    a = acceleration (num_low - num_cols) / (num_low acceleration - num_cols)

  chosen so that ``num_low + (num_cols - num_low) / a = num_cols /
  acceleration``, and a random ``offset`` uniform in ``[0, round(a))`` drawn
  from ``key``. Lines that fall into the centre block are not replaced, and
  the offset and rounding shift the count a little: it is ``num_cols /
  acceleration`` within two lines either way (usually within one).

  Args:
    key: a `jax.random` key (typed or raw ``uint32 [2]``); may be traced.
    num_cols: number of phase-encoding columns ``W``, a Python int >= 2.
    acceleration: target acceleration (> 1), a Python number.
    center_fraction: fraction of fully sampled centre columns, in (0, 1).

  Returns:
    float32 ``[num_cols]`` of 0/1.

  Raises:
    ValueError: ``num_cols < 2``, ``acceleration <= 1``, ``center_fraction``
      outside (0, 1), a bad ``key``, or an unreachable ``acceleration``
      (``num_low >= num_cols / acceleration``: no budget left for lines
      outside the centre).

  Examples:
    >>> import jax
    >>> m = equispaced_mask(jax.random.key(0), 320, 4, 0.08)
    >>> m.shape, int(m.sum())  # 320 / 4 = 80 lines
    ((320,), 80)
  """
  num_cols, acceleration, num_low = _line_mask_args(num_cols, acceleration,
                                                    center_fraction)
  _check_key(key)
  if num_low * acceleration >= num_cols:
    raise ValueError(
        f"acceleration={acceleration:g} is unreachable: the centre block of "
        f"{num_low} columns (center_fraction={center_fraction:g}) leaves no "
        f"budget below num_cols / acceleration = {num_cols / acceleration:g} "
        "columns for equispaced lines")
  table = _equispaced_table(num_cols, acceleration, num_low)
  # Drawing the row index keeps the function traceable (a static table, a
  # dynamic index) while the positions stay bit-identical to fastMRI's.
  offset = jax.random.randint(key, (), 0, table.shape[0])
  return jnp.asarray(table)[offset]


# ---------------------------------------------------------------------------
# 2-D variable-density Poisson-disc mask (host, NumPy).


def _check_pair_of_ints(name: str, value, minimum: int) -> tuple[int, int]:
  try:
    pair = tuple(value)
  except TypeError:
    pair = ()
  if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer))
                            for v in pair) or min(pair) < minimum):
    raise ValueError(f"{name} must be two ints >= {minimum}; got {value!r}")
  return int(pair[0]), int(pair[1])


def _host_rng(key) -> np.random.Generator:
  if isinstance(key, jax.core.Tracer):
    raise ValueError("key must be concrete: poisson_mask runs on the host with "
                     "NumPy; call it outside jax.jit / jax.vmap")
  bits = np.asarray(jax.random.key_data(key)).astype(np.uint32).ravel()
  return np.random.Generator(np.random.PCG64(np.random.SeedSequence(bits.tolist())))


def _poisson_disc(seed_bits: list[int], profile: np.ndarray, domain: np.ndarray,
                  scale: float, max_attempts: int) -> np.ndarray:
  """Bridson dart throwing on the pixel grid with radius ``scale * profile``.

  Each accepted point p forbids the pixels closer than r(p); new candidates
  are drawn around a random active point at distances in [r, 2 r). A point
  whose ``max_attempts`` candidates all land on forbidden pixels retires.
  Where r <= 1 a point forbids only its own pixel, so such regions (the
  centre, at low accelerations) end up fully sampled.
  """
  rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed_bits)))
  h, w = profile.shape
  radius = scale * profile
  r_max = max(int(np.ceil(radius.max())), 1)
  # Pad by the largest stencil and the longest jump so that neither the
  # stencil writes nor the candidate reads need bounds checks.
  pad = 2 * r_max + 1
  blocked = np.ones((h + 2 * pad, w + 2 * pad), bool)
  blocked[pad:pad + h, pad:pad + w] = ~domain
  sampled = np.zeros((h, w), bool)
  offsets = np.arange(-r_max, r_max + 1, dtype=np.float64)
  dist_sq = offsets[:, None] ** 2 + offsets[None, :] ** 2

  def accept(i, j):
    sampled[i, j] = True
    r = radius[i, j]
    s = max(int(np.ceil(r)), 1)
    stencil = dist_sq[r_max - s:r_max + s + 1, r_max - s:r_max + s + 1] < r * r
    blocked[pad + i - s:pad + i + s + 1, pad + j - s:pad + j + s + 1] |= stencil
    blocked[pad + i, pad + j] = True  # even for r == 0: never sample twice

  inside = np.flatnonzero(domain)
  first = inside[rng.integers(inside.size)]
  i0, j0 = divmod(int(first), w)
  accept(i0, j0)
  active = [(i0, j0)]
  two_pi = 2.0 * np.pi
  while active:
    u = rng.random(2 * max_attempts + 1)
    idx = int(u[0] * len(active))
    i, j = active[idx]
    # Jumps of at least one pixel, or a sub-pixel radius would only ever
    # propose the active pixel itself and the growth would stall.
    r = max(radius[i, j], 1.0)
    angle = two_pi * u[1:max_attempts + 1]
    dist = r * (1.0 + u[max_attempts + 1:])
    ci = np.rint(i + dist * np.sin(angle)).astype(np.int64)
    cj = np.rint(j + dist * np.cos(angle)).astype(np.int64)
    free = ~blocked[ci + pad, cj + pad]
    if free.any():
      k = int(free.argmax())
      ni, nj = int(ci[k]), int(cj[k])
      accept(ni, nj)
      active.append((ni, nj))
    else:
      active[idx] = active[-1]
      active.pop()
  return sampled


def poisson_mask(key: jax.Array, shape: tuple[int, int], acceleration: float, *,
                 calib: tuple[int, int] = (24, 24), variable_density: float = 2.0,
                 max_attempts: int = 30, tol: float = 0.05, crop_corner: bool = True,
                 max_iters: int = 40) -> jax.Array:
  """Variable-density Poisson-disc mask with a fully sampled calibration block.

  Samples lie on the ``[H, W]`` grid with a minimum mutual distance (in
  pixels) that grows linearly with the normalised distance from the centre,

    r(p) = scale * (1 + variable_density * rho(p)),
    rho = sqrt((dy / (H/2))^2 + (dx / (W/2))^2),   (dy, dx) from (H//2, W//2),

  so the sample density falls roughly as ``1 / r^2`` towards the edge of
  k-space (``variable_density=0`` gives uniform Poisson-disc sampling). The
  samples are placed by Bridson-style dart throwing (``max_attempts``
  candidates per active point); where ``r <= 1`` every pixel is sampled.
  ``scale`` is found by bisection until the achieved acceleration
  ``H * W / mask.sum()`` is within ``tol`` (relative) of ``acceleration``;
  every bisection step reuses one random stream, so the result depends only
  on the key and the arguments. The centre ``calib[0] x calib[1]`` block
  (centred like fastMRI's centre lines) is then set to 1. With
  ``crop_corner`` only the ellipse ``rho <= 1`` is sampled, as usual for
  3-D elliptical scanning; the acceleration still counts the full grid.

  The dart throwing is a Python loop over samples (about 30 us per sample,
  a few seconds for a 320 x 320 grid), so build masks once, e.g. per volume,
  rather than per training step.

  Args:
    key: a concrete `jax.random` key (not traced: this runs on the host).
    shape: ``(H, W)``, two ints >= 2.
    acceleration: target acceleration (> 1).
    calib: ``(height, width)`` of the fully sampled centre block, each
      between 0 and the corresponding side of ``shape``.
    variable_density: growth of the radius from centre to edge (>= 0); the
      edge radius is ``1 + variable_density`` times the centre radius.
    max_attempts: candidates per active point before it retires (>= 1).
    tol: relative tolerance on the achieved acceleration, in (0, 1).
    crop_corner: sample only inside the inscribed ellipse ``rho <= 1``.
    max_iters: maximum number of bisection steps (>= 1).

  Returns:
    float32 ``[H, W]`` of 0/1.

  Raises:
    ValueError: a bad ``key``, ``shape``, ``calib`` (larger than ``shape``),
      ``acceleration <= 1``, ``variable_density``, ``max_attempts``, ``tol``
      or ``max_iters``, or an ``acceleration`` that cannot be reached within
      ``tol`` (the calibration block alone exceeds the budget, or the
      acceleration is below what the sampled region allows).

  References:
    R. Bridson, "Fast Poisson disk sampling in arbitrary dimensions",
    SIGGRAPH sketches (2007). M. Lustig, D. Donoho, J. M. Pauly, "Sparse MRI",
    Magn. Reson. Med. 58 (2007), for variable-density sampling.

  Examples:
    >>> import jax
    >>> m = poisson_mask(jax.random.key(0), (48, 40), 4, calib=(8, 8))
    >>> m.shape, m.dtype, float(m[20:28, 16:24].min())
    ((48, 40), dtype('float32'), 1.0)
    >>> abs(48 * 40 / float(m.sum()) - 4) <= 0.05 * 4
    True
  """
  _check_key(key)
  h, w = _check_pair_of_ints("shape", shape, 2)
  ch, cw = _check_pair_of_ints("calib", calib, 0)
  if ch > h or cw > w:
    raise ValueError(f"calib {(ch, cw)} must fit inside shape {(h, w)}")
  acceleration = _check_acceleration(acceleration)
  if (isinstance(variable_density, bool)
      or not isinstance(variable_density, (int, float, np.integer, np.floating))
      or not variable_density >= 0):
    raise ValueError(f"variable_density must be a number >= 0; got {variable_density!r}")
  for name, value in (("max_attempts", max_attempts), ("max_iters", max_iters)):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
      raise ValueError(f"{name} must be an int >= 1; got {value!r}")
  if not 0 < tol < 1:
    raise ValueError(f"tol must be in (0, 1) (relative); got {tol!r}")
  total = h * w
  if ch * cw * acceleration > total:
    raise ValueError(
        f"acceleration={acceleration:g} is unreachable: the calibration block "
        f"{(ch, cw)} alone samples {ch * cw} of {total} points "
        f"(acceleration {total / max(ch * cw, 1):.3g})")

  rng = _host_rng(key)
  seed_bits = rng.integers(0, 2**32, size=4, dtype=np.uint64).tolist()
  dy = (np.arange(h) - h // 2) / (h / 2)
  dx = (np.arange(w) - w // 2) / (w / 2)
  rho = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
  profile = 1.0 + float(variable_density) * rho
  domain = rho <= 1.0 if crop_corner else np.ones((h, w), bool)
  calib_mask = np.zeros((h, w), bool)
  r0, c0 = _centre_start(h, ch), _centre_start(w, cw)
  calib_mask[r0:r0 + ch, c0:c0 + cw] = True

  # Larger scale -> larger radii -> fewer samples -> higher acceleration.
  # Bisect down from the sparse end, where evaluations are cheap; at scale
  # max(H, W) a single dart covers the grid.
  lo, hi = 0.0, float(max(h, w))
  best = None
  for _ in range(int(max_iters)):
    scale = 0.5 * (lo + hi)
    mask = _poisson_disc(seed_bits, profile, domain, scale, int(max_attempts))
    mask |= calib_mask
    achieved = total / mask.sum()
    err = abs(achieved - acceleration) / acceleration
    if best is None or err < best[0]:
      best = (err, achieved, mask)
    if err <= tol or hi - lo < 1e-3:
      break
    if achieved < acceleration:
      lo = scale
    else:
      hi = scale
  err, achieved, mask = best
  if err > tol:
    raise ValueError(
        f"acceleration={acceleration:g} is unreachable for shape {(h, w)}, "
        f"calib {(ch, cw)}, crop_corner={crop_corner}: the closest mask reached "
        f"{achieved:.3g} (tol={tol:g})")
  return jnp.asarray(mask, jnp.float32)


# ---------------------------------------------------------------------------
# Layout.


def mask_for_kspace(mask: jax.Array) -> jax.Array:
  """Reshapes a mask to broadcast against k-space ``[batch, coils, H, W]``.

  Args:
    mask: a line mask ``[W]`` or a 2-D mask ``[H, W]``.

  Returns:
    ``[1, 1, 1, W]`` for a line mask, ``[1, 1, H, W]`` for a 2-D mask, same
    dtype. (A stack of per-example line masks ``[B, W]`` is
    ``masks[:, None, None, :]``.)

  Raises:
    ValueError: ``mask`` is not 1-D or 2-D.

  Examples:
    >>> import jax.numpy as jnp
    >>> mask_for_kspace(jnp.ones(9)).shape
    (1, 1, 1, 9)
    >>> mask_for_kspace(jnp.ones((6, 9))).shape
    (1, 1, 6, 9)
  """
  mask = jnp.asarray(mask)
  if mask.ndim == 1:
    return mask[None, None, None, :]
  if mask.ndim == 2:
    return mask[None, None, :, :]
  raise ValueError(f"mask must be a line mask [W] or a 2-D mask [H, W]; "
                   f"got {mask.dtype} {tuple(mask.shape)}")
