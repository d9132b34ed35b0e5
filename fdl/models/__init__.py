"""Neural network models as flax.linen modules (NHWC images, float32 params, float32 outputs).

Every model is called as ``model.apply(variables, x, train=...)``; see :mod:`fdl.models.registry`
to build one from a config name.
"""

from fdl.models.activations import KNOWN_ACTIVATIONS, Activation
from fdl.models.cnn import CNN
from fdl.models.mlp import MLP
from fdl.models.registry import MODELS, create_model
from fdl.models.resnet import ResNet, resnet18, resnet34, resnet50
from fdl.models.resnet9 import ResNet9
from fdl.models.unet import UNet

__all__ = [
    'Activation',
    'CNN',
    'KNOWN_ACTIVATIONS',
    'MLP',
    'MODELS',
    'ResNet',
    'ResNet9',
    'UNet',
    'create_model',
    'resnet18',
    'resnet34',
    'resnet50',
]
