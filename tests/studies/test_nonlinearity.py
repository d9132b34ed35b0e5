"""The non-linearity experiment: an MLP separates XOR, a linear model cannot."""

import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.studies import nonlinearity

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "nonlinearity.py")


def _config(**overrides):
  config = config_files.load_config(CONFIG)
  config.update(overrides)
  return config


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
def test_sigterm_stops_the_script_cleanly_and_rerun_resumes(tmp_path):
  """A real SIGTERM to the script: exit 128 + 15 with a checkpoint, then resume."""
  import signal  # pylint: disable=g-import-not-at-top
  import time  # pylint: disable=g-import-not-at-top
  env = dict(os.environ, PYTHONPATH=REPO_DIR)
  # No --config: the script's own config file is the default.
  command = [PYTHON, os.path.join(REPO_DIR, "experiments", "nonlinearity.py"),
             f"--workdir={tmp_path}",
             "--config.num_epochs=100000", "--config.early_stopping_patience=100000",
             "--config.progress=False"]
  proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  metrics = tmp_path / "linear" / "metrics.jsonl"
  deadline = time.time() + 120
  while not (metrics.exists() and metrics.stat().st_size > 0):
    assert time.time() < deadline and proc.poll() is None, proc.stdout.read()[-3000:]
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  output, _ = proc.communicate(timeout=120)
  assert proc.returncode == 128 + signal.SIGTERM, output[-3000:]
  assert "SIGTERM received; saved a checkpoint" in output
  assert "run the same command again to resume" in output
  assert not (tmp_path / "summary.json").exists()
  steps = sorted(int(p.name) for p in (tmp_path / "linear" / "checkpoints").iterdir()
                 if p.name.isdigit())
  assert steps
  # Another config in the same workdir is refused before any training, naming the key.
  refused = subprocess.run(command + ["--config.noise=0.3"], env=env,
                           capture_output=True, text=True, timeout=300)
  assert refused.returncode == 2, refused.stderr[-3000:]
  assert "error: " in refused.stderr and "['noise'] differ" in refused.stderr
  assert "Traceback" not in refused.stderr
  # Resume for a short total: the run continues from the saved step.
  resumed = subprocess.run(command[:-3] + ["--config.num_epochs=2",
                                           "--config.progress=False"],
                           env=env, capture_output=True, text=True, timeout=300)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resumed from step {steps[-1]}" in resumed.stdout


def test_invalid_config_values_are_named(tmp_path):
  with pytest.raises(ValueError, match=r"optimizer must be one of .*got 'adamax'"):
    nonlinearity.run(_config(optimizer="adamax", smoke=True), str(tmp_path))
  with pytest.raises(ValueError, match=r"batch_size must be in \[1, 600\].*got 0"):
    nonlinearity.run(_config(batch_size=0), str(tmp_path))
  with pytest.raises(ValueError, match=r"activation must be one of"):
    config = _config()
    config.mlp.activation = "swish"
    nonlinearity.run(config, str(tmp_path))
