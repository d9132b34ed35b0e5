"""Scarce data: fine-tuned vs from-scratch reconstruction on N target slices.

  python experiments/scarce_data.py --config experiments/configs/scarce_data.py \
      --workdir runs/scarce_data

Prints each arm's test scores as it finishes and the whole table at the end;
writes ``summary.json`` and ``ssim_vs_n.png`` into the workdir, one
sub-directory per run (run again to resume; finished runs are read back).
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import scarce_data

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/scarce_data",
                               "Directory for the runs, summary and figure.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  summary = scarce_data.run(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume")
    return
  print(f"done in {summary['seconds']:.0f} s ({summary['num_test_slices']} test slices)")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
