"""The K2S study: sub-run configs follow the segmentation data, bad accelerations are
refused, the report; (slow) the smoke study end to end with the interface's keys."""

import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.studies import k2s

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "segmentation.py")


def _config(**overrides):
  config = config_files.load_config(CONFIG)
  config.update(overrides)
  return config


def test_subruns_share_the_segmentation_data_settings():
  configs = k2s._configs(_config(), "w")  # pylint: disable=protected-access
  assert list(configs) == ["seg_fully_sampled", "seg_zero_filled_4x", "modl_4x",
                           "seg_zero_filled_8x", "modl_8x", "joint_8x"]
  seg = configs["seg_fully_sampled"]
  assert seg.input == "fully_sampled" and not seg.smoke
  assert configs["seg_zero_filled_8x"].input == "zero_filled"
  assert configs["seg_zero_filled_8x"].acceleration == 8.0
  modl = configs["modl_8x"]
  assert modl.dataset == "anatomy" and modl.model == "modl" and modl.maps == "true"
  assert modl.acceleration == 8.0
  for key in ("shape", "num_coils", "snr_db", "center_fraction", "mask", "seed"):
    assert modl[key] == seg[key], key
  assert tuple(modl.anatomy.test_templates) == tuple(seg.test_templates)
  # (d) starts from (c)'s MoDL at the highest acceleration and (a)'s segmenter, with
  # the MoDL's architecture, on the same data.
  joint = configs["joint_8x"]
  assert joint.input == "kspace" and joint.acceleration == 8.0
  assert joint.joint.init_recon == os.path.join("w", "modl_8x")
  assert joint.joint.init_segmenter == os.path.join("w", "seg_fully_sampled")
  assert joint.joint.recon_kwargs.to_dict() == modl.modl.to_dict()
  assert joint.segmenter.to_dict() == seg.segmenter.to_dict()
  for key in ("shape", "num_coils", "snr_db", "center_fraction", "mask", "seed",
              "train_volumes", "test_templates"):
    assert joint[key] == seg[key], key
  # No joint run without under-sampling.
  assert "joint_1x" not in k2s._configs(_config(accelerations=(1.0,)), "w")  # pylint: disable=protected-access


def test_smoke_shrinks_every_subrun_once():
  configs = k2s._configs(_config(smoke=True), "w")  # pylint: disable=protected-access
  seg, modl = configs["seg_fully_sampled"], configs["modl_4x"]
  assert seg.smoke_applied and modl.smoke_applied
  joint = configs["joint_8x"]
  assert joint.num_epochs == seg.num_epochs
  assert joint.joint.recon_kwargs.to_dict() == configs["modl_8x"].modl.to_dict()
  assert tuple(seg.shape) == config_files.SMOKE["segmentation"]["shape"]
  assert tuple(modl.shape) == tuple(seg.shape)  # MoDL follows the segmentation data


@pytest.mark.parametrize("accelerations", [(), (0.5, 4.0), (8.0, 4.0), (4.0, 4.0)])
def test_bad_accelerations_are_refused(tmp_path, accelerations):
  with pytest.raises(ValueError, match="accelerations must be increasing"):
    k2s.run(_config(accelerations=accelerations), str(tmp_path))


def test_the_task_config_runs_the_task(monkeypatch):
  from fdl.tasks import segmentation
  monkeypatch.setattr(segmentation, "train_and_evaluate", lambda c, d: {"task": d})
  task = config_files.load_config(CONFIG, "task")
  assert k2s.run_or_task(task, "w") == {"task": "w"}


def test_config_arguments():
  assert config_files.load_config(CONFIG).study == "k2s"
  assert config_files.load_config(CONFIG, "smoke").smoke
  task = config_files.load_config(CONFIG, "task,smoke")
  assert "study" not in task and task.smoke_applied
  assert tuple(task.shape) == config_files.SMOKE["segmentation"]["shape"]
  lesions = config_files.load_config(CONFIG, "lesions")
  assert lesions.study == "k2s" and lesions.seg.label_set == "lesions"
  assert config_files.load_config(CONFIG, "task,lesions").label_set == "lesions"
  with pytest.raises(ValueError, match="unknown config arguments"):
    config_files.load_config(CONFIG, "k2s")


@pytest.mark.slow
def test_smoke_study_end_to_end(tmp_path):
  workdir = str(tmp_path / "k2s")
  command = [PYTHON, os.path.join(REPO_DIR, "experiments", "segmentation.py"),
             "--config", CONFIG, "--workdir", workdir, "--config.smoke=True"]
  proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR,
                        timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "SSIM vs slice Dice" in proc.stdout
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  assert set(summary["test"]) == {"fully_sampled", "zero_filled", "reconstructed", "joint"}
  for method in ("fully_sampled", "zero_filled", "reconstructed", "joint"):
    scores = summary["test"][method]
    assert set(scores["dice"]) == {"CSF", "GM", "WM"}
    assert 0 <= scores["mean_dice"] <= 1
  assert list(summary["by_acceleration"]) == ["1x", "4x", "8x"]
  assert summary["test_acceleration"] == 8.0
  assert summary["ssim_vs_dice"]["num_slices"] > 0
  for name in ("dice_vs_acceleration.png", "ssim_vs_dice.png", "segmentations.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  # A rerun reuses every finished sub-run.
  again = subprocess.run(command, capture_output=True, text=True, cwd=REPO_DIR,
                         timeout=900, check=False)
  assert again.returncode == 0, again.stderr[-3000:]
  assert again.stdout.count("finished, reused") == 6
  assert "joint (d, end to end from k-space) at 8x" in proc.stdout
  assert set(summary["by_acceleration"]["8x"]) >= {"joint", "ssim"}
  assert "joint_beats_zero_filled_at_8x" in summary["goal"]
