"""Recurrent networks on 8x8 digits read as sequences (`fdl.tasks.sequence`).

  python experiments/sequence.py --config experiments/configs/sequence.py \
      --workdir runs/sequence

trains an Elman RNN, an LSTM and a GRU (64 hidden units each) on scikit-learn's digits
read row by row (T = 8 steps of F = 8 pixels) and reports each one's accuracy on the
sealed test split (269 digits). ``--config.read=pixels`` reads them pixel by pixel
(T = 64, F = 1), a harder memory task. ``--config.smoke=True`` (or ``:smoke``) shrinks it
to ``fdl.config_files.SMOKE["sequence"]`` (seconds). See the README for measured numbers.
"""

import ml_collections

from fdl import config_files


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  # Data: fdl.data.load_source("digits"), 1,797 images, split 0.70 / 0.15 / 0.15.
  config.read = "rows"  # 'rows' (T=8, F=8) or 'pixels' (T=64, F=1)
  config.val_fraction = 0.15
  config.test_fraction = 0.15

  # Models: one fdl.models.recurrent.RNNClassifier per cell, same sizes.
  config.cells = ("rnn", "lstm", "gru")
  config.hidden = 64  # hidden units per direction and layer
  config.num_layers = 1
  config.bidirectional = False
  config.readout = "last"  # 'last' hidden state or 'mean' over time

  config.optimizer = "adam"
  config.learning_rate = 3e-3
  config.schedule = "cosine"
  config.warmup_steps = 0
  config.weight_decay = 0.0
  config.grad_clip_norm = 1.0  # global L2 norm; 0: off
  config.batch_size = 32
  config.num_epochs = 40
  config.early_stopping_patience = 10  # epochs without a better val accuracy; 0: off
  config.keep_checkpoints = 1
  config.log_every = 20
  config.progress = True

  config.smoke = arg == "smoke"
  if config.smoke:
    config_files.apply_smoke(config, "sequence")
  return config
