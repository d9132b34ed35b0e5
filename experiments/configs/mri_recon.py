"""Learned MRI reconstruction: U-Net, MoDL or E2E-VarNet on multi-coil k-space.

  python experiments/mri_recon.py --config experiments/configs/mri_recon.py \
      --workdir runs/mri_recon [--config.model=varnet --config.acceleration=8 ...]

`get_config("smoke")` (``--config experiments/configs/mri_recon.py:smoke``) or
``--config.smoke=True`` shrinks everything to ``fdl.config_files.SMOKE["mri_recon"]``
so a run ends in well under two minutes on a CPU, for tests; with the latter, the
smoke sizes replace command-line overrides of the same keys. `get_config("demo")`
is what ``make demo`` runs.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # data, split, masks, shuffling and (unless init_seed) weights
  config.init_seed = -1  # >= 0: the initial weights' own seed (ensembles)
  config.smoke = arg == "smoke"

  # Data: "simulated" (random ellipse phantoms, Biot-Savart loop coils),
  # "anatomy" (synthesized from real brain templates, fdl.data.anatomy_volumes: split
  # by anatomy, settings in config.anatomy) or a directory of fastMRI multi-coil .h5
  # files. Split by volume.
  config.dataset = "simulated"
  config.num_volumes = 20  # simulated volumes (or a cap on the files read)
  config.slices_per_volume = 6  # simulated only
  config.shape = (96, 96)  # simulated only: (H, W)
  config.num_coils = 8  # simulated only
  config.snr_db = 30.0  # simulated only: per-coil k-space SNR
  config.phantom = "random"  # simulated only: 'random' or 'shepp_logan'
  config.val_volumes = 2
  config.test_volumes = 4
  # Processing of the simulated data before it is used as "raw" k-space, to
  # commit a data crime on purpose (experiments/data_crimes.py): zero-padding
  # factor (1: none) or JPEG quality of the magnitude images k-space is
  # synthesized from (0: none). Simulated data only.
  config.zero_pad_factor = 1.0
  config.jpeg_quality = 0
  # dataset="anatomy": train and validation volumes from train_templates, the
  # test_volumes from test_templates (fdl.data.mri_volumes.ANATOMY_TEMPLATES), each
  # with its own random deformations, bias, phase and noise; contrasts are
  # fdl.data.synthesis names ('random': each tissue's intensity drawn uniformly).
  config.anatomy = ml_collections.ConfigDict(dict(
      train_templates=("mni152",), test_templates=("colin27", "itk_head"),
      contrast="random", test_contrast="t1"))

  # Sampling: a fresh mask per example and epoch in training, one fixed mask
  # per slice (from its id) for validation and test.
  config.mask = "equispaced"  # 'random', 'equispaced' or 'poisson'
  config.acceleration = 4.0
  config.center_fraction = 0.12  # 12 of 96 lines; use 0.1 at 8x (cf * R < 1)

  # Coil maps for MoDL, the complex-input U-Net and CG-SENSE / CS: 'estimate'
  # (ESPIRiT on the centre lines) or 'true' (simulated data only).
  config.maps = "estimate"
  config.calib_size = 12  # at most the centre lines
  config.kernel_size = 5

  # Model: one of MODELS, with its settings below.
  config.model = "modl"
  config.unet = ml_collections.ConfigDict(dict(
      base_channels=32, num_pools=4, dropout=0.0, input_mode="complex"))
  config.modl = ml_collections.ConfigDict(dict(
      num_iters=5, cg_iters=5, depth=5, width=48, lam_init=0.05))
  config.varnet = ml_collections.ConfigDict(dict(
      num_cascades=8, channels=18, pools=4, sens_channels=8, sens_pools=4))

  # Loss: 'l1', 'ssim' or 'mixed' (ssim_weight * (1 - SSIM) + rest * L1).
  config.loss = "l1"
  config.ssim_weight = 0.84

  # Optimization.
  config.num_epochs = 8
  config.batch_size = 2
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.schedule = "cosine"  # 'constant', 'cosine', 'warmup_cosine', ...
  config.warmup_epochs = 0.0
  config.weight_decay = 0.0
  config.grad_clip_norm = 1.0  # <= 0: off
  config.early_stopping_patience = 0  # 0: off; else epochs without val/ssim gain

  # Scarce data and transfer (fdl.train.transfer, experiments/scarce_data.py).
  config.train_slices = 0  # 0: every training slice; N: the first N only
  config.init_from = ""  # a finished run's workdir: copy its matching params
  config.freeze = ()  # param-path globs (or 're:' regexes) kept fixed
  # Training-only augmentation of k-space, maps and target together
  # (fdl.data.recon_augment): flip probabilities, rotation and zoom ranges.
  config.augment = ml_collections.ConfigDict(dict(
      enabled=False, hflip=0.5, vflip=0.0, max_degrees=10.0, scale_range=0.1,
      target="transform"))

  # Classical baselines evaluated on the same test slices.
  config.cg_iters = 10
  config.cg_lambda = 0.0
  config.cs_iters = 60
  config.cs_lambda = 1e-3

  # Run.
  config.log_every = 20
  config.keep_checkpoints = 2
  config.progress = True
  config.figure_slices = 3  # test slices shown in reconstructions.png

  if arg == "demo":
    # `make demo`: a small MoDL, 4x, a few minutes on two CPU cores, on volumes
    # synthesized from anatomy (trained on MNI152, tested on colin27 and the ITK head).
    config.dataset = "anatomy"
    config.num_volumes = 14
    config.test_volumes = 3
    config.val_volumes = 1
    config.modl = ml_collections.ConfigDict(dict(
        num_iters=4, cg_iters=4, depth=4, width=32, lam_init=0.05))
    config.num_epochs = 6
    config.cs_iters = 40
  if config.smoke:
    config_files.apply_smoke(config, "mri_recon")
  return config
