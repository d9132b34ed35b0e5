"""Phantoms, loop-coil sensitivities and the k-space simulator (the default MRI data)."""

import jax
import numpy as np
import pytest

from fdl.mri import fft2c, ifft2c
from fdl.mri.coil_models import loop_coil_maps
from fdl.mri.io import SliceDataset, read_fastmri
from fdl.mri.phantoms import (MODIFIED_SHEPP_LOGAN_ELLIPSES, image_grid, random_phantom,
                              shepp_logan)
from fdl.mri.simulate import simulate, simulate_to_fastmri


def _pixel(shape, x0, y0):
  """Index of the pixel whose centre is nearest to (x0, y0)."""
  x, y = image_grid(shape)
  return int(np.abs(y[:, 0] - y0).argmin()), int(np.abs(x[0] - x0).argmin())


# --------------------------------------------------------------------- phantoms


def test_image_grid_origin_and_orientation():
  x, y = image_grid((5, 8))
  assert (x[2, 4], y[2, 4]) == (0.0, 0.0)  # origin on (H // 2, W // 2), like DC
  assert x[0, -1] > 0 and y[0, 0] > 0 and y[-1, 0] < 0  # x right, y up
  assert x.min() == -1.0 and y.max() < 1.0


@pytest.mark.parametrize("shape", [(33, 20), (17, 40), (64, 64)])
def test_phantom_shapes_and_dtypes(shape):
  sl = shepp_logan(shape)
  rp = random_phantom(jax.random.key(0), shape)
  for img in (sl, rp):
    assert img.shape == shape and img.dtype == np.complex64
  assert np.all(sl.imag == 0)
  assert np.abs(rp).max() > 0.5


@pytest.mark.parametrize("shape", [(128, 128), (129, 96), (100, 131)])
def test_shepp_logan_known_values(shape):
  img = shepp_logan(shape).real
  known = [((0.0, 0.0), 0.2),      # brain: 1 - 0.8
           ((0.0, 0.9), 1.0),      # skull, above the inner ellipse
           ((-0.22, 0.0), 0.0),    # left ventricle: 1 - 0.8 - 0.2
           ((0.0, 0.35), 0.3),     # upper ellipse
           ((0.0, -0.1), 0.3),     # small lower tumour
           ((0.0, -0.606), 0.3),   # bottom little circle
           ((0.95, 0.95), 0.0)]    # outside the head
  for (x0, y0), value in known:
    assert img[_pixel(shape, x0, y0)] == pytest.approx(value, abs=1e-6), (x0, y0)
  assert {round(float(v), 6) for v in np.unique(img)} <= {0.0, 0.1, 0.2, 0.3, 0.4, 1.0}


def test_shepp_logan_integral_matches_the_ellipse_table():
  # Ellipses add, so the mean over the field of view (area 4) is
  # sum_i intensity_i * pi a_i b_i / 4, whatever the centres and angles.
  img = shepp_logan((256, 200)).real
  expected = sum(i * np.pi * a * b for i, a, b, *_ in MODIFIED_SHEPP_LOGAN_ELLIPSES) / 4
  assert img.mean() == pytest.approx(expected, rel=0.01)
  assert (img == 1.0).mean() < 0.1  # only the thin skull is at full intensity


def test_random_phantom_determinism_support_and_phase():
  key = jax.random.key(7)
  a = random_phantom(key, (40, 36))
  assert a.tobytes() == random_phantom(key, (40, 36)).tobytes()
  assert a.tobytes() == random_phantom(np.asarray(jax.random.key_data(key)), (40, 36)).tobytes()
  assert a.tobytes() != random_phantom(jax.random.key(8), (40, 36)).tobytes()
  assert random_phantom(3, (40, 36)).tobytes() == random_phantom(3, (40, 36)).tobytes()
  assert np.abs(a[0, 0]) == 0 and np.abs(a[-1, -1]) == 0  # air in the corners
  inside = np.abs(a) > 0.05
  phase = np.angle(a)[inside]
  assert np.abs(phase).max() <= np.pi / 2 + 1e-5
  # The background phase is smooth: neighbouring pixels differ by little.
  step = np.abs(np.angle(a[1:] * np.conj(a[:-1])))[inside[1:] & inside[:-1]]
  assert step.max() < 0.3


