"""Sampling masks: fastMRI semantics, achieved acceleration, determinism, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.mri import masks
from fdl.mri.masks import (equispaced_mask, mask_for_kspace, num_low_frequencies,
                           poisson_mask, random_mask)

LINE_CASES = [(255, 4, 0.08), (320, 4, 0.08), (368, 8, 0.04), (320, 8, 0.04)]


def _keys(n, seed=0):
  return jax.random.split(jax.random.key(seed), n)


def _centre_cols(num_cols, num_low):
  pad = (num_cols - num_low + 1) // 2  # fastMRI MaskFunc.calculate_center_mask
  return np.arange(pad, pad + num_low)


def _fastmri_equispaced(num_cols, acceleration, num_low, offset):
  """NumPy float64 restatement of EquispacedMaskFractionFunc for one offset."""
  adjusted = acceleration * (num_low - num_cols) / (num_low * acceleration - num_cols)
  mask = np.zeros(num_cols)
  mask[_centre_cols(num_cols, num_low)] = 1
  mask[np.around(np.arange(offset, num_cols - 1, adjusted)).astype(np.uint64)] = 1
  return mask, round(adjusted)


def test_num_low_frequencies_rounds_like_python():
  assert num_low_frequencies(320, 0.08) == 26  # 25.6
  assert num_low_frequencies(368, 0.04) == 15  # 14.72
  assert num_low_frequencies(255, 0.08) == 20  # 20.4
  assert num_low_frequencies(250, 0.05) == 12  # 12.5, half to even


@pytest.mark.parametrize("fn", [random_mask, equispaced_mask])
@pytest.mark.parametrize("num_cols,acceleration,center_fraction", LINE_CASES)
def test_line_mask_centre_block_shape_and_values(fn, num_cols, acceleration,
                                                 center_fraction):
  mask = fn(jax.random.key(1), num_cols, acceleration, center_fraction)
  assert mask.shape == (num_cols,) and mask.dtype == jnp.float32
  mask = np.asarray(mask)
  assert set(np.unique(mask)) <= {0.0, 1.0}
  num_low = round(num_cols * center_fraction)
  centre = _centre_cols(num_cols, num_low)
  assert mask[centre].sum() == num_low
  # The block is centred on the DC column num_cols // 2.
  assert centre[0] <= num_cols // 2 <= centre[-1]


@pytest.mark.parametrize("num_cols,acceleration,center_fraction", LINE_CASES)
def test_random_mask_mean_acceleration_over_keys(num_cols, acceleration,
                                                 center_fraction):
  # vmap over keys doubles as a check that the mask is traceable.
  batch = jax.vmap(lambda k: random_mask(k, num_cols, acceleration,
                                         center_fraction))(_keys(200))
  mean_lines = float(batch.sum(1).mean())
  assert mean_lines == pytest.approx(num_cols / acceleration, rel=0.03)
  # Outside the centre every column is sampled, with the fastMRI probability.
  num_low = round(num_cols * center_fraction)
  outside = np.delete(np.asarray(batch), _centre_cols(num_cols, num_low), axis=1)
  prob = (num_cols / acceleration - num_low) / (num_cols - num_low)
  assert outside.mean() == pytest.approx(prob, rel=0.05)


@pytest.mark.parametrize("num_cols,acceleration,center_fraction", LINE_CASES)
def test_equispaced_mask_matches_fastmri_and_count(num_cols, acceleration,
                                                   center_fraction):
  num_low = round(num_cols * center_fraction)
  _, num_offsets = _fastmri_equispaced(num_cols, acceleration, num_low, 0)
  refs = [_fastmri_equispaced(num_cols, acceleration, num_low, o)[0]
          for o in range(num_offsets)]
  batch = np.asarray(jax.vmap(lambda k: equispaced_mask(
      k, num_cols, acceleration, center_fraction))(_keys(64)))
  seen = set()
  for mask in batch:
    matches = [o for o, ref in enumerate(refs) if np.array_equal(mask, ref)]
    assert len(matches) >= 1
    seen.update(matches)
    # Total sampled fraction 1 / acceleration, up to rounding of the lines.
    assert abs(mask.sum() - num_cols / acceleration) <= 2
  assert len(seen) == num_offsets  # every offset is drawn


def test_equispaced_lines_are_equispaced():
  num_cols, acceleration, num_low = 320, 4, 26
  mask = np.asarray(equispaced_mask(jax.random.key(3), num_cols, acceleration, 0.08))
  adjusted = acceleration * (num_low - num_cols) / (num_low * acceleration - num_cols)
  centre = _centre_cols(num_cols, num_low)
  cols = np.flatnonzero(mask)
  for side in (cols[cols < centre[0]], cols[cols > centre[-1]]):
    assert set(np.diff(side)) <= {int(np.floor(adjusted)), int(np.ceil(adjusted))}


@pytest.mark.parametrize("fn", [random_mask, equispaced_mask])
def test_line_masks_deterministic_and_jittable(fn):
  key = jax.random.key(7)
  a = fn(key, 255, 4, 0.08)
  np.testing.assert_array_equal(a, fn(key, 255, 4, 0.08))
  np.testing.assert_array_equal(a, fn(jax.random.PRNGKey(7), 255, 4, 0.08))
  np.testing.assert_array_equal(a, jax.jit(fn, static_argnums=(1, 2, 3))(key, 255, 4, 0.08))
  others = [fn(k, 255, 4, 0.08) for k in _keys(4, seed=8)]
  assert any(not np.array_equal(a, b) for b in others)


@pytest.mark.parametrize("kwargs,match", [
    (dict(num_cols=1), "num_cols"),
    (dict(num_cols=320.0), "num_cols"),
    (dict(acceleration=1), "acceleration"),
    (dict(acceleration=0.5), "acceleration"),
    (dict(center_fraction=0.0), "center_fraction"),
    (dict(center_fraction=1.0), "center_fraction"),
    (dict(acceleration=16, center_fraction=0.08), "acceleration.*unreachable"),
])
@pytest.mark.parametrize("fn", [random_mask, equispaced_mask])
def test_line_mask_bad_inputs(fn, kwargs, match):
  args = dict(key=jax.random.key(0), num_cols=320, acceleration=4, center_fraction=0.08)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    fn(**args)


def test_line_mask_bad_key():
  with pytest.raises(ValueError, match="key"):
    random_mask(jnp.zeros(2, jnp.float32), 320, 4, 0.08)


@pytest.mark.parametrize("shape,acceleration,calib", [
    ((45, 38), 3, (6, 8)), ((40, 56), 5, (7, 6)), ((33, 33), 4, (0, 0))])
def test_poisson_mask_acceleration_calib_and_density(shape, acceleration, calib):
  mask = poisson_mask(jax.random.key(2), shape, acceleration, calib=calib)
  assert mask.shape == shape and mask.dtype == jnp.float32
  mask = np.asarray(mask)
  assert set(np.unique(mask)) <= {0.0, 1.0}
  h, w = shape
  assert h * w / mask.sum() == pytest.approx(acceleration, rel=0.10)
  r0, c0 = (h - calib[0] + 1) // 2, (w - calib[1] + 1) // 2
  assert mask[r0:r0 + calib[0], c0:c0 + calib[1]].all()
  # Variable density: the central third is denser than the rest, and with
  # crop_corner the corners outside the inscribed ellipse stay empty.
  dy = (np.arange(h) - h // 2) / (h / 2)
  dx = (np.arange(w) - w // 2) / (w / 2)
  rho = np.sqrt(dy[:, None] ** 2 + dx[None, :] ** 2)
  assert mask[rho < 1 / 3].mean() > 2 * mask[(rho > 2 / 3) & (rho <= 1)].mean()
  assert mask[rho > 1].sum() == 0


def test_poisson_mask_deterministic_and_key_dependent():
  a = poisson_mask(jax.random.key(5), (32, 30), 4, calib=(6, 6))
  np.testing.assert_array_equal(a, poisson_mask(jax.random.key(5), (32, 30), 4,
                                                calib=(6, 6)))
  b = poisson_mask(jax.random.key(6), (32, 30), 4, calib=(6, 6))
  assert not np.array_equal(a, b)


def test_poisson_mask_without_crop_corner_samples_corners():
  mask = np.asarray(poisson_mask(jax.random.key(0), (32, 32), 3, calib=(4, 4),
                                 crop_corner=False))
  assert mask[:4, :4].sum() + mask[-4:, -4:].sum() > 0
  assert 32 * 32 / mask.sum() == pytest.approx(3, rel=0.10)


@pytest.mark.parametrize("kwargs,match", [
    (dict(calib=(40, 8)), "calib"),
    (dict(calib=(8,)), "calib"),
    (dict(shape=(1, 32)), "shape"),
    (dict(acceleration=1.0), "acceleration"),
    (dict(acceleration=4, calib=(20, 20)), "acceleration.*unreachable"),
    (dict(acceleration=1.1), "acceleration.*unreachable"),  # ellipse is ~79%
    (dict(max_attempts=0), "max_attempts"),
    (dict(tol=0.0), "tol"),
])
def test_poisson_mask_bad_inputs(kwargs, match):
  args = dict(key=jax.random.key(0), shape=(32, 32), acceleration=3, calib=(6, 6))
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    poisson_mask(**args)


def test_poisson_mask_rejects_traced_key():
  with pytest.raises(ValueError, match="key"):
    jax.jit(lambda k: poisson_mask(k, (16, 16), 3, calib=(2, 2)))(jax.random.key(0))


def test_mask_for_kspace_broadcasts_against_kspace():
  kspace = jnp.ones((2, 3, 6, 9), jnp.complex64)
  line = random_mask(jax.random.key(0), 9, 2, 0.25)
  assert (mask_for_kspace(line) * kspace).shape == (2, 3, 6, 9)
  np.testing.assert_array_equal((mask_for_kspace(line) * kspace)[1, 2, 4], line)
  assert mask_for_kspace(jnp.ones((6, 9))).shape == (1, 1, 6, 9)
  with pytest.raises(ValueError, match="mask"):
    mask_for_kspace(jnp.ones((1, 6, 9)))


def test_module_exports():
  assert set(masks.__all__) == {"equispaced_mask", "mask_for_kspace",
                                "num_low_frequencies", "poisson_mask", "random_mask"}
