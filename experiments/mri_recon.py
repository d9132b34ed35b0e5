"""Trains a learned MRI reconstruction (U-Net, MoDL, E2E-VarNet) and tests it once.

  python experiments/mri_recon.py --workdir runs/mri_recon \
      [--config.model=varnet --config.acceleration=8 ...]

Prints the test table: zero-filled, CG-SENSE, CS and the model (mean ± std of
NMSE / PSNR / SSIM over the test slices).
"""

from fdl.studies import harness
from fdl.tasks import reconstruction

if __name__ == "__main__":
  harness.main(reconstruction.train_and_evaluate, reconstruction.report, script=__file__)
