"""Learning without fully sampled data: SSDU splits and K-band bands, as pure functions.

Two ways to train a reconstruction network from under-sampled or limited-resolution
k-space only. Everything here is a pure function of explicit arguments and keys (jit-able;
the sizes and options marked static are Python values).

**SSDU** (Yaman et al., MRM 2020). The acquired sampling set ``Omega`` of each example is
split into two disjoint sets, ``Theta`` (data consistency: the network's input) and
``Lambda`` (the loss: held out from the input),

  Theta ∪ Lambda = Omega,   Theta ∩ Lambda = ∅,   |Lambda| = round(rho |Omega|),

and the network, given ``y_Theta``, is trained so that the multi-coil k-space of its
output matches the measurements on ``Lambda`` (`ssdu_loss`). `ssdu_split` draws
``Lambda`` from the acquired points outside a small centre block (which always stays in
``Theta``, as in the paper), by weighted sampling without replacement:

* ``"gaussian"`` (the paper's variable-density selection): a point ``k`` is drawn with
  probability proportional to ``exp(-|k - k_c|^2 / (2 sigma^2))`` among the remaining
  eligible points, ``k_c`` the k-space centre ``(H // 2, W // 2)`` and
  ``sigma = size / std_scale`` per axis;
* ``"uniform"``: every eligible point equally likely.

Line masks ``[..., 1, W]`` are split line by line (the points are the columns ``W``),
2-D masks ``[..., H, W]`` point by point. The weighted draw without replacement is the
Gumbel-top-k construction: the ``n`` eligible points with the largest
``log w_k + G_k`` (``G_k`` i.i.d. standard Gumbel) are a sample of successive draws each
proportional to ``w`` among the points not yet drawn, i.e. the paper's rejection sampler
of Gaussian-distributed indices, without its loop.

**K-band** (Wang, Qi, De Goyeneche, Heckel, Lustig, Shimron, arXiv:2308.02958, 2023).
Training k-space is acquired only inside a *band*: a strip through the k-space centre,
full resolution along the strip and limited resolution across it, with a random
orientation per scan. The network gets the band's data under-sampled, and the loss is a
k-space loss inside the band, weighted per location by

  W(k) = 1 / P(k ∈ band),

the inverse of the probability (over the band orientations) that location ``k`` is
covered. Then for any fixed reconstruction with per-location loss ``l(k) >= 0``,

  E_band[ sum_k band(k) W(k) l(k) ] = sum_{k: P(k)>0} l(k),

the fully supervised k-space loss: the stochastic band losses are unbiased estimates of
full supervision (the paper's condition (ii); condition (i) is that the orientations
cover k-space). This module rasterizes a band of width ``b`` (k-space samples) at angle
``theta`` as the grid points at distance at most ``b / 2`` from the line through the
centre with direction ``(cos theta, sin theta)`` in ``(kx, ky)`` (``kx`` the column,
``ky`` the row offset from the centre):

  band_theta(k) = 1[ |-kx sin(theta) + ky cos(theta)| <= b / 2 ].

Two orientation laws (`BAND_ORIENTATIONS`), each with its exact coverage probability:

* ``"uniform"``: ``theta ~ U[0, pi)`` (the paper). A point at radius ``r = |k|`` is
  covered for a fraction ``P(r) = (2 / pi) arcsin(min(1, b / (2 r)))`` of the angles
  (``P = 1`` for ``r <= b / 2``), so every grid point has ``P > 0``;
* ``"cartesian"``: ``theta`` is 0 (a horizontal band: central rows, all columns) or
  ``pi / 2`` (a vertical band: central columns, all rows) with probability 1/2 each,
  ``P(k) = (1[|ky| <= b/2] + 1[|kx| <= b/2]) / 2``. The corners outside both bands
  (``|kx|, |ky| > b / 2``) are never covered: their weight is 0 and no band ever
  supervises them, so the identity above holds on the covered cross only.

The paper's code additionally rescales ``W`` to mean 1 over the covered points and
smooths it; here ``W`` is exactly ``1 / P`` so the identity holds without a constant.

References:
  B. Yaman, S. A. H. Hosseini, S. Moeller, J. Ellermann, K. Ugurbil, M. Akcakaya,
  "Self-supervised learning of physics-guided reconstruction neural networks without
  fully sampled reference data", Magn. Reson. Med. 84 (2020) 3172-3191.
  F. Wang, H. Qi, A. De Goyeneche, R. Heckel, M. Lustig, E. Shimron, "K-band:
  Self-supervised MRI reconstruction via stochastic gradient descent over k-space
  subsets", arXiv:2308.02958 (2023).

Examples:
  >>> import jax, jax.numpy as jnp
  >>> omega = jnp.zeros((3, 1, 1, 17)).at[..., ::2].set(1.0)  # 3 slices, 9 lines each
  >>> theta, lam = ssdu_split(jax.random.key(0), omega)  # rho 0.4: round(3.6) = 4 lines
  >>> lam.sum((1, 2, 3)).tolist(), bool(jnp.all(theta + lam == omega))
  ([4.0, 4.0, 4.0], True)
  >>> w = kband_loss_weights((5, 5), band_width=1.0, orientations="cartesian")
  >>> w[2].tolist()  # the centre row: the centre is in every band, the rest in half
  [2.0, 2.0, 1.0, 2.0, 2.0]
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "BAND_ORIENTATIONS", "SSDU_SELECTIONS", "band_coverage", "band_masks",
    "kband_loss", "kband_loss_weights", "random_band_angles", "ssdu_loss", "ssdu_split",
]

SSDU_SELECTIONS = ("gaussian", "uniform")
BAND_ORIENTATIONS = ("uniform", "cartesian")
# Points exactly on a band's edge are inside; the slack absorbs float rounding of
# sin/cos (cos(pi/2) is not 0 in float32) so that band_masks and band_coverage agree.
_EDGE_SLACK = 1e-3


# ---------------------------------------------------------------------------
# Static argument checks.


def _check_mask_layout(mask) -> tuple[int, int]:
  shape = tuple(np.shape(mask))
  dtype = jnp.result_type(mask)
  if len(shape) < 2 or jnp.issubdtype(dtype, jnp.complexfloating):
    raise ValueError("mask must be a real 0/1 array [..., 1, W] (line mask) or "
                     f"[..., H, W] (2-D mask); got {dtype} {shape}")
  return shape[-2], shape[-1]


def _check_fraction(name: str, value, *, closed: bool = False) -> float:
  ok = (not isinstance(value, bool) and isinstance(value, (int, float, np.number))
        and (0 <= value <= 1 if closed else 0 < value < 1))
  if not ok:
    interval = "[0, 1]" if closed else "(0, 1)"
    raise ValueError(f"{name} must be a number in {interval}; got {value!r}")
  return float(value)


def _check_positive(name: str, value) -> float:
  if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
      or not value > 0 or not math.isfinite(value)):
    raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
  return float(value)


def _check_shape(shape) -> tuple[int, int]:
  if (len(tuple(shape)) != 2 or not all(
      isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 1
      for d in shape)):
    raise ValueError(f"shape must be (H, W) with ints >= 1; got {shape!r}")
  return int(shape[0]), int(shape[1])


def _check_orientations(orientations: str) -> str:
  if orientations not in BAND_ORIENTATIONS:
    raise ValueError(f"orientations must be one of {BAND_ORIENTATIONS}; got "
                     f"{orientations!r}")
  return orientations


# ---------------------------------------------------------------------------
# SSDU.


def _centre_block(rows: int, cols: int, center_block) -> np.ndarray:
  """bool ``[rows, cols]``: the block kept in Theta, centred as fastMRI centres lines."""
  if isinstance(center_block, (int, np.integer)) and not isinstance(center_block, bool):
    block = (int(center_block), int(center_block))
  else:
    block = tuple(center_block)
    if len(block) != 2 or not all(isinstance(b, (int, np.integer)) for b in block):
      raise ValueError("center_block must be an int or a pair of ints (rows, cols); got "
                       f"{center_block!r}")
  if min(block) < 0:
    raise ValueError(f"center_block must be >= 0; got {center_block!r}")
  block_rows = 1 if rows == 1 else min(block[0], rows)  # line masks: columns only
  block_cols = min(block[1], cols)
  out = np.zeros((rows, cols), bool)
  if block_rows and block_cols:
    top, left = (rows - block_rows + 1) // 2, (cols - block_cols + 1) // 2
    out[top:top + block_rows, left:left + block_cols] = True
  return out


def _log_density(rows: int, cols: int, selection: str, std_scale: float) -> np.ndarray:
  """float32 ``[rows, cols]``: log of the (unnormalized) selection density."""
  if selection == "uniform":
    return np.zeros((rows, cols), np.float32)
  ky = (np.arange(rows) - rows // 2)[:, None] / (rows / std_scale)
  kx = (np.arange(cols) - cols // 2)[None, :] / (cols / std_scale)
  log_w = -0.5 * (kx ** 2 + (ky ** 2 if rows > 1 else 0.0))
  return np.broadcast_to(log_w, (rows, cols)).astype(np.float32)


def ssdu_split(key: jax.Array, mask: jax.Array, *, rho: float = 0.4,
               selection: str = "gaussian", std_scale: float = 4.0,
               center_block: int | tuple[int, int] = 4) -> tuple[jax.Array, jax.Array]:
  """Splits acquired masks ``Omega`` into SSDU's ``(Theta, Lambda)``.

  Each example (every index of the leading axes) is split with its own key
  ``fold_in(key, i)``, ``i`` its flat index. Within an example, ``Lambda`` holds
  ``n = min(round(rho * |Omega|), |eligible|)`` points drawn without replacement from
  the eligible points ``Omega \\ centre block`` with the selection density of the
  module docstring, and ``Theta = Omega \\ Lambda``. For a line mask (``mask.shape[-2]
  == 1``) the points are lines (columns) and the centre block is its
  ``center_block`` central columns; for a 2-D mask it is a ``(rows, cols)`` block
  around the DC sample ``(H // 2, W // 2)``.

  Args:
    key: a `jax.random` key.
    mask: real 0/1 acquired mask ``Omega``, ``[..., 1, W]`` (line mask, e.g. the
      k-space layout ``[B, 1, 1, W]``) or ``[..., H, W]`` (2-D, e.g. ``[B, 1, H, W]``);
      entries > 0.5 count as acquired.
    rho: the fraction of acquired points moved to ``Lambda``, in (0, 1) (static).
    selection: ``"gaussian"`` or ``"uniform"`` (static).
    std_scale: Gaussian selection: ``sigma = size / std_scale`` per axis (static, > 0).
    center_block: lines (int) or ``(rows, cols)`` always kept in ``Theta`` (static).

  Returns:
    ``(theta, lam)``: float32 0/1 arrays of ``mask``'s shape with
    ``theta + lam == (mask > 0.5)``.

  Raises:
    ValueError: a bad argument, naming it.
  """
  rows, cols = _check_mask_layout(mask)
  rho = _check_fraction("rho", rho)
  if selection not in SSDU_SELECTIONS:
    raise ValueError(f"selection must be one of {SSDU_SELECTIONS}; got {selection!r}")
  std_scale = _check_positive("std_scale", std_scale)
  centre = _centre_block(rows, cols, center_block)
  log_density = _log_density(rows, cols, selection, std_scale)
  return _ssdu_split(key, jnp.asarray(mask), rho, jnp.asarray(centre),
                     jnp.asarray(log_density))


@functools.partial(jax.jit, static_argnums=(2,))
def _ssdu_split(key, mask, rho, centre, log_density):
  shape = mask.shape
  examples = (mask > 0.5).reshape((-1,) + shape[-2:])
  keys = jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(examples.shape[0]))

  def split_one(k, omega):
    eligible = omega & ~centre
    # Python-style rounding would need a host value; round-half-to-even of the traced
    # count keeps |Lambda| - rho |Omega| within 1/2 all the same.
    wanted = jnp.round(rho * omega.sum()).astype(jnp.int32)
    num_lambda = jnp.minimum(wanted, eligible.sum())
    score = jnp.where(eligible, log_density + jax.random.gumbel(k, omega.shape), -jnp.inf)
    flat = score.ravel()
    rank = jnp.empty_like(flat, dtype=jnp.int32).at[jnp.argsort(-flat)].set(
        jnp.arange(flat.size, dtype=jnp.int32))
    lam = (rank.reshape(omega.shape) < num_lambda) & eligible
    return omega & ~lam, lam

  theta, lam = jax.vmap(split_one)(keys, examples)
  return (theta.reshape(shape).astype(jnp.float32), lam.reshape(shape).astype(jnp.float32))


def _safe_sqrt(x: jax.Array) -> jax.Array:
  # sqrt has an infinite derivative at 0 (a perfect fit); its subgradient 0 there.
  positive = x > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def ssdu_loss(pred_kspace: jax.Array, kspace: jax.Array, loss_mask: jax.Array,
              *, eps: float = 1e-12) -> jax.Array:
  """SSDU's normalized L1 + L2 k-space loss on the loss set ``Lambda``, per example.

  With ``u = Lambda * y`` (the held-out measurements) and ``v = Lambda * y_hat`` (the
  output's multi-coil k-space there), over coils and k-space of each example,

    loss = ||u - v||_2 / ||u||_2 + ||u - v||_1 / ||u||_1,

  with ``||z||_1 = sum |z|`` (complex modulus) and ``||z||_2^2 = sum |z|^2``; the
  denominators are floored at `eps`.

  Args:
    pred_kspace: complex ``[B, C, H, W]``, the output's k-space ``F S x_hat``.
    kspace: complex ``[B, C, H, W]``, the measurements (read only where `loss_mask`).
    loss_mask: real ``Lambda`` broadcastable to ``[B, C, H, W]``.
    eps: floor of the norms of ``u``.

  Returns:
    float32 ``[B]``; 0 where ``v == u``.
  """
  residual = loss_mask * (kspace - pred_kspace)
  held_out = loss_mask * kspace
  axes = tuple(range(1, residual.ndim))
  l2 = _safe_sqrt(jnp.sum(jnp.abs(residual) ** 2, axes))
  l1 = jnp.sum(jnp.abs(residual), axes)
  l2_ref = jnp.maximum(jnp.sqrt(jnp.sum(jnp.abs(held_out) ** 2, axes)), eps)
  l1_ref = jnp.maximum(jnp.sum(jnp.abs(held_out), axes), eps)
  return (l2 / l2_ref + l1 / l1_ref).astype(jnp.float32)


# ---------------------------------------------------------------------------
# K-band.


def _centred_coordinates(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
  """``(kx, ky)`` float ``[H, W]``: column and row offsets from the DC sample."""
  ky, kx = np.meshgrid(np.arange(height) - height // 2, np.arange(width) - width // 2,
                       indexing="ij")
  return kx.astype(np.float64), ky.astype(np.float64)


def band_masks(angles: jax.Array, shape: tuple[int, int], band_width: float) -> jax.Array:
  """K-band masks at `angles`: ``1[|-kx sin(theta) + ky cos(theta)| <= band_width / 2]``.

  Args:
    angles: float ``[B]``, radians; 0 is a horizontal band (central rows, all
      columns), ``pi / 2`` a vertical one (central columns, all rows).
    shape: ``(H, W)`` of k-space (static).
    band_width: the band's width across its axis, in k-space samples (static, > 0).

  Returns:
    float32 ``[B, 1, H, W]`` of 0/1, broadcastable to k-space ``[B, C, H, W]``.
  """
  height, width = _check_shape(shape)
  half = _check_positive("band_width", band_width) / 2 + _EDGE_SLACK
  kx, ky = (jnp.asarray(c, jnp.float32) for c in _centred_coordinates(height, width))
  angles = jnp.asarray(angles, jnp.float32)
  if angles.ndim != 1:
    raise ValueError(f"angles must be a 1-D array [B] of radians; got shape {angles.shape}")
  sin, cos = jnp.sin(angles)[:, None, None], jnp.cos(angles)[:, None, None]
  distance = jnp.abs(-kx * sin + ky * cos)
  return (distance <= half).astype(jnp.float32)[:, None]


def random_band_angles(key: jax.Array, num: int, orientations: str = "uniform"
                       ) -> jax.Array:
  """float32 ``[num]`` band angles (radians) drawn from the law `orientations`.

  ``"uniform"``: ``U[0, pi)``; ``"cartesian"``: 0 or ``pi / 2``, each with probability
  1/2 (module docstring).
  """
  _check_orientations(orientations)
  if orientations == "uniform":
    return jax.random.uniform(key, (num,), jnp.float32, 0.0, jnp.pi)
  return jnp.where(jax.random.bernoulli(key, 0.5, (num,)), jnp.pi / 2, 0.0).astype(
      jnp.float32)


def band_coverage(shape: tuple[int, int], band_width: float,
                  orientations: str = "uniform") -> np.ndarray:
  """``P(k ∈ band)`` over the band orientations, float64 ``[H, W]`` (module docstring).

  ``"uniform"``: ``(2 / pi) arcsin(min(1, (b / 2) / r))`` at radius ``r`` (1 at the
  centre); ``"cartesian"``: ``(1[|ky| <= b/2] + 1[|kx| <= b/2]) / 2``.
  """
  height, width = _check_shape(shape)
  half = _check_positive("band_width", band_width) / 2
  _check_orientations(orientations)
  kx, ky = _centred_coordinates(height, width)
  # The slack only decides "on the edge counts as inside", as in band_masks.
  if orientations == "cartesian":
    return 0.5 * ((np.abs(ky) <= half + _EDGE_SLACK).astype(np.float64)
                  + (np.abs(kx) <= half + _EDGE_SLACK).astype(np.float64))
  radius = np.hypot(kx, ky)
  inside = radius <= half + _EDGE_SLACK
  ratio = np.where(inside, 1.0, half / np.where(inside, 1.0, radius))
  return (2.0 / np.pi) * np.arcsin(np.minimum(ratio, 1.0))


def kband_loss_weights(shape: tuple[int, int], band_width: float,
                       orientations: str = "uniform") -> np.ndarray:
  """K-band's loss weights ``W(k) = 1 / P(k ∈ band)``, 0 where ``P = 0``.

  Args:
    shape: ``(H, W)`` of k-space.
    band_width: the band's width in k-space samples (> 0).
    orientations: the law of the band angle, one of `BAND_ORIENTATIONS`.

  Returns:
    float32 ``[H, W]``; ``E_theta[band_theta(k) W(k)] = 1`` wherever ``P(k) > 0``.
  """
  coverage = band_coverage(shape, band_width, orientations)
  covered = coverage > 0
  return np.where(covered, 1.0 / np.where(covered, coverage, 1.0), 0.0).astype(np.float32)


def kband_loss(pred_kspace: jax.Array, band_kspace: jax.Array, loss_weight: jax.Array,
               *, norm: str = "l1") -> jax.Array:
  """K-band's weighted k-space loss inside the band, per example.

  With ``w = band * W`` (`loss_weight`, zero outside the band), ``y_b`` the acquired
  band data and ``y_hat`` the output's multi-coil k-space,

    loss = sum_{c,k} w(k) |y_hat_c(k) - y_b,c(k)|^p / (C H W),   p = 1 (``l1``), 2 (``l2``)

  normalized by the number of k-space entries (not the band's), so that its expectation
  over band orientations is the fully supervised ``mean_{c,k} |y_hat - y|^p`` (over the
  covered locations).

  Args:
    pred_kspace: complex ``[B, C, H, W]``.
    band_kspace: complex ``[B, C, H, W]``, the band's measurements (read only where
      ``loss_weight != 0``).
    loss_weight: real, broadcastable to ``[B, C, H, W]`` (``[B, 1, H, W]``).
    norm: ``"l1"`` (the paper's) or ``"l2"``.

  Returns:
    float32 ``[B]``.
  """
  if norm not in ("l1", "l2"):
    raise ValueError(f"norm must be 'l1' or 'l2'; got {norm!r}")
  covered = loss_weight != 0
  error = jnp.abs(jnp.where(covered, pred_kspace - band_kspace, 0.0))
  if norm == "l2":
    error = error ** 2
  axes = tuple(range(1, error.ndim))
  count = math.prod(error.shape[1:])
  return (jnp.sum(loss_weight * error, axes) / count).astype(jnp.float32)
