"""fdl: functional deep learning on JAX, Flax (linen) and Optax.

Subpackages: `fdl.models` (MLP, CNN, ResNet, U-Net), `fdl.losses`, `fdl.train`
(state, optimizers, compiled data-parallel steps, the `fit` loop, checkpoints)
and `fdl.data`.
"""

from fdl import data, losses, models, train

__version__ = "0.1.0"
__all__ = ["data", "losses", "models", "train"]
