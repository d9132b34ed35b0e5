"""The generative-recon study: sub-run configs, config checks, the prior's training images,
the report; (slow) the smoke study end to end with the interface's keys."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.studies import generative_recon as study

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "generative_recon.py")


def _config(**overrides):
  config = config_files.load_config(CONFIG)
  config.update(overrides)
  return config


def test_one_modl_per_acceleration_on_the_same_anatomy_data():
  runs = study.run_configs(_config())
  assert list(runs) == ["modl_4x", "modl_8x"]
  for name, accel in (("modl_4x", 4.0), ("modl_8x", 8.0)):
    rc = runs[name]
    assert rc.model == "modl" and rc.dataset == "anatomy" and rc.acceleration == accel
  for key in ("shape", "num_coils", "center_fraction", "mask", "seed", "num_volumes",
              "test_volumes", "maps"):
    assert runs["modl_4x"][key] == runs["modl_8x"][key], key
  # 8x needs center_fraction * R < 1.
  assert runs["modl_8x"].center_fraction * 8 < 1


def test_smoke_shrinks_the_runs():
  runs = study.run_configs(config_files.resolve_smoke(_config(smoke=True), study.NAME))
  smoke = config_files.SMOKE["generative_recon"]
  assert tuple(runs["modl_4x"].shape) == smoke["recon"]["shape"]
  assert runs["modl_4x"].smoke_applied


@pytest.mark.parametrize("overrides, message", [
    (dict(accelerations=()), "config.accelerations must be a non-empty tuple"),
    (dict(accelerations=(1.0, 4.0)), "config.accelerations must be a non-empty tuple"),
])
def test_bad_configs_are_refused(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    study.run(_config(**overrides), str(tmp_path))


def test_bad_sampler_and_dataset_settings_are_refused(tmp_path):
  for key, value, message in (("num_samples", 1, "config.sampler.num_samples must be >= 2"),
                              ("method", "langevin", "config.sampler.method must be one of"),
                              ("cg_iters", 0, "config.sampler.cg_iters must be >= 1")):
    config = _config()
    config.sampler[key] = value
    with pytest.raises(ValueError, match=message):
      study.run(config, str(tmp_path))
  config = _config()
  config.sampler.method, config.sampler.zeta = "dps", 0.0
  with pytest.raises(ValueError, match="config.sampler.zeta must be > 0"):
    study.run(config, str(tmp_path))
  config = _config()
  config.recon.dataset = "simulated"
  with pytest.raises(ValueError, match="config.recon.dataset must be 'anatomy'"):
    study.run(config, str(tmp_path))


def test_the_baselines_run_on_the_first_accelerations_modl_config():
  config = _config()
  base = study.baselines_config(config)
  first = study.run_configs(config)["modl_4x"]
  assert base.recon.to_dict() == first.to_dict()
  assert base.lesion_radius == config.lesion_radius and base.seed == config.seed
  from fdl.studies import uncertainty
  runs = uncertainty.run_configs(base)
  assert list(runs) == ["mc_dropout", "ensemble_0", "ensemble_1", "ensemble_2"]
  assert runs["mc_dropout"].modl.dropout == 0.1 and runs["ensemble_2"].init_seed == 2


def test_the_prior_trains_on_the_fully_sampled_training_slices():
  config = config_files.resolve_smoke(_config(smoke=True), study.NAME)
  rc = study.run_configs(config)["modl_4x"]
  images = study.training_images(rc)
  smoke = config_files.SMOKE["generative_recon"]["recon"]
  # 4 volumes: 1 test, 1 validation, 2 training volumes of 2 slices each.
  assert images.shape == (2 * smoke["slices_per_volume"], *smoke["shape"])
  assert images.dtype == np.complex64
  # The coil-combined image's magnitude is the target (sum |S|^2 = 1), up to the
  # synthesized k-space noise.
  from fdl.tasks import reconstruction
  pipeline = reconstruction.make_pipeline(rc)
  ids = np.sort(pipeline.train_order(0))
  batch = pipeline.acquire("train", ids, np.ones((len(ids), *pipeline.mask_shape),
                                                 np.float32))
  error = np.abs(np.abs(images) - batch["target"])
  assert error.mean() < 0.05 * batch["target"].mean(), error.mean()


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
  workdir = str(tmp_path / "generative_recon")
  command = [PYTHON, os.path.join(REPO_DIR, "experiments", "generative_recon.py"),
             "--config", CONFIG, "--workdir", workdir, "--config.smoke=True"]
  proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR,
                        timeout=1200, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  test = summary["test"]
  for tag in ("4x", "8x"):
    for method in ("diffusion_posterior_mean", "modl", "cg_sense", "cs_wavelet",
                   "zero_filled"):
      scores = test[f"{method}_{tag}"]
      assert {"nmse", "psnr", "ssim"} <= set(scores), method
      assert np.isfinite(scores["psnr"]) and -1 <= scores["ssim"] <= 1
    r = summary["error_std_correlation"][f"diffusion_{tag}"]
    assert -1 <= r <= 1
    assert 0 <= summary["calibration"][f"diffusion_{tag}"]["within_1_std"] <= 1
  assert "modl_trained_4x_at_8x" in test
  assert any("diffusion" in m for m in test)
  assert summary["diffusion"]["undersampling"].startswith("none")
  probe = summary["lesion_probe"]
  assert probe["acceleration"] == 4.0 and probe["num_slices"] == summary["num_test_slices"]
  for method in ("diffusion", "mc_dropout", "ensemble"):
    assert np.isfinite(probe[method]["kept_fraction"]), method
    assert probe[method]["std_disc_over_ring"] >= 0, method  # inf where the ring std is 0
  for method in ("mc_dropout_4x", "ensemble_4x"):
    assert -1 <= summary["error_std_correlation"][method] <= 1
  assert summary["sampler"]["method"] == "dds"
  assert {"mc_dropout_mean_4x", "ensemble_mean_4x"} <= set(test)
  for name in ("reconstructions.png", "calibration.png", "prior_samples.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  # A rerun reuses every finished sub-run.
  again = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR,
                         timeout=1200, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("finished, reused") == 4
