"""SSDU splits, K-band bands and weights, their losses, and the self-supervised runs."""

import json
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import REPO_DIR
from fdl import config_files
from fdl.mri import self_supervised as ss

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "self_supervised.py")


def _random_mask(seed, shape, density=0.5):
  rng = np.random.default_rng(seed)
  return (rng.random(shape) < density).astype(np.float32)


def _centre(n, num):
  start = (n - num + 1) // 2
  return slice(start, start + num)


# --- SSDU split -------------------------------------------------------------------


@pytest.mark.parametrize("shape,block,selection", [
    ((3, 1, 1, 17), 4, "gaussian"),        # line masks, odd W
    ((3, 1, 1, 17), 3, "uniform"),         # line masks, odd block
    ((2, 1, 13, 11), (3, 2), "gaussian"),  # 2-D masks, odd H and W
])
def test_ssdu_split_is_disjoint_covering_sized_and_keeps_the_centre(shape, block,
                                                                   selection):
  omega = _random_mask(0, shape)
  rows, cols = shape[-2:]
  block_rows, block_cols = (1, block) if isinstance(block, int) else block
  centre = np.zeros((rows, cols), bool)
  centre[_centre(rows, 1 if rows == 1 else block_rows), _centre(cols, block_cols)] = True
  omega[..., centre] = 1.0  # the centre is acquired, as in practice
  rho = 0.4
  theta, lam = (np.asarray(m) for m in ss.ssdu_split(
      jax.random.key(3), omega, rho=rho, selection=selection, center_block=block))
  assert theta.shape == lam.shape == omega.shape and theta.dtype == np.float32
  np.testing.assert_array_equal(theta * lam, 0)              # disjoint
  np.testing.assert_array_equal(theta + lam, omega)          # covering
  acquired = omega.reshape(-1, rows, cols).sum((1, 2))
  sizes = lam.reshape(-1, rows, cols).sum((1, 2))
  assert np.all(np.abs(sizes - rho * acquired) <= 1.0), (sizes, rho * acquired)
  assert np.all(theta[..., centre] == 1) and np.all(lam[..., centre] == 0)


def test_ssdu_split_is_deterministic_per_key_and_jittable():
  omega = _random_mask(1, (3, 1, 1, 17))  # the shape of the first case above: no recompile
  split = lambda key: ss.ssdu_split(key, omega, rho=0.4)  # noqa: E731
  first, again = split(jax.random.key(7)), split(jax.random.key(7))
  other = split(jax.random.key(8))
  jitted = jax.jit(split)(jax.random.key(7))
  for a, b, c in zip(first, again, jitted):
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
  assert not np.array_equal(first[1], other[1])
  # Each example has its own draw: identical masks, different splits.
  same = np.ones((3, 1, 1, 17), np.float32)
  lam = np.asarray(ss.ssdu_split(jax.random.key(0), same, rho=0.4)[1])
  assert not np.array_equal(lam[0], lam[1])


def test_gaussian_selection_draws_central_lines_more_often_than_uniform():
  full = np.ones((3, 1, 1, 17), np.float32)  # the shape above: compiled once
  distance = np.abs(np.arange(17) - 8)
  mean_distance = {}
  for selection in ("gaussian", "uniform"):
    lam = np.concatenate([np.asarray(ss.ssdu_split(
        jax.random.key(seed), full, selection=selection, center_block=0)[1])
                          for seed in range(100)])
    mean_distance[selection] = float((lam[:, 0, 0] * distance).sum() / lam.sum())
  # Uniform: the mean of |k - 8| over the 17 lines, 72 / 17 = 4.24; Gaussian
  # (sigma 17 / 4): closer to the centre.
  assert abs(mean_distance["uniform"] - 72 / 17) < 0.2
  assert mean_distance["gaussian"] < 3.7


def test_ssdu_split_rejects_bad_arguments():
  omega = np.ones((1, 1, 1, 8), np.float32)
  with pytest.raises(ValueError, match="rho"):
    ss.ssdu_split(jax.random.key(0), omega, rho=1.0)
  with pytest.raises(ValueError, match="selection"):
    ss.ssdu_split(jax.random.key(0), omega, selection="poisson")
  with pytest.raises(ValueError, match="mask"):
    ss.ssdu_split(jax.random.key(0), omega.astype(np.complex64))


# --- SSDU loss --------------------------------------------------------------------


def _complex(seed, shape):
  rng = np.random.default_rng(seed)
  return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


