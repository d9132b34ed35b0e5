"""One convolution layer, forward + backward, in fdl's two lowerings and in PyTorch.

  python benchmarks/conv_layers.py [--repeats 5] [--layers resnet_stage1,modl,...]
      [--json runs/benchmarks/conv_layers.json]

Each layer is ``sum(conv(x, w) ** 2)`` differentiated with respect to ``x`` and ``w``
(float32, 3x3 SAME unless named otherwise): fdl's `Conv` lowering ``'xla'`` (autodiff
of ``lax.conv_general_dilated``), ``'cpu_vjp'`` (fdl's custom gradient) and PyTorch
eager (NCHW, its own threads). Medians of ``--repeats`` calls after one warm-up call,
all in one process; the CPU model is printed and stored with the numbers.
"""

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np

from fdl.bench import steps as bench_steps
from fdl.models import conv

# name: (input NHWC, output channels, kernel, stride)
LAYERS = {
    "resnet_stage1": ((128, 32, 32, 64), 64, 3, 1),
    "resnet_stage3": ((128, 8, 8, 256), 256, 3, 1),
    "resnet_down": ((128, 32, 32, 64), 128, 3, 2),
    "resnet_proj": ((128, 32, 32, 64), 128, 1, 2),
    "stem": ((128, 32, 32, 3), 64, 3, 1),
    "cnn_conv2": ((128, 16, 16, 32), 64, 3, 1),
    "modl": ((1, 256, 256, 48), 48, 3, 1),
    "unet_level0": ((4, 320, 320, 32), 32, 3, 1),
    "resnet9_prep": ((256, 32, 32, 3), 16, 3, 1),
    "resnet9_layer1": ((256, 32, 32, 16), 32, 3, 1),
}


def _median_time(fn, repeats):
  jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def time_fdl(shape, out_channels, kernel, stride, lowering, repeats):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(shape, dtype=np.float32))
  w = jnp.asarray(rng.standard_normal((kernel, kernel, shape[-1], out_channels),
                                      dtype=np.float32) * 0.1)
  pad = [((kernel - 1) // 2, kernel // 2)] * 2 if stride == 1 else [(kernel // 2,) * 2] * 2

  def loss(x, w):
    y = conv.conv_general_dilated(x, w, (stride, stride), pad,
                                  dimension_numbers=("NHWC", "HWIO", "NHWC"))
    return jnp.sum(y ** 2)

  with conv.conv_lowering(lowering):
    step = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(x, w).compile()
  return _median_time(lambda: step(x, w), repeats)


def time_torch(shape, out_channels, kernel, stride, repeats):
  import torch  # pylint: disable=import-outside-toplevel
  n, h, w, c = shape
  x = torch.randn(n, c, h, w, requires_grad=True)
  weight = (torch.randn(out_channels, c, kernel, kernel) * 0.1).requires_grad_()

  def run():
    x.grad = weight.grad = None
    y = torch.nn.functional.conv2d(x, weight, stride=stride, padding=kernel // 2)
    (y ** 2).sum().backward()

  run()
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    times.append(time.perf_counter() - start)
  return statistics.median(times)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--layers", default=",".join(LAYERS))
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--lowerings", default="xla,cpu_vjp")
  parser.add_argument("--no-torch", action="store_true")
  parser.add_argument("--json", default="runs/benchmarks/conv_layers.json")
  args = parser.parse_args()
  machine = bench_steps.machine_info()
  print(f"{machine['cpu']} ({machine['cpu_count']} cores); jax {machine['jax']}, "
        f"torch {machine['torch']}")
  lowerings = [l for l in args.lowerings.split(",") if l]
  records = []
  header = " | ".join(f"{l:>9}" for l in lowerings) + (" |     torch" if not args.no_torch else "")
  print(f"{'layer':<15} | {header}  (ms, fwd + bwd)")
  for name in args.layers.split(","):
    shape, out_channels, kernel, stride = LAYERS[name]
    record = {"layer": name, "input": shape, "out_channels": out_channels, "kernel": kernel,
              "stride": stride}
    for lowering in lowerings:
      record[lowering + "_s"] = time_fdl(shape, out_channels, kernel, stride, lowering,
                                         args.repeats)
    if not args.no_torch:
      record["torch_s"] = time_torch(shape, out_channels, kernel, stride, args.repeats)
    records.append(record)
    cells = [record[l + "_s"] for l in lowerings] + ([record["torch_s"]]
                                                      if not args.no_torch else [])
    print(f"{name:<15} | " + " | ".join(f"{t * 1e3:9.1f}" for t in cells), flush=True)
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w", encoding="utf-8") as f:
    json.dump({"machine": machine, "platform": platform.platform(),
               "repeats": args.repeats, "records": records}, f, indent=2)


if __name__ == "__main__":
  main()
