"""Generative-prior MRI reconstruction: a diffusion prior and DPS vs MoDL and classical.

  python experiments/generative_recon.py --config experiments/configs/generative_recon.py \
      --workdir runs/generative_recon [--config.smoke=True ...]

Prints the test scores of every method at every acceleration, the posterior's error-std
correlation, calibration and lesion probe; everything is in ``<workdir>/summary.json``
and the figures next to it.
"""

from fdl.studies import generative_recon, harness

if __name__ == "__main__":
  harness.main(generative_recon.run, generative_recon.report, script=__file__)
