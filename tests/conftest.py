"""Shared test set-up: CPU only, quiet logs, and the path of the test helpers."""

import os
import sys

# Tests run on the CPU whatever the machine has, so numbers are comparable.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
PYTHON = sys.executable
