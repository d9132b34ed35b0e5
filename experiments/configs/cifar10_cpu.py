"""The README's CIFAR-10 recipe: ResNet-9 (width 16) trained for under 30 min on 2 CPU cores.

  python experiments/cifar.py --config experiments/configs/cifar10_cpu.py \
      --workdir runs/cifar10_cpu

Reads the numpy copy of CIFAR-10 in ../shared/data/cifar10 (override
`--config.train_file` etc.). Validation: 5,000 images carved from the 50,000
training images; test: the 1,000 lossless official test images, then, once
each, the 10,000 JPEG-decoded ones. See README for the measured result.
`:smoke` is this recipe, tiny, on the same data (``fdl.config_files.SMOKE
["cifar10_cpu"]``); ``--config.smoke=True`` is the generic classification smoke.
"""

import os

from fdl import config_files

_HERE = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.normpath(os.path.join(_HERE, "..", "..", "..", "shared", "data",
                                      "cifar10"))


def get_config(arg: str | None = None):
  config = config_files.load_config("cifar.py", next_to=__file__)
  config.dataset = "npz"
  config.train_file = os.path.join(_DATA, "cifar10_train.npz")
  config.test_file = os.path.join(_DATA, "cifar10_test1000_lossless.npz")
  config.extra_test_files = (os.path.join(_DATA, "cifar10_test.npz"),)
  config.val_size = 5000

  config.model = "resnet9"
  config.width = 16
  config.num_epochs = 15
  config.batch_size = 256
  config.optimizer = "nesterov"
  config.learning_rate = 0.2
  config.schedule = "warmup_cosine"
  config.warmup_epochs = 2.0
  config.weight_decay = 5e-4
  config.label_smoothing = 0.2
  config.augmentation.crop_padding = 4
  config.augmentation.flip = True
  # Small rotations too: the README's result was measured with them (they came, unseen,
  # from cifar.py's digits preset until this line said so).
  config.augmentation.rotation_degrees = 10.0
  config.test_time_flip = True
  config.log_every = 25
  if arg == "smoke":  # the same recipe, tiny, for tests
    config_files.apply_smoke(config, "cifar10_cpu")
  return config
