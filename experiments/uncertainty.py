"""Uncertainty and hallucination in learned MRI reconstruction: MC dropout vs an ensemble.

  python experiments/uncertainty.py --workdir runs/uncertainty [--config.smoke=True ...]

Prints the error-std correlation, the calibration fractions and the lesion probe of
each method; everything is in ``<workdir>/summary.json`` and the figures next to it.
"""

from fdl.studies import harness, uncertainty

if __name__ == "__main__":
  harness.main(uncertainty.run, uncertainty.report, script=__file__)