def test_random_phantoms_vary_in_structure():
  imgs = [np.abs(random_phantom(jax.random.key(k), (48, 48))) for k in range(4)]
  for i in range(3):
    assert np.abs(imgs[i] - imgs[i + 1]).mean() > 0.02


# ----------------------------------------------------------------- coil models


@pytest.mark.parametrize("num_coils", [4, 16])
@pytest.mark.parametrize("shape", [(33, 20), (24, 24)])
def test_coil_maps_shape_normalization_and_determinism(num_coils, shape):
  maps = loop_coil_maps(shape, num_coils)
  assert maps.shape == (num_coils, *shape) and maps.dtype == np.complex64
  np.testing.assert_allclose((np.abs(maps) ** 2).sum(0), 1.0, rtol=1e-5)
  maps[0] = 0  # the returned array is a copy, not the cache
  again = loop_coil_maps(shape, num_coils)
  assert again.tobytes() == loop_coil_maps(shape, num_coils).tobytes()
  assert np.abs(again[0]).min() > 0


@pytest.mark.parametrize("num_coils", [4, 8, 16])
def test_each_coil_is_brightest_on_its_own_side(num_coils):
  maps = loop_coil_maps((48, 48), num_coils)
  x, y = image_grid((48, 48))
  for c in range(num_coils):
    theta = 2 * np.pi * c / num_coils
    power = np.abs(maps[c]) ** 2
    centroid = np.angle((power * (x + 1j * y)).sum())
    assert abs(np.angle(np.exp(1j * (centroid - theta)))) < np.pi / num_coils / 2
    facing = (x * np.cos(theta) + y * np.sin(theta)) > 0
    assert power[facing].mean() > 3 * power[~facing].mean()


def test_coil_maps_are_smooth_samples_of_one_continuous_field():
  coarse, fine = loop_coil_maps((32, 32), 8), loop_coil_maps((64, 64), 8)
  # The 64-grid contains the 32-grid's pixel centres: same field, same values.
  np.testing.assert_allclose(fine[:, ::2, ::2], coarse, atol=1e-6)
  def diffs(m, order):
    return max(np.abs(np.diff(m, order, axis=a)).max() for a in (1, 2))
  # Halving the pixel halves first differences and quarters second ones.
  assert 0.4 < diffs(fine, 1) / diffs(coarse, 1) < 0.6
  assert 0.15 < diffs(fine, 2) / diffs(coarse, 2) < 0.35
  assert diffs(fine, 1) < 0.1


def test_coil_field_matches_the_on_axis_loop_formula():
  # On its axis a loop of radius a gives B = mu0 I a^2 / (2 (a^2 + d^2)^1.5),
  # along the axis; coil 0's axis is the x axis, so S_0 = B_x there.
  radius, a = 1.6, 0.5
  maps = loop_coil_maps((9, 64), 4, array_radius=radius, loop_radius=a,
                        num_segments=128, normalize=False)
  x, _ = image_grid((9, 64))
  profile = maps[0, 4]  # the row y = 0
  expected = a ** 2 / (a ** 2 + (radius - x[4]) ** 2) ** 1.5
  np.testing.assert_allclose(profile.real / profile.real[32], expected / expected[32],
                             rtol=1e-5)
  assert np.abs(profile.imag).max() < 1e-6 * np.abs(profile).max()


def test_coil_models_reject_a_wire_inside_the_field_of_view():
  with pytest.raises(ValueError, match="array_radius"):
    loop_coil_maps((8, 8), 4, array_radius=1.2)


# -------------------------------------------------------------------- simulate


@pytest.mark.parametrize("num_coils, shape", [(4, (24, 20)), (16, (17, 22))])
def test_simulate_shapes_dtypes_and_forward_model(num_coils, shape):
  out = simulate(jax.random.key(0), num_slices=2, shape=shape, num_coils=num_coils)
  s, (h, w) = 2, shape
  expected = {"kspace": ((s, num_coils, h, w), np.complex64),
              "image": ((s, h, w), np.complex64),
              "maps": ((s, num_coils, h, w), np.complex64),
              "target": ((s, h, w), np.float32),
              "noise": ((s, num_coils, h, w), np.complex64),
              "noise_std": ((num_coils,), np.float32)}
  for name, (shp, dtype) in expected.items():
    assert out[name].shape == shp and out[name].dtype == dtype, name
  np.testing.assert_allclose((np.abs(out["maps"]) ** 2).sum(1), 1.0, rtol=1e-5)
  # kspace - noise is F(S x), checked against a float64 NumPy FFT.
  coil_images = out["maps"].astype(np.complex128) * out["image"][:, None]
  axes = (-2, -1)
  ref = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil_images, axes=axes), axes=axes,
                                    norm="ortho"), axes=axes)
  clean = out["kspace"] - out["noise"]
  np.testing.assert_allclose(clean, ref, atol=2e-5 * np.abs(ref).max())
  # target: RSS of the noiseless coil images, which is |x| for normalized maps.
  rss = np.sqrt((np.abs(np.asarray(ifft2c(clean))) ** 2).sum(1))
  np.testing.assert_allclose(out["target"], rss, atol=1e-5)
  np.testing.assert_allclose(out["target"], np.abs(out["image"]), atol=1e-5)


