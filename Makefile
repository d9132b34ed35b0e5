# The two commands of the README. Both create .venv and install fdl on first use;
# later runs reinstall only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
DEMO_DIR ?= runs/demo

.PHONY: demo demo-nonlinearity test test-slow clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "fdl needs Python >= 3.11; got " + sys.version)'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing fdl and its dependencies into $(VENV) ..."
	@$(PY) -m pip install --quiet --disable-pip-version-check -e ".[dev,peer,anatomy]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	@$(PY) -c 'import fdl, jax, flax, optax, orbax.checkpoint' && touch $(STAMP)

# A small MoDL trained on 8-coil k-space synthesized from brain templates (MNI152;
# tested on colin27 and the ITK head) at 4x; prints the test table
# (zero-filled, CG-SENSE, CS, MoDL). Run again, it resumes from runs/demo (a
# finished run is only re-tested); delete runs/demo to train from scratch.
demo: $(STAMP)
	$(PY) experiments/mri_recon.py --config experiments/configs/mri_recon.py:demo --workdir $(DEMO_DIR)

demo-nonlinearity: $(STAMP)
	$(PY) experiments/nonlinearity.py --config experiments/configs/nonlinearity.py --workdir runs/nonlinearity

# The fast tier on every core (pytest-xdist), then a reminder of the slow one.
test: $(STAMP)
	$(PY) -m pytest -q -n auto
	@echo "make test ran the fast tier; 'make test-slow' runs the end-to-end tier (CI runs both)."

# End-to-end runs: experiment scripts, multi-device and multi-process equivalence,
# resumes, the benchmark script (tens of minutes on 2 cores).
test-slow: $(STAMP)
	$(PY) -m pytest -q -n auto -m slow

clean:
	rm -rf $(VENV) runs
