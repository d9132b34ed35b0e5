"""Trains the U-Net tissue segmenter on synthesized slices and tests it once.

  python experiments/segmentation.py --config experiments/configs/segmentation.py \
      --workdir runs/segmentation [--config.smoke=True]

With ``--config experiments/configs/segmentation.py:k2s``: the K2S study
(`fdl.studies.k2s`), segmentation from under-sampled k-space.
"""

from fdl.studies import harness, k2s

if __name__ == "__main__":
  harness.main(k2s.run_or_task, k2s.report, script=__file__)