def test_ssdu_loss_is_zero_for_a_perfect_output_and_matches_numpy():
  kspace = _complex(0, (2, 3, 6, 8))
  lam = _random_mask(1, (2, 1, 1, 8))
  lam[:, ..., 0] = 1.0
  perfect = np.where(lam > 0, kspace, _complex(2, kspace.shape))  # off Lambda: anything
  np.testing.assert_allclose(np.asarray(ss.ssdu_loss(perfect, kspace, lam)), 0, atol=1e-7)
  pred = _complex(3, kspace.shape)
  u = (lam * kspace).astype(np.complex128)
  r = u - lam * pred.astype(np.complex128)
  want = [np.linalg.norm(r[b]) / np.linalg.norm(u[b])
          + np.abs(r[b]).sum() / np.abs(u[b]).sum() for b in range(2)]
  np.testing.assert_allclose(np.asarray(ss.ssdu_loss(pred, kspace, lam)), want, rtol=1e-5)
  grad = jax.grad(lambda p: ss.ssdu_loss(p, kspace, lam).sum())(jnp.asarray(perfect))
  assert np.all(np.isfinite(np.asarray(grad)))  # the perfect fit has a finite gradient


# --- K-band -----------------------------------------------------------------------


def _coverage_reference(shape, width, orientations):
  """P(k in band) by the formula, point by point in float64."""
  height, cols = shape
  half = width / 2
  out = np.zeros(shape)
  for i in range(height):
    for j in range(cols):
      kx, ky = j - cols // 2, i - height // 2
      if orientations == "cartesian":
        out[i, j] = 0.5 * (abs(ky) <= half) + 0.5 * (abs(kx) <= half)
      else:
        r = math.hypot(kx, ky)
        out[i, j] = 1.0 if r <= half else 2 / math.pi * math.asin(half / r)
  return out


