"""Classical reconstructions: Haar wavelets, zero-filled, CG-SENSE, wavelet CS.

Simulated tests use true coil maps and noiseless k-space, so the numbers are
properties of the solvers; the real-data tests use the small acquired brain
data sets of /work/shared/data/mri (skipped where that folder is absent).
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mri_reference import crandn, np_fft2c, np_ifft2c

from conftest import REPO_DIR
from fdl.mri.coils import estimate_maps, rss
from fdl.mri.recon import cg_sense, cs_wavelet, lipschitz_bound, zero_filled
from fdl.mri.sense import sense_adjoint, sense_forward, sense_normal
from fdl.mri.wavelets import haar_forward, haar_inverse, padded_shape

jax.config.update("jax_enable_x64", False)


DATA_DIR = os.path.join(REPO_DIR, "..", "shared", "data", "mri")








def nmse(ref, x):
  ref, x = np.asarray(ref, np.complex128), np.asarray(x, np.complex128)
  return float(np.sum(np.abs(ref - x) ** 2) / np.sum(np.abs(ref) ** 2))


def line_mask(width, every=4, centre=24):
  """Every `every`-th column (aligned on the DC column) plus `centre` centre columns."""
  cols = np.arange(width) - width // 2
  keep = (cols % every == 0) | (np.abs(cols + 0.5) < centre / 2)
  return keep.astype(np.float32)


def phantom(h, w):
  """A piecewise-constant complex phantom of ellipses (a small Shepp-Logan cousin)."""
  y, x = np.mgrid[:h, :w]
  yn, xn = (y - h / 2) / (h / 2), (x - w / 2) / (w / 2)
  img = np.zeros((h, w), np.complex128)
  for cy, cx, ry, rx, val in [(0, 0, 0.9, 0.75, 1.0), (0, 0, 0.8, 0.65, -0.6),
                              (-0.3, -0.25, 0.25, 0.15, 0.5), (-0.3, 0.25, 0.3, 0.12, 0.4),
                              (0.4, 0.0, 0.15, 0.3, 0.3j), (0.5, -0.3, 0.08, 0.08, 0.5)]:
    img += val * ((((yn - cy) / ry) ** 2 + ((xn - cx) / rx) ** 2) < 1)
  return img


def true_maps(num_coils, h, w):
  """Smooth Gaussian-bump sensitivities with linear phase, normalized to sum |S|^2 = 1."""
  y, x = np.mgrid[:h, :w]
  yn, xn = (y - h / 2) / (h / 2), (x - w / 2) / (w / 2)
  maps = []
  for i in range(num_coils):
    angle = 2 * np.pi * i / num_coils
    mag = np.exp(-((xn - 1.3 * np.cos(angle)) ** 2 + (yn - 1.3 * np.sin(angle)) ** 2) / 1.0)
    maps.append(mag * np.exp(1j * (i + 0.7 * xn * np.sin(angle) - 0.5 * yn)))
  maps = np.stack(maps)
  return maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))


@pytest.fixture(scope="module")
def simulated():
  """Batch of 2 noiseless 8-coil slices, [2, 8, 48, 96], 4x line mask (net R 2.3)."""
  h, w = 48, 96
  images = np.stack([phantom(h, w), phantom(h, w)[::-1] * 0.8])
  maps = np.stack([true_maps(8, h, w)] * 2)
  kspace = np_fft2c(maps * images[:, None]).astype(np.complex64)
  mask = line_mask(w)[None, None, None]
  return (images.astype(np.complex64), maps.astype(np.complex64), kspace,
          np.broadcast_to(mask, (2, 1, 1, w)).copy())


# --- Haar wavelets --------------------------------------------------------------------


@pytest.mark.parametrize("shape, levels", [((16, 8), 3), ((13, 10), 2), ((2, 3, 9, 17), 3),
                                           ((5, 7), 0)])
def test_haar_is_orthonormal(shape, levels):
  rng = np.random.default_rng(0)
  x = crandn(rng, *shape)
  coeffs = np.asarray(haar_forward(x, levels))
  assert coeffs.shape == shape[:-2] + padded_shape(shape[-2:], levels)
  # isometry ||W x|| = ||x|| and left inverse W^T W = I
  assert np.linalg.norm(coeffs) == pytest.approx(np.linalg.norm(x), rel=1e-5)
  np.testing.assert_allclose(np.asarray(haar_inverse(coeffs, levels, shape[-2:])), x,
                             atol=1e-5)
  # W^T is the adjoint: <W x, c> = <x, W^T c> for random c
  c = crandn(rng, *coeffs.shape)
  lhs = np.vdot(coeffs.astype(np.complex128), c)
  rhs = np.vdot(x.astype(np.complex128), np.asarray(haar_inverse(c, levels, shape[-2:])))
  assert abs(lhs - rhs) / abs(lhs) < 1e-5
  # On the padded space W is square and orthogonal: W W^T = I too.
  np.testing.assert_allclose(np.asarray(haar_forward(haar_inverse(c, levels), levels)), c,
                             atol=1e-5)


def test_haar_one_level_matches_numpy_formula():
  rng = np.random.default_rng(1)
  x = rng.standard_normal((6, 8))
  a, b, c, d = x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]
  ref = np.block([[(a + b + c + d) / 2, (a - b + c - d) / 2],
                  [(a + b - c - d) / 2, (a - b - c + d) / 2]])
  np.testing.assert_allclose(np.asarray(haar_forward(x.astype(np.float32), 1)), ref,
                             atol=1e-5)
  # A constant image has a single non-zero coefficient after log2(size) levels.
  const = np.asarray(haar_forward(np.ones((8, 8), np.float32), 3))
  assert const[0, 0] == pytest.approx(8.0, rel=1e-6)
  assert np.abs(const).sum() == pytest.approx(8.0, rel=1e-5)


def test_haar_rejects_bad_levels():
  with pytest.raises(ValueError, match="levels must be an int >= 0"):
    haar_forward(np.ones((4, 4)), -1)
  with pytest.raises(ValueError, match=r"multiples of 2\*\*levels = 4"):
    haar_inverse(np.ones((6, 8)), 2)


# --- zero-filled -----------------------------------------------------------------------


def test_zero_filled_rss_and_sense_adjoint(simulated):
  _, maps, kspace, mask = simulated
  ref = np.sqrt(np.sum(np.abs(np_ifft2c((mask * kspace).astype(np.complex128))) ** 2, 1))
  out = zero_filled(kspace, mask)
  assert out.dtype == jnp.float32 and out.shape == (2, 48, 96)
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-4, atol=1e-5)
  # mask=None: k-space taken as already zero-filled
  np.testing.assert_allclose(np.asarray(zero_filled(mask * kspace)), ref, rtol=1e-4, atol=1e-5)
  combined = zero_filled(kspace, mask, maps)
  assert combined.dtype == jnp.complex64
  np.testing.assert_allclose(np.asarray(combined),
                             np.asarray(sense_adjoint(kspace, maps, mask)), atol=1e-6)


# --- CG-SENSE --------------------------------------------------------------------------


def test_cg_sense_with_true_maps_beats_zero_filled(simulated):
  images, maps, kspace, mask = simulated
  under = mask * kspace
  recon = np.asarray(cg_sense(under, maps, mask, num_iters=100))
  zf = np.asarray(zero_filled(under, mask, maps))
  for b in range(2):
    err_cg, err_zf = nmse(images[b], recon[b]), nmse(images[b], zf[b])
    assert err_cg < 5e-4, err_cg      # measured 1.8e-5 and 2.5e-5 (rel. error 0.005)
    assert err_zf > 0.02, err_zf      # measured 0.029 (rel. error 0.17)
  assert recon.dtype == np.complex64 and recon.shape == (2, 48, 96)
  # Fewer iterations: still far better than zero-filled (measured 0.0026 at 30).
  assert nmse(images, np.asarray(cg_sense(under, maps, mask, num_iters=30))) < 0.01


def _dense_sense_matrix(maps, mask):
  """A = M F S as an explicit complex128 matrix [(C H W), (H W)] for one slice."""
  c, h, w = maps.shape
  cols = []
  for j in range(h * w):
    e = np.zeros(h * w, np.complex128)
    e[j] = 1.0
    cols.append((mask * np_fft2c(maps * e.reshape(h, w))).ravel())
  return np.stack(cols, axis=1)


def test_cg_sense_matches_dense_regularized_solve():
  rng = np.random.default_rng(2)
  b, c, h, w = 2, 2, 6, 5
  maps = crandn(rng, b, c, h, w)
  mask = (rng.random((b, 1, 1, w)) < 0.6).astype(np.float32)
  kspace = mask * crandn(rng, b, c, h, w)
  lam = 0.3
  out = np.asarray(cg_sense(kspace, maps, mask, lam=lam, num_iters=60))
  for i in range(b):
    a = _dense_sense_matrix(maps[i].astype(np.complex128), mask[i].astype(np.float64))
    lhs = a.conj().T @ a + lam * np.eye(h * w)
    rhs = a.conj().T @ kspace[i].astype(np.complex128).ravel()
    ref = np.linalg.solve(lhs, rhs).reshape(h, w)
    np.testing.assert_allclose(out[i], ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_cg_sense_batch_and_x0(simulated):
  images, maps, kspace, mask = simulated
  mask = mask.copy()
  mask[1, ..., 1::2] = 1.0     # a different mask for the second slice
  both = np.asarray(cg_sense(mask * kspace, maps, mask, num_iters=8))
  second = np.asarray(cg_sense(mask[1:] * kspace[1:], maps[1:], mask[1:], num_iters=8))
  np.testing.assert_allclose(both[1], second[0], atol=1e-5)
  # Starting at the answer, CG stays there.
  start = np.asarray(cg_sense(mask * kspace, maps, mask, x0=images, num_iters=3))
  assert nmse(images, start) < 1e-8


def test_cg_sense_compiles_once(simulated):
  _, maps, kspace, mask = simulated
  from fdl.mri import recon
  cg_sense(kspace, maps, mask, lam=0.1, num_iters=4)
  before = recon._cg_sense._cache_size()
  cg_sense(2.0 * kspace, maps, mask, lam=0.2, num_iters=4)   # new data and lam: no retrace
  assert recon._cg_sense._cache_size() == before
  out = jax.jit(lambda k: cg_sense(k, maps, mask, num_iters=4))(kspace)
  assert out.shape == (2, 48, 96)


@pytest.mark.parametrize("call, match", [
    (lambda k, m, s: cg_sense(k.real, s, m), r"kspace must be complex64 \[batch, coils, H, W\]; got float32"),
    (lambda k, m, s: cg_sense(k, s, m[..., :5]), r"mask of shape \(2, 1, 1, 5\) does not broadcast"),
    (lambda k, m, s: cg_sense(k, s[:, :3], m), r"kspace has 8 coils but maps have 3"),
    (lambda k, m, s: cg_sense(k, s, m, lam=-1.0), r"lam must be >= 0"),
    (lambda k, m, s: cg_sense(k, s, m, num_iters=-2), r"num_iters must be an int >= 0"),
    (lambda k, m, s: cg_sense(k, s, m, x0=np.zeros((2, 48, 95), np.complex64)), r"image \(2, 48, 95\) must be \[batch, H, W\]"),
    (lambda k, m, s: cs_wavelet(k, s, m, lam=-0.1), r"lam must be >= 0"),
    (lambda k, m, s: cs_wavelet(k, s[0], m, lam=0.1), r"maps must be complex64 \[batch, coils, H, W\]"),
    (lambda k, m, s: zero_filled(k[0]), r"kspace must be complex64 \[batch, coils, H, W\]"),
    (lambda k, m, s: zero_filled(k, m[..., :5]), r"mask of shape \(2, 1, 1, 5\) does not broadcast"),
    (lambda k, m, s: zero_filled(np.where(np.arange(96) == 3, np.nan, k)), r"kspace contains NaN or Inf"),
])
def test_bad_input_is_named(simulated, call, match):
  _, maps, kspace, mask = simulated
  with pytest.raises(ValueError, match=match):
    call(kspace, mask, maps)


# --- compressed sensing ----------------------------------------------------------------


def cs_objective(x, kspace, maps, mask, lam, levels):
  """0.5 ||A x - y||^2 + lam ||W x||_1 per slice, float64 (W on the zero-padded x)."""
  resid = np.asarray(sense_forward(x, maps, mask), np.complex128) - mask * kspace
  coeffs = np.asarray(haar_forward(x, levels), np.complex128)
  return (0.5 * np.sum(np.abs(resid) ** 2, axis=(1, 2, 3))
          + lam * np.sum(np.abs(coeffs), axis=(1, 2)))


def test_lipschitz_bound_is_the_norm_for_normalized_maps(simulated):
  _, maps, _, mask = simulated
  np.testing.assert_allclose(np.asarray(lipschitz_bound(maps, mask)), 1.0, rtol=1e-5)
  # For arbitrary maps and weights it bounds the power-method estimate of ||A^H A||.
  rng = np.random.default_rng(3)
  raw = crandn(rng, 1, 3, 10, 9)
  weights = rng.random((1, 1, 10, 9)).astype(np.float32) * 2
  x = crandn(rng, 1, 10, 9)
  for _ in range(50):
    x = np.asarray(sense_normal(x, raw, weights))
    norm = np.linalg.norm(x)
    x = x / norm
  bound = float(lipschitz_bound(raw, weights)[0])
  assert norm <= bound * (1 + 1e-5)


def test_cs_wavelet_decreases_the_objective_and_beats_zero_filled(simulated):
  images, maps, kspace, mask = simulated
  under = mask * kspace
  lam, levels = 0.003, 3
  zf = np.asarray(zero_filled(under, mask, maps))
  objective = {n: cs_objective(np.asarray(cs_wavelet(under, maps, mask, lam=lam, num_iters=n,
                                                      levels=levels)),
                               under, maps, mask, lam, levels)
               for n in (0, 5, 20, 60)}
  np.testing.assert_allclose(objective[0], cs_objective(zf, under, maps, mask, lam, levels),
                             rtol=1e-5)       # FISTA starts at the zero-filled image
  assert np.all(objective[5] < objective[0])
  assert np.all(objective[20] < objective[5] * 1.01)   # FISTA is not monotone: 1% slack
  assert np.all(objective[60] < objective[20] * 1.01)
  assert np.all(objective[60] < 0.65 * objective[0])  # measured 0.50, 0.54
  recon = np.asarray(cs_wavelet(under, maps, mask, lam=lam, num_iters=60, levels=levels))
  for b in range(2):
    assert nmse(images[b], recon[b]) < 0.1 * nmse(images[b], zf[b])  # measured 0.026, 0.031


def test_cs_wavelet_reaches_the_optimality_condition():
  # The minimizer is the fixed point x = W^T soft(W (x - A^H (A x - y)), lam)
  # (step 1/L, L = 1 here): check it on a tiny 2-coil problem in float64.
  rng = np.random.default_rng(4)
  h, w, levels, lam = 12, 8, 2, 0.2
  maps = crandn(rng, 1, 2, h, w)
  maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=1, keepdims=True))
  mask = line_mask(w, every=3, centre=2)[None, None, None]
  kspace = mask * crandn(rng, 1, 2, h, w)
  x = np.asarray(cs_wavelet(kspace, maps, mask, lam=lam, num_iters=400, levels=levels))
  grad = np.asarray(sense_adjoint(sense_forward(x, maps, mask) - kspace, maps, mask))
  coeffs = np.asarray(haar_forward(x - grad, levels), np.complex128)
  mag = np.abs(coeffs)
  shrunk = coeffs * np.maximum(0.0, 1.0 - lam / np.where(mag > 0, mag, 1.0))
  fixed = np.asarray(haar_inverse(shrunk.astype(np.complex64), levels))
  assert np.linalg.norm(fixed - x) / np.linalg.norm(x) < 1e-4
  assert np.mean(np.abs(np.asarray(haar_forward(x, levels))) < 1e-6) > 0.05  # sparse: 15%
  # Sizes that are not multiples of 2**levels are padded inside and cropped back.
  odd = cs_wavelet(kspace[..., :11, :7], maps[..., :11, :7], mask[..., :7], lam=lam,
                   num_iters=5, levels=levels)
  assert odd.shape == (1, 11, 7) and np.isfinite(np.asarray(odd)).all()


def test_cs_wavelet_lam_zero_full_data_is_exact(simulated):
  images, maps, kspace, _ = simulated
  full = np.ones((1, 1, 1, 96), np.float32)
  out = np.asarray(cs_wavelet(kspace, maps, full, lam=0.0, num_iters=3, levels=2))
  np.testing.assert_allclose(out, images, atol=1e-4)


# --- real data -------------------------------------------------------------------------


def _ssim(ref, x):
  from skimage.metrics import structural_similarity
  return structural_similarity(ref, x, data_range=float(ref.max()), win_size=7, K1=0.01,
                               K2=0.03, gaussian_weights=False, use_sample_covariance=True)


def _load(name):
  path = os.path.join(DATA_DIR, name)
  if not os.path.exists(path):
    pytest.skip(f"real MRI test data not found at {path}")
  return np.load(path)


def test_real_brain_cg_sense_beats_zero_filled():
  """Lustig's 8-channel brain (ESPIRiT demo data), retrospectively 4x under-sampled.

  Only columns 44..211 of the 256 were acquired (the rest is zero padding), so
  k-space is cropped to those 168 columns: reconstructing the padding would be
  extrapolation, which SENSE cannot do. Mask: every 4th column plus the 24
  centre columns (net R = 2.8). Reference: the SENSE-combined fully sampled
  image ``|S^H F^H y_full|`` with the same estimated maps, i.e. what CG-SENSE
  converges to at R = 1; an RSS reference would also score the background
  noise floor and the wrap-around at the FOV edges that one set of maps
  cannot represent, not the under-sampling.

  That wrap-around (3% of the coil-image energy lies outside the one-map
  model) makes unregularized CG-SENSE semi-convergent on this data set
  (NMSE 0.023 after 5 iterations, 0.59 after 50), which is why the ESPIRiT
  demo uses two sets of maps; a small Tikhonov weight keeps it stable.
  """
  kspace = _load("lustig_brain_alias_8ch.npz")["kspace"][None, :, :, 44:212]
  kspace = (kspace / np.asarray(rss(np_ifft2c(kspace))).max()).astype(np.complex64)
  mask = line_mask(kspace.shape[-1])[None, None, None]
  under = mask * kspace
  maps = estimate_maps(under)
  ref = np.abs(np.asarray(zero_filled(kspace, None, maps)))[0]
  zf = np.asarray(zero_filled(under, mask))[0]
  recon = np.abs(np.asarray(cg_sense(under, maps, mask, lam=0.03, num_iters=30)))[0]
  nmse_zf, nmse_cg = nmse(ref, zf), nmse(ref, recon)
  ssim_zf, ssim_cg = _ssim(ref, zf), _ssim(ref, recon)
  print(f"lustig: NMSE zf {nmse_zf:.4f} cg {nmse_cg:.4f}; SSIM zf {ssim_zf:.4f} cg {ssim_cg:.4f}")
  assert nmse_cg < 0.7 * nmse_zf       # measured 0.0255 vs 0.0464
  assert ssim_cg > ssim_zf + 0.03      # measured 0.756 vs 0.697


def test_real_brain_poisson_cg_sense_beats_zero_filled():
  """BART workshop brain: 2-D Poisson-disc, R = 7.9, against BART's own reference.

  The reference is BART PICS of the fully sampled data with two sets of
  ESPIRiT maps (set 0), independent of our maps and solver. Its intensity
  scale is arbitrary, so each magnitude image is first scaled by the least-
  squares factor onto the reference. The fully sampled calibration block is
  20 x 20 here, so ``calib_size=20``.
  """
  data = _load("bart_pics_brain_8ch.npz")
  kspace = data["kspace"][None]
  kspace = (kspace / np.abs(kspace).max()).astype(np.complex64)
  mask = data["mask"].astype(np.float32)[None, None]
  ref = np.abs(data["reference"][0]).astype(np.float64)
  fit = lambda x: x * (np.sum(ref * x) / np.sum(x * x))
  maps = estimate_maps(kspace, calib_size=20)
  zf = fit(np.asarray(zero_filled(kspace, mask))[0].astype(np.float64))
  recon = np.abs(np.asarray(cg_sense(kspace, maps, mask, lam=0.01, num_iters=20)))[0]
  recon = fit(recon.astype(np.float64))
  nmse_zf, nmse_cg = nmse(ref, zf), nmse(ref, recon)
  ssim_zf, ssim_cg = _ssim(ref, zf), _ssim(ref, recon)
  print(f"bart: NMSE zf {nmse_zf:.4f} cg {nmse_cg:.4f}; SSIM zf {ssim_zf:.4f} cg {ssim_cg:.4f}")
  assert nmse_cg < 0.25 * nmse_zf      # measured 0.0057 vs 0.0537
  assert ssim_cg > ssim_zf + 0.15      # measured 0.876 vs 0.566


def test_real_brain_fastmri_4x_mask_cg_sense_beats_zero_filled():
  """The same brain slice at a true 4x: fastMRI's equispaced mask (8 % centre).

  Setup and reference as in the test above; maps come from the 13 centre lines.
  """
  from fdl.mri import equispaced_mask, num_low_frequencies  # pylint: disable=g-import-not-at-top
  kspace = _load("lustig_brain_alias_8ch.npz")["kspace"][None, :, :, 44:212]
  kspace = (kspace / np.asarray(rss(np_ifft2c(kspace))).max()).astype(np.complex64)
  width = kspace.shape[-1]
  mask = np.asarray(equispaced_mask(jax.random.PRNGKey(0), width, 4, 0.08)).reshape(1, 1, 1, -1)
  assert width / mask.sum() == pytest.approx(4.0, rel=0.05)
  under = mask * kspace
  maps = estimate_maps(under, calib_size=num_low_frequencies(width, 0.08))
  ref = np.abs(np.asarray(zero_filled(kspace, None, maps)))[0]
  zf = np.asarray(zero_filled(under, mask))[0]
  recon = np.abs(np.asarray(cg_sense(under, maps, mask, lam=0.03, num_iters=30)))[0]
  assert nmse(ref, recon) < 0.7 * nmse(ref, zf)      # measured 0.041 vs 0.078
  assert _ssim(ref, recon) > _ssim(ref, zf) + 0.05    # measured 0.712 vs 0.591
