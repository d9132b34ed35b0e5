"""Compiled training steps of fdl next to PyTorch, measured in one run.

  python benchmarks/steps.py [--workloads mlp,cnn,resnet18,unet,modl,varnet] \
      [--steps 20] [--json runs/benchmarks/steps.json] [--devices 1,2,4]

Workloads (`fdl.bench.specs`): mlp 3072-512-512-10 (batch 256), cnn (batch
128), CIFAR ResNet-18 (batch 128), fastMRI U-Net 32 channels 4 pools on
320x320 (batch 4), MoDL (5 iterations x 5 CG steps) and E2E-VarNet (8
cascades) on 8-coil 256x256 k-space at 4x (batch 1); Adam everywhere. PyTorch
(eager and torch.compile) runs the same models when installed
(``pip install -e ".[peer]"``). Also: the machine's matmul peak, the CIFAR
input pipeline, inference per slice of the MRI models and of CG-SENSE, the
cnn step on 1, 2, 4 forced host devices (a correctness check on a CPU), and,
when cnn and fdl both run, fdl's cnn step next to a hand-written pure-JAX step
of the same model (fdl's own overhead; ``--no-overhead`` skips it).
"""

import argparse
import json
import os
import sys
import time

import jax

from fdl.bench import pure_jax, specs, steps

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peers import torch_peer  # noqa: E402  pylint: disable=g-import-not-at-top

FRAMEWORKS = steps.FDL_FRAMEWORKS + tuple(torch_peer.PEERS)


def _parse_list(text: str, allowed, what: str, parser) -> list[str]:
  items = [t for t in text.split(",") if t]
  unknown = sorted(set(items) - set(allowed))
  if unknown:
    parser.error(f"{what}: unknown {unknown}; choose from {list(allowed)}")
  return items


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--workloads", default=",".join(specs.WORKLOADS))
  parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
  parser.add_argument("--steps", type=int, default=20, help="timed steps per framework")
  parser.add_argument("--warmup", type=int, default=2, help="untimed steps after compiling")
  parser.add_argument("--json", default="runs/benchmarks/steps.json")
  parser.add_argument("--devices", default="1,2,4",
                      help="host device counts of the scaling check ('' skips it)")
  parser.add_argument("--scaling-workload", default="cnn")
  parser.add_argument("--tiny", action="store_true", help="test-size workloads")
  parser.add_argument("--peak-size", type=int, default=2048, help="n of the n x n matmul")
  parser.add_argument("--no-extras", action="store_true",
                      help="skip the input pipeline, inference and scaling measurements")
  parser.add_argument("--no-overhead", action="store_true",
                      help="skip fdl's cnn step against a hand-written pure-JAX step")
  args = parser.parse_args()
  if args.steps < 1:
    parser.error(f"--steps must be >= 1; got {args.steps}")
  workloads = _parse_list(args.workloads, specs.WORKLOADS, "--workloads", parser)
  frameworks = _parse_list(args.frameworks, FRAMEWORKS, "--frameworks", parser)
  try:
    device_counts = [int(d) for d in args.devices.split(",") if d]
  except ValueError:
    parser.error(f"--devices must be comma-separated integers; got {args.devices!r}")
  if any(d < 1 for d in device_counts):
    parser.error(f"--devices must be >= 1; got {args.devices!r}")

  start = time.perf_counter()
  machine = steps.machine_info(torch_peer.info())
  print(f"{machine['cpu']} ({machine['cpu_count']} cores), {machine['device_count']} x "
        f"{machine['device_kind']}; jax {machine['jax']}, torch {machine['torch']}")
  peak = steps.matmul_peak(size=64 if args.tiny else args.peak_size,
                          peer_matmuls=torch_peer.matmuls())
  print(f"matmul peak (float32, n={peak['size']}): "
        + ", ".join(f"{k[:-6]} {v / 1e9:.1f} GFLOP/s" for k, v in peak.items()
                    if k.endswith("_flops") and k != "peak_flops"), flush=True)
  versions = {k: machine[k] for k in ("python", "jax", "jaxlib", "flax", "optax", "numpy",
                                      "torch")}
  records = []
  for name in workloads:
    print(f"{name} ...", flush=True)
    for record in steps.benchmark_workload(name, steps=args.steps, warmup=args.warmup,
                                           peak_flops=peak["peak_flops"],
                                           frameworks=frameworks, tiny=args.tiny,
                                           peers=torch_peer.PEERS):
      record.update(machine=machine["cpu"], versions=versions,
                    device_kind=machine["device_kind"],
                    device_count=machine["device_count"])
      records.append(record)
  print()
  print(steps.format_table(records))
  result = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
            "machine": machine, "peak": peak, "steps": args.steps, "warmup": args.warmup,
            "tiny": args.tiny, "records": records}

  if not args.no_overhead and "cnn" in workloads and "fdl" in frameworks:
    result["overhead"] = pure_jax.overhead("cnn", steps=args.steps, warmup=args.warmup,
                                           tiny=args.tiny)
    print("\n" + pure_jax.format_line(result["overhead"]), flush=True)

  if not args.no_extras:
    result["input_pipeline"] = steps.input_pipeline_rate(batch_size=8 if args.tiny else 128,
                                                         epochs=1 if args.tiny else 3)
    cnn = [r for r in records if r["workload"] == "cnn" and "step_time_s" in r]
    print(f"\ninput pipeline ({result['input_pipeline']['pipeline']}): "
          f"{result['input_pipeline']['examples_per_sec']:.0f} examples/s"
          + "".join(f"; {r['framework']} cnn step {r['examples_per_sec']:.0f} examples/s"
                    for r in cnn))
    inference = [{"method": r["workload"], "framework": "fdl",
                  "inference_s_per_slice": r["inference_s_per_slice"]}
                 for r in records if "inference_s_per_slice" in r]
    if any(w in workloads for w in ("modl", "varnet")):
      inference.append(steps.cg_sense_time(tiny=args.tiny))
    result["mri_inference"] = inference
    for entry in inference:
      print(f"inference per slice: {entry['method']:<8} "
            f"{entry['inference_s_per_slice'] * 1e3:8.1f} ms")
    if device_counts:
      scaling = steps.device_scaling(args.scaling_workload, device_counts,
                                     steps=min(args.steps, 10), tiny=args.tiny)
      result["device_scaling"] = scaling
      print(f"\n{args.scaling_workload} step on forced host devices (same cores):")
      for s in scaling:
        print(f"  {s['num_devices']} devices: {s['step_time_s'] * 1e3:8.2f} ms, "
              f"loss after {s['steps_run']} steps {s['final_loss']:.6f}, "
              f"sum p^2 {s['param_sq_norm']:.6f}")

  result["wall_time_s"] = time.perf_counter() - start
  os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
  with open(args.json, "w", encoding="utf-8") as f:
    json.dump(result, f, indent=2)
  print(f"\nwrote {args.json} ({result['wall_time_s']:.0f} s)")


if __name__ == "__main__":
  main()
