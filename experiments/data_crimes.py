"""Reproduces implicit data crimes: metrics improve as the data get more processed.

  python experiments/data_crimes.py --config experiments/configs/data_crimes.py \
      --workdir runs/data_crimes

Prints one table per setting as it finishes (zero-filled, CG-SENSE, CS and the
learned model against that setting's processed reference); writes
``summary.json`` (``results``) and ``data_crimes.png`` into the workdir, one
sub-directory per setting (run again to resume).
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import data_crimes

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/data_crimes",
                               "Directory for the per-setting runs, summary and figure.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  summary = data_crimes.run(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume")
    return
  print(f"all settings ({summary['num_test_slices']} test slices each, "
        f"{summary['seconds']:.0f} s):")
  print(data_crimes.format_rows(summary["results"]))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
