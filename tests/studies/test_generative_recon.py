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


def test_bad_dps_and_dataset_settings_are_refused(tmp_path):
  config = _config()
  config.dps.num_samples = 1
  with pytest.raises(ValueError, match="config.dps.num_samples must be >= 2"):
    study.run(config, str(tmp_path))
  config = _config()
  config.recon.dataset = "simulated"
  with pytest.raises(ValueError, match="config.recon.dataset must be 'anatomy'"):
    study.run(config, str(tmp_path))


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
  assert summary["lesion_probe"]["acceleration"] == 4.0
  for name in ("reconstructions.png", "calibration.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  # A rerun reuses every finished sub-run.
  again = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR,
                         timeout=1200, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("finished, reused") == 3
