"""Zero-filled, CG-SENSE and compressed-sensing reconstructions, scored.

  python experiments/mri_classical.py --workdir runs/mri_classical \
      [--config.files='("a.h5",)' ...]
"""

from fdl.studies import harness, mri_classical

if __name__ == "__main__":
  harness.main(mri_classical.run, mri_classical.report, script=__file__)
