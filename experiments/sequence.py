"""Trains an Elman RNN, an LSTM and a GRU on 8x8 digits read row by row; tests each once.

  python experiments/sequence.py --config experiments/configs/sequence.py \
      --workdir runs/sequence [--config.read=pixels] [--config.smoke=True]
"""

from fdl.studies import harness
from fdl.tasks import sequence

if __name__ == "__main__":
  harness.main(sequence.train_and_evaluate, sequence.report, script=__file__)
