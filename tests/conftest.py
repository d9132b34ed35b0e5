"""Shared test set-up: CPU only, quiet logs, and the path of the test helpers."""

import os
import sys

# Tests run on the CPU whatever the machine has, so numbers are comparable.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# NumPy's multithreaded BLAS (the ESPIRiT calibration SVD) fights XLA's threads
# for the two cores; one BLAS thread keeps those tests fast and steady.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
PYTHON = sys.executable
