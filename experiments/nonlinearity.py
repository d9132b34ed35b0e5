"""Trains a linear classifier and an MLP on points no line separates.

  python experiments/nonlinearity.py --workdir runs/nonlinearity [--config.dataset=xor ...]
"""

from fdl.studies import harness, nonlinearity

if __name__ == "__main__":
  harness.main(nonlinearity.run, nonlinearity.report, script=__file__)
