"""CIFAR classification with any fdl model.

  python experiments/cifar.py --config experiments/configs/cifar.py --workdir runs/cifar \
      [--config.KEY=VALUE ...]

The argument after the file name picks a preset:
- none (or `:digits`): the embedded default, scikit-learn's 8x8 handwritten digits
  (1,797 real images, 70/15/15 split; no download), with digit-safe augmentation
  (1-pixel shifts, small rotations, no flips). About 35 s on 2 CPU cores.
- `:cifar`: CIFAR-10 from a prepared TFDS_DATA_DIR with the usual crop + flip;
  use `--config.dataset=cifar10_dir --config.data_dir=DIR` for the python pickle
  files, or `--config.dataset=npz --config.train_file=... --config.test_file=...`.
- `:smoke` (or ``--config.smoke=True``): synthetic data and a tiny CNN, for tests
  (``fdl.config_files.SMOKE["cifar"]``).
The recipe behind the README's CIFAR-10 result is `cifar10_cpu.py`. Epoch
numbers in summary.json count from 1.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  # Data.
  config.dataset = "digits"  # cifar10, cifar100, cifar10_dir, cifar100_dir, npz, digits, synthetic
  config.data_dir = ""  # TFDS_DATA_DIR for cifar10/100, the pickle folder for *_dir
  config.train_file = ""  # npz: training archive (x uint8 [N,H,W,C], y)
  config.test_file = ""  # npz: test archive; evaluated once, after training
  config.extra_test_files = ()  # more npz test archives, each evaluated once
  config.val_size = 5000  # validation images carved from train (CIFAR: 45k / 5k)
  config.val_fraction = 0.15  # used instead when val_size is too large for the data
  config.test_fraction = 0.15  # for data without an official test split
  config.data_workers = 0  # grain worker processes (0: in-process)

  config.augment = True  # master switch; the settings below apply when True
  config.augmentation = ml_collections.ConfigDict()
  config.augmentation.crop_padding = 4  # random crop after zero padding (0: off)
  config.augmentation.flip = True  # random horizontal flip
  config.augmentation.rotation_degrees = 0.0  # max |rotation| (0: off)
  config.augmentation.scale_range = 0.0  # scale factor in [1-s, 1+s] (0: off)
  config.augmentation.cutout_size = 0  # square cutout side in pixels (0: off)

  # Model.
  config.model = "resnet9"  # mlp, cnn, resnet9, resnet18, resnet34, resnet50
  config.width = 16  # resnet9 / resnet18-50 base width
  config.stem = "cifar"  # resnet18-50: 'cifar' or 'imagenet'
  config.dropout = -1.0  # mlp, cnn, alexnet_cifar, vgg11/16_cifar, vit_cifar; -1: the model's
  # default (mlp, cnn, vit: none; alexnet, vgg: 0.5 before the hidden dense layers)
  config.model_kwargs = ml_collections.ConfigDict()  # any further constructor arguments
  config.bf16 = False  # bfloat16 compute, float32 parameters

  # Optimization.
  config.num_epochs = 30
  config.batch_size = 128  # global batch, split over devices
  config.seed = 0
  config.optimizer = "nesterov"  # sgd, momentum, nesterov, adam, adamw
  config.learning_rate = 0.1
  config.momentum = 0.9
  config.schedule = "warmup_cosine"  # constant, step, cosine, warmup_cosine
  config.warmup_epochs = 1.0
  config.schedule_epochs = -1  # length of the schedule; -1: num_epochs
  config.weight_decay = 5e-4
  config.grad_clip_norm = -1.0  # -1: no clipping
  config.label_smoothing = 0.1
  config.l1 = 0.0
  config.l2 = 0.0
  config.test_time_flip = False  # validation and test logits averaged over x and its mirror
  config.early_stopping_patience = 0  # epochs without val accuracy gain; 0: off

  # Bookkeeping.
  config.log_every = 50
  config.keep_checkpoints = 2
  config.progress = True

  if arg not in (None, "", "digits", "cifar", "smoke"):
    raise ValueError(f"config argument must be digits, cifar or smoke; got {arg!r}")
  if arg in (None, "", "digits"):
    config.augmentation.crop_padding = 1  # 4 would be half an 8x8 digit
    config.augmentation.flip = False  # a mirrored digit is another symbol
    config.augmentation.rotation_degrees = 10.0
  if arg == "cifar":
    config.dataset = "cifar10"

  config.smoke = arg == "smoke"
  if config.smoke:
    config_files.apply_smoke(config, "cifar")
  return config
