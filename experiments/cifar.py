"""Trains an image classifier (CIFAR-10/100, digits, npz, ...) and tests it once.

  python experiments/cifar.py --workdir runs/cifar \
      [--config experiments/configs/cifar10_cpu.py] [--config.model=resnet18 ...]
"""

from fdl.studies import harness
from fdl.tasks import classification

if __name__ == "__main__":
  harness.main(classification.train_and_evaluate, classification.report, script=__file__)
