"""Data crimes on purpose: the processing functions, the processed volumes, their
audit, and the experiment's settings (its end-to-end run is marked slow)."""

import json
import os
import subprocess

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files, mri
from fdl.data import mri_volumes
from fdl.mri import processing
from fdl.studies import data_crimes

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "data_crimes.py")


def _noisy_kspace(shape, seed=0):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("size,factor,expected", [(64, 2.0, slice(16, 48)),
                                                  (33, 1.5, slice(5, 27)),
                                                  (36, 1.0, slice(0, 36)),
                                                  (7, 3.0, slice(2, 4))])
def test_padded_block_keeps_the_dc_sample_centred(size, factor, expected):
  block = processing.padded_block(size, factor)
  assert block == expected
  assert block.start <= size // 2 < block.stop  # DC stays inside, at its index


@pytest.mark.parametrize("shape,factor", [((2, 3, 40, 36), 2.0), ((3, 33, 27), 1.5)])
def test_zero_pad_keeps_the_centre_block_and_the_audit_finds_it(shape, factor):
  k = _noisy_kspace(shape)
  padded = processing.zero_pad_kspace(k, factor)
  rows = processing.padded_block(shape[-2], factor)
  cols = processing.padded_block(shape[-1], factor)
  np.testing.assert_array_equal(padded[..., rows, cols], k[..., rows, cols])
  outside = np.ones(shape[-2:], bool)
  outside[rows, cols] = False
  assert np.all(padded[..., outside] == 0) and padded.dtype == k.dtype
  result = mri.audit(padded)
  assert result["zero_padded"]
  expected = max(shape[-2] / (rows.stop - rows.start), shape[-1] / (cols.stop - cols.start))
  assert result["zero_pad_factor"] == pytest.approx(expected)
  assert not mri.audit(processing.zero_pad_kspace(k, 1.0))["flags"]


def test_zero_pad_rejects_bad_arguments():
  with pytest.raises(ValueError, match="factor must be a number >= 1"):
    processing.zero_pad_kspace(_noisy_kspace((8, 8)), 0.5)
  with pytest.raises(ValueError, match="kspace must be complex"):
    processing.zero_pad_kspace(np.ones((8, 8)), 2.0)


def _phantom(shape=(45, 38)):
  return np.abs(np.asarray(mri.shepp_logan(shape))).astype(np.float32)


def test_jpeg_roundtrip_loses_more_at_lower_quality():
  image = _phantom() * 3.7
  errors = []
  for quality in (100, 75, 30, 5):
    out = processing.jpeg_roundtrip(image, quality)
    assert out.shape == image.shape and out.dtype == np.float32
    errors.append(float(np.linalg.norm(out - image) / np.linalg.norm(image)))
  # Quality 100 is within the 8-bit rounding plus a little; less quality, more error.
  assert errors[0] < 0.02
  assert errors == sorted(errors) and errors[-1] > 3 * errors[0]
  np.testing.assert_array_equal(processing.jpeg_roundtrip(np.zeros((9, 9)), 50),
                                np.zeros((9, 9)))


@pytest.mark.parametrize("quality", [0, 101, 50.0, True])
def test_jpeg_roundtrip_rejects_bad_quality(quality):
  with pytest.raises(ValueError, match="quality must be an int in"):
    processing.jpeg_roundtrip(_phantom((8, 8)), quality)


def test_jpeg_roundtrip_rejects_signed_or_complex_images():
  with pytest.raises(ValueError, match="non-negative"):
    processing.jpeg_roundtrip(-_phantom((8, 8)), 50)
  with pytest.raises(ValueError, match="magnitude image"):
    processing.jpeg_roundtrip(_phantom((8, 8)) + 0j, 50)


def test_synthesized_kspace_matches_fft2c_and_combines_back():
  maps = np.asarray(mri.loop_coil_maps((21, 18), 4))[None].repeat(2, axis=0)
  image = np.random.default_rng(1).standard_normal((2, 21, 18))
  k = processing.synthesize_kspace(image, maps)
  expected = np.asarray(mri.fft2c(jnp.asarray((maps * image[:, None]).astype(np.complex64))))
  np.testing.assert_allclose(k, expected, atol=2e-6)
  # sum_c |S_c|^2 = 1, so the SENSE combination returns the image.
  np.testing.assert_allclose(processing.coil_combine(k, maps), image, atol=2e-5)
  with pytest.raises(ValueError, match="same S, H, W"):
    processing.synthesize_kspace(image[:, :5], maps)


@pytest.fixture(scope="module")
def volumes():
  """One tiny simulated volume raw, zero-padded x2 and JPEG q=30."""
  kwargs = dict(seed=3, num_volumes=1, slices_per_volume=2, shape=(24, 21), num_coils=3,
                center_fraction=0.2)
  return {name: mri_volumes.load_volumes("simulated", processing=p, **kwargs)[0]
          for name, p in (("raw", None), ("off", {"zero_pad_factor": 1.0, "jpeg_quality": 0}),
                          ("zero_pad", {"zero_pad_factor": 2.0}),
                          ("jpeg", {"jpeg_quality": 30}))}


def test_processing_off_is_the_raw_simulation(volumes):
  raw, off = volumes["raw"], volumes["off"]
  np.testing.assert_array_equal(off.kspace, raw.kspace)
  np.testing.assert_array_equal(off.target, raw.target)
  assert off.source == raw.source
  assert raw.source["kspace_origin"]["from_processed_images"] is False
  assert not mri.audit(raw.kspace, maps=raw.maps)["flags"]


