"""Scarce data: fine-tuned vs from-scratch reconstruction on N target slices.

  python experiments/scarce_data.py --workdir runs/scarce_data [--config.smoke=True]

Prints each arm's test scores as it finishes and the whole table at the end;
writes ``summary.json`` and ``ssim_vs_n.png`` into the workdir, one
sub-directory per run (run again to resume; finished runs are read back).
"""

from fdl.studies import harness, scarce_data

if __name__ == "__main__":
  harness.main(scarce_data.run, scarce_data.report, script=__file__)
