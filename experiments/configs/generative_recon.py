"""Generative-prior reconstruction: a diffusion prior (DDS) vs MoDL, CG-SENSE and CS.

  python experiments/generative_recon.py --config experiments/configs/generative_recon.py \
      --workdir runs/generative_recon

trains a diffusion noise predictor on the fully sampled complex images of the
MNI152 training volumes (``diffusion/``: no under-sampling at all) and MoDL at 4x
and 8x (``modl_4x/``, ``modl_8x/``, `fdl.tasks.reconstruction`), then on the
sealed test slices (colin27 and the ITK head) compares zero-filled, CG-SENSE, CS,
MoDL, MoDL trained at 4x applied at 8x, and the diffusion posterior mean (DDS,
Chung, Lee & Ye ICLR 2024; or DPS), with the posterior std through the uncertainty
tools.
Measured here (2-core AMD EPYC, README): 15 min 40 s for the whole command; the
posterior mean ties MoDL in PSNR at 4x and loses in SSIM, loses at 8x, beats
CG-SENSE and CS; its std is calibrated where MC dropout's and the ensemble's are
3-4x too small. The MC-dropout and ensemble baselines run in ``uncertainty/``.

``--config.smoke=True`` (or ``...generative_recon.py:smoke``) shrinks everything
(``fdl.config_files.SMOKE["generative_recon"]``) to about a minute, for tests.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # data, split, masks, the prior's weights and the DPS draws
  config.smoke = arg == "smoke"
  config.accelerations = (4.0, 8.0)  # MoDL trained at each; the first's MoDL is also
  # applied at the others (the mismatch case); one prior serves all

  # Data and MoDL: an mri_recon config on volumes synthesized from anatomy
  # (train/val: MNI152; test: colin27 and the ITK head, fdl.data.anatomy_volumes).
  recon = config_files.load_config("mri_recon.py", next_to=__file__)
  recon.dataset = "anatomy"
  recon.num_volumes = 10
  recon.slices_per_volume = 12
  recon.shape = (48, 48)
  recon.num_coils = 4
  recon.val_volumes = 1
  recon.test_volumes = 2
  recon.center_fraction = 0.1  # 5 of 48 columns; cf * R < 1 at 8x
  recon.mask = "equispaced"
  recon.maps = "true"  # the synthesized volumes' own coil maps, for every method
  recon.model = "modl"
  recon.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=24, lam_init=0.05))
  recon.num_epochs = 10
  recon.batch_size = 4
  recon.learning_rate = 2e-3
  recon.cg_iters = 10
  recon.cs_iters = 40
  recon.log_every = 20
  recon.progress = False
  recon.figure_slices = 2
  config.recon = recon

  # The prior: DiffusionUNet on images / max|training image| (real, imaginary),
  # DDPM epsilon loss, T steps of the schedule.
  config.diffusion = ml_collections.ConfigDict(dict(
      model=ml_collections.ConfigDict(dict(
          base_channels=16, channel_mults=(1, 2, 2), num_res_blocks=1, num_groups=4,
          dropout=0.0)),
      schedule="linear", num_steps=1000,
      num_epochs=15, steps_per_epoch=100, batch_size=8,
      learning_rate=2e-3, warmup_steps=50, grad_clip_norm=1.0))

  # The posterior sampler: num_samples draws per slice on a num_sample_steps
  # subsequence of the T steps. "dds" (Chung, Lee & Ye, ICLR 2024): cg_iters CG
  # iterations of data consistency on each x0_hat, re-noising eta; "dps" (Chung et
  # al., ICLR 2023): gradient steps of size zeta through the network, prior noise eta.
  # Chosen on the validation slices (README): DDS beat DPS there at 50 steps
  # (SSIM 0.75 vs 0.65 at 4x) and costs a fifth of DPS per step.
  config.sampler = ml_collections.ConfigDict(dict(
      method="dds", num_samples=8, num_sample_steps=100, eta=0.85, cg_iters=5, zeta=1.0))

  # The uncertainty baselines (fdl.studies.uncertainty in uncertainty/): MoDLs at the
  # first acceleration, one with channel-wise dropout sampled num_samples times and
  # an ensemble of num_members from init_seed = seed + k.
  config.baselines = ml_collections.ConfigDict(dict(
      mc_dropout=ml_collections.ConfigDict(dict(rate=0.1, num_samples=20)),
      ensemble=ml_collections.ConfigDict(dict(num_members=3, dropout=0.0))))

  # Uncertainty scoring (fdl.evaluate.uncertainty), as experiments/uncertainty.py.
  config.object_threshold = 0.05
  config.calibration_bins = 10
  config.lesion_probe = True  # on the first test volume at the first acceleration
  config.lesion_radius = 2.5  # pixels
  config.lesion_value = 1.5  # times the volume maximum
  config.lesion_prefer = (0.4, 0.6)
  config.lesion_gap = 1.0

  config.compilation_cache = True

  if config.smoke:
    config_files.apply_smoke(config, "generative_recon")
  return config
