"""Brain segmentation from (under-sampled) k-space: the K2S study, or one segmentation task.

  python experiments/segmentation.py --config experiments/configs/segmentation.py \
      --workdir runs/k2s [--config.smoke=True]

runs the K2S study (`fdl.studies.k2s`): at 1x, 4x and 8x it segments the sealed test
slices (colin27 and the ITK head, T1) (a) fully sampled, (b) zero-filled, (c)
reconstructed by a MoDL and, at 8x, (d) by a MoDL + segmenter trained end to end
from k-space; ``summary.json``'s ``test`` maps ``fully_sampled``, ``zero_filled``,
``reconstructed`` and ``joint`` (8x) to ``mean_dice``, ``dice`` per class and
``hd95`` (mm). ``--config.smoke=True`` (or ``:smoke``) shrinks every sub-run to
``fdl.config_files.SMOKE`` sizes (about a minute).

Arguments after the colon, comma-separated:

- ``task``: one segmentation task instead of the study (`fdl.tasks.segmentation`:
  ``--config.input=fully_sampled|zero_filled|kspace``, ``--config.acceleration=8``);
- ``lesions``: the synthetic-lesion label set instead of the tissues;
- ``smoke``: tiny sizes.

E.g. ``--config experiments/configs/segmentation.py:task`` trains the tissue
segmenter on fully sampled slices alone (5.5 min here, test mean Dice 0.733).
"""

import ml_collections

from fdl import config_files


ARGS = ("task", "lesions", "smoke")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  args = {a.strip() for a in (arg or "").split(",") if a.strip()}
  unknown = args - set(ARGS)
  if unknown:
    raise ValueError(f"unknown config arguments {sorted(unknown)}; known: {ARGS} "
                     "(comma-separated)")
  config = task_config("lesions" in args)
  if "task" not in args:
    config = k2s_config(config)
  if "smoke" in args:
    config.smoke = True
    if "task" in args:
      config_files.apply_smoke(config, "segmentation")
  return config


def task_config(lesions: bool = False) -> ml_collections.ConfigDict:
  """The segmentation task's settings (`fdl.tasks.segmentation`)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Data: synthesized from anatomy templates (fdl.data.synthesis).
  # 'tissues' (background, CSF, GM, WM) or 'lesions' (background, lesion: synthetic
  # lesions inserted into the anatomy, fdl.data.synthesis).
  config.label_set = "lesions" if lesions else "tissues"
  # Synthetic lesions (label_set='lesions'; fdl.data.synthesis.DEFAULT_LESIONS): per
  # slice with this probability, count lesions of radius_mm, host intensity x
  # (1 +- contrast), in grey and white matter.
  config.lesions = ml_collections.ConfigDict(dict(
      probability=0.8, count=(1, 3), radius_mm=(2.0, 8.0), contrast=(0.3, 0.8),
      irregularity=0.3, max_elongation=2.0, host_labels=(2, 3)))
  # Training and validation anatomy: MNI152 labelled by the rule of the test
  # templates' labels (k-means of T1; 'mni152' labels by its probability maps).
  config.train_templates = ("mni152_kmeans",)
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

  # What the segmenter sees: 'fully_sampled' (the magnitude image),
  # 'zero_filled' (RSS of k-space under-sampled at `acceleration`) or 'kspace'
  # (that under-sampled k-space, through the joint network below).
  config.input = "fully_sampled"
  config.acceleration = 8.0
  config.center_fraction = 0.08
  config.mask = "equispaced"  # 'equispaced' or 'random'

  # Model.
  config.segmenter = ml_collections.ConfigDict()
  config.segmenter.base_channels = 16
  config.segmenter.num_pools = 3
  config.segmenter.dropout = 0.0
  # input='kspace': the joint network (fdl.models.ReconSegmenter), this
  # reconstruction then the segmenter above, trained end to end; the loss adds
  # recon_weight x L1 of the reconstruction. init_recon / init_segmenter: finished
  # MoDL / segmenter work directories to start from ('' = random weights).
  config.joint = ml_collections.ConfigDict(dict(
      recon="modl",
      recon_kwargs=ml_collections.ConfigDict(dict(
          num_iters=4, cg_iters=4, depth=4, width=32, lam_init=0.05)),
      recon_weight=1.0, init_recon="", init_segmenter=""))

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

  config.smoke = False
  return config


def k2s_config(seg: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The K2S study (`fdl.studies.k2s`), segmentation from under-sampled k-space.

  Trains the segmenter on fully sampled images, one on zero-filled images and one
  MoDL per acceleration above 1x, then fine-tunes the last MoDL and the first
  segmenter together from k-space, and segments the same test slices every way.
  ``--config.smoke=True`` shrinks the sub-runs to ``SMOKE["segmentation"]`` and
  ``SMOKE["mri_recon"]`` (a few minutes).
  """
  config = ml_collections.ConfigDict()
  config.study = "k2s"
  config.accelerations = (1.0, 4.0, 8.0)
  seg.smoke = False
  # Every segmenter of the study trains 14 epochs (the task alone: 20), so that the
  # whole study stays within 20 minutes on 2 CPU cores.
  seg.num_epochs = 14
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
  # (d) at the highest acceleration: the MoDL and the fully sampled segmenter, fine-
  # tuned together from k-space (fdl.tasks.segmentation with input='kspace').
  config.joint = ml_collections.ConfigDict(dict(
      num_epochs=3, learning_rate=5e-4, recon_weight=1.0))
  config.compilation_cache = True
  config.smoke = False
  return config