@pytest.mark.parametrize("orientations", ["uniform", "cartesian"])
@pytest.mark.parametrize("shape,width", [((9, 7), 2.5), ((10, 12), 3.0)])
def test_kband_weights_match_a_float64_reference(orientations, shape, width):
  coverage = _coverage_reference(shape, width, orientations)
  want = np.where(coverage > 0, 1 / np.where(coverage > 0, coverage, 1), 0)
  got = ss.kband_loss_weights(shape, width, orientations)
  assert got.shape == shape and got.dtype == np.float32
  np.testing.assert_allclose(got, want, rtol=1e-3)  # the edge slack is 1e-3 samples
  if orientations == "uniform":
    assert np.all(got >= 1)  # every location is in some band
  else:
    assert np.all(got[np.abs(np.arange(shape[0]) - shape[0] // 2) > width / 2][
        :, np.abs(np.arange(shape[1]) - shape[1] // 2) > width / 2] == 0)


def test_band_masks_cover_k_space_with_the_stated_probability():
  shape, width, num = (11, 9), 3.0, 720
  angles = (np.arange(num) + 0.5) * np.pi / num  # a quadrature of U[0, pi)
  bands = np.asarray(ss.band_masks(angles, shape, width))
  assert bands.shape == (num, 1, *shape)
  # Each location is in the band for an arc of angles; a grid of N angles gets that
  # arc's length right within 2 / N.
  np.testing.assert_allclose(bands.mean(0)[0], ss.band_coverage(shape, width), atol=2 / num)
  horizontal, vertical = np.asarray(ss.band_masks(np.array([0.0, np.pi / 2]), shape, width))
  np.testing.assert_array_equal(horizontal[0].any(1), np.abs(np.arange(11) - 5) <= 1.5)
  np.testing.assert_array_equal(vertical[0].any(0), np.abs(np.arange(9) - 4) <= 1.5)
  assert horizontal[0].all(1).sum() == 3 and vertical[0].all(0).sum() == 3


def test_weighted_band_loss_in_expectation_is_the_full_loss():
  shape, width = (10, 9), 3.0
  pred, full = _complex(0, (1, 2, *shape)), _complex(1, (1, 2, *shape))
  full_l1 = np.abs(pred - full).mean()

  def band_losses(angles, orientations, weighted=True):
    """The band loss of `pred` for every angle, [len(angles)]."""
    bands = np.asarray(ss.band_masks(np.asarray(angles), shape, width))
    weights = ss.kband_loss_weights(shape, width, orientations) if weighted else 1.0
    many = np.broadcast_to(pred, (len(angles), *pred.shape[1:]))
    return np.asarray(ss.kband_loss(many, full * bands, bands * weights))

  # Cartesian: exact enumeration of the two orientations; equal on the covered cross.
  cross = ss.band_coverage(shape, width, "cartesian") > 0
  covered_l1 = (np.abs(pred - full) * cross).sum() / pred.size
  expected = band_losses([0.0, np.pi / 2], "cartesian").mean()
  np.testing.assert_allclose(expected, covered_l1, rtol=1e-5)
  # Uniform angles: a 720-point quadrature of the expectation; every point is covered.
  angles = (np.arange(720) + 0.5) * np.pi / 720
  losses = band_losses(angles, "uniform")
  np.testing.assert_allclose(losses.mean(), full_l1, rtol=0.01)
  # Without the weights the band loss underestimates the periphery: biased.
  assert band_losses(angles, "uniform", weighted=False).mean() < 0.7 * full_l1


def test_kband_loss_matches_numpy_and_checks_norm():
  pred, band_kspace = _complex(4, (2, 3, 5, 6)), _complex(5, (2, 3, 5, 6))
  weight = _random_mask(6, (2, 1, 5, 6)) * 1.7
  r = np.abs(pred.astype(np.complex128) - band_kspace)
  want_l1 = (weight * r).sum((1, 2, 3)) / (3 * 5 * 6)
  want_l2 = (weight * r ** 2).sum((1, 2, 3)) / (3 * 5 * 6)
  np.testing.assert_allclose(np.asarray(ss.kband_loss(pred, band_kspace, weight)), want_l1,
                             rtol=1e-5)
  np.testing.assert_allclose(
      np.asarray(ss.kband_loss(pred, band_kspace, weight, norm="l2")), want_l2, rtol=1e-5)
  with pytest.raises(ValueError, match="norm"):
    ss.kband_loss(pred, band_kspace, weight, norm="l3")


def test_random_band_angles_follow_their_law():
  uniform = np.asarray(ss.random_band_angles(jax.random.key(0), 2000, "uniform"))
  assert uniform.min() >= 0 and uniform.max() < np.pi and abs(uniform.mean() - np.pi / 2) < 0.1
  cartesian = np.asarray(ss.random_band_angles(jax.random.key(0), 2000, "cartesian"))
  assert set(np.unique(cartesian)) == {0.0, np.float32(np.pi / 2)}
  assert abs((cartesian > 0).mean() - 0.5) < 0.05
  with pytest.raises(ValueError, match="orientations"):
    ss.random_band_angles(jax.random.key(0), 2, "radial")


# --- End to end (slow) ------------------------------------------------------------


def _config(**overrides):
  config = config_files.load_config(CONFIG, "smoke")
  config.update(overrides)
  return config


@pytest.mark.slow
def test_self_supervised_batches_carry_no_reference_and_keep_one_acquisition():
  from fdl.tasks import reconstruction, supervision  # pylint: disable=g-import-not-at-top
  config = _config()
  pipeline = reconstruction.make_pipeline(config)
  size = config.batch_size
  train, val = supervision.ssdu_data(pipeline, config.ssdu, config.seed)
  omegas, lambdas = {}, {}
  for epoch in (0, 1):
    order = pipeline.train_order(epoch)
    for step, batch in enumerate(train(epoch)):
      assert "target" not in batch
      np.testing.assert_array_equal(batch["mask"] * batch["loss_mask"], 0)
      for row, slice_id in enumerate(order[step * size:(step + 1) * size]):
        omegas.setdefault(slice_id, []).append(batch["mask"][row] + batch["loss_mask"][row])
        lambdas.setdefault(slice_id, []).append(batch["loss_mask"][row])
  # One acquisition per slice for the whole run; its split is drawn again each epoch.
  for slice_id, (first, second) in omegas.items():
    np.testing.assert_array_equal(first, second)
  assert any(not np.array_equal(*pair) for pair in lambdas.values())
  assert "target" not in next(iter(val()))
  train, val = supervision.kband_data(pipeline, config.kband, config.seed)
  for batch in (next(iter(train(0))), next(iter(val()))):
    assert "target" not in batch
    outside = ~np.broadcast_to(batch["loss_weight"] != 0, batch["kspace"].shape)
    # Input and loss data lie inside the band.
    assert np.all(batch["kspace"][outside] == 0) and np.all(batch["loss_kspace"][outside] == 0)


@pytest.mark.slow
def test_comparison_smoke_run(tmp_path):
  from fdl.studies import self_supervised  # pylint: disable=g-import-not-at-top
  summary = self_supervised.compare_supervision(_config(), str(tmp_path))
  methods = [r["method"] for r in summary["results"]]
  assert methods == ["zero_filled", "cg_sense", "cs_wavelet", "supervised", "ssdu", "kband"]
  for r in summary["results"]:
    assert np.isfinite([r["nmse"], r["psnr"], r["ssim"]]).all()
  assert summary["classical_scores_agree_across_runs"]
  assert summary["runs"]["ssdu"]["model_selection"].startswith("val/loss")
  for name in ("summary.json", "table.txt", "reconstructions.png"):
    assert os.path.getsize(tmp_path / name) > 0
  with open(tmp_path / "ssdu" / "summary.json", encoding="utf-8") as f:
    assert json.load(f)["supervision"] == "ssdu"
