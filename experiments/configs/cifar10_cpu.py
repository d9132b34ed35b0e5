"""The README's CIFAR-10 recipe: ResNet-9 (width 16) trained for under 30 min on 2 CPU cores.

  python experiments/cifar.py --config experiments/configs/cifar10_cpu.py \
      --workdir runs/cifar10_cpu

Reads the numpy copy of CIFAR-10 in ../shared/data/cifar10 (override
`--config.train_file` etc.). Validation: 5,000 images carved from the 50,000
training images; test: the 1,000 lossless official test images, then, once
each, the 10,000 JPEG-decoded ones. See README for the measured result.
"""

import importlib.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_DATA = os.path.normpath(os.path.join(_HERE, "..", "..", "..", "shared", "data",
                                      "cifar10"))


def _base_config(arg):
  spec = importlib.util.spec_from_file_location(
      "cifar_base_config", os.path.join(_HERE, "cifar.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg)


def get_config(arg: str | None = None):
  config = _base_config(None)
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
  config.test_time_flip = True
  config.log_every = 25
  if arg == "smoke":  # the same recipe, tiny, for tests
    config.num_epochs = 1
    config.warmup_epochs = 0.5
    config.width = 2
    config.batch_size = 32
    config.val_size = 64
    config.progress = False
  return config
