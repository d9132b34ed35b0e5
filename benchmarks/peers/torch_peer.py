"""The PyTorch side of the step benchmark: each workload's model and train step.

For every workload of `fdl.bench.specs` this builds the PyTorch model with the
architecture and the trainable-parameter count of fdl's Flax model (from the same spec
dict), converts one `fdl_workloads.make_batch` batch once to PyTorch layouts, and returns a
closure that runs one Adam training step on it:

  mlp, cnn, resnet18   our classes here (cross-entropy)
  unet                 ``fastmri.models.Unet`` if fastMRI imports, else our `UNet` (L1)
  varnet               ``fastmri.models.VarNet`` if fastMRI imports, else our `VarNet` (L1)
  modl                 our `MoDL`, which computes what `fdl.models.MoDL` computes (L1)

Our fallback `UNet` and `VarNet` compute what fdl's `UNet` and `VarNet` compute (native
complex64, fdl's ACS mask, population std); on the benchmark sizes (multiples of
``2**pools``) fastMRI's U-Net is the same function. `load_flax_params` copies a Flax
model's parameters into our classes, so both frameworks can be checked to agree.

Layouts: images NCHW float32, labels int64; k-space complex64 ``[B, C, H, W]`` with masks
float32 ``[B, 1, 1, W]`` for our code; fastMRI's VarNet gets its trailing-2 real layout
``[B, C, H, W, 2]`` and a bool mask ``[B, 1, 1, W, 1]``. Everything runs on the default
device: CUDA when PyTorch sees a GPU, else the CPU. Thread counts are left to the caller.

The module imports without PyTorch (`available()` then says False); building needs it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import numpy as np

from fdl.bench.specs import LEARNING_RATE

try:
  import torch
  from torch import nn
  from torch.nn import functional as F
except ImportError:  # The module still imports; available() says False.
  torch = nn = F = None

# Model classes are defined even without torch; they only need it when instantiated.
_Module = object if nn is None else nn.Module

# As fdl.models.norm_unet.STD_EPS: std = sqrt(var + STD_EPS**2).
_STD_EPS = 1e-6


def available() -> bool:
  """Whether PyTorch is importable."""
  return torch is not None


@functools.cache
def fastmri_available() -> bool:
  """Whether ``import fastmri.models`` works (fastMRI may be installed without its deps)."""
  if torch is None:
    return False
  try:
    import fastmri.models  # noqa: F401  pylint: disable=import-outside-toplevel
  except Exception:  # pylint: disable=broad-except
    return False
  return True


def _require_torch():
  if torch is None:
    raise ImportError("PyTorch is not installed: the torch peer needs `import torch`")


# ---------------------------------------------------------------------------------------
# Classifiers.


class MLP(_Module):
  """``[Linear -> ReLU] * len(hidden) -> Linear`` on the flattened image (as fdl's MLP)."""

  def __init__(self, in_features: int, hidden: tuple[int, ...], num_classes: int):
    super().__init__()
    layers, width = [], in_features
    for h in hidden:
      layers += [nn.Linear(width, h), nn.ReLU()]
      width = h
    self.layers = nn.Sequential(*layers, nn.Linear(width, num_classes))

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    """Images ``[B, C, H, W]`` (flattened in NCHW order) -> logits ``[B, num_classes]``."""
    return self.layers(x.flatten(1))


class CNN(_Module):
  """fdl's CNN without batch norm: per block conv3x3 (same, bias) -> ReLU -> 2x2 max-pool.

  Then flatten (NCHW order; `load_flax_params` permutes the first dense kernel from
  Flax's NHWC order), ``[Linear -> ReLU]`` per entry of ``dense``, ``Linear``.
  """

  def __init__(self, image: tuple[int, int, int], features: tuple[int, ...],
               dense: tuple[int, ...], num_classes: int):
    super().__init__()
    height, width, channels = image
    self.convs = nn.ModuleList()
    for f in features:
      self.convs.append(nn.Conv2d(channels, f, 3, padding=1))
      channels, height, width = f, height // 2, width // 2
    layers, size = [], channels * height * width
    for d in dense:
      layers += [nn.Linear(size, d), nn.ReLU()]
      size = d
    self.head = nn.Sequential(*layers, nn.Linear(size, num_classes))

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
    for conv in self.convs:
      x = F.max_pool2d(F.relu(conv(x)), 2)
    return self.head(x.flatten(1))


class _BasicBlock(_Module):
  """Two bias-free 3x3 conv + BN; 1x1 conv + BN shortcut where stride or channels change."""

  def __init__(self, in_channels: int, channels: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_channels, channels, 3, stride, padding=1, bias=False)
    self.bn1 = _batch_norm(channels)
    self.conv2 = nn.Conv2d(channels, channels, 3, 1, padding=1, bias=False)
    self.bn2 = _batch_norm(channels)
    self.proj = None
    if stride != 1 or in_channels != channels:
      self.proj = nn.Sequential(nn.Conv2d(in_channels, channels, 1, stride, bias=False),
                                _batch_norm(channels))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    return F.relu(y + (x if self.proj is None else self.proj(x)))


def _batch_norm(channels):
  # Flax momentum 0.9 = PyTorch momentum 0.1.
  return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)


