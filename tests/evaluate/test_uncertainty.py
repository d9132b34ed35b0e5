"""MC dropout and ensembles against float64 references, the error-std correlation and
calibration on constructed data, the lesion insertion's k-space consistency, the lesion
probe on constructed reconstructions, and (slow) the experiment end to end."""

import json
import math
import os
import subprocess

import jax
import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl.models import MoDL, ReconUNet, reconstruct
from fdl.mri.phantoms import random_phantom
from fdl.evaluate import uncertainty as unc

SHAPE = (16, 16)
NUM_SAMPLES = 3


def _ifft2c(k):
  axes = (-2, -1)
  return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=axes), axes=axes,
                                      norm="ortho"), axes=axes)


def _fft2c(x):
  axes = (-2, -1)
  return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=axes), axes=axes,
                                     norm="ortho"), axes=axes)


@pytest.fixture(scope="module")
def tiny():
  """Three noise-free 16 x 16 slices, 2 coils, a 2x line mask, a tiny dropout U-Net.

  Built in NumPy, and the parameters drawn from their shapes (`jax.eval_shape`), so
  nothing is compiled here.
  """
  image = np.stack([random_phantom(seed, SHAPE) for seed in range(3)])
  y, x = np.mgrid[-1:1:16j, -1:1:16j]
  maps = np.stack([np.exp(-((x + 0.6) ** 2 + y ** 2)) * np.exp(0.5j * x),
                   np.exp(-((x - 0.6) ** 2 + y ** 2)) * np.exp(-0.3j * y)])
  maps = maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=0))
  maps = np.broadcast_to(maps, (3, *maps.shape)).astype(np.complex64)
  kspace = _fft2c(maps * image[:, None]).astype(np.complex64)
  sim = {"image": image, "maps": maps, "kspace": kspace,
         "target": np.abs(image).astype(np.float32)}
  mask = np.zeros((1, 1, 1, SHAPE[1]), np.float32)
  mask[..., ::2] = 1
  mask[..., 6:10] = 1
  model = ReconUNet(base_channels=2, num_pools=1, dropout=0.3)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), kspace[:1], mask,
                                             maps[:1], train=False))
  rng = np.random.default_rng(3)
  variables = jax.tree.map(
      lambda s: (rng.standard_normal(s.shape) / math.sqrt(math.prod(s.shape[:-1])))
      .astype(np.float32), shapes)
  return {"sim": sim, "mask": mask, "model": model, "variables": variables,
          "kspace": kspace * mask}


@pytest.fixture(scope="module")
def mc_result(tiny):
  # batch_size 2 over 3 slices: a padded second chunk, which must not matter.
  return unc.mc_dropout(tiny["model"], tiny["variables"], tiny["kspace"], tiny["mask"],
                        tiny["sim"]["maps"], key=jax.random.key(7),
                        num_samples=NUM_SAMPLES, batch_size=2)


def test_mc_dropout_matches_a_float64_reference_of_the_documented_draws(tiny, mc_result):
  model, variables, maps = tiny["model"], tiny["variables"], tiny["sim"]["maps"]
  apply = jax.jit(lambda v, k, m, s, key: model.apply(v, k, m, s, train=True,
                                                      rngs={"dropout": key}))
  key = jax.random.key(7)
  draws = np.stack([
      np.stack([np.asarray(apply(variables, tiny["kspace"][s:s + 1], tiny["mask"],
                                 maps[s:s + 1],
                                 jax.random.fold_in(jax.random.fold_in(key, s), t)))[0]
                for s in range(3)])
      for t in range(NUM_SAMPLES)]).astype(np.float64)
  mean, std = mc_result
  assert mean.shape == std.shape == (3, *SHAPE)
  assert mean.dtype == std.dtype == np.float32
  scale = np.abs(draws).max()
  np.testing.assert_allclose(mean, draws.mean(0), rtol=0, atol=1e-5 * scale)
  np.testing.assert_allclose(std, draws.std(0, ddof=1), rtol=0, atol=1e-5 * scale)
  assert std.mean() > 1e-3 * scale  # dropout 0.3 does spread the draws


def test_mc_dropout_without_dropout_has_zero_std_and_the_plain_mean(tiny):
  model = ReconUNet(base_channels=2, num_pools=1, dropout=0.0)  # same parameters
  mean, std = unc.mc_dropout(model, tiny["variables"], tiny["kspace"], tiny["mask"],
                             tiny["sim"]["maps"], key=jax.random.key(0), num_samples=3)
  assert np.all(std == 0)
  plain = reconstruct(model, tiny["variables"], tiny["kspace"], tiny["mask"],
                      tiny["sim"]["maps"])
  np.testing.assert_allclose(mean, plain, rtol=1e-5, atol=1e-6 * np.abs(plain).max())


