"""Train-step and inference time per slice of the learned reconstruction models.

  python benchmarks/mri_models.py [--models unet,modl,varnet --coils 8 --size 256 \
      --steps 5 --out runs/benchmarks]

One simulated slice (8 coils, 256x256, batch 1), 4x equispaced line mask with
16 centre lines, true coil maps. Each model has the default settings of
``experiments/configs/mri_recon.py`` (stated in the output). For each: the
compile time of the train step and of inference, then the median of `steps`
timed calls each (`block_until_ready`), with the state donated to the step as
in training.
"""

import argparse
import importlib.util
import json
import os

import jax
import numpy as np

from fdl import mri, train
from fdl.bench.timing import time_calls
from fdl.tasks import reconstruction

_CONFIG_PATH = os.path.join(os.path.dirname(__file__), "..", "experiments", "configs",
                            "mri_recon.py")


def _default_config():
  spec = importlib.util.spec_from_file_location("mri_recon_config", _CONFIG_PATH)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config()


def make_inputs(coils: int, size: int, center_lines: int = 16) -> dict:
  """One simulated, 4x under-sampled slice as a batch of 1."""
  sim = mri.simulate(jax.random.PRNGKey(0), num_slices=1, shape=(size, size),
                     num_coils=coils, snr_db=30.0)
  mask = np.asarray(mri.equispaced_mask(jax.random.PRNGKey(1), size, 4,
                                        center_lines / size), np.float32)
  mask = mask.reshape(1, 1, 1, size)
  target = sim["target"] / sim["target"].max()
  scale = 1.0 / float(sim["target"].max())
  return {"kspace": (sim["kspace"] * mask * scale).astype(np.complex64),
          "mask": mask, "maps": sim["maps"], "target": target.astype(np.float32),
          "data_range": np.ones((1,), np.float32)}


def benchmark_model(name: str, config, batch: dict, steps: int) -> dict:
  """Times one model's train step and inference on `batch`."""
  config.model = name
  model = reconstruction.create_model(config)
  specs = [jax.ShapeDtypeStruct(batch[k].shape, batch[k].dtype)
           for k in reconstruction.INPUT_KEYS]
  state = train.create_train_state(model, train.make_optimizer("adam", 1e-4),
                                   example_inputs=specs)
  step = train.make_train_step(train.reconstruction_loss("l1"),
                               input_key=reconstruction.INPUT_KEYS)
  device_batch = jax.device_put(batch)
  holder = {"state": state}

  def train_call():
    holder["state"], metrics = step(holder["state"], device_batch)
    return metrics

  step_first, step_median, step_times = time_calls(train_call, steps)
  apply = jax.jit(lambda v, k, m, s: model.apply(v, k, m, s, train=False))
  variables = holder["state"].variables
  infer_first, infer_median, infer_times = time_calls(
      lambda: apply(variables, device_batch["kspace"], device_batch["mask"],
                    device_batch["maps"]), steps)
  return {
      "model": name, "settings": config[name].to_dict(),
      "num_params": train.num_params(holder["state"].params),
      "train_step_s": step_median, "train_step_times_s": step_times,
      "train_compile_and_first_s": step_first,
      "inference_s_per_slice": infer_median, "inference_times_s": infer_times,
      "inference_compile_and_first_s": infer_first,
  }


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--models", default="unet,modl,varnet")
  parser.add_argument("--coils", type=int, default=8)
  parser.add_argument("--size", type=int, default=256)
  parser.add_argument("--steps", type=int, default=5)
  parser.add_argument("--out", default="runs/benchmarks")
  args = parser.parse_args()
  names = [m for m in args.models.split(",") if m]
  unknown = sorted(set(names) - set(reconstruction.RECON_MODELS))
  if unknown:
    parser.error(f"--models: unknown {unknown}; choose from {reconstruction.RECON_MODELS}")

  config = _default_config()
  batch = make_inputs(args.coils, args.size)
  results = {"device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
             "jax": jax.__version__, "shape": list(batch["kspace"].shape),
             "steps": args.steps, "models": []}
  print(f"k-space {list(batch['kspace'].shape)} [batch, coils, H, W], 4x equispaced, "
        f"16 centre lines; {results['device']}")
  print(f"{'model':<8} {'params':>10} {'train step':>12} {'inference':>12} "
        f"{'compile (train)':>16}")
  for name in names:
    record = benchmark_model(name, config, batch, args.steps)
    results["models"].append(record)
    print(f"{name:<8} {record['num_params']:>10,} {record['train_step_s'] * 1e3:>9.0f} ms"
          f" {record['inference_s_per_slice'] * 1e3:>9.0f} ms"
          f" {record['train_compile_and_first_s']:>14.1f} s   {record['settings']}",
          flush=True)
  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "mri_models.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
