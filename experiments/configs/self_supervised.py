"""Supervised, SSDU and K-band training of the same MoDL on the same simulated data.

  python experiments/self_supervised.py --config experiments/configs/self_supervised.py \
      --workdir runs/self_supervised [--config.smoke=True]

Trains MoDL three times (``config.methods``) with the same seed: the same volumes,
split, coil maps and test masks; only the supervision differs (`fdl.tasks.supervision`).
Prints the test table (zero-filled, CG-SENSE, CS and the three MoDLs: NMSE / PSNR / SSIM,
mean ± std over test slices) and writes ``summary.json``, ``table.txt`` and
``reconstructions.png`` into the workdir, one sub-directory per method. The full
config took 7 minutes on two CPU cores shared with other jobs (test, 18 slices: MoDL
supervised SSIM 0.818, K-band 0.718, SSDU 0.591, CS 0.604); ``--config.smoke=True``
(or ``get_config("smoke")``) shrinks every size (``fdl.config_files.SMOKE``) for a
run of about 2 minutes.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.smoke = arg == "smoke"
  config.methods = ("supervised", "ssdu", "kband")
  config.supervision = "supervised"  # set per method by compare_supervision

  # Data: simulated multi-coil k-space (random ellipse phantoms, loop coils), split
  # by volume; the same for every method.
  config.dataset = "simulated"
  config.num_volumes = 20
  config.slices_per_volume = 6
  config.shape = (64, 64)
  config.num_coils = 6
  config.snr_db = 30.0
  config.phantom = "random"
  config.val_volumes = 2
  config.test_volumes = 3

  # Sampling at test time (and the acquisition of the supervised and SSDU training
  # data): equispaced lines, 4x, fully sampled centre.
  config.mask = "equispaced"
  config.acceleration = 4.0
  config.center_fraction = 0.125  # 8 of 64 lines

  # The simulator's coil maps for every method: a band or under-sampled acquisition
  # would estimate its own from its calibration lines; that is not compared here.
  config.maps = "true"
  config.calib_size = 8  # used only with maps='estimate'
  config.kernel_size = 5

  # The one model: MoDL (K-band and SSDU need its complex output).
  config.model = "modl"
  config.unet = ml_collections.ConfigDict(dict(
      base_channels=32, num_pools=4, dropout=0.0, input_mode="complex"))
  config.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=24, lam_init=0.05))
  config.varnet = ml_collections.ConfigDict(dict(
      num_cascades=8, channels=18, pools=4, sens_channels=8, sens_pools=4))

  # Supervised: image loss against the fully sampled reference ('l1', 'ssim', 'mixed').
  config.loss = "l1"
  config.ssim_weight = 0.84

  # SSDU (Yaman et al. 2020): Lambda = rho of the acquired lines, Gaussian selection
  # (sigma = W / std_scale), center_block central lines always in Theta.
  config.ssdu = ml_collections.ConfigDict(dict(
      rho=0.4, selection="gaussian", std_scale=4.0, center_block=4,
      resplit_every_epoch=True))

  # K-band (Wang et al. 2023): one band per training slice of width
  # band_fraction * min(H, W) samples, at an angle ~ U[0, pi) ('uniform') or
  # horizontal / vertical ('cartesian'); loss: k-space 'l1' (or 'l2') weighted by
  # 1 / P(k in band).
  config.kband = ml_collections.ConfigDict(dict(
      band_fraction=0.25, orientations="uniform", norm="l1"))

  # Optimization (the same for every method).
  config.num_epochs = 10
  config.batch_size = 2
  config.optimizer = "adam"
  config.learning_rate = 1e-3
  config.schedule = "cosine"
  config.warmup_epochs = 0.0
  config.weight_decay = 0.0
  config.grad_clip_norm = 1.0  # <= 0: off
  config.early_stopping_patience = 0  # 0: off; the best validation epoch is kept

  # Classical baselines on the same test slices.
  config.cg_iters = 10
  config.cg_lambda = 0.0
  config.cs_iters = 40
  config.cs_lambda = 1e-3

  # Run.
  config.log_every = 20
  config.keep_checkpoints = 2
  config.progress = False
  config.figure_slices = 2

  if config.smoke:
    config_files.apply_smoke(config, "self_supervised")
  return config
