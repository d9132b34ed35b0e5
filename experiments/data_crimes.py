"""Reproduces implicit data crimes: metrics improve as the data get more processed.

  python experiments/data_crimes.py --workdir runs/data_crimes [--config.smoke=True]

Prints one table per setting as it finishes (zero-filled, CG-SENSE, CS and the
learned model against that setting's processed reference); writes
``summary.json`` (``results``) and ``data_crimes.png`` into the workdir, one
sub-directory per setting (run again to resume).
"""

from fdl.studies import data_crimes, harness

if __name__ == "__main__":
  harness.main(data_crimes.run, data_crimes.report, script=__file__)
