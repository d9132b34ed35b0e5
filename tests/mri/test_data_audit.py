"""`fdl.mri.audit`: raw k-space raises no flag (also under-sampled, with its mask);
zero-padded k-space is flagged with its padding factor; k-space of magnitude images
is flagged as conjugate symmetric, with or without noise, on odd sizes too."""

import jax
import numpy as np
import pytest

from fdl import mri


@pytest.fixture(scope="module")
def sim():
  return mri.simulate(jax.random.PRNGKey(0), num_slices=2, shape=(64, 64), num_coils=4,
                      snr_db=30.0)


def _noise(shape, scale, seed=0):
  rng = np.random.default_rng(seed)
  return scale * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))


def test_raw_multicoil_kspace_raises_no_flag(sim):
  result = mri.audit(sim["kspace"])
  assert result["flags"] == [] and not result["zero_padded"]
  assert result["zero_pad_factor"] == 1.0
  assert result["asymmetry_ratio"] > 3 * mri.data_audit.SYMMETRY_RATIO
  assert result["min_border_energy_ratio"] > 1e-3  # the noise floor is there


def test_undersampling_zeros_are_not_padding_when_the_mask_is_given(sim):
  # Unsampled border columns would look like padding: the mask says they were not read.
  mask = np.zeros((1, 1, 1, 64), np.float32)
  mask[..., 10:54:2] = 1
  mask[..., 28:36] = 1
  kspace = sim["kspace"] * mask
  assert mri.audit(kspace, mask)["flags"] == []
  assert mri.audit(kspace)["zero_padded"]  # without it the zeros are evidence


@pytest.mark.parametrize("pad, factor", [((16, 16), 1.5), ((32, 32), 2.0), ((8, 9), 81 / 64)])
def test_zero_padded_kspace_is_flagged_with_its_factor(sim, pad, factor):
  kspace = np.pad(sim["kspace"], ((0, 0), (0, 0), pad, pad))  # noise inside only
  result = mri.audit(kspace)
  assert result["zero_padded"] and "zero_padded" in result["flags"]
  np.testing.assert_allclose(result["zero_pad_factor"], factor, rtol=1e-12)
  assert result["empty_border_lines"] == {"rows": list(pad), "cols": list(pad)}


def test_one_axis_padding_is_flagged(sim):
  kspace = np.pad(sim["kspace"], ((0, 0), (0, 0), (0, 0), (32, 32)))
  result = mri.audit(kspace)
  assert result["zero_padded"] and result["zero_pad_factor"] == 2.0
  assert result["empty_border_lines"]["rows"] == [0, 0]


def test_magnitude_derived_kspace_is_conjugate_symmetric(sim):
  magnitude = np.abs(sim["image"]).astype(np.complex64)
  kspace = np.asarray(mri.fft2c(magnitude))
  result = mri.audit(kspace)
  assert result["conjugate_symmetric"] and result["flags"] == ["conjugate_symmetric"]
  assert result["asymmetry_ratio"] < 1e-10
  # Noise added afterwards, as a simulation from magnitude images would, is not enough
  # to hide it; a global phase is not either.
  noisy = kspace + _noise(kspace.shape, np.abs(kspace).max() * 10 ** (-30 / 20) / 8)
  assert mri.audit(noisy * np.exp(0.7j))["conjugate_symmetric"]
  # The complex image of the same anatomy (smooth phase) is not flagged.
  assert not mri.audit(np.asarray(mri.fft2c(sim["image"])))["conjugate_symmetric"]


def test_odd_sizes_use_the_centered_mirror():
  rng = np.random.default_rng(1)
  real = rng.standard_normal((2, 13, 10)).astype(np.complex64)
  assert mri.audit(np.asarray(mri.fft2c(real)))["conjugate_symmetric"]
  complex_image = real * np.exp(1j * rng.uniform(0, 2 * np.pi, real.shape))
  assert not mri.audit(np.asarray(mri.fft2c(complex_image)))["conjugate_symmetric"]


@pytest.mark.parametrize("kspace, mask, match", [
    (np.ones((4, 4)), None, "kspace must be complex"),
    (np.full((4, 4), np.nan, np.complex64), None, "NaN or Inf"),
    (np.ones((2, 4, 4), np.complex64), np.ones((3, 1, 4)), "does not broadcast"),
])
def test_bad_input_is_named(kspace, mask, match):
  with pytest.raises(ValueError, match=match):
    mri.audit(kspace, mask)
