"""Classical MRI reconstruction: zero-filled, CG-SENSE and compressed sensing.

  python experiments/mri_classical.py --config experiments/configs/mri_classical.py \
      --workdir runs/mri_classical

Simulates multi-coil k-space (random ellipse phantoms, Biot-Savart loop coils,
complex Gaussian noise) unless `--config.files` lists fastMRI HDF5 files, then
reconstructs at each acceleration and prints NMSE / PSNR / SSIM per method
(mean ± std over slices). `:smoke` (or ``--config.smoke=True``) shrinks everything
for tests.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Data: simulated by default; fastMRI multi-coil files when `files` is set.
  config.files = ()  # paths of fastMRI .h5 files
  config.num_slices = 6
  config.shape = (160, 160)
  config.num_coils = 8
  config.snr_db = 30.0
  config.phantom = "random"  # 'random' or 'shepp_logan'

  # Sampling: Cartesian lines, fastMRI semantics.
  config.accelerations = (4, 8)
  config.center_fractions = (0.08, 0.08)  # one per acceleration; ESPIRiT needs ~12+ centre lines
  config.mask = "equispaced"  # 'equispaced' or 'random'

  # Coil maps for SENSE and CS: 'estimate' (from the calibration lines) or
  # 'true' (simulated data only).
  config.maps = "estimate"
  config.calib_size = 24  # side of the centre block used (at most the centre lines)
  config.kernel_size = 6  # ESPIRiT kernel side

  # Solvers.
  config.cg_iters = 10
  config.cg_lambda = 0.0
  config.cs_iters = 60
  config.cs_lambda = 1e-3  # relative to the max of the zero-filled image

  config.smoke = arg == "smoke"
  if config.smoke:
    config_files.apply_smoke(config, "mri_classical")
  return config
