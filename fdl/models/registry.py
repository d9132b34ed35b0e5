"""Models by name, for configs (``config.model_name`` plus ``config.model`` kwargs).

Examples:
  >>> model = create_model('resnet18', num_classes=10, stem='cifar')
  >>> model.stage_sizes, model.stem
  ((2, 2, 2, 2), 'cifar')
"""

from collections.abc import Callable

import flax.linen as nn

from fdl.models import _checks
from fdl.models.alexnet import alexnet, alexnet_cifar
from fdl.models.autoencoder import VAE, ConvAutoencoder
from fdl.models.cnn import CNN
from fdl.models.diffusion_unet import DiffusionUNet
from fdl.models.gan import DCGAN
from fdl.models.joint import recon_segmenter
from fdl.models.mlp import MLP
from fdl.models.modl import MoDL
from fdl.models.recon_unet import ReconUNet
from fdl.models.recurrent import RNNClassifier
from fdl.models.resnet import ResNet, resnet18, resnet34, resnet50
from fdl.models.resnet9 import ResNet9
from fdl.models.segmenter import Segmenter
from fdl.models.unet import UNet
from fdl.models.varnet import VarNet
from fdl.models.vgg import vgg11, vgg11_cifar, vgg16, vgg16_cifar
from fdl.models.vit import vit_b16, vit_cifar

MODELS: dict[str, Callable[..., nn.Module]] = {
    'mlp': MLP,
    'cnn': CNN,
    'resnet9': ResNet9,
    'resnet': ResNet,  # any stage sizes and block: create_model('resnet', stage_sizes=...)
    'resnet18': resnet18,
    'resnet34': resnet34,
    'resnet50': resnet50,
    'unet': UNet,
    # Diffusion noise predictor: model.apply(variables, x_t, t, train=...).
    'diffusion_unet': DiffusionUNet,
    # Segmentation: per-pixel class logits [N, H, W, num_classes].
    'segmenter': Segmenter,
    # MRI reconstruction: model.apply(variables, kspace, mask, maps, train=...).
    'recon_unet': ReconUNet,
    'modl': MoDL,
    'varnet': VarNet,
    # Segmentation from k-space: model.apply(variables, kspace, mask, maps, train=...)
    # -> (image [N, H, W], logits [N, H, W, num_classes]).
    'recon_segmenter': recon_segmenter,
    # Classic classifiers: ImageNet layouts (torchvision's counts) and 32 x 32 variants.
    'alexnet': alexnet,
    'alexnet_cifar': alexnet_cifar,
    'vgg11': vgg11,
    'vgg16': vgg16,
    'vgg11_cifar': vgg11_cifar,
    'vgg16_cifar': vgg16_cifar,
    'vit_b16': vit_b16,
    'vit_cifar': vit_cifar,
    # Sequences [N, T, F] -> logits [N, num_classes]: cell='rnn' | 'lstm' | 'gru'.
    'rnn_classifier': RNNClassifier,
    # Generative: autoencoder (logits), VAE ((logits, mean, logvar)), DCGAN (G and D).
    'autoencoder': ConvAutoencoder,
    'vae': VAE,
    'dcgan': DCGAN,
}


def create_model(name: str, **kwargs) -> nn.Module:
  """Builds the model registered as ``name`` with keyword arguments ``kwargs``.

  Raises:
    ValueError: ``name`` is not a key of :data:`MODELS` (the message lists them), or a
      keyword argument has an invalid value.
  """
  _checks.check_choice('model name', name, tuple(MODELS))
  return MODELS[name](**kwargs)
