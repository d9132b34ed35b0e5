"""Applies trained reconstruction networks to a real, acquired brain slice.

  python experiments/mri_recon_real.py --workdirs runs/modl_4x,runs/unet_4x \
      --out runs/real_4x [--data ../shared/data/mri/lustig_brain_alias_8ch.npz]

Each work directory is a finished `experiments/mri_recon.py` run; all must use
the same mask family and acceleration. Prints NMSE / PSNR / SSIM against the
fully sampled RSS image and writes ``real_brain.png`` and ``summary.json``.
"""

from absl import app, flags, logging

from fdl.studies import mri_recon_real

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained runs, comma-separated.")
_OUT = flags.DEFINE_string("out", "runs/mri_recon_real", "Output directory.")
_DATA = flags.DEFINE_string("data", mri_recon_real.DEFAULT_DATA, "Real k-space (.npz).")


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  summary = mri_recon_real.evaluate_on_real(_WORKDIRS.value, _OUT.value, _DATA.value)
  print(f"real k-space {summary['kspace_shape']}, {summary['acceleration']:g}x "
        f"{summary['mask']} (achieved {summary['achieved_acceleration']:.2f}x)")
  print(f"{'method':<28} {'NMSE':>8} {'PSNR':>7} {'SSIM':>7}")
  for name, s in summary["methods"].items():
    print(f"{name:<28} {s['nmse']:8.4f} {s['psnr']:7.2f} {s['ssim']:7.4f}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  app.run(main)