def test_zero_padded_volume_is_flagged_and_its_target_is_interpolated(volumes):
  raw, padded = volumes["raw"], volumes["zero_pad"]
  origin = padded.source["kspace_origin"]
  assert origin["from_processed_images"] and origin["processing"] == {"zero_pad_factor": 2.0}
  result = mri.audit(padded.kspace, maps=padded.maps)
  assert result["flags"] == ["zero_padded"]
  # Rows 24 -> 12, columns 21 -> round(10.5) = 10: the larger factor is reported.
  assert result["zero_pad_factor"] == pytest.approx(21 / 10)

  # The reference: RSS of the equally zero-padded NOISELESS k-space, times the scale.
  import jax  # pylint: disable=g-import-not-at-top
  sim = mri.simulate(jax.random.fold_in(jax.random.PRNGKey(3), 0), num_slices=2,
                     shape=(24, 21), num_coils=3)
  np.testing.assert_allclose(sim["kspace"] * np.float32(raw.scale), raw.kspace, rtol=1e-6,
                             atol=1e-7)
  expected = mri_volumes.rss_image(processing.zero_pad_kspace(
      sim["kspace"] - sim["noise"], 2.0)) * padded.scale
  np.testing.assert_allclose(padded.target, expected, rtol=1e-5, atol=1e-7)


def test_jpeg_volume_is_symmetric_only_through_its_maps(volumes):
  jpeg = volumes["jpeg"]
  assert jpeg.source["kspace_origin"]["processing"] == {"jpeg_quality": 30}
  with_maps = mri.audit(jpeg.kspace, maps=jpeg.maps)
  assert with_maps["flags"] == ["conjugate_symmetric"]
  assert with_maps["asymmetry_ratio"] < 1e-10
  # Coil by coil the complex maps hide it: the reason the audit takes maps.
  assert not mri.audit(jpeg.kspace)["conjugate_symmetric"]
  # Target = RSS of the synthesized coil images = the decoded JPEG magnitude.
  np.testing.assert_allclose(jpeg.target, mri_volumes.rss_image(jpeg.kspace), rtol=1e-5,
                             atol=1e-6 * float(jpeg.target.max()))


def test_audit_with_maps_needs_fully_sampled_kspace(volumes):
  raw = volumes["raw"]
  with pytest.raises(ValueError, match="pass mask=None with maps"):
    mri.audit(raw.kspace, mask=np.ones(raw.kspace.shape[-1:]), maps=raw.maps)
  with pytest.raises(ValueError, match="maps must be complex"):
    mri.audit(raw.kspace, maps=raw.maps[:, :1])


@pytest.mark.parametrize("processing_arg,match", [
    ({"zero_pad": 2}, "processing keys"),
    ({"zero_pad_factor": 0.5}, "zero_pad_factor'\\] must be a number >= 1"),
    ({"jpeg_quality": 101}, "jpeg_quality'\\] must be an int"),
    ({"zero_pad_factor": 2.0, "jpeg_quality": 50}, "one data crime at a time"),
])
def test_bad_processing_is_rejected(processing_arg, match):
  with pytest.raises(ValueError, match=match):
    mri_volumes.check_processing(processing_arg)


def test_processing_of_files_is_rejected(tmp_path):
  with pytest.raises(ValueError, match="applies to dataset='simulated' only"):
    mri_volumes.load_volumes(tmp_path, seed=0, center_fraction=0.1,
                             processing={"jpeg_quality": 50})


def _config(arg="smoke"):
  return config_files.load_config(CONFIG, arg)


def test_settings_and_their_recon_configs():
  config = _config(None)
  names = [data_crimes.setting_name(s) for s in data_crimes.settings(config)]
  assert names == ["zero_pad_1", "zero_pad_1.25", "zero_pad_1.5", "zero_pad_2",
                   "jpeg_95", "jpeg_75", "jpeg_50", "jpeg_20"]
  recon = data_crimes.recon_config(config, {"jpeg_quality": 50})
  assert (recon.jpeg_quality, recon.zero_pad_factor) == (50, 1.0)
  assert config.recon.jpeg_quality == 0  # the base config is left as it was
  config.zero_pad_factors = (0.5,)
  with pytest.raises(ValueError, match="zero_pad_factors must hold numbers >= 1"):
    data_crimes.settings(config)
  config.zero_pad_factors, config.jpeg_qualities = (), ()
  with pytest.raises(ValueError, match="both empty"):
    data_crimes.settings(config)


@pytest.mark.slow
def test_smoke_run_shows_the_crime(tmp_path):
  """The command line, smoke sizes: every metric improves with the zero-padding."""
  workdir = str(tmp_path / "crimes")
  out = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "data_crimes.py"),
       f"--config={CONFIG}:smoke", f"--workdir={workdir}"],
      capture_output=True, text=True, timeout=900, cwd=REPO_DIR, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  results = summary["results"]
  assert len(results) == 4 * 4
  assert {r["method"] for r in results} == {"zero_filled", "cg_sense", "cs_wavelet", "model"}
  by = {(r.get("zero_pad_factor"), r.get("jpeg_quality"), r["method"]): r for r in results}
  for method in ("cs_wavelet", "model"):
    raw, padded = by[(1.0, None, method)], by[(2.0, None, method)]
    assert padded["ssim"] > raw["ssim"] and padded["nmse"] < raw["nmse"]
  flags = {s["workdir"]: s["audit_flags"] for s in summary["settings"]}
  assert flags == {"zero_pad_1": [], "zero_pad_2": ["zero_padded"],
                   "jpeg_90": ["conjugate_symmetric"], "jpeg_20": ["conjugate_symmetric"]}
  assert os.path.getsize(os.path.join(workdir, "data_crimes.png")) > 0
