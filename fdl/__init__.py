"""fdl: functional deep learning on JAX, Flax (linen) and Optax.

Subpackages: `fdl.models` (MLP, CNN, ResNet, U-Net), `fdl.losses`, `fdl.train`
(state, optimizers, compiled data-parallel steps, the `fit` loop, checkpoints)
and `fdl.data`. They are imported on first use (``fdl.train``, ``from fdl import
train``), so that light modules such as `fdl.config_files`, which experiment
config files import, do not pull in JAX.
"""

import importlib

__version__ = "0.1.0"
__all__ = ["data", "losses", "models", "train"]


def __getattr__(name):
  if name in __all__:
    return importlib.import_module(f"fdl.{name}")
  raise AttributeError(f"module 'fdl' has no attribute {name!r}")
