"""Trains a linear classifier and an MLP on points no line separates.

  python experiments/nonlinearity.py --config experiments/configs/nonlinearity.py \
      --workdir runs/nonlinearity [--config.dataset=xor ...]
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import nonlinearity

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/nonlinearity",
                               "Directory for metrics, checkpoints and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  summary = nonlinearity.run(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print(f"interrupted while training {summary['model']}; run the same command "
          "again to resume from the checkpoint")
    return
  print(json.dumps({k: round(summary[k], 4) if isinstance(summary[k], float)
                    else summary[k] for k in
                    ("dataset", "linear_accuracy", "mlp_accuracy", "figure")},
                   indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
