"""Shared test set-up: CPU only, quiet logs, and the path of the test helpers."""

import os
import sys
import tempfile

# Tests run on the CPU whatever the machine has, so numbers are comparable.
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# NumPy's multithreaded BLAS (the ESPIRiT calibration SVD) fights XLA's threads
# for the two cores; one BLAS thread keeps those tests fast and steady.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

# One persistent XLA compilation cache per test run, shared by the xdist workers and
# by the scripts the tests start: tests that build the same programs (the same tiny
# models under different fixtures) compile them once. Per run, so a run never reads
# another run's programs.
_RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"{os.getpid()}"
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"fdl-test-jax-cache-{_RUN_ID}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.3")

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(TESTS_DIR)
PYTHON = sys.executable
