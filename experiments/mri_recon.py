"""Trains a learned MRI reconstruction (U-Net, MoDL, E2E-VarNet) and tests it once.

  python experiments/mri_recon.py --config experiments/configs/mri_recon.py \
      --workdir runs/mri_recon [--config.model=varnet --config.acceleration=8 ...]

Prints the test table: zero-filled, CG-SENSE, CS and the model (mean ± std of
NMSE / PSNR / SSIM over the test slices).
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.tasks import reconstruction

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/mri_recon",
                               "Directory for metrics, checkpoints and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}, "
        f"processes: {jax.process_count()}")
  summary = reconstruction.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume from the checkpoint")
    return
  shown = ("model", "acceleration", "num_params", "best_epoch", "epochs_run",
           "val_ssim", "train_seconds_this_run", "examples_per_sec")
  print(json.dumps({k: summary[k] for k in shown}, indent=2))
  print(f"test ({summary['test']['num_slices']} slices of "
        f"{summary['test']['num_volumes']} volumes):")
  print(reconstruction.format_table(summary))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