class ResNet(_Module):
  """fdl's ResNet with basic blocks and the CIFAR stem (3x3/1 conv, BN, ReLU, no pool).

  Stage ``i`` has ``stage_sizes[i]`` blocks of ``width * 2**i`` channels, the first block
  of every stage but the first with stride 2; global average pool; ``Linear`` head.
  Initialized like torchvision (He-normal over fan-out for the convs).
  """

  def __init__(self, stage_sizes: tuple[int, ...], width: int, num_classes: int,
               in_channels: int = 3):
    super().__init__()
    self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, padding=1, bias=False),
                              _batch_norm(width), nn.ReLU())
    blocks, channels = [], width
    for i, num_blocks in enumerate(stage_sizes):
      for j in range(num_blocks):
        blocks.append(_BasicBlock(channels, width * 2**i, 2 if i > 0 and j == 0 else 1))
        channels = width * 2**i
    self.blocks = nn.Sequential(*blocks)
    self.head = nn.Linear(channels, num_classes)
    for m in self.modules():
      if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    """Images ``[B, C, H, W]`` -> logits ``[B, num_classes]``."""
    x = self.blocks(self.stem(x))
    return self.head(x.mean(dim=(2, 3)))


# ---------------------------------------------------------------------------------------
# U-Net and NormUNet (fdl semantics), the fastMRI-free fallback.


def _conv_block(in_channels: int, channels: int, dropout: float):
  # Twice: 3x3 conv (no bias: the instance norm removes it), instance norm, leaky ReLU,
  # channel-wise dropout.
  layers = []
  for c_in in (in_channels, channels):
    layers += [nn.Conv2d(c_in, channels, 3, padding=1, bias=False),
               nn.InstanceNorm2d(channels, eps=1e-5), nn.LeakyReLU(0.2),
               nn.Dropout2d(dropout)]
  return nn.Sequential(*layers)


def _up_block(in_channels: int, channels: int):
  # 2x2 stride-2 transposed conv (no bias), instance norm, leaky ReLU: doubles H and W.
  return nn.Sequential(nn.ConvTranspose2d(in_channels, channels, 2, stride=2, bias=False),
                       nn.InstanceNorm2d(channels, eps=1e-5), nn.LeakyReLU(0.2))


