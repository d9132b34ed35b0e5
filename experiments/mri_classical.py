"""Zero-filled, CG-SENSE and compressed-sensing reconstructions, scored.

  python experiments/mri_classical.py --config experiments/configs/mri_classical.py \
      --workdir runs/mri_classical [--config.files='("a.h5",)' ...]
"""

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import mri_classical

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/mri_classical",
                               "Directory for summary.json and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}")
  summary = mri_classical.run(_CONFIG.value, _WORKDIR.value)
  print(f"k-space {summary['kspace_shape']} [slices, coils, H, W], maps: "
        f"{summary['maps']}")
  print(mri_classical.format_table(summary))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
