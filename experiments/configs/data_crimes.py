"""Implicit data crimes (Shimron et al., PNAS 2022), reproduced on simulated data.

  python experiments/data_crimes.py --config experiments/configs/data_crimes.py \
      --workdir runs/data_crimes [--config.recon.model=unet ...]

For every zero-padding factor and JPEG quality, k-space is synthesized from
data processed that way (`fdl.data.process_simulation`), a learned model is
trained and tested on it, and CS reconstructs the same test slices; all are
scored against the matching processed reference. ``--config.smoke=True`` (or
``:smoke``) runs two settings of each kind at smoke sizes, for tests.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.smoke = arg == "smoke"

  # The processing series: 1 is the raw k-space; qualities are Pillow's (1-100).
  config.zero_pad_factors = (1.0, 1.25, 1.5, 2.0)
  config.jpeg_qualities = (95, 75, 50, 20)
  # Methods reported in `results` (of fdl.evaluate.reconstruction.METHODS).
  config.methods = ("zero_filled", "cg_sense", "cs_wavelet", "model")

  # One learned-reconstruction run per setting: the mri_recon config, smaller.
  recon = config_files.load_config("mri_recon.py", next_to=__file__)
  recon.num_volumes = 12
  recon.slices_per_volume = 4
  recon.shape = (64, 64)
  recon.num_coils = 8
  recon.val_volumes = 1
  recon.test_volumes = 3
  recon.mask = "random"  # variable-density lines, as in the paper's 1-D masks
  recon.acceleration = 4.0
  recon.center_fraction = 0.1  # 6 of 64 lines
  recon.maps = "true"  # the maps the processed k-space was synthesized with
  recon.model = "modl"
  recon.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=24, lam_init=0.05))
  recon.num_epochs = 5
  recon.cs_iters = 40
  recon.progress = False
  recon.figure_slices = 2
  config.recon = recon

  if config.smoke:
    config_files.apply_smoke(config, "data_crimes")
  return config
