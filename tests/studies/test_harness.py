"""Loading one experiment's config file from another."""

import os

import pytest

from conftest import REPO_DIR
from fdl.studies import harness

CONFIGS = os.path.join(REPO_DIR, "experiments", "configs")


def test_load_config_calls_get_config_with_its_argument():
  smoke = harness.load_config(os.path.join(CONFIGS, "mri_recon.py"), "smoke")
  full = harness.load_config(os.path.join(CONFIGS, "mri_recon.py"))
  assert smoke.smoke and tuple(smoke.shape) == (40, 36)
  assert not full.smoke and tuple(full.shape) == (96, 96)


def test_load_config_names_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py not found"):
    harness.load_config(str(tmp_path / "nope.py"))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(AttributeError, match="defines no get_config"):
    harness.load_config(str(empty))
