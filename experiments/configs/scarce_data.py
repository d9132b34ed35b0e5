"""Scarce data: fine-tuning a pretrained reconstruction network vs training from scratch.

  python experiments/scarce_data.py --config experiments/configs/scarce_data.py \
      --workdir runs/scarce_data

Pretrains MoDL on simulated 8-coil k-space at 30 dB (random-ellipse
phantoms), then trains on N = 5, 20, 100 slices of a different acquisition (a
4-coil array at 20 dB, other phantoms of the same family): from scratch, from
scratch with augmentation, and fine-tuned from the pretrained weights, all
with the same optimizer-step budget (700) and the same 20 test slices.
Measured here on two shared CPU cores: about 1 min of pretraining and 6.5 min
for the nine other runs. Result: fine-tuning beats scratch at N = 5 (SSIM
0.799 vs 0.788); at N = 20 and 100 the two are within 0.003 SSIM; the
rotation/scaling augmentation lowers SSIM. ``--config.smoke=True`` (or
``:smoke``) runs N = 2, 4 at smoke sizes in 1-3 minutes, for tests.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.smoke = arg == "smoke"

  # Training sizes (slices of the target distribution) and the arms run at each.
  config.train_sizes = (5, 20, 100)
  config.methods = ("scratch", "scratch_augment", "finetune")
  # Optimizer steps of every arm at every N (rounded up to whole epochs, at
  # least min_epochs), so that small N are not also short runs.
  config.steps = 700  # as many as the pretraining's 5 epochs of 140 slices
  config.min_epochs = 2
  # Fine-tuning: learning rate and parameter-path patterns kept frozen
  # (fdl.train.transfer syntax; () fine-tunes everything).
  config.finetune_learning_rate = 3e-4
  config.freeze = ()
  # The augmentation arm (fdl.data.recon_augment).
  config.augment = ml_collections.ConfigDict(dict(
      hflip=0.5, vflip=0.5, max_degrees=10.0, scale_range=0.1, target="transform"))
  # XLA's persistent compilation cache in <workdir>/jax_cache: the runs share
  # most programs, and compiling dominates small runs on a CPU.
  config.compilation_cache = True

  # Shared by every run: data shape, sampling, model and optimizer.
  recon = config_files.load_config("mri_recon.py", next_to=__file__)
  recon.shape = (48, 48)
  recon.mask = "equispaced"
  recon.acceleration = 4.0
  recon.center_fraction = 0.125  # 6 of 48 lines
  recon.maps = "true"  # the simulator's maps: the shift is in the data only
  # MoDL: physics-guided (CG data consistency), 64k parameters at this size.
  recon.model = "modl"
  recon.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=24, lam_init=0.05))
  recon.loss = "l1"
  recon.batch_size = 1
  recon.learning_rate = 1e-3
  recon.schedule = "cosine"
  recon.cg_iters = 10
  recon.cs_iters = 30
  recon.log_every = 50
  recon.keep_checkpoints = 1
  recon.figure_slices = 2
  config.recon = recon

  # SOURCE distribution, plenty of data: 8 coils at 30 dB.
  config.pretrain = ml_collections.ConfigDict(dict(
      seed=0, num_volumes=16, slices_per_volume=10, num_coils=8, snr_db=30.0,
      phantom="random", val_volumes=1, test_volumes=1, num_epochs=5))
  # TARGET distribution: 4 coils at 20 dB, other phantoms (another seed);
  # 10 training volumes of 10 slices hold N <= 100, then 1 val and 2 test volumes.
  config.target = ml_collections.ConfigDict(dict(
      seed=1, num_volumes=13, slices_per_volume=10, num_coils=4, snr_db=20.0,
      phantom="random", val_volumes=1, test_volumes=2))

  if config.smoke:
    config_files.apply_smoke(config, "scarce_data")
  return config
