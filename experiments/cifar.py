"""Trains an image classifier (CIFAR-10/100, digits, npz, ...) and tests it once.

  python experiments/cifar.py --config experiments/configs/cifar.py --workdir runs/cifar \
      [--config.dataset=cifar10 --config.model=resnet18 ...]
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.tasks import classification

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/cifar",
                               "Directory for metrics, checkpoints and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}, "
        f"processes: {jax.process_count()}")
  summary = classification.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume from the checkpoint")
    return
  shown = ("test_accuracy", "test_split", "tests", "val_accuracy", "best_epoch",
           "epochs_run", "train_loss", "examples_per_sec", "num_params")
  print(json.dumps({k: summary[k] for k in shown}, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
