"""Learning without fully sampled data: supervised vs SSDU vs K-band MoDL, one test split.

  python experiments/self_supervised.py --workdir runs/self_supervised [--config.smoke=True]
"""

from fdl.studies import harness, self_supervised

if __name__ == "__main__":
  harness.main(self_supervised.compare_supervision, self_supervised.report,
               script=__file__)
