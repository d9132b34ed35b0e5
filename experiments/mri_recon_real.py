"""Applies trained reconstruction networks to a real, acquired brain slice.

  python experiments/mri_recon_real.py --workdirs runs/modl_4x,runs/unet_4x \
      --workdir runs/real_4x [--data ../shared/data/mri/lustig_brain_alias_8ch.npz]

Each of `--workdirs` is a finished `experiments/mri_recon.py` run; all must use
the same mask family and acceleration. Prints NMSE / PSNR / SSIM against the
fully sampled RSS image and writes ``real_brain.png`` and ``summary.json`` into
`--workdir` (alias `--out`).
"""

from absl import flags

from fdl.studies import harness, mri_recon_real

_WORKDIRS = flags.DEFINE_list("workdirs", None, "Trained runs, comma-separated.")
_DATA = flags.DEFINE_string("data", mri_recon_real.DEFAULT_DATA, "Real k-space (.npz).")

if __name__ == "__main__":
  flags.mark_flags_as_required(["workdirs"])
  harness.main(lambda _, out: mri_recon_real.evaluate_on_real(_WORKDIRS.value, out,
                                                              _DATA.value),
               mri_recon_real.report, script=__file__, config=False,
               workdir_aliases=("out",))
