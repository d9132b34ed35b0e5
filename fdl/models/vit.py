"""Vision Transformer (A. Dosovitskiy et al., "An image is worth 16x16 words", ICLR 2021).

The image is cut into non-overlapping ``patch_size`` x ``patch_size`` patches, each
linearly embedded (a conv with kernel = stride = patch), a learned class token is
prepended and learned position embeddings are added; ``depth`` pre-norm encoder blocks

  x = x + Dropout(MultiHeadSelfAttention(LayerNorm(x)))
  x = x + MLP(LayerNorm(x)),   MLP = dense mlp_dim - GELU - dropout - dense width - dropout

follow, then a final LayerNorm; the class token's output goes through a linear head.
This is torchvision's ``VisionTransformer`` layout (exact, not tanh, GELU; LayerNorm
epsilon 1e-6; attention with q, k, v and output biases), so `vit_b16` has its
86,567,656 parameters at 1000 classes. The attention is flax's
``MultiHeadDotProductAttention`` (q, k, v kernels ``[width, heads, head_dim]``: the same
count as torchvision's fused ``in_proj``).

The position embeddings are learned for one image size, so inputs must be exactly
``image_size`` x ``image_size`` (and ``image_size`` a multiple of ``patch_size``).

`vit_cifar` is a small ViT for 32 x 32 images: patch 4 (64 patches + class token),
width 128, depth 6, 4 heads, MLP 512: 1,205,898 parameters at 10 classes.

Examples:
  >>> import functools, jax, jax.numpy as jnp
  >>> model = vit_cifar(num_classes=10)
  >>> x = jax.ShapeDtypeStruct((3, 32, 32, 3), jnp.float32)
  >>> init = functools.partial(model.init_with_output, train=False)
  >>> logits, variables = jax.eval_shape(init, jax.random.key(0), x)  # shapes only
  >>> logits.shape, sum(p.size for p in jax.tree.leaves(variables['params']))
  ((3, 10), 1205898)
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.typing import Dtype

from fdl.models import _checks
from fdl.models.conv import Conv

_LN_EPSILON = 1e-6  # torchvision's (and big_vision's) LayerNorm epsilon


class _EncoderBlock(nn.Module):
  """One pre-norm Transformer encoder block on tokens ``[N, L, width]``."""

  num_heads: int
  mlp_dim: int
  dropout: float
  attention_dropout: float
  dtype: Dtype

  @nn.compact
  def __call__(self, x, *, train: bool):
    norm = functools.partial(nn.LayerNorm, epsilon=_LN_EPSILON, dtype=self.dtype,
                             param_dtype=jnp.float32)
    dense = functools.partial(nn.Dense, dtype=self.dtype, param_dtype=jnp.float32,
                              kernel_init=nn.initializers.xavier_uniform(),
                              bias_init=nn.initializers.normal(1e-6))
    drop = nn.Dropout(self.dropout, deterministic=not train)
    y = norm()(x)
    y = nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dropout_rate=self.attention_dropout,
        deterministic=not train, dtype=self.dtype, param_dtype=jnp.float32,
        kernel_init=nn.initializers.xavier_uniform())(y, y)
    x = x + drop(y)
    y = norm()(x)
    y = drop(nn.gelu(dense(self.mlp_dim)(y), approximate=False))
    y = drop(dense(x.shape[-1])(y))
    return x + y


class ViT(nn.Module):
  """Vision Transformer classifier (class token, learned position embeddings).

  Attributes:
    num_classes: number of output logits.
    image_size: the one input height and width, a multiple of ``patch_size``.
    patch_size: side of the square patches (kernel and stride of the embedding).
    width: token dimension, a multiple of ``num_heads``.
    depth: number of encoder blocks.
    num_heads: attention heads per block.
    mlp_dim: hidden units of each block's MLP.
    dropout: drop probability after the position embedding, after attention and in
      the MLPs, in [0, 1) (needs a ``'dropout'`` RNG in training when > 0).
    attention_dropout: drop probability of the attention weights, in [0, 1).
    dtype: compute dtype; parameters and logits are always float32.
  """

  num_classes: int = 1000  # Number of logits.
  image_size: int = 224  # Input H = W; position embeddings are learned for it.
  patch_size: int = 16  # Patch side.
  width: int = 768  # Token dimension.
  depth: int = 12  # Encoder blocks.
  num_heads: int = 12  # Attention heads.
  mlp_dim: int = 3072  # MLP hidden units.
  dropout: float = 0.0  # Dropout on tokens and in the MLPs.
  attention_dropout: float = 0.0  # Dropout on attention weights.
  dtype: Dtype = jnp.float32  # Compute dtype; params stay float32.

  def __post_init__(self):
    for field in ('num_classes', 'image_size', 'patch_size', 'width', 'depth',
                  'num_heads', 'mlp_dim'):
      _checks.check_positive(field, getattr(self, field))
    if self.image_size % self.patch_size:
      raise ValueError(f'image_size must be a multiple of patch_size={self.patch_size}; '
                       f'got {self.image_size}')
    if self.width % self.num_heads:
      raise ValueError(f'width must be a multiple of num_heads={self.num_heads}; '
                       f'got {self.width}')
    _checks.check_rate('dropout', self.dropout)
    _checks.check_rate('attention_dropout', self.attention_dropout)
    super().__post_init__()

  @property
  def num_tokens(self) -> int:
    """Patches plus the class token: ``(image_size // patch_size) ** 2 + 1``."""
    return (self.image_size // self.patch_size) ** 2 + 1

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    """Computes class logits.

    Args:
      x: float images ``[N, image_size, image_size, C]`` (NHWC, any C).
      train: enables dropout (needs a ``'dropout'`` RNG when a rate is > 0).

    Returns:
      float32 logits ``[N, num_classes]``.

    Raises:
      ValueError: ``x`` is not rank 4, or H, W differ from ``image_size``.
      TypeError: ``x`` is not floating.
    """
    _checks.check_input(x, rank=4, layout='[N, H, W, C]')
    if x.shape[1:3] != (self.image_size, self.image_size):
      raise ValueError(f'x must have H = W = image_size = {self.image_size} (position '
                       f'embeddings are learned for it) [N, H, W, C]; got shape {x.shape}')
    n = x.shape[0]
    p = self.patch_size
    fan_in = p * p * x.shape[-1]
    x = Conv(self.width, (p, p), strides=(p, p), padding='VALID', dtype=self.dtype,
             param_dtype=jnp.float32, name='patch_embedding',
             kernel_init=nn.initializers.truncated_normal(fan_in ** -0.5))(
                 x.astype(self.dtype))
    x = x.reshape(n, -1, self.width)
    cls = self.param('class_token', nn.initializers.zeros, (1, 1, self.width), jnp.float32)
    x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (n, 1, self.width)), x],
                        axis=1)
    pos = self.param('position_embedding', nn.initializers.normal(0.02),
                     (1, self.num_tokens, self.width), jnp.float32)
    x = nn.Dropout(self.dropout, deterministic=not train)(x + pos.astype(x.dtype))
    for i in range(self.depth):
      x = _EncoderBlock(self.num_heads, self.mlp_dim, self.dropout,
                        self.attention_dropout, self.dtype, name=f'block_{i}')(x, train=train)
    x = nn.LayerNorm(epsilon=_LN_EPSILON, dtype=self.dtype, param_dtype=jnp.float32,
                     name='final_norm')(x[:, 0])
    x = nn.Dense(self.num_classes, dtype=self.dtype, param_dtype=jnp.float32,
                 kernel_init=nn.initializers.zeros, name='head')(x)
    return x.astype(jnp.float32)


def vit_b16(num_classes: int = 1000, **kwargs) -> ViT:
  """ViT-B/16 on 224 x 224: 86,567,656 parameters at 1000 classes (torchvision's)."""
  return ViT(num_classes=num_classes, **kwargs)


def vit_cifar(num_classes: int = 10, **kwargs) -> ViT:
  """A small ViT for 32 x 32 images: patch 4, width 128, depth 6, 4 heads, MLP 512.

  1,205,898 parameters at 10 classes; ``kwargs`` override any attribute.
  """
  settings = dict(image_size=32, patch_size=4, width=128, depth=6, num_heads=4, mlp_dim=512)
  settings.update(kwargs)
  return ViT(num_classes=num_classes, **settings)


# For tests: 8 x 8 images, patch 4, two blocks of width 8.
_TinyViT = functools.partial(ViT, num_classes=10, image_size=8, patch_size=4, width=8,
                             depth=2, num_heads=2, mlp_dim=16)
