"""DCGAN: the deep convolutional generator and discriminator of Radford et al. (2016).

A. Radford, L. Metz, S. Chintala, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks", ICLR 2016. Their architecture rules,
kept here: no pooling (strided convolutions in the discriminator, fractionally strided,
i.e. transposed, convolutions in the generator); batch norm in both networks except the
generator's output layer and the discriminator's input layer; ReLU in the generator with
a tanh output (images in ``[-1, 1]``); LeakyReLU (slope 0.2) in the discriminator;
weights initialized from N(0, 0.02). The paper trains with Adam at learning rate 2e-4 and
beta1 = 0.5 (the train step is `fdl.tasks.generative.make_gan_step`).

The generator projects ``z [batch, latent_dim]`` by a dense layer to
``[H / 2**L, W / 2**L, features * 2**(L-1)]`` and doubles H and W ``L = num_layers``
times with ``4x4``, stride-2 transposed convolutions, halving the channels, the last one
to the image channels. The discriminator halves H and W ``L`` times with ``4x4``, stride-2
convolutions (``features, 2 * features, ...`` channels) and ends in one dense logit
``D(x) = sigmoid(logit)``, the probability that ``x`` is real.

`DCGAN` holds both as submodules ``generator`` and ``discriminator``, so one ``params``
tree (and one ``batch_stats`` tree) has the two networks as its two top-level entries;
``method='generate'`` / ``method='discriminate'`` applies one of them.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> gan = DCGAN(latent_dim=16, image_shape=(32, 32, 1), features=8, num_layers=3)
  >>> z, x = jnp.zeros((2, 16)), jnp.zeros((2, 32, 32, 1))
  >>> init = functools.partial(gan.init_with_output, train=False)
  >>> (images, logits), variables = jax.eval_shape(init, jax.random.key(0), z, x)
  >>> images.shape, logits.shape, sorted(variables['params'])
  ((2, 32, 32, 1), (2,), ['discriminator', 'generator'])
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv

_INIT = nn.initializers.normal(0.02)  # Radford et al.: all weights from N(0, 0.02).
LEAKY_SLOPE = 0.2


def _check_shape(image_shape, num_layers) -> None:
  _checks.check_positive('num_layers', num_layers)
  _checks.check_positive_sequence('image_shape', image_shape, allow_empty=False)
  if len(image_shape) != 3:
    raise ValueError(f'image_shape must be (H, W, C); got {image_shape!r}')
  factor = 2 ** num_layers
  if image_shape[0] % factor or image_shape[1] % factor:
    raise ValueError(
        f'image_shape H and W must be multiples of 2**num_layers = {factor}; got '
        f'image_shape {tuple(image_shape)} with num_layers {num_layers}')


def _batch_norm(train: bool, dtype):
  return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                      dtype=dtype, param_dtype=jnp.float32)


class Generator(nn.Module):
  """DCGAN generator ``z -> image`` in ``[-1, 1]``.

  Attributes:
    image_shape: ``(H, W, C)``; H and W multiples of ``2**num_layers``.
    features: channels of the last hidden layer; layer ``i`` from the output has
      ``features * 2**(i-1)``.
    num_layers: transposed convolutions (each doubles H and W).
    dtype: compute dtype; parameters and outputs are float32.
  """

  image_shape: Sequence[int] = (32, 32, 1)  # (H, W, C) of the images.
  features: int = 64  # Channels of the last hidden layer.
  num_layers: int = 3  # Stride-2 transposed convolutions.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _check_shape(self.image_shape, self.num_layers)
    _checks.check_positive('features', self.features)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: jax.Array, *, train: bool) -> jax.Array:
    """Images ``[batch, H, W, C]`` (float32, in ``[-1, 1]``) of latents ``z [batch, d]``."""
    _checks.check_input(z, rank=2, layout='[batch, latent_dim]')
    h, w, c = self.image_shape
    factor = 2 ** self.num_layers
    width = self.features * 2 ** (self.num_layers - 1)
    x = nn.Dense((h // factor) * (w // factor) * width, use_bias=False, kernel_init=_INIT,
                 dtype=self.dtype, param_dtype=jnp.float32)(z.astype(self.dtype))
    x = x.reshape(z.shape[0], h // factor, w // factor, width)
    x = nn.relu(_batch_norm(train, self.dtype)(x))
    for i in range(self.num_layers - 1):
      width //= 2
      x = nn.ConvTranspose(width, (4, 4), strides=(2, 2), padding='SAME', use_bias=False,
                           kernel_init=_INIT, dtype=self.dtype,
                           param_dtype=jnp.float32, name=f'ConvTranspose_{i}')(x)
      x = nn.relu(_batch_norm(train, self.dtype)(x))
    x = nn.ConvTranspose(c, (4, 4), strides=(2, 2), padding='SAME', kernel_init=_INIT,
                         dtype=self.dtype, param_dtype=jnp.float32,
                         name=f'ConvTranspose_{self.num_layers - 1}')(x)
    return jnp.tanh(x.astype(jnp.float32))


class Discriminator(nn.Module):
  """DCGAN discriminator ``image -> logit`` of the probability that it is real.

  Attributes:
    features: channels of the first convolution; doubled per layer.
    num_layers: stride-2 convolutions (each halves H and W).
    dtype: compute dtype; parameters and outputs are float32.
  """

  features: int = 64  # Channels of the first convolution.
  num_layers: int = 3  # Stride-2 convolutions.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('features', self.features)
    _checks.check_positive('num_layers', self.num_layers)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """float32 logits ``[batch]`` of images ``x [batch, H, W, C]`` in ``[-1, 1]``."""
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    factor = 2 ** self.num_layers
    if x.shape[1] % factor or x.shape[2] % factor:
      raise ValueError(f'x must have H and W multiples of 2**num_layers = {factor}; got '
                       f'shape {tuple(x.shape)}')
    x = x.astype(self.dtype)
    for i in range(self.num_layers):
      # No batch norm on the input layer (Radford et al.), so it keeps its bias.
      x = Conv(self.features * 2 ** i, (4, 4), strides=2, padding='SAME',
               use_bias=i == 0, kernel_init=_INIT, dtype=self.dtype,
               param_dtype=jnp.float32)(x)
      if i > 0:
        x = _batch_norm(train, self.dtype)(x)
      x = nn.leaky_relu(x, LEAKY_SLOPE)
    x = x.reshape(x.shape[0], -1)
    logits = nn.Dense(1, kernel_init=_INIT, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return logits[:, 0].astype(jnp.float32)


class DCGAN(nn.Module):
  """A generator and a discriminator in one module (one params tree, two entries).

  Attributes:
    latent_dim: size of ``z``; the prior is N(0, I).
    image_shape: ``(H, W, C)``; H and W multiples of ``2**num_layers``.
    features: the generator's last hidden and the discriminator's first channels.
    num_layers: up-/down-sampling layers of each network.
    dtype: compute dtype; parameters and outputs are float32.
  """

  latent_dim: int = 100  # Size of z (100 in Radford et al.).
  image_shape: Sequence[int] = (32, 32, 1)  # (H, W, C) of the images.
  features: int = 64  # G's last hidden / D's first channels.
  num_layers: int = 3  # Stride-2 layers per network.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('latent_dim', self.latent_dim)
    _check_shape(self.image_shape, self.num_layers)
    _checks.check_positive('features', self.features)
    super().__post_init__()

  def setup(self):
    self.generator = Generator(self.image_shape, self.features, self.num_layers,
                               dtype=self.dtype)
    self.discriminator = Discriminator(self.features, self.num_layers, dtype=self.dtype)

  def generate(self, z: jax.Array, *, train: bool) -> jax.Array:
    """``G(z)``: images ``[batch, H, W, C]`` in ``[-1, 1]`` of ``z [batch, latent_dim]``."""
    _checks.check_input(z, rank=2, layout='[batch, latent_dim]')
    if z.shape[1] != self.latent_dim:
      raise ValueError(f'z must have shape [batch, {self.latent_dim}] (latent_dim); '
                       f'got {tuple(z.shape)}')
    return self.generator(z, train=train)

  def discriminate(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Logits ``[batch]`` of ``D(x)`` for images ``x [batch, H, W, C]`` in ``[-1, 1]``."""
    _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
    if tuple(x.shape[1:]) != tuple(self.image_shape):
      raise ValueError(f'x must have shape [batch, {", ".join(map(str, self.image_shape))}]'
                       f' (the model\'s image_shape); got {tuple(x.shape)}')
    return self.discriminator(x, train=train)

  def __call__(self, z: jax.Array, x: jax.Array, *, train: bool
               ) -> tuple[jax.Array, jax.Array]:
    """``(G(z), logits of D(x))``; used to initialize both networks at once."""
    return self.generate(z, train=train), self.discriminate(x, train=train)


# A tiny variant for tests.
_TinyDCGAN = functools.partial(DCGAN, latent_dim=4, image_shape=(8, 12, 1), features=2,
                               num_layers=2)
