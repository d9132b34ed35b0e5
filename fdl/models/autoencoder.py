"""Convolutional autoencoders for small grey (or colour) images: a plain one and a VAE.

Both share one encoder and one decoder. The encoder is ``len(features)`` blocks of
``conv 3x3, stride 2 -> ReLU`` (each halves H and W) and a dense layer; the decoder
mirrors it with a dense layer to ``[H / 2**k, W / 2**k, features[-1]]`` and ``k``
transposed ``4x4, stride 2`` convolutions with ReLU, then a ``3x3`` convolution to the
image channels. The decoder returns unconstrained values: Bernoulli logits for images in
``[0, 1]`` (``jax.nn.sigmoid`` gives the mean image) or, for a Gaussian likelihood, the
mean itself; `fdl.losses.elbo_loss` interprets them.

The variational autoencoder (Kingma & Welling, "Auto-Encoding Variational Bayes", ICLR
2014) has an encoder that outputs the mean and log-variance of a diagonal Gaussian
``q(z | x)``. Its latent sample uses the reparameterization

  z = mean + exp(logvar / 2) * eps,   eps ~ N(0, I),

with ``eps`` drawn from the Flax RNG stream ``'latent'`` (``rngs={'latent': key}``), so
gradients flow through ``mean`` and ``logvar`` and the sample is a pure function of the
key. ``decode(z)`` maps prior samples ``z ~ N(0, I)`` to images.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = VAE(latent_dim=2, image_shape=(28, 28, 1), features=(8, 16))
  >>> x = jnp.zeros((3, 28, 28, 1))
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> (logits, mean, logvar), variables = jax.eval_shape(
  ...     init, {'params': jax.random.key(0), 'latent': jax.random.key(1)}, x)
  >>> logits.shape, mean.shape, logvar.shape
  ((3, 28, 28, 1), (3, 2), (3, 2))
"""

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv

LATENT_RNG = 'latent'  # The Flax RNG stream of the VAE's eps.


def reparameterize(mean: jax.Array, logvar: jax.Array, key: jax.Array) -> jax.Array:
  """A sample ``z = mean + exp(logvar / 2) * eps`` of ``N(mean, diag exp(logvar))``.

  Args:
    mean: float ``[batch, latent_dim]``.
    logvar: the log-variances, same shape.
    key: a PRNG key; ``eps ~ N(0, I)`` is ``jax.random.normal(key, mean.shape)``.

  Returns:
    ``z``, same shape and dtype as `mean`; differentiable in `mean` and `logvar`.
  """
  eps = jax.random.normal(key, mean.shape, mean.dtype)
  return mean + jnp.exp(0.5 * logvar) * eps


def _check_image_shape(image_shape, features) -> None:
  _checks.check_positive_sequence('image_shape', image_shape, allow_empty=False)
  if len(image_shape) != 3:
    raise ValueError(f'image_shape must be (H, W, C); got {image_shape!r}')
  _checks.check_positive_sequence('features', features, allow_empty=False)
  factor = 2 ** len(features)
  h, w, _ = image_shape
  if h % factor or w % factor:
    raise ValueError(
        f'image_shape H and W must be multiples of 2**len(features) = {factor} (each '
        f'encoder block halves them); got image_shape {tuple(image_shape)} with '
        f'features {tuple(features)}')


def _check_images(x, image_shape) -> None:
  _checks.check_input(x, rank=4, layout='[batch, H, W, C]')
  if tuple(x.shape[1:]) != tuple(image_shape):
    raise ValueError(f'x must have shape [batch, {", ".join(map(str, image_shape))}] '
                     f'(the model\'s image_shape); got {tuple(x.shape)}')


def _check_latent(z, latent_dim: int) -> None:
  _checks.check_input(z, rank=2, layout='[batch, latent_dim]')
  if z.shape[1] != latent_dim:
    raise ValueError(f'z must have shape [batch, {latent_dim}] (latent_dim); '
                     f'got {tuple(z.shape)}')


class _Encoder(nn.Module):
  features: Sequence[int]
  out_dim: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = x.astype(self.dtype)
    for f in self.features:
      x = nn.relu(Conv(f, (3, 3), strides=2, padding='SAME', dtype=self.dtype,
                       param_dtype=jnp.float32)(x))
    x = x.reshape(x.shape[0], -1)
    x = nn.Dense(self.out_dim, dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)


class _Decoder(nn.Module):
  features: Sequence[int]  # The encoder's order; used reversed.
  image_shape: Sequence[int]
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, z):
    h, w, c = self.image_shape
    factor = 2 ** len(self.features)
    h0, w0, c0 = h // factor, w // factor, self.features[-1]
    x = nn.Dense(h0 * w0 * c0, dtype=self.dtype, param_dtype=jnp.float32)(
        z.astype(self.dtype))
    x = nn.relu(x).reshape(z.shape[0], h0, w0, c0)
    for f in reversed(self.features):
      x = nn.relu(nn.ConvTranspose(f, (4, 4), strides=(2, 2), padding='SAME',
                                   dtype=self.dtype, param_dtype=jnp.float32)(x))
    x = Conv(c, (3, 3), padding='SAME', dtype=self.dtype, param_dtype=jnp.float32)(x)
    return x.astype(jnp.float32)