def test_ensemble_of_identical_members_has_zero_std(tiny):
  model = ReconUNet(base_channels=2, num_pools=1, dropout=0.0)
  members = [(model, tiny["variables"])] * 3
  mean, std = unc.ensemble(members, tiny["kspace"], tiny["mask"], tiny["sim"]["maps"])
  plain = reconstruct(model, tiny["variables"], tiny["kspace"], tiny["mask"],
                      tiny["sim"]["maps"])
  assert np.all(std == 0)
  np.testing.assert_array_equal(mean, plain)


def test_ensemble_mean_and_std_match_numpy_over_members(tiny):
  model = ReconUNet(base_channels=2, num_pools=1, dropout=0.0)
  members = [(model, jax.tree.map(lambda p, f=f: p * f, tiny["variables"]))
             for f in (1.0, 0.7, 1.3)]
  outputs = np.stack([reconstruct(m, v, tiny["kspace"], tiny["mask"], tiny["sim"]["maps"])
                      for m, v in members]).astype(np.float64)
  for ddof in (0, 1):
    mean, std = unc.ensemble(members, tiny["kspace"], tiny["mask"], tiny["sim"]["maps"],
                             ddof=ddof)
    np.testing.assert_allclose(mean, outputs.mean(0), rtol=1e-6)
    np.testing.assert_allclose(std, outputs.std(0, ddof=ddof), rtol=1e-5, atol=1e-7)
  assert std.mean() > 0


def test_estimators_reject_bad_arguments(tiny):
  args = (tiny["model"], tiny["variables"], tiny["kspace"], tiny["mask"],
          tiny["sim"]["maps"])
  with pytest.raises(ValueError, match="num_samples must be an int >= 2"):
    unc.mc_dropout(*args, key=jax.random.key(0), num_samples=1)
  with pytest.raises(ValueError, match="batch_stats"):
    unc.mc_dropout(*args[:1], {**tiny["variables"], "batch_stats": {}}, *args[2:],
                   key=jax.random.key(0), num_samples=2)
  with pytest.raises(ValueError, match=r"kspace must be complex64 \[slices, coils, H, W\]"):
    unc.mc_dropout(*args[:2], tiny["kspace"][0], *args[3:], key=jax.random.key(0),
                   num_samples=2)
  with pytest.raises(ValueError, match="maps are required"):
    unc.mc_dropout(*args[:4], None, key=jax.random.key(0), num_samples=2)
  with pytest.raises(ValueError, match=r"len\(members\) must be an int >= 2"):
    unc.ensemble([args[:2]], *args[2:])


def test_modl_dropout_is_off_by_default_and_spreads_draws_when_on(tiny):
  args = (tiny["kspace"][:1], tiny["mask"], tiny["sim"]["maps"][:1])
  plain, dropped = MoDL(num_iters=1, cg_iters=1, depth=2, width=4), MoDL(
      num_iters=1, cg_iters=1, depth=2, width=4, dropout=0.5)
  shapes = [jax.eval_shape(lambda m=m: m.init(jax.random.key(0), *args, train=False))
            for m in (plain, dropped)]
  assert jax.tree.structure(shapes[0]) == jax.tree.structure(shapes[1])
  assert jax.tree.leaves(shapes[0]) == jax.tree.leaves(shapes[1])
  rng = np.random.default_rng(4)
  variables = jax.tree.map(lambda s: 0.3 * rng.standard_normal(s.shape, np.float32),
                           shapes[0])

  @jax.jit
  def outputs(variables):  # one compilation for every variant
    keys = [jax.random.key(i) for i in range(2)]
    return (plain.apply(variables, *args, train=False),
            # rate 0: train=True is the same function and needs no dropout RNG.
            plain.apply(variables, *args, train=True),
            dropped.apply(variables, *args, train=False),
            *[dropped.apply(variables, *args, train=True, rngs={"dropout": k})
              for k in keys])

  eval_out, train_out, dropped_eval, *draws = (np.asarray(x) for x in outputs(variables))
  np.testing.assert_array_equal(train_out, eval_out)
  np.testing.assert_array_equal(dropped_eval, eval_out)
  assert not np.allclose(draws[0], draws[1])


