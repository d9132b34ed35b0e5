"""fastMRI metrics against float64 NumPy formulas and scikit-image."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fdl.mri import metrics
from fdl.mri.metrics import center_crop, nmse, psnr, slice_metrics, ssim, volume_metrics


def _smooth_volume(rng, slices, h, w):
  """Positive, smoothly varying images: low-pass filtered noise plus a ramp."""
  noise = rng.standard_normal((slices, h, w))
  ky = np.fft.fftfreq(h)[:, None]
  kx = np.fft.fftfreq(w)[None, :]
  lowpass = np.exp(-(ky ** 2 + kx ** 2) / (2 * 0.05 ** 2))
  smooth = np.real(np.fft.ifft2(np.fft.fft2(noise) * lowpass))
  smooth /= smooth.std()
  ramp = np.linspace(0, 1, w)[None, None, :]
  return (3.0 + smooth + ramp).astype(np.float32)


@pytest.fixture(scope="module", params=[(3, 37, 52), (2, 45, 29)])
def pair(request):
  rng = np.random.default_rng(sum(request.param))
  target = _smooth_volume(rng, *request.param)
  pred = target + 0.3 * _smooth_volume(rng, *request.param) \
      + 0.1 * rng.standard_normal(request.param).astype(np.float32)
  return target, pred.astype(np.float32)


def _skimage_ssim(t, p, data_range):
  return structural_similarity(t, p, data_range=data_range, win_size=7, K1=0.01,
                               K2=0.03, gaussian_weights=False,
                               use_sample_covariance=True)


def test_nmse_and_psnr_match_float64_formulas(pair):
  target, pred = pair
  t64, p64 = target.astype(np.float64), pred.astype(np.float64)
  for t, p, x, y in ((target, pred, t64, p64), (target[0], pred[0], t64[0], p64[0])):
    ref_nmse = np.linalg.norm(x - y) ** 2 / np.linalg.norm(x) ** 2
    assert float(nmse(t, p)) == pytest.approx(ref_nmse, rel=1e-5)
    ref_psnr = 20 * np.log10(x.max()) - 10 * np.log10(np.mean((x - y) ** 2))
    assert float(psnr(t, p)) == pytest.approx(ref_psnr, abs=1e-4)
    assert float(psnr(t, p)) == pytest.approx(
        peak_signal_noise_ratio(x, y, data_range=x.max()), abs=1e-4)
    assert float(psnr(t, p, data_range=10.0)) == pytest.approx(
        20 - 10 * np.log10(np.mean((x - y) ** 2)), abs=1e-4)


def test_ssim_matches_skimage_per_slice(pair):
  target, pred = pair
  for t, p in zip(target.astype(np.float64), pred.astype(np.float64)):
    assert float(ssim(t, p)) == pytest.approx(_skimage_ssim(t, p, t.max()), abs=1e-3)
    assert float(ssim(t, p, data_range=8.0)) == pytest.approx(
        _skimage_ssim(t, p, 8.0), abs=1e-3)


def test_volume_metrics_match_fastmri_loop(pair):
  target, pred = pair
  t64, p64 = target.astype(np.float64), pred.astype(np.float64)
  maxval = t64.max()  # one range for the whole volume, as fastMRI evaluate.py
  ref_ssim = np.mean([_skimage_ssim(t, p, maxval) for t, p in zip(t64, p64)])
  got = volume_metrics(target, pred)
  assert set(got) == {"nmse", "psnr", "ssim"}
  assert all(isinstance(v, float) for v in got.values())
  assert got["ssim"] == pytest.approx(ref_ssim, abs=1e-3)
  assert got["nmse"] == pytest.approx(
      np.linalg.norm(t64 - p64) ** 2 / np.linalg.norm(t64) ** 2, rel=1e-5)
  assert got["psnr"] == pytest.approx(
      peak_signal_noise_ratio(t64, p64, data_range=maxval), abs=1e-4)
  assert float(ssim(target, pred)) == pytest.approx(got["ssim"], abs=1e-6)


def test_slice_metrics_match_per_slice_calls(pair):
  target, pred = pair
  got = slice_metrics(target, pred)
  assert {k: v.shape for k, v in got.items()} == {k: (target.shape[0],)
                                                  for k in ("nmse", "psnr", "ssim")}
  for i, (t, p) in enumerate(zip(target, pred)):
    assert float(got["nmse"][i]) == pytest.approx(float(nmse(t, p)), rel=1e-5)
    assert float(got["psnr"][i]) == pytest.approx(float(psnr(t, p)), abs=1e-4)
    assert float(got["ssim"][i]) == pytest.approx(
        _skimage_ssim(t.astype(np.float64), p.astype(np.float64), t.max()), abs=1e-3)
  # One shared range reproduces the volume SSIM.
  shared = slice_metrics(target, pred, data_range=target.max())
  assert float(shared["ssim"].mean()) == pytest.approx(float(ssim(target, pred)),
                                                       abs=1e-6)


def test_perfect_reconstruction_and_jit():
  target = _smooth_volume(np.random.default_rng(0), 2, 9, 11)
  assert float(nmse(target, target)) == 0.0
  assert float(psnr(target, target)) == np.inf
  assert float(ssim(target, target)) == pytest.approx(1.0, abs=1e-6)
  pred = target + 0.5
  for fn in (nmse, psnr, ssim):
    assert float(jax.jit(fn)(target, pred)) == pytest.approx(float(fn(target, pred)),
                                                             rel=1e-6)


@pytest.mark.parametrize("call,match", [
    (lambda t: nmse(t.astype(np.complex64), t), "target.*jnp.abs"),
    (lambda t: ssim(t, t.astype(np.complex64)), "pred.*jnp.abs"),
    (lambda t: psnr(t, t[:, :-1]), "pred.*shape"),
    (lambda t: volume_metrics(t, t[:1]), "pred.*shape"),
    (lambda t: ssim(t[:, :6], t[:, :6]), "target.*7 x 7"),
    (lambda t: slice_metrics(t[..., :5], t[..., :5]), "target.*7 x 7"),
    (lambda t: volume_metrics(t[0], t[0]), "target.*slices"),
    (lambda t: nmse(t[0, 0], t[0, 0]), "target"),
    (lambda t: psnr(t, t, data_range=0.0), "data_range"),
    (lambda t: ssim(t, t, data_range=np.ones(2)), "data_range"),
])
def test_bad_inputs(call, match):
  target = np.ones((2, 9, 8), np.float32)
  with pytest.raises(ValueError, match=match):
    call(target)


@pytest.mark.parametrize("in_shape,crop", [((7, 8), (2, 3)), ((8, 7), (5, 4)),
                                           ((2, 9, 10), (9, 1)), ((6, 6), (6, 6))])
def test_center_crop_matches_fastmri_offsets(in_shape, crop):
  x = np.arange(np.prod(in_shape)).reshape(in_shape)
  top = (in_shape[-2] - crop[0]) // 2  # fastMRI transforms.center_crop
  left = (in_shape[-1] - crop[1]) // 2
  out = center_crop(x, crop)
  assert isinstance(out, np.ndarray)
  np.testing.assert_array_equal(out, x[..., top:top + crop[0], left:left + crop[1]])
  np.testing.assert_array_equal(center_crop(jnp.asarray(x), crop), out)


@pytest.mark.parametrize("crop", [(0, 3), (8, 3), (3,), (2.0, 3)])
def test_center_crop_bad_shape(crop):
  with pytest.raises(ValueError, match="shape"):
    center_crop(np.zeros((7, 8)), crop)


def test_module_exports():
  assert set(metrics.__all__) == {"center_crop", "nmse", "psnr", "slice_metrics",
                                  "ssim", "volume_metrics"}
