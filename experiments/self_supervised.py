"""Learning without fully sampled data: supervised vs SSDU vs K-band MoDL, one test split.

  python experiments/self_supervised.py --config experiments/configs/self_supervised.py \
      --workdir runs/self_supervised [--config.smoke=True]
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import self_supervised

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/self_supervised",
                               "Directory for the runs, summary.json and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}, "
        f"processes: {jax.process_count()}")
  summary = self_supervised.compare_supervision(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume from the checkpoints")
    return
  print(f"test ({summary['test_slices']} slices of {summary['test_volumes']} volumes), "
        f"{summary['seconds']:.0f} s:")
  print(summary["table"])


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
