"""Uncertainty and hallucination: MC dropout and a deep ensemble of U-Nets.

  python experiments/uncertainty.py --config experiments/configs/uncertainty.py \
      --workdir runs/uncertainty

trains one U-Net with dropout (``mc_dropout/``) and `ensemble.num_members`
U-Nets on the same data from initial weights of ``init_seed = seed, seed + 1,
...`` (``ensemble_<k>/``), each through
`fdl.tasks.reconstruction.train_and_evaluate`, then on the shared test split writes ``summary.json`` (error-std correlation, calibration,
lesion probe), ``calibration.png``, ``uncertainty_maps.png`` and
``lesion_probe.png``. About 4-6 minutes on two CPU cores at these sizes:
error-std correlation 0.50 (MC dropout) and 0.46 (ensemble), both std maps too
small (|error| <= 1 std for 47 % and 33 % of pixels, 68 % if calibrated).

``--config experiments/configs/uncertainty.py:smoke`` or ``--config.smoke=True``
shrinks everything (``fdl.config_files.SMOKE["uncertainty"]``) to a run of one
to two minutes, for tests; with the latter the smoke sizes replace command-line
overrides of the same keys.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0  # the MC-dropout run's and ensemble member 0's; its test split is used
  config.smoke = arg == "smoke"

  # Every run: an mri_recon config (data, sampling, optimization) and its model,
  # "unet" or "modl" (the models with dropout; --config.recon.model=modl).
  recon = config_files.load_config("mri_recon.py", next_to=__file__)
  recon.model = "unet"
  recon.num_volumes = 20
  recon.slices_per_volume = 4
  recon.shape = (64, 64)
  recon.num_coils = 4
  recon.val_volumes = 1
  recon.test_volumes = 3
  recon.center_fraction = 0.125  # 8 of 64 columns
  recon.acceleration = 4.0
  recon.mask = "equispaced"
  recon.maps = "true"  # simulated data: the lesion is synthesized through the same maps
  recon.unet = ml_collections.ConfigDict(dict(
      base_channels=16, num_pools=3, dropout=0.0, input_mode="complex"))
  recon.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=32, lam_init=0.05, dropout=0.0))
  recon.num_epochs = 40
  recon.batch_size = 4
  recon.learning_rate = 2e-3
  recon.cg_iters = 8
  recon.cs_iters = 20
  recon.log_every = 10
  recon.progress = False
  recon.figure_slices = 2
  config.recon = recon

  # Monte-Carlo dropout: one U-Net trained with channel-wise dropout, sampled
  # `num_samples` times with train=True.
  config.mc_dropout = ml_collections.ConfigDict(dict(rate=0.1, num_samples=20))
  # Deep ensemble: members trained with dropout `dropout` on the same data, split
  # and masks (seed), from initial weights drawn with init_seed = seed + k.
  config.ensemble = ml_collections.ConfigDict(dict(num_members=3, dropout=0.0))

  # Scoring: the object is target > object_threshold * volume maximum.
  config.object_threshold = 0.05
  config.calibration_bins = 10
  config.std_ddof = 1  # sample std over draws / members

  # Hallucination probe: a uniform disc with a sharp edge in every test slice,
  # magnitude lesion_value * the volume's maximum (bright: > 1), centre chosen
  # inside the object nearest to lesion_prefer (fractions of H, W).
  config.lesion_radius = 3.0  # pixels
  config.lesion_value = 1.5
  config.lesion_prefer = (0.4, 0.6)
  config.lesion_gap = 1.0  # pixels between the disc and the ring it is compared with
  config.figure_slice = 0  # the test slice shown in the figures

  # Persistent XLA compilation cache in <workdir>/jax_cache (fdl.studies.harness):
  # the runs compile the same networks, so later ones reuse the first's.
  config.compilation_cache = True

  if config.smoke:
    config_files.apply_smoke(config, "uncertainty")
  return config
