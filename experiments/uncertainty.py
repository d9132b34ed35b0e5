"""Uncertainty and hallucination in learned MRI reconstruction: MC dropout vs an ensemble.

  python experiments/uncertainty.py --config experiments/configs/uncertainty.py \
      --workdir runs/uncertainty [--config.smoke=True ...]

Prints the error-std correlation, the calibration fractions and the lesion probe of
each method; everything is in ``<workdir>/summary.json`` and the figures next to it.
"""

import json

from absl import app, flags, logging
from ml_collections import config_flags

import jax

from fdl.studies import harness
from fdl.studies import uncertainty as uncertainty_study

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file.",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", "runs/uncertainty",
                               "Directory for the runs, summary.json and figures.")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # keep Orbax's per-save INFO lines out
  print(f"devices: {jax.device_count()} x {jax.devices()[0].device_kind}, "
        f"processes: {jax.process_count()}")
  if _CONFIG.value.compilation_cache:
    # The runs share their networks' shapes: compiled steps are reused across runs
    # (and reruns) instead of compiled again, which dominates small CPU runs.
    harness.use_compilation_cache(_WORKDIR.value)
  summary = uncertainty_study.run(_CONFIG.value, _WORKDIR.value)
  if summary.get("interrupted"):
    print("interrupted; run the same command again to resume")
    return
  shown = {
      "error_std_correlation": summary["error_std_correlation"],
      "within_1_std": {m: c["within_1_std"] for m, c in summary["calibration"].items()},
      "within_2_std": {m: c["within_2_std"] for m, c in summary["calibration"].items()},
      "rmse_over_rms_std": {m: c["rmse_over_rms_std"]
                            for m, c in summary["calibration"].items()},
      "lesion_probe": {m: {k: p[k] for k in ("kept_fraction", "spill",
                                             "std_disc_over_ring")}
                       for m, p in summary["lesion_probe"].items() if m != "lesion"},
      "test_ssim": {m: s["ssim"] for m, s in summary["test"].items()},
      "seconds": summary["seconds"],
  }
  print(json.dumps(shown, indent=2))


if __name__ == "__main__":
  flags.mark_flags_as_required(["config"])
  app.run(main)
