"""The benchmark workloads, fixed so results compare across machines and frameworks.

Each spec is a plain dict that both the fdl and the PyTorch builders read, so the
two frameworks build the same architecture from one description. ``tiny=True``
gives a variant small enough for tests (a few seconds to compile).

Shapes: images are NHWC for fdl (NCHW for PyTorch); k-space is complex64
``[batch, coils, H, W]``; masks ``[batch, 1, 1, W]`` (equispaced lines).
All workloads train with Adam (learning rate 1e-3, no weight decay).
"""

from __future__ import annotations

import copy

WORKLOADS = ("mlp", "cnn", "resnet18", "unet", "modl", "varnet")
LEARNING_RATE = 1e-3

_SPECS = {
    # 3072 -> 512 -> 512 -> 10, ReLU; cross-entropy.
    "mlp": dict(kind="classification", batch=256, image=(32, 32, 3), hidden=(512, 512),
                num_classes=10),
    # conv3x3(3->32), ReLU, maxpool 2, conv3x3(32->64), ReLU, maxpool 2,
    # dense 4096 -> 256, ReLU, dense 256 -> 10 ('SAME' convs with bias).
    "cnn": dict(kind="classification", batch=128, image=(32, 32, 3), features=(32, 64),
                dense=(256,), num_classes=10),
    # CIFAR ResNet-18: 3x3/1 stem, no max-pool, basic blocks (2, 2, 2, 2), width 64,
    # batch norm in training mode (momentum 0.9 in flax = 0.1 in PyTorch, eps 1e-5).
    "resnet18": dict(kind="classification", batch=128, image=(32, 32, 3),
                     stage_sizes=(2, 2, 2, 2), width=64, num_classes=10),
    # fastMRI U-Net (Unet(in_chans=1, out_chans=1, chans=32, num_pool_layers=4,
    # drop_prob=0)); L1 loss against a [batch, H, W, 1] target.
    "unet": dict(kind="image", batch=4, image=(320, 320, 1), channels=32, pools=4),
    # MoDL: K unrolled iterations of a shared residual CNN (depth convs of width
    # channels) and CG data consistency; true coil maps; L1 on the magnitude.
    "modl": dict(kind="kspace", batch=1, coils=8, size=256, center_lines=16,
                 acceleration=4, num_iters=5, cg_iters=5, depth=5, width=48),
    # E2E-VarNet (fastMRI's VarNet(num_cascades, chans, pools, sens_chans,
    # sens_pools)); L1 on the RSS image.
    "varnet": dict(kind="kspace", batch=1, coils=8, size=256, center_lines=16,
                   acceleration=4, num_cascades=8, channels=18, pools=4,
                   sens_channels=8, sens_pools=4),
}

# Test sizes: the same architectures, small enough to compile in seconds.
_TINY = {
    "mlp": dict(batch=8, image=(8, 8, 3), hidden=(16, 16)),
    "cnn": dict(batch=4, image=(8, 8, 3), features=(4, 8), dense=(16,)),
    "resnet18": dict(batch=2, image=(8, 8, 3), stage_sizes=(1, 1), width=4),
    "unet": dict(batch=2, image=(16, 16, 1), channels=4, pools=2),
    "modl": dict(coils=2, size=16, center_lines=2, num_iters=2, cg_iters=2, depth=2,
                 width=4),
    "varnet": dict(coils=2, size=16, center_lines=2, num_cascades=2, channels=4, pools=2,
                   sens_channels=2, sens_pools=1),
}


def get_spec(name: str, *, tiny: bool = False) -> dict:
  """The spec of workload `name` (a fresh copy); `tiny` for the test variant."""
  if name not in _SPECS:
    raise ValueError(f"workload must be one of {WORKLOADS}; got {name!r}")
  spec = copy.deepcopy(_SPECS[name])
  if tiny:
    spec.update(copy.deepcopy(_TINY[name]))
  spec["name"] = name
  spec["tiny"] = tiny
  return spec
