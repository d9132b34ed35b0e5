"""The non-linearity experiment: an MLP separates XOR, a linear model cannot."""

import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO_DIR
from fdl.demos import nonlinearity

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "nonlinearity.py")


def _config(**overrides):
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("nl_config", CONFIG)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config()
  config.update(overrides)
  return config


def test_mlp_separates_xor_and_linear_does_not(tmp_path):
  config = _config(dataset="xor", num_points=400, noise=0.3, num_epochs=40,
                   batch_size=40, early_stopping_patience=40, progress=False)
  config.mlp.hidden = (16,)
  summary = nonlinearity.run(config, str(tmp_path))
  # A line through XOR's four blobs gets at most ~3/4 right; an MLP nearly all.
  assert summary["linear_accuracy"] < 0.8
  assert summary["mlp_accuracy"] > 0.9
  assert summary["split_sizes"] == {"train": 240, "val": 80, "test": 80}
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk["mlp_accuracy"] == pytest.approx(summary["mlp_accuracy"])
  assert (tmp_path / "decision_boundaries.png").stat().st_size > 10_000
  assert (tmp_path / "mlp" / "metrics.jsonl").exists()


def test_script_runs_from_the_command_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO_DIR)
  done = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "nonlinearity.py"),
       f"--config={CONFIG}:smoke", f"--workdir={tmp_path}",
       "--config.dataset=xor"],
      env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert summary["dataset"] == "xor"
  assert 0.0 <= summary["linear_accuracy"] <= 1.0
  assert 0.0 <= summary["mlp_accuracy"] <= 1.0
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["smoke"] is True and config["num_epochs"] == 3