class UNet(_Module):
  """fdl's `UNet` (the fastMRI U-Net) in PyTorch: same layers, same parameter count.

  ``pools`` levels of [ConvBlock, 2x2 average pool] (channels doubling from
  ``channels``), a bottleneck ConvBlock, then per level a transposed conv, concatenation
  [upsampled, skip] and a ConvBlock, and a 1x1 conv with bias. As in fdl, the input is
  reflect-padded at the bottom/right to multiples of ``2**pools`` and the output cropped
  back (fastMRI pads inside the up path instead; for sizes that are multiples of
  ``2**pools`` the two are the same function).
  """

  def __init__(self, in_channels: int, out_channels: int, channels: int, pools: int,
               dropout: float = 0.0):
    super().__init__()
    self.pools = pools
    self.down = nn.ModuleList()
    c_in, c = in_channels, channels
    for _ in range(pools):
      self.down.append(_conv_block(c_in, c, dropout))
      c_in, c = c, 2 * c
    self.bottleneck = _conv_block(c_in, c, dropout)
    # Deepest level first, the order in which forward uses them.
    self.up_transpose, self.up = nn.ModuleList(), nn.ModuleList()
    for _ in range(pools):
      self.up_transpose.append(_up_block(c, c // 2))
      self.up.append(_conv_block(c, c // 2, dropout))
      c //= 2
    self.out_conv = nn.Conv2d(c, out_channels, 1)

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    """Images ``[B, in_channels, H, W]`` -> ``[B, out_channels, H, W]``."""
    height, width = x.shape[-2:]
    multiple = 2**self.pools
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
      x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
    skips = []
    for block in self.down:
      x = block(x)
      skips.append(x)
      x = F.avg_pool2d(x, 2)
    x = self.bottleneck(x)
    for transpose, block in zip(self.up_transpose, self.up):
      x = block(torch.cat([transpose(x), skips.pop()], dim=1))
    return self.out_conv(x)[..., :height, :width]


def _to_channels(x):
  # complex [B, H, W] -> float [B, 2, H, W] (real, imaginary).
  return torch.stack([x.real, x.imag], dim=1)


def _to_complex(x):
  # float [B, 2, H, W] -> complex [B, H, W].
  return torch.complex(x[:, 0], x[:, 1])


class NormUNet(_Module):
  """fdl's `NormUNet`: ``UNet((x - mean) / std) * std + mean`` per sample and channel.

  A complex image ``[B, H, W]`` goes in as 2 channels (real, imaginary); mean and
  population std (guarded by ``sqrt(var + 1e-12)``) are over H and W.
  """

  def __init__(self, channels: int, pools: int):
    super().__init__()
    self.unet = UNet(2, 2, channels, pools)

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    """Complex ``[B, H, W]`` -> complex ``[B, H, W]``."""
    h = _to_channels(x)
    mean = h.mean(dim=(2, 3), keepdim=True)
    std = torch.sqrt((h - mean).square().mean(dim=(2, 3), keepdim=True) + _STD_EPS**2)
    return _to_complex(self.unet((h - mean) / std) * std + mean)


# ---------------------------------------------------------------------------------------
# MRI operators (as fdl.mri.fft, fdl.mri.sense, fdl.mri.cg), complex64 [B, C, H, W].


def fft2c(x: "torch.Tensor") -> "torch.Tensor":
  """Centered orthonormal 2-D FFT over the last two axes, as `fdl.mri.fft.fft2c`."""
  x = torch.fft.ifftshift(x, dim=(-2, -1))
  return torch.fft.fftshift(torch.fft.fft2(x, norm="ortho"), dim=(-2, -1))


def ifft2c(k: "torch.Tensor") -> "torch.Tensor":
  """Centered orthonormal inverse 2-D FFT over the last two axes, as `fdl.mri.fft.ifft2c`."""
  k = torch.fft.ifftshift(k, dim=(-2, -1))
  return torch.fft.fftshift(torch.fft.ifft2(k, norm="ortho"), dim=(-2, -1))


def sense_adjoint(kspace, maps, mask):
  """``A^H y = sum_c conj(S_c) F^H (M y_c)``: ``[B, C, H, W]`` -> ``[B, H, W]``."""
  return torch.sum(maps.conj() * ifft2c(mask * kspace), dim=1)


def sense_normal(image, maps, mask):
  """``A^H A x`` for an image ``[B, H, W]``, maps ``[B, C, H, W]``, mask ``[B, 1, 1, W]``."""
  k = mask * fft2c(maps * image[:, None])
  return torch.sum(maps.conj() * ifft2c(mask * k), dim=1)


def _batch_dot(a, b):
  # Re <a, b> per batch element.
  return torch.sum(a.conj() * b, dim=tuple(range(1, a.ndim))).real


def _safe_div(num, den):
  # As fdl.mri.cg: 0 (with a finite gradient) where den == 0.
  ok = den > 0
  return torch.where(ok, num / torch.where(ok, den, torch.ones_like(den)),
                     torch.zeros_like(num))


def cg(normal_op: Callable, rhs: "torch.Tensor", x0: "torch.Tensor",
       num_iters: int) -> "torch.Tensor":
  """`fdl.mri.cg.cg` with ``tol=0``: ``num_iters`` CG iterations from ``x0``, batched.

  An element whose squared residual has reached ``(10 eps)^2 ||rhs||^2`` (fdl's floor of
  the relative tolerance) stops changing, exactly as in fdl.

  Args:
    normal_op: Hermitian positive-definite ``[B, ...] -> [B, ...]``.
    rhs: ``[B, ...]``, complex or real.
    x0: initial guess like ``rhs``.
    num_iters: fixed iteration count (unrolled, differentiable).

  Returns:
    the approximate solution, like ``rhs``.
  """
  expand = lambda v: v.reshape(v.shape + (1,) * (rhs.ndim - 1))
  floor = 10 * torch.finfo(rhs.real.dtype).eps
  threshold = floor**2 * _batch_dot(rhs, rhs)
  x = x0
  r = rhs - normal_op(x)
  p = r
  rs = _batch_dot(r, r)
  for _ in range(num_iters):
    active = rs > threshold
    ap = normal_op(p)
    alpha = torch.where(active, _safe_div(rs, _batch_dot(p, ap)), torch.zeros_like(rs))
    x = x + expand(alpha) * p
    r = r - expand(alpha) * ap
    rs_new = _batch_dot(r, r)
    beta = torch.where(active, _safe_div(rs_new, rs), torch.zeros_like(rs))
    p = torch.where(expand(active), r + expand(beta) * p, p)
    rs = torch.where(active, rs_new, rs)
  return x


# ---------------------------------------------------------------------------------------
# MoDL and the VarNet fallback.


class ResidualDenoiser(_Module):
  """fdl's MoDL denoiser ``D``: ``depth`` 3x3 convs with bias (2 -> width ... -> 2), ReLU
  between; on complex ``[B, H, W]`` as 2 channels, returns the complex correction."""

  def __init__(self, depth: int, width: int):
    super().__init__()
    sizes = [2] + [width] * (depth - 1) + [2]
    self.convs = nn.ModuleList(nn.Conv2d(a, b, 3, padding=1)
                               for a, b in zip(sizes[:-1], sizes[1:]))

  def forward(self, x: "torch.Tensor") -> "torch.Tensor":
    h = _to_channels(x)
    for conv in self.convs[:-1]:
      h = F.relu(conv(h))
    return _to_complex(self.convs[-1](h))


class MoDL(_Module):
  """`fdl.models.MoDL` in PyTorch: ``num_iters`` x (shared denoiser, CG data consistency).

  ``x_0 = A^H y``; ``z = x + D(x)``; ``x <- CG_{cg_iters}((A^H A + lam I) x = A^H y + lam z,
  from z)``; output ``|x|``. ``lam = exp(log_lam)``, a learned scalar.
  """

  def __init__(self, num_iters: int, cg_iters: int, depth: int, width: int,
               lam_init: float = 0.05):
    super().__init__()
    self.num_iters, self.cg_iters = num_iters, cg_iters
    self.denoiser = ResidualDenoiser(depth, width)
    self.log_lam = nn.Parameter(torch.tensor(math.log(lam_init), dtype=torch.float32))

  def forward(self, kspace: "torch.Tensor", mask: "torch.Tensor",
              maps: "torch.Tensor") -> "torch.Tensor":
    """k-space and maps complex64 ``[B, C, H, W]``, mask ``[B, 1, 1, W]`` -> ``[B, H, W]``."""
    lam = torch.exp(self.log_lam)
    rhs_data = sense_adjoint(kspace, maps, mask)
    normal_op = lambda v: sense_normal(v, maps, mask) + lam * v
    x = rhs_data
    for _ in range(self.num_iters):
      z = x + self.denoiser(x)
      x = cg(normal_op, rhs_data + lam * z, z, self.cg_iters)
    return x.abs()


def _outward_run(sampled, dim):
  # 1 where `sampled` is 1 all the way from the centre index n // 2 along `dim`.
  n = sampled.shape[dim]
  centre = n // 2
  after = torch.cumprod(sampled.narrow(dim, centre, n - centre), dim)
  before = sampled.narrow(dim, 0, centre + 1).flip(dim).cumprod(dim).flip(dim)
  return torch.cat([before.narrow(dim, 0, centre), after], dim)


def acs_mask(mask: "torch.Tensor") -> "torch.Tensor":
  """`fdl.models.varnet.acs_mask`: the sampled block around the centre of ``[..., H, W]``."""
  return _outward_run(_outward_run((mask > 0).to(torch.float32), -2), -1)


class _SensitivityModel(_Module):
  """fdl's VarNet coil maps: ``S = N(F^H (M_acs y)) / rss``, each coil refined alone."""

  def __init__(self, channels: int, pools: int):
    super().__init__()
    self.norm_unet = NormUNet(channels, pools)

  def forward(self, kspace, mask):
    b, c, h, w = kspace.shape
    images = ifft2c(acs_mask(mask) * kspace)
    refined = self.norm_unet(images.reshape(b * c, h, w)).reshape(b, c, h, w)
    sq_norm = torch.sum(refined.real.square() + refined.imag.square(), dim=1, keepdim=True)
    nonzero = sq_norm > 0
    norm = torch.sqrt(torch.where(nonzero, sq_norm, torch.ones_like(sq_norm)))
    return torch.where(nonzero, refined / norm, torch.zeros_like(refined))


class _VarNetCascade(_Module):
  """``k - eta M (k - y) - F(S N(sum_c conj(S_c) F^H k_c))``, with ``eta`` learned."""

  def __init__(self, channels: int, pools: int):
    super().__init__()
    self.norm_unet = NormUNet(channels, pools)
    self.dc_weight = nn.Parameter(torch.ones((), dtype=torch.float32))

  def forward(self, kspace, measured, mask, maps):
    refined = self.norm_unet(torch.sum(maps.conj() * ifft2c(kspace), dim=1))
    return (kspace - self.dc_weight * (mask * (kspace - measured))
            - fft2c(maps * refined[:, None]))


class VarNet(_Module):
  """`fdl.models.VarNet` (E2E-VarNet) in PyTorch, native complex64: the fastMRI-free fallback.

  Learned coil maps from the ACS region, ``num_cascades`` cascades with their own
  NormUNet and ``eta``, output the RSS image. The same layers and parameter count as
  ``fastmri.models.VarNet``; the normalization details (population std, fdl's ACS
  block, padding) are fdl's.
  """

  def __init__(self, num_cascades: int, channels: int, pools: int, sens_channels: int,
               sens_pools: int):
    super().__init__()
    self.sens_net = _SensitivityModel(sens_channels, sens_pools)
    self.cascades = nn.ModuleList(_VarNetCascade(channels, pools)
                                  for _ in range(num_cascades))

  def forward(self, kspace: "torch.Tensor", mask: "torch.Tensor") -> "torch.Tensor":
    """k-space complex64 ``[B, C, H, W]``, mask float ``[B, 1, 1, W]`` -> RSS ``[B, H, W]``."""
    measured = mask * kspace
    maps = self.sens_net(measured, mask)
    estimate = measured
    for cascade in self.cascades:
      estimate = cascade(estimate, measured, mask, maps)
    image = ifft2c(estimate)
    return torch.sqrt(torch.sum(image.real.square() + image.imag.square(), dim=1))


# ---------------------------------------------------------------------------------------
# Building.


def build_model(spec: dict, *, use_fastmri: bool | None = None) -> "nn.Module":
  """The PyTorch model of a workload spec (`fdl.bench.specs.get_spec`).

  Args:
    spec: the workload spec (full or tiny).
    use_fastmri: for ``unet`` and ``varnet``: True takes fastMRI's model (ImportError
      if fastMRI does not import), False our fallback, None (default) fastMRI's if it
      imports. Ignored for the other workloads.

  Returns:
    the module, freshly initialized from PyTorch's global RNG.
  """
  _require_torch()
  name = spec["name"]
  if name in ("unet", "varnet"):
    if use_fastmri is None:
      use_fastmri = fastmri_available()
    if use_fastmri and not fastmri_available():
      raise ImportError("use_fastmri=True but `import fastmri.models` fails")
  if name == "mlp":
    return MLP(int(np.prod(spec["image"])), tuple(spec["hidden"]), spec["num_classes"])
  if name == "cnn":
    return CNN(tuple(spec["image"]), tuple(spec["features"]), tuple(spec["dense"]),
               spec["num_classes"])
  if name == "resnet18":
    return ResNet(tuple(spec["stage_sizes"]), spec["width"], spec["num_classes"],
                  in_channels=spec["image"][-1])
  if name == "unet":
    if use_fastmri:
      import fastmri.models  # pylint: disable=import-outside-toplevel
      return fastmri.models.Unet(in_chans=1, out_chans=1, chans=spec["channels"],
                                 num_pool_layers=spec["pools"], drop_prob=0.0)
    return UNet(1, 1, spec["channels"], spec["pools"])
  if name == "modl":
    return MoDL(spec["num_iters"], spec["cg_iters"], spec["depth"], spec["width"])
  if name == "varnet":
    kwargs = dict(num_cascades=spec["num_cascades"], chans=spec["channels"],
                  pools=spec["pools"], sens_chans=spec["sens_channels"],
                  sens_pools=spec["sens_pools"])
    if use_fastmri:
      import fastmri.models  # pylint: disable=import-outside-toplevel
      return fastmri.models.VarNet(**kwargs)
    return VarNet(spec["num_cascades"], spec["channels"], spec["pools"],
                  spec["sens_channels"], spec["sens_pools"])
  raise ValueError(f"unknown workload {name!r}")


def model_source(model: "nn.Module") -> str:
  """The model's class as ``module.Name``, e.g. ``fastmri.models.Unet``."""
  cls = type(model)
  if cls.__module__.startswith("fastmri."):
    return f"fastmri.models.{cls.__name__}"
  return f"{cls.__module__}.{cls.__name__}"


def count_params(model: "nn.Module") -> int:
  """Trainable parameters (``requires_grad``); BN running statistics are buffers."""
  return sum(p.numel() for p in model.parameters() if p.requires_grad)


@dataclasses.dataclass
class TorchStep:
  """One workload's PyTorch training step, ready to time.

  Attributes:
    step: runs ONE training step (zero_grad, forward, loss, backward, Adam step) on the
      converted batch and returns the detached scalar loss (asynchronous on CUDA).
    num_params: trainable parameters of the model.
    source: e.g. ``"fastmri.models.Unet"`` or ``"peers.torch_peer.MoDL"``.
    model: the eager module (shares its parameters with the compiled one, if any).
  """

  step: Callable[[], "torch.Tensor"]
  num_params: int
  source: str
  model: "nn.Module"


def _torch_batch(spec: dict, batch: dict[str, np.ndarray], source: str, device
                 ) -> tuple[tuple[Any, ...], Any]:
  """The model inputs and the loss target, converted once and placed on `device`."""
  put = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)
  nchw = lambda a: put(np.asarray(a, np.float32).transpose(0, 3, 1, 2))
  kind = spec["kind"]
  if kind == "classification":
    return (nchw(batch["image"]),), put(np.asarray(batch["label"], np.int64))
  if kind == "image":
    return (nchw(batch["image"]),), nchw(batch["target"])
  kspace = put(np.asarray(batch["kspace"], np.complex64))
  mask = np.asarray(batch["mask"], np.float32)
  target = put(np.asarray(batch["target"], np.float32))
  if spec["name"] == "modl":
    return (kspace, put(mask), put(np.asarray(batch["maps"], np.complex64))), target
  if source.startswith("fastmri."):
    # fastMRI's VarNet: real [B, C, H, W, 2] and a bool mask [B, 1, 1, W, 1].
    return (torch.view_as_real(kspace).contiguous(), put(mask[..., None] > 0)), target
  return (kspace, put(mask)), target


def build_step(spec: dict, batch: dict[str, np.ndarray], *, compile: bool = False,
               seed: int = 0) -> TorchStep:  # pylint: disable=redefined-builtin
  """The PyTorch training step of a workload on one fixed batch.

  Args:
    spec: the workload spec (`fdl.bench.specs.get_spec`).
    batch: ``fdl_workloads.make_batch(spec)`` (NumPy, fdl layouts); converted here, once.
    compile: wrap the model in ``torch.compile`` (the optimizer step stays eager). An
      error from compiling surfaces at the first ``step()`` call.
    seed: seeds the parameter initialization (PyTorch's global RNG state is restored).

  Returns:
    a `TorchStep`; the model is in train mode (batch norm uses batch statistics).
  """
  _require_torch()
  device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
  with torch.random.fork_rng(devices=[]):
    torch.manual_seed(seed)
    model = build_model(spec)
  model.to(device).train()
  source = model_source(model)
  inputs, target = _torch_batch(spec, batch, source, device)
  # The shapes are fixed: dynamic=False also avoids Inductor's symbolic-shape errors on
  # fastMRI's models (torch 2.13, CPU).
  if compile:
    # Each block class is compiled once per input shape; the U-Nets have more shapes
    # than dynamo's default limit of 8, past which it silently falls back to eager.
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)  # pylint: disable=protected-access
  forward = torch.compile(model, dynamic=False) if compile else model
  optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
  loss_of = F.cross_entropy if spec["kind"] == "classification" else F.l1_loss

  def step() -> "torch.Tensor":
    optimizer.zero_grad(set_to_none=True)
    loss = loss_of(forward(*inputs), target)
    loss.backward()
    optimizer.step()
    return loss.detach()

  return TorchStep(step=step, num_params=count_params(model), source=source, model=model)


# ---------------------------------------------------------------------------------------
# Flax -> PyTorch parameter copy (for equivalence checks).


def _conv(kernel):
  # Flax Conv [kh, kw, in, out] -> torch [out, in, kh, kw].
  return np.asarray(kernel).transpose(3, 2, 0, 1)


def _conv_transpose(kernel):
  # Flax ConvTranspose (transpose_kernel=False) [kh, kw, in, out] -> torch
  # ConvTranspose2d [in, out, kh, kw]: PyTorch's is the true transpose, so flip H and W.
  return np.asarray(kernel)[::-1, ::-1].transpose(2, 3, 0, 1)


def _dense(kernel):
  # Flax Dense [in, out] -> torch Linear [out, in].
  return np.asarray(kernel).T


def _set(param, value):
  with torch.no_grad():
    param.copy_(torch.from_numpy(np.array(value, np.float32)).reshape(param.shape))


def _load_unet(unet: UNet, params) -> None:
  def block(seq, p):  # _conv_block: convs at Sequential indices 0 and 4.
    _set(seq[0].weight, _conv(p["Conv_0"]["kernel"]))
    _set(seq[4].weight, _conv(p["Conv_1"]["kernel"]))

  for level, seq in enumerate(unet.down):
    block(seq, params[f"down_{level}"])
  block(unet.bottleneck, params["bottleneck"])
  for i, level in enumerate(reversed(range(unet.pools))):
    _set(unet.up_transpose[i][0].weight,
         _conv_transpose(params[f"up_{level}_transpose"]["ConvTranspose_0"]["kernel"]))
    block(unet.up[i], params[f"up_{level}"])
  _set(unet.out_conv.weight, _conv(params["out_conv"]["kernel"]))
  _set(unet.out_conv.bias, params["out_conv"]["bias"])


def _load_resnet(resnet: ResNet, params) -> None:
  def conv_bn(conv, bn, p_conv, p_bn):
    _set(conv.weight, _conv(p_conv["kernel"]))
    _set(bn.weight, p_bn["scale"])
    _set(bn.bias, p_bn["bias"])

  conv_bn(resnet.stem[0], resnet.stem[1], params["stem_conv"], params["stem_bn"])
  # Flax names blocks stage{i}_block{j}, in the order of our Sequential.
  names = sorted((k for k in params if k.startswith("stage")),
                 key=lambda k: tuple(int(n) for n in k[5:].split("_block")))
  for block, name in zip(resnet.blocks, names, strict=True):
    p = params[name]
    conv_bn(block.conv1, block.bn1, p["conv1"], p["bn1"])
    conv_bn(block.conv2, block.bn2, p["conv2"], p["bn2"])
    if block.proj is not None:
      conv_bn(block.proj[0], block.proj[1], p["proj_conv"], p["proj_bn"])
  _set(resnet.head.weight, _dense(params["head"]["kernel"]))
  _set(resnet.head.bias, params["head"]["bias"])


def load_flax_params(model: "nn.Module", params, *, image: tuple[int, ...] | None = None
                     ) -> None:
  """Copies a Flax model's ``params`` into our PyTorch model of the same workload, in place.

  Supports `MLP`, `CNN`, `ResNet` (parameters only, not the batch-norm running
  averages: the outputs agree in train mode), `UNet`, `MoDL` and `VarNet`.

  Args:
    model: one of our models, built from the same spec as the Flax model.
    params: the Flax ``variables["params"]`` tree.
    image: ``(H, W, C)`` of the inputs; required for `MLP` and `CNN` (flatten order).
  """
  if isinstance(model, (MLP, CNN)):
    if image is None:
      raise ValueError(f"image=(H, W, C) is required for a {type(model).__name__}")
    h, w, c = image
    if isinstance(model, CNN):
      for i, conv in enumerate(model.convs):
        _set(conv.weight, _conv(params[f"Conv_{i}"]["kernel"]))
        _set(conv.bias, params[f"Conv_{i}"]["bias"])
      scale = 2**len(model.convs)
      h, w, c = h // scale, w // scale, model.convs[-1].out_channels
    layers = model.layers if isinstance(model, MLP) else model.head
    for i, linear in enumerate(m for m in layers if isinstance(m, nn.Linear)):
      kernel = np.asarray(params[f"Dense_{i}"]["kernel"])
      if i == 0:  # Flax flattens [H, W, C]; we flatten [C, H, W].
        kernel = kernel.reshape(h, w, c, -1).transpose(2, 0, 1, 3).reshape(h * w * c, -1)
      _set(linear.weight, _dense(kernel))
      _set(linear.bias, params[f"Dense_{i}"]["bias"])
  elif isinstance(model, ResNet):
    _load_resnet(model, params)
  elif isinstance(model, UNet):
    _load_unet(model, params)
  elif isinstance(model, MoDL):
    for i, conv in enumerate(model.denoiser.convs):
      _set(conv.weight, _conv(params["denoiser"][f"conv_{i}"]["kernel"]))
      _set(conv.bias, params["denoiser"][f"conv_{i}"]["bias"])
    _set(model.log_lam, params["log_lam"])
  elif isinstance(model, VarNet):
    _load_unet(model.sens_net.norm_unet.unet, params["sens_net"]["norm_unet"]["unet"])
    for t, cascade in enumerate(model.cascades):
      _load_unet(cascade.norm_unet.unet, params[f"cascade_{t}"]["norm_unet"]["unet"])
      _set(cascade.dc_weight, params[f"cascade_{t}"]["dc_weight"])
  else:
    raise TypeError(f"load_flax_params does not support {type(model).__name__}")


# ---------------------------------------------------------------------------------------
# The peer as `fdl.bench.steps` takes it.


class TorchRunner:
  """One workload's PyTorch step (eager or compiled), as `fdl.bench.steps` runs peers."""

  def __init__(self, spec: dict, batch: dict, compile_model: bool):
    _require_torch()
    built = build_step(spec, batch, compile=compile_model)
    self._step = built.step
    self.num_params = built.num_params
    self.source = built.source
    start = time.perf_counter()
    self.loss = float(self._step().item())  # torch.compile compiles on this first call
    self.compile_time_s = time.perf_counter() - start if compile_model else None
    self.first_loss = self.loss

  def step(self):
    self.loss = self._step().item()  # .item() waits for the step (CPU: synchronous)


def _missing(*_):
  raise ImportError("torch is not installed (pip install -e '.[peer]')")


# Framework name -> ``(spec, batch) -> runner``; eager first (the compiled peer is
# checked against it).
PEERS = {
    "torch-eager": (lambda spec, batch: TorchRunner(spec, batch, False)) if torch else _missing,
    "torch-compile": (lambda spec, batch: TorchRunner(spec, batch, True)) if torch else _missing,
}


def info() -> dict:
  """PyTorch's version and thread count, for the benchmark's machine record."""
  return {"torch": torch.__version__ if torch else None,
          "torch_threads": torch.get_num_threads() if torch else None}


def matmuls() -> dict:
  """``{"torch": prepare}`` for `fdl.bench.steps.matmul_peak` (empty without torch)."""
  if torch is None:
    return {}

  def prepare(a: np.ndarray, b: np.ndarray):
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    return lambda: torch.matmul(ta, tb)

  return {"torch": prepare}
