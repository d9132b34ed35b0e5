"""Trains an autoencoder, a VAE or a DCGAN on small grey images and scores its samples.

  python experiments/generative.py --workdir runs/generative --config.model=vae
"""

from fdl.studies import harness
from fdl.tasks import generative

if __name__ == "__main__":
  harness.main(generative.train_and_evaluate, generative.report, script=__file__)