def test_error_std_correlation_is_pearson_over_the_object():
  rng = np.random.default_rng(0)
  target = rng.uniform(size=(2, 20, 24))
  std = rng.uniform(0.01, 0.2, size=target.shape)
  mean = target + std * rng.standard_normal(target.shape)
  inside = rng.uniform(size=target.shape) < 0.6
  got = unc.error_std_correlation(mean, std, target, inside)
  want = np.corrcoef(np.abs(mean - target)[inside], std[inside])[0, 1]
  assert got == pytest.approx(want, rel=1e-12)
  assert got > 0.3  # errors drawn with that std do follow it
  assert math.isnan(unc.error_std_correlation(mean, np.ones_like(std), target, inside))
  with pytest.raises(ValueError, match="object_mask selects no pixel"):
    unc.error_std_correlation(mean, std, target, np.zeros_like(inside))


def test_calibration_of_gaussian_errors():
  rng = np.random.default_rng(1)
  shape = (4, 128, 128)
  sigma = np.exp(rng.uniform(np.log(0.01), np.log(0.3), size=shape))
  target = rng.uniform(size=shape)
  mean = target + sigma * rng.standard_normal(shape)
  inside = np.ones(shape, bool)
  cal = unc.calibration(mean, sigma, target, inside, num_bins=8)
  assert cal["num_pixels"] == sigma.size
  assert cal["within_1_std"] == pytest.approx(0.6827, abs=0.006)
  assert cal["within_2_std"] == pytest.approx(0.9545, abs=0.003)
  assert cal["rmse_over_rms_std"] == pytest.approx(1.0, abs=0.02)
  assert [b["count"] for b in cal["bins"]] == [sigma.size // 8] * 8
  lows = [b["std_low"] for b in cal["bins"]]
  assert lows == sorted(lows)
  for b in cal["bins"]:  # E|e| = sigma sqrt(2/pi), bin by bin
    assert b["mean_abs_error"] == pytest.approx(b["expected_mean_abs_error"], rel=0.03)
  np.testing.assert_allclose(cal["coverage"]["observed"], cal["coverage"]["gaussian"],
                             atol=0.006)
  # A std half the true one: |e| <= std for erf(0.5 / sqrt 2) = 38.3 % only.
  half = unc.calibration(mean, sigma / 2, target, inside, num_bins=8)
  assert half["within_1_std"] == pytest.approx(0.3829, abs=0.006)
  assert half["rmse_over_rms_std"] == pytest.approx(2.0, abs=0.04)


def test_object_region_fills_signal_voids():
  target = np.zeros((12, 12))
  target[2:10, 2:10] = 1.0
  target[5:7, 5:7] = 0.0  # a void inside the object
  region = unc.object_region(target, 0.05)
  assert region[2:10, 2:10].all() and region.sum() == 64


@pytest.fixture(scope="module")
def lesioned(tiny):
  sim = tiny["sim"]
  inside = unc.object_region(sim["target"])
  centre = unc.lesion_center(inside[0], 2.0, margin=1.0, prefer=(0.5, 0.5))
  disc = unc.disc_mask(SHAPE, centre, 2.0)
  value = 2.0 * float(sim["target"].max())
  kspace, target = unc.insert_lesion(sim["kspace"], sim["maps"], sim["target"], disc,
                                     value)
  return {"disc": disc, "value": value, "kspace": kspace, "target": target,
          "inside": inside, "centre": centre}


def test_lesion_changes_the_reference_inside_the_disc_only(tiny, lesioned):
  sim, disc = tiny["sim"], lesioned["disc"]
  assert lesioned["inside"][0][disc].all()
  assert disc.sum() == 13  # radius 2: the 13 pixel centres within 2
  target = lesioned["target"]
  assert target.dtype == np.float32 and lesioned["kspace"].dtype == np.complex64
  np.testing.assert_array_equal(target[:, ~disc], sim["target"][:, ~disc])
  np.testing.assert_allclose(target[:, disc], lesioned["value"], rtol=1e-6)
  # The k-space change is a coil image change inside the disc only.
  change = _ifft2c(lesioned["kspace"].astype(np.complex128) - sim["kspace"])
  assert np.abs(change[..., ~disc]).max() < 1e-5 * lesioned["value"]
  assert np.abs(change[..., disc]).max() > 0.1 * lesioned["value"]


def test_lesioned_kspace_is_consistent_through_the_coil_maps(tiny, lesioned):
  sim, disc = tiny["sim"], lesioned["disc"]
  image = sim["image"].astype(np.complex128)
  # The object with the lesion: magnitude `value` and the object's mean phase there.
  theta = np.angle(np.sum(np.where(disc, image, 0), axis=(1, 2), keepdims=True))
  want = np.where(disc, lesioned["value"] * np.exp(1j * theta), image)
  coil_images = _ifft2c(lesioned["kspace"].astype(np.complex128))
  maps = sim["maps"].astype(np.complex128)
  covered = np.abs(maps) > 0.05
  got = np.where(covered, coil_images / np.where(covered, maps, 1), 0)
  expected = np.broadcast_to(want[:, None], got.shape)
  np.testing.assert_allclose(got[covered], expected[covered], rtol=0,
                             atol=2e-5 * lesioned["value"])
  # And the SENSE combination's magnitude is the new reference.
  combined = np.abs(np.sum(np.conj(maps) * coil_images, axis=1))
  np.testing.assert_allclose(combined, lesioned["target"], rtol=0,
                             atol=1e-5 * lesioned["value"])


def test_lesion_probe_on_constructed_reconstructions():
  shape = (2, 32, 32)
  rng = np.random.default_rng(2)
  disc, ring = unc.lesion_rings(shape[1:], (12, 14), 3.0, gap=1.0)
  reference = rng.uniform(0.3, 0.5, size=shape)
  bump = 1.0 * disc
  recon = reference + 0.01 * rng.standard_normal(shape)
  std = np.full(shape, 0.02)
  # Half the lesion kept, and a ghost copy at half the strength 16 columns away.
  recon_lesion = recon + 0.5 * bump + 0.25 * np.roll(bump, 16, axis=-1)
  std_lesion = std + 0.06 * disc
  out = unc.lesion_probe(reference=reference, reference_lesion=reference + bump,
                         recon=recon, recon_lesion=recon_lesion, std=std,
                         std_lesion=std_lesion, disc=disc, ring=ring)
  assert out["reference_contrast"] == pytest.approx(1.0)
  assert out["kept_fraction"] == pytest.approx(0.5)
  assert out["spill"] == pytest.approx(0.25)
  assert out["std_disc"] == pytest.approx(0.08)
  assert out["std_ring"] == pytest.approx(0.02)
  assert out["std_disc_over_ring"] == pytest.approx(4.0)
  assert out["std_disc_without_lesion"] == pytest.approx(0.02)
  assert out["lesion_error"] == pytest.approx(0.5, abs=0.02)
  assert len(out["per_slice"]["kept_fraction"]) == 2
  # A reconstruction that ignores the lesion keeps none of it and spills nothing.
  gone = unc.lesion_probe(reference=reference, reference_lesion=reference + bump,
                          recon=recon, recon_lesion=recon, std=std, std_lesion=std,
                          disc=disc, ring=ring)
  assert gone["kept_fraction"] == 0 and gone["spill"] == 0


def test_lesion_center_needs_room_inside_the_object():
  inside = unc.disc_mask((32, 32), (16, 16), 8)
  row, col = unc.lesion_center(inside, 3.0, margin=2.0, prefer=(0.0, 1.0))
  assert unc.disc_mask((32, 32), (row, col), 5.0)[~inside].sum() == 0
  with pytest.raises(ValueError, match="use a smaller lesion"):
    unc.lesion_center(inside, 6.0, margin=3.0)


@pytest.mark.slow
def test_experiment_smoke_end_to_end(tmp_path):
  workdir = str(tmp_path / "uncertainty")
  result = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "uncertainty.py"), "--config",
       os.path.join(REPO_DIR, "experiments", "configs", "uncertainty.py"),
       "--config.smoke=True", "--workdir", workdir], capture_output=True, text=True, timeout=900,
      cwd=REPO_DIR, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  for name in ("summary.json", "calibration.png", "uncertainty_maps.png",
               "lesion_probe.png", "mc_dropout/summary.json", "ensemble_1/summary.json"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  for method in ("mc_dropout", "ensemble"):
    assert -1 <= summary["error_std_correlation"][method] <= 1
    cal = summary["calibration"][method]
    assert 0 <= cal["within_1_std"] <= cal["within_2_std"] <= 1
    assert sum(b["count"] for b in cal["bins"]) == summary["num_object_pixels"]
    probe = summary["lesion_probe"][method]
    assert np.isfinite(probe["kept_fraction"]) and probe["std_disc"] >= 0
    assert probe["reference_contrast"] > 0  # a bright lesion
  assert summary["num_test_slices"] == 2
  assert summary["ensemble"]["init_seeds"] == [0, 1]
  assert set(summary["test"]) >= {"dropout_model", "mc_dropout_mean", "ensemble_mean"}
  assert '"error_std_correlation"' in result.stdout