class ConvAutoencoder(nn.Module):
  """Deterministic convolutional autoencoder ``x -> z -> reconstruction``.

  Attributes:
    latent_dim: size of the code ``z``.
    image_shape: ``(H, W, C)`` of the images; H and W multiples of
      ``2**len(features)``.
    features: channels of the encoder's stride-2 blocks (the decoder mirrors them).
    dtype: compute dtype; parameters and outputs are float32.
  """

  latent_dim: int  # Size of the code z.
  image_shape: Sequence[int] = (28, 28, 1)  # (H, W, C) of the images.
  features: Sequence[int] = (32, 64)  # Encoder channels per stride-2 block.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('latent_dim', self.latent_dim)
    _check_image_shape(self.image_shape, self.features)
    super().__post_init__()

  def setup(self):
    self.encoder = _Encoder(self.features, self.latent_dim, dtype=self.dtype)
    self.decoder = _Decoder(self.features, self.image_shape, dtype=self.dtype)

  def encode(self, x: jax.Array) -> jax.Array:
    """The code of images ``x [batch, H, W, C]``: float32 ``[batch, latent_dim]``."""
    _check_images(x, self.image_shape)
    return self.encoder(x)

  def decode(self, z: jax.Array) -> jax.Array:
    """Reconstruction logits ``[batch, H, W, C]`` (float32) of codes ``z [batch, latent_dim]``."""
    _check_latent(z, self.latent_dim)
    return self.decoder(z)

  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Reconstructs ``x``.

    Args:
      x: float images ``[batch, H, W, C]`` with ``(H, W, C) == image_shape``.
      train: unused (no dropout or batch norm); kept for the common interface.

    Returns:
      float32 logits ``[batch, H, W, C]`` (``sigmoid`` gives the reconstruction of
      images in ``[0, 1]``).
    """
    del train
    return self.decode(self.encode(x))


class VAE(nn.Module):
  """Variational autoencoder with a diagonal Gaussian posterior and a N(0, I) prior.

  Attributes:
    latent_dim: size of the latent ``z``.
    image_shape: ``(H, W, C)``; H and W multiples of ``2**len(features)``.
    features: channels of the encoder's stride-2 blocks (the decoder mirrors them).
    dtype: compute dtype; parameters and outputs are float32.
  """

  latent_dim: int  # Size of the latent z.
  image_shape: Sequence[int] = (28, 28, 1)  # (H, W, C) of the images.
  features: Sequence[int] = (32, 64)  # Encoder channels per stride-2 block.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    _checks.check_positive('latent_dim', self.latent_dim)
    _check_image_shape(self.image_shape, self.features)
    super().__post_init__()

  def setup(self):
    self.encoder = _Encoder(self.features, 2 * self.latent_dim, dtype=self.dtype)
    self.decoder = _Decoder(self.features, self.image_shape, dtype=self.dtype)

  def encode(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(mean, logvar)`` of ``q(z | x)``, each float32 ``[batch, latent_dim]``."""
    _check_images(x, self.image_shape)
    h = self.encoder(x)
    return h[:, :self.latent_dim], h[:, self.latent_dim:]

  def decode(self, z: jax.Array) -> jax.Array:
    """Logits (or Gaussian means) ``[batch, H, W, C]`` of latents ``z [batch, latent_dim]``."""
    _check_latent(z, self.latent_dim)
    return self.decoder(z)

  def __call__(self, x: jax.Array, *, train: bool, sample: bool | None = None
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Encodes, samples ``z`` by the reparameterization, decodes.

    Args:
      x: float images ``[batch, H, W, C]`` with ``(H, W, C) == image_shape``.
      train: training mode; it only sets the default of `sample`.
      sample: draw ``z = mean + exp(logvar / 2) * eps`` with ``eps`` from the
        ``'latent'`` RNG stream (default: when `train`); False decodes ``z = mean``
        (deterministic reconstructions, no RNG needed).

    Returns:
      ``(logits, mean, logvar)``: float32 ``[batch, H, W, C]``, ``[batch, latent_dim]``,
      ``[batch, latent_dim]``.
    """
    mean, logvar = self.encode(x)
    if (train if sample is None else sample):
      z = reparameterize(mean, logvar, self.make_rng(LATENT_RNG))
    else:
      z = mean
    return self.decode(z), mean, logvar


# A tiny variant for tests.
_TinyVAE = functools.partial(VAE, latent_dim=2, image_shape=(8, 12, 1), features=(2, 4))
_TinyAutoencoder = functools.partial(ConvAutoencoder, latent_dim=3, image_shape=(8, 12, 1),
                                     features=(2, 4))
