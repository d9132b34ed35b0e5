"""Brain tissue segmentation (CSF / GM / WM) of synthesized slices, tested on other anatomy.

  python experiments/segmentation.py --config experiments/configs/segmentation.py \
      --workdir runs/segmentation [--config.input=zero_filled --config.acceleration=8]

Trains the U-Net segmenter (`fdl.tasks.segmentation`) on slices synthesized from
the MNI152 template with random contrasts, selects on validation mean Dice and
tests once on colin27 and the ITK head (T1 contrast). `summary.json`'s
``test[input]`` holds ``mean_dice``, ``dice`` per class and ``hd95`` (mm).
Measured here (2 CPU cores, shared): 5.5 min; val mean Dice 0.856, test mean Dice
0.733 (CSF 0.59, GM 0.79, WM 0.83), HD95 6.4 mm: short of the 0.85 goal, the
gap is anatomy (an MNI152 volume scores 0.90 with this model; colin27 0.76).
`:smoke` (or ``--config.smoke=True``, ``fdl.config_files.SMOKE["segmentation"]``):
tiny sizes, about a minute.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Data: synthesized from anatomy templates (fdl.data.synthesis).
  config.label_set = "tissues"  # background, CSF, GM, WM
  config.train_templates = ("mni152",)  # training and validation anatomy
  config.test_templates = ("colin27", "itk_head")  # sealed test anatomy, one volume each
  config.train_volumes = 24  # each its own deformations, contrasts, bias, noise
  config.val_volumes = 2
  config.slices_per_volume = 16
  config.test_slices_per_volume = 16
  config.shape = (96, 96)
  config.contrast = ("random", "t1", "t2", "pd")  # drawn per training slice
  config.test_contrast = "t1"
  # Random deformations of the training/validation slices (fdl.data.synthesis.
  # random_deformation); the test slices keep the synthesis default.
  config.train_deformation = ml_collections.ConfigDict(dict(
      max_rotation_deg=15.0, max_scale=0.1, max_shear=0.05, max_translation_vox=4.0,
      elastic_std_vox=1.5, elastic_grid=5))
  config.num_coils = 4
  config.snr_db = 30.0

  # What the segmenter sees: 'fully_sampled' (the magnitude image) or
  # 'zero_filled' (RSS of k-space under-sampled at `acceleration`).
  config.input = "fully_sampled"
  config.acceleration = 8.0
  config.center_fraction = 0.08
  config.mask = "equispaced"  # 'equispaced' or 'random'

  # Model.
  config.segmenter = ml_collections.ConfigDict()
  config.segmenter.base_channels = 16
  config.segmenter.num_pools = 3
  config.segmenter.dropout = 0.0

  # Optimization.
  config.loss = "dice_ce"  # 'dice', 'ce' or 'dice_ce'
  config.num_epochs = 20
  config.batch_size = 8
  config.optimizer = "adam"
  config.learning_rate = 2e-3
  config.schedule = "cosine"
  config.weight_decay = 0.0
  config.early_stopping_patience = 0  # 0: off (the best epoch is still selected)

  # Bookkeeping.
  config.log_every = 20
  config.keep_checkpoints = 1
  config.progress = False
  config.figure_slices = 4

  if arg == "k2s":
    return k2s_config(config)
  config.smoke = arg == "smoke"
  if config.smoke:
    config_files.apply_smoke(config, "segmentation")
  return config


def k2s_config(seg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`:k2s`: the K2S study (`fdl.studies.k2s`), segmentation from under-sampled k-space.

    python experiments/segmentation.py --config experiments/configs/segmentation.py:k2s \
        --workdir runs/k2s [--config.smoke=True]

  Trains the segmenter on fully sampled images, one on zero-filled images and one
  MoDL per acceleration above 1x, then segments the same test slices every way.
  ``--config.smoke=True`` shrinks the sub-runs to ``SMOKE["segmentation"]`` and
  ``SMOKE["mri_recon"]`` (a few minutes).
  """
  config = ml_collections.ConfigDict()
  config.study = "k2s"
  config.accelerations = (1.0, 4.0, 8.0)
  seg.smoke = False
  config.seg = seg  # the segmentation task's settings (input/acceleration set per run)
  recon = config_files.load_config("mri_recon.py", next_to=__file__)
  recon.model = "modl"  # data sizes, coils, SNR, masks and seed follow `seg`
  recon.num_volumes = 14
  recon.val_volumes = 1
  recon.test_volumes = 2
  recon.slices_per_volume = 8
  recon.modl = ml_collections.ConfigDict(dict(
      num_iters=4, cg_iters=4, depth=4, width=32, lam_init=0.05))
  recon.num_epochs = 5
  recon.cs_iters = 20
  recon.progress = False
  recon.figure_slices = 2
  config.recon = recon
  config.compilation_cache = True
  config.smoke = False
  return config
