"""Loading one experiment's config file from another."""

import os

import pytest

from conftest import REPO_DIR
from fdl.train import config_files

CONFIGS = os.path.join(REPO_DIR, "experiments", "configs")


def test_load_config_calls_get_config_with_its_argument():
  smoke = config_files.load_config(os.path.join(CONFIGS, "mri_recon.py"), "smoke")
  full = config_files.load_config(os.path.join(CONFIGS, "mri_recon.py"))
  assert smoke.smoke and tuple(smoke.shape) == (40, 36)
  assert not full.smoke and tuple(full.shape) == (96, 96)


def test_load_config_names_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py not found"):
    config_files.load_config(str(tmp_path / "nope.py"))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(AttributeError, match="defines no get_config"):
    config_files.load_config(str(empty))
