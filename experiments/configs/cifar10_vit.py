"""A ViT and ResNet-9 on CIFAR-10 at an equal budget of minutes on two CPU cores.

  python experiments/cifar.py --config experiments/configs/cifar10_vit.py \
      --workdir runs/cifar10_vit
  python experiments/cifar.py --config experiments/configs/cifar10_vit.py:resnet9 \
      --workdir runs/cifar10_vit_resnet9

Both are `cifar10_cpu.py` (the same 45,000 / 5,000 split, augmentation, sealed test
sets and label smoothing) with the number of epochs cut so that each trains for about
the same minutes here: `vit_cifar` (1.2 M parameters, patch 4, AdamW as for ViTs)
for VIT_EPOCHS epochs and ResNet-9 (width 16, the recipe's SGD) for RESNET_EPOCHS.
Measured here (README): ViT 41.4 % test after 469 s, ResNet-9 81.0 % after 479 s.
"""

import ml_collections

from fdl import config_files

# Epochs that took about the same minutes (~8) for each on a 2-core AMD EPYC (README).
VIT_EPOCHS = 1
RESNET_EPOCHS = 4


def get_config(arg: str | None = None):
  """``vit`` (default) or ``resnet9``; ``smoke``: the ViT, tiny (one block of width 16),
  on `cifar10_cpu.py`'s smoke settings."""
  if arg not in (None, "", "vit", "resnet9", "smoke"):
    raise ValueError(f"config argument must be vit, resnet9 or smoke; got {arg!r}")
  smoke = arg == "smoke"
  config = config_files.load_config("cifar10_cpu.py", "smoke" if smoke else None,
                                    next_to=__file__)
  if arg == "resnet9":
    config.num_epochs = RESNET_EPOCHS
    return config
  config.model = "vit_cifar"
  # Transformers train with Adam(W), a warm-up and clipping, not the ResNet's SGD.
  config.optimizer = "adamw"
  config.learning_rate = 1e-3
  config.weight_decay = 0.05
  config.warmup_epochs = 0.5
  config.grad_clip_norm = 1.0
  if smoke:
    config.model_kwargs = ml_collections.ConfigDict(dict(width=16, depth=1, num_heads=2,
                                                         mlp_dim=32))
  else:
    config.num_epochs = VIT_EPOCHS
  return config
