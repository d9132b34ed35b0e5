"""The classical-reconstruction experiment on small simulated data."""

import json
import os
import subprocess

import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.studies import mri_classical

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "mri_classical.py")


def _config(**overrides):
  config = config_files.load_config(CONFIG, "smoke")
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def smoke_summary(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("mri_classical")
  return mri_classical.run(_config(), str(workdir)), workdir


def test_iterative_methods_beat_zero_filled(smoke_summary):
  summary, workdir = smoke_summary
  methods = summary["results"]["4x"]["methods"]
  zf, cg, cs = (methods[m] for m in ("zero_filled", "cg_sense", "cs_wavelet"))
  assert cg["nmse"]["mean"] < zf["nmse"]["mean"]
  assert cs["nmse"]["mean"] < zf["nmse"]["mean"]
  assert cg["ssim"]["mean"] > zf["ssim"]["mean"]
  assert summary["results"]["4x"]["achieved_acceleration"] == pytest.approx(4.0, rel=0.1)
  assert (workdir / "reconstructions_4x.png").stat().st_size > 10_000
  on_disk = json.loads((workdir / "summary.json").read_text())
  assert on_disk["results"]["4x"]["methods"]["cg_sense"]["nmse"]["mean"] == pytest.approx(
      cg["nmse"]["mean"])


def test_table_lists_every_method(smoke_summary):
  summary, _ = smoke_summary
  table = mri_classical.format_table(summary)
  for method in mri_classical.METHODS:
    assert method in table
  assert "±" in table


@pytest.mark.slow
def test_script_runs_from_the_command_line(tmp_path):
  done = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "mri_classical.py"),
       f"--config={CONFIG}:smoke", f"--workdir={tmp_path}", "--config.maps=true"],
      env=dict(os.environ, PYTHONPATH=REPO_DIR), capture_output=True, text=True,
      timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "cg_sense" in done.stdout and "NMSE" in done.stdout
  assert json.loads((tmp_path / "summary.json").read_text())["maps"] == "true"


@pytest.mark.parametrize("overrides, match", [
    (dict(maps="sense"), r"config.maps must be 'estimate' or 'true'; got 'sense'"),
    (dict(mask="radial"), r"config.mask must be 'equispaced' or 'random'; got 'radial'"),
    (dict(accelerations=(4, 8)), r"config.center_fractions needs one value per acceleration"),
])
def test_bad_config_is_named(tmp_path, overrides, match):
  with pytest.raises(ValueError, match=match):
    mri_classical.run(_config(**overrides), str(tmp_path))


def test_reads_fastmri_files(tmp_path):
  """One loader for simulated and real data: the experiment on written .h5 files."""
  import jax  # pylint: disable=g-import-not-at-top
  from fdl import mri  # pylint: disable=g-import-not-at-top
  mri.simulate_to_fastmri(jax.random.PRNGKey(3), str(tmp_path / "h5"), 1,
                          num_slices=2, shape=(64, 64), num_coils=4)
  files = tuple(sorted(str(p) for p in (tmp_path / "h5").glob("*.h5")))
  assert len(files) == 1
  summary = mri_classical.run(_config(files=files), str(tmp_path / "run"))
  assert summary["kspace_shape"] == [2, 4, 64, 64]
  assert summary["data"] == {"files": list(files)}
  methods = summary["results"]["4x"]["methods"]
  assert methods["cg_sense"]["nmse"]["mean"] < methods["zero_filled"]["nmse"]["mean"]
