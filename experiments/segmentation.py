"""Trains the U-Net tissue segmenter on synthesized slices and tests it once.

  python experiments/segmentation.py --config experiments/configs/segmentation.py \
      --workdir runs/segmentation [--config.smoke=True]
"""

from fdl.studies import harness
from fdl.tasks import segmentation

if __name__ == "__main__":
  harness.main(segmentation.train_and_evaluate, segmentation.report, script=__file__)
