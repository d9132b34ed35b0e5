"""Coil combination (RSS) and ESPIRiT map estimation on simulated k-space."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mri_reference import crandn, np_fft2c, np_ifft2c

from fdl.mri.coils import estimate_maps, rss

jax.config.update("jax_enable_x64", False)







def simulate(h, w, num_coils, shift=0.0):
  """A smooth-ish object and smooth coil profiles (Gaussian bumps, linear phase).

  Returns (object [H, W] complex128, coil profiles [C, H, W] complex128,
  support [H, W] bool). The profiles are *not* normalized: ESPIRiT must find
  their direction per pixel, whatever their scale.
  """
  y, x = np.mgrid[:h, :w]
  yn, xn = (y - h // 2) / (h / 2), (x - w // 2) / (w / 2)
  support = (xn / 0.8) ** 2 + ((yn - shift) / 0.85) ** 2 < 1
  obj = support * (1.0 + 0.3 * xn) * np.exp(0.4j * yn)
  obj = obj + 0.5 * ((((xn - 0.2) / 0.3) ** 2 + ((yn + 0.1) / 0.2) ** 2) < 1)
  profiles = []
  for i in range(num_coils):
    angle = 2 * np.pi * i / num_coils
    cy, cx = 1.2 * np.sin(angle), 1.2 * np.cos(angle)
    mag = np.exp(-((xn - cx) ** 2 + (yn - cy) ** 2) / (2 * 0.8 ** 2))
    phase = np.exp(1j * (0.5 * i + 0.8 * xn * np.cos(angle + 1) + 0.6 * yn * np.sin(angle)))
    profiles.append(mag * phase)
  return obj, np.stack(profiles), support


@pytest.fixture(scope="module")
def simulated():
  # Two different slices in one batch, with a non-square, odd-height matrix.
  objs, profs, supports = zip(*(simulate(49, 40, 4, shift) for shift in (0.0, 0.1)))
  coil_images = np.stack(objs)[:, None] * np.stack(profs)          # [2, 4, 49, 40]
  kspace = np_fft2c(coil_images).astype(np.complex64)
  maps = np.asarray(estimate_maps(kspace, calib_size=20, kernel_size=5))
  return kspace, coil_images, np.stack(supports), maps


@pytest.mark.parametrize("shape, axis", [((2, 3, 7, 6), 1), ((4, 5, 9), 0), ((1, 1, 3, 4), 1)])
def test_rss_matches_numpy_float64(shape, axis):
  rng = np.random.default_rng(0)
  x = crandn(rng, *shape)
  ref = np.sqrt(np.sum(np.abs(x.astype(np.complex128)) ** 2, axis=axis))
  out = rss(x, axis=axis)
  assert out.dtype == jnp.float32 and out.shape == ref.shape
  np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-6)
  real = rng.standard_normal(shape).astype(np.float32)
  np.testing.assert_allclose(np.asarray(rss(real, axis=axis)),
                             np.sqrt((real.astype(np.float64) ** 2).sum(axis)), rtol=1e-6)


def test_maps_are_unit_norm_inside_the_object(simulated):
  _, _, support, maps = simulated
  assert maps.shape == (2, 4, 49, 40) and maps.dtype == np.complex64
  energy = np.sum(np.abs(maps) ** 2, axis=1)
  np.testing.assert_allclose(energy[support], 1.0, atol=1e-5)
  # Everywhere else a pixel is either kept (unit norm) or cropped (zero).
  assert np.all((np.abs(energy - 1) < 1e-5) | (energy == 0))


def test_maps_reproduce_the_coil_images(simulated):
  # Coil images m_c = S_c x: projecting onto the maps and expanding again
  # must give them back inside the object (where S is defined).
  _, coil_images, support, maps = simulated
  combined = np.sum(np.conj(maps) * coil_images, axis=1)
  expanded = maps * combined[:, None]
  inside = np.broadcast_to(support[:, None], coil_images.shape)
  err = np.linalg.norm((expanded - coil_images)[inside]) / np.linalg.norm(coil_images[inside])
  assert err < 0.02  # measured 0.004-0.005
  # With unit-norm maps, |S^H m| = |x| ||profiles|| = the RSS of the coil images.
  ref = np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=1))
  rel = np.linalg.norm((np.abs(combined) - ref)[support]) / np.linalg.norm(ref[support])
  assert rel < 0.02


def test_maps_phase_is_relative_to_the_first_coil(simulated):
  _, _, _, maps = simulated
  first = maps[:, 0]
  assert np.all(np.abs(first.imag) <= 1e-6 * np.abs(first).max())
  assert np.all(first.real >= 0)


def test_only_the_calibration_region_is_read(simulated):
  kspace, _, _, maps = simulated
  h, w = kspace.shape[-2:]
  under = np.zeros_like(kspace)
  under[..., h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10] = \
      kspace[..., h // 2 - 10:h // 2 + 10, w // 2 - 10:w // 2 + 10]
  maps_under = np.asarray(estimate_maps(under, calib_size=20, kernel_size=5))
  np.testing.assert_allclose(maps_under, maps, atol=1e-4)


def test_batch_elements_are_independent(simulated):
  kspace, _, _, maps = simulated
  single = np.asarray(estimate_maps(kspace[1:], calib_size=20, kernel_size=5))
  np.testing.assert_allclose(single[0], maps[1], atol=1e-5)


def test_crop_zeroes_low_eigenvalue_pixels(simulated):
  kspace, _, support, _ = simulated
  # Off the object the leading eigenvalue falls below 1 (measured: 93%, 62%
  # and 47% of those pixels kept at crop 0.5, 0.9, 0.95); on it, it is ~1.
  kept = []
  for crop in (0.0, 0.5, 0.9, 0.95):
    maps = np.asarray(estimate_maps(kspace[:1], calib_size=20, kernel_size=5, crop=crop))
    on = np.sum(np.abs(maps[0]) ** 2, axis=0) > 0.5
    assert on[support[0]].all()
    kept.append(on[~support[0]].mean())
  assert kept[0] == 1.0
  assert kept[0] > kept[1] > kept[2] > kept[3]
  assert kept[3] < 0.7


def test_jit_and_no_recompilation(simulated):
  kspace, _, _, maps = simulated
  jitted = jax.jit(lambda k: estimate_maps(k, calib_size=20, kernel_size=5))
  np.testing.assert_allclose(np.asarray(jitted(kspace)), maps, atol=1e-5)
  from fdl.mri import coils
  before = coils._espirit._cache_size()
  estimate_maps(kspace * 2.0, calib_size=20, kernel_size=5)
  assert coils._espirit._cache_size() == before


@pytest.mark.parametrize("make, match", [
    (lambda k: k.real, r"kspace must be complex64 \[batch, coils, H, W\]; got float32"),
    (lambda k: k[0], r"add a batch axis"),
    (lambda k: np.where(np.arange(12) == 3, np.nan, k), r"kspace contains NaN or Inf"),
    (lambda k: np.where(np.arange(12) == 3, np.inf, k), r"kspace contains NaN or Inf"),
])
def test_bad_kspace_is_named(make, match):
  k = crandn(np.random.default_rng(2), 1, 2, 16, 12)
  with pytest.raises(ValueError, match=match):
    estimate_maps(make(k), calib_size=8, kernel_size=3)


@pytest.mark.parametrize("kwargs, match", [
    (dict(calib_size=13), r"calib_size must be an int in \[1, min\(H, W\)\] = \[1, 12\]"),
    (dict(calib_size=8, kernel_size=9), r"kernel_size must be an int in \[1, calib_size=8\)"),
    (dict(calib_size=12, kernel_size=7), r"2 \* kernel_size - 1 <= min\(H, W\) = 12"),
    (dict(calib_size=8, threshold=1.5), r"threshold must be in \[0, 1\)"),
    (dict(calib_size=8, crop=-0.1), r"crop must be in \[0, 1\)"),
])
def test_bad_sizes_are_named(kwargs, match):
  k = crandn(np.random.default_rng(3), 1, 2, 16, 12)
  with pytest.raises(ValueError, match=match):
    estimate_maps(k, **kwargs)