@pytest.mark.parametrize("snr_db", [10.0, 30.0])
def test_simulate_achieves_the_requested_snr_per_coil(snr_db):
  out = simulate(jax.random.key(1), num_slices=2, shape=(32, 32), num_coils=8,
                 snr_db=snr_db)
  clean = (out["kspace"] - out["noise"]).astype(np.complex128)
  signal = (np.abs(clean) ** 2).mean(axis=(0, 2, 3))
  noise = (np.abs(out["noise"].astype(np.complex128)) ** 2).mean(axis=(0, 2, 3))
  np.testing.assert_allclose(10 * np.log10(signal / noise), snr_db, atol=0.5)
  np.testing.assert_allclose(noise, out["noise_std"].astype(np.float64) ** 2, rtol=0.1)
  # Real and imaginary parts carry half the noise power each.
  assert out["noise"].real.var() == pytest.approx(out["noise"].imag.var(), rel=0.1)


def test_simulate_is_deterministic_by_key():
  kw = {"num_slices": 2, "shape": (20, 18), "num_coils": 4}
  a = simulate(jax.random.key(5), **kw)
  b = simulate(jax.random.key(5), **kw)
  c = simulate(jax.random.key(6), **kw)
  for name in a:
    assert a[name].tobytes() == b[name].tobytes(), name
  assert a["kspace"].tobytes() != c["kspace"].tobytes()
  assert a["image"].tobytes() != c["image"].tobytes()
  assert a["image"][0].tobytes() != a["image"][1].tobytes()  # slices differ


def test_simulate_shepp_logan_and_noiseless():
  out = simulate(0, num_slices=2, shape=(16, 12), num_coils=4, snr_db=np.inf,
                 phantom="shepp_logan")
  np.testing.assert_array_equal(out["image"], np.stack([shepp_logan((16, 12))] * 2))
  assert not out["noise"].any()
  np.testing.assert_allclose(out["kspace"], np.asarray(fft2c(out["maps"] * out["image"][:, None])),
                             atol=1e-6)


def test_simulate_rejects_an_unknown_phantom():
  with pytest.raises(ValueError, match="random.*shepp_logan"):
    simulate(jax.random.key(0), phantom="brain")


def test_simulate_to_fastmri_round_trip(tmp_path):
  key = jax.random.key(11)
  kw = {"num_slices": 2, "shape": (20, 18), "num_coils": 4, "snr_db": 25.0}
  paths = simulate_to_fastmri(key, tmp_path / "sim", 2, **kw)
  assert [p.name for p in paths] == ["simulated_0000.h5", "simulated_0001.h5"]
  for i, path in enumerate(paths):
    ref = simulate(jax.random.fold_in(key, i), **kw)
    vol = read_fastmri(path)
    np.testing.assert_array_equal(vol["kspace"], ref["kspace"])
    np.testing.assert_array_equal(vol["target"], ref["target"])
    attrs = vol["attrs"]
    assert attrs["max"] == pytest.approx(float(ref["target"].max()))
    assert attrs["norm"] == pytest.approx(float(np.linalg.norm(ref["target"])), rel=1e-6)
    assert attrs["acquisition"] == "SIMULATED_RANDOM"
    assert (attrs["padding_left"], attrs["padding_right"]) == (0, 18)
    assert attrs["recon_size"] == (20, 18, 1)
    assert '"snr_db": 25.0' in attrs["simulation"]
  ds = SliceDataset(paths)
  assert len(ds) == 4
  np.testing.assert_array_equal(ds[3]["target"], read_fastmri(paths[1])["target"][1])
