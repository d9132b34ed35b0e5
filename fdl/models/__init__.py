"""Neural network models as flax.linen modules (NHWC images, float32 params, float32 outputs).

Every image model is called as ``model.apply(variables, x, train=...)``; the MRI
reconstruction models (`ReconUNet`, `MoDL`, `VarNet`) as ``model.apply(variables, kspace,
mask, maps, train=...)`` (see :mod:`fdl.models.reconstruct`). See :mod:`fdl.models.registry`
to build one from a config name.
"""

from fdl.models.activations import KNOWN_ACTIVATIONS, Activation
from fdl.models.autoencoder import VAE, ConvAutoencoder, reparameterize
from fdl.models.alexnet import AlexNet, adaptive_avg_pool, alexnet, alexnet_cifar
from fdl.models.cnn import CNN
from fdl.models.diffusion_unet import DiffusionUNet, timestep_embedding
from fdl.models.conv import Conv, compiler_options, conv_lowering
from fdl.models.gan import DCGAN, Discriminator, Generator
from fdl.models.joint import ReconSegmenter, recon_segmenter
from fdl.models.mlp import MLP
from fdl.models.modl import MoDL, ResidualDenoiser
from fdl.models.norm_unet import NormUNet, channels_to_complex, complex_to_channels
from fdl.models.recon_unet import ReconUNet
from fdl.models.recurrent import RNNClassifier
from fdl.models.reconstruct import check_recon_inputs, reconstruct
from fdl.models.registry import MODELS, create_model
from fdl.models.resnet import ResNet, resnet18, resnet34, resnet50
from fdl.models.resnet9 import ResNet9
from fdl.models.segmenter import Segmenter, predict_labels
from fdl.models.unet import UNet
from fdl.models.varnet import SensitivityModel, VarNet, VarNetCascade, acs_mask
from fdl.models.vgg import VGG, vgg11, vgg11_cifar, vgg16, vgg16_cifar
from fdl.models.vit import ViT, vit_b16, vit_cifar

__all__ = [
    'Activation',
    'CNN',
    'Conv',
    'DiffusionUNet',
    'ConvAutoencoder',
    'DCGAN',
    'Discriminator',
    'Generator',
    'KNOWN_ACTIVATIONS',
    'MLP',
    'MODELS',
    'MoDL',
    'NormUNet',
    'ReconSegmenter',
    'ReconUNet',
    'RNNClassifier',
    'ResNet',
    'ResNet9',
    'ResidualDenoiser',
    'Segmenter',
    'SensitivityModel',
    'UNet',
    'VAE',
    'VarNet',
    'VarNetCascade',
    'acs_mask',
    'channels_to_complex',
    'check_recon_inputs',
    'compiler_options',
    'complex_to_channels',
    'conv_lowering',
    'create_model',
    'timestep_embedding',
    'predict_labels',
    'recon_segmenter',
    'reconstruct',
    'reparameterize',
    'resnet18',
    'resnet34',
    'resnet50',
    'AlexNet',
    'VGG',
    'ViT',
    'adaptive_avg_pool',
    'alexnet',
    'alexnet_cifar',
    'vgg11',
    'vgg11_cifar',
    'vgg16',
    'vgg16_cifar',
    'vit_b16',
    'vit_cifar',
]
