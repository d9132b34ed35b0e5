"""Time per slice of CG-SENSE and L1-wavelet CS after compilation (benchmark).

  python benchmarks/mri_recon.py [--coils 15 --size 320 --repeats 5 --out DIR]

A 15-coil 320x320 slice is simulated (fdl.mri.simulate), under-sampled 4x with
an equispaced line mask, and reconstructed with the true maps. Compile time is
reported separately; the per-slice time is the median of `repeats` runs, each
ended by `block_until_ready`. When SigPy is importable, its CG-SENSE
(`sigpy.mri.app.SenseRecon`, 10 CG iterations, no regularization) runs on the
same data in the same process and the ratio is reported.
"""

import argparse
import json
import os

import jax
import jax.numpy as jnp
import numpy as np

from fdl import mri
from fdl.bench.timing import time_calls


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--coils", type=int, default=15)
  parser.add_argument("--size", type=int, default=320)
  parser.add_argument("--cg-iters", type=int, default=10)
  parser.add_argument("--cs-iters", type=int, default=50)
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--out", default="runs/benchmarks")
  args = parser.parse_args()

  sim = mri.simulate(jax.random.PRNGKey(0), num_slices=1, shape=(args.size, args.size),
                     num_coils=args.coils, snr_db=30.0)
  mask = np.asarray(mri.equispaced_mask(jax.random.PRNGKey(1), args.size, 4, 0.08))
  mask = mask.reshape(1, 1, 1, -1)
  kspace = jnp.asarray(sim["kspace"] * mask)
  maps = jnp.asarray(sim["maps"])
  mask = jnp.asarray(mask)

  cg_fn = jax.jit(lambda k, s, m: mri.cg_sense(k, s, m, num_iters=args.cg_iters))
  cs_lambda = 1e-3 * float(np.abs(np.asarray(sim["image"])).max())
  cs_fn = jax.jit(lambda k, s, m: mri.cs_wavelet(k, s, m, lam=cs_lambda,
                                                 num_iters=args.cs_iters))
  results = {"device": jax.devices()[0].device_kind, "num_devices": jax.device_count(),
             "shape": [1, args.coils, args.size, args.size]}
  for name, fn in (("cg_sense", cg_fn), ("cs_wavelet", cs_fn)):
    first, median, times = time_calls(lambda: fn(kspace, maps, mask), args.repeats)
    results[name] = {"compile_and_first_run_s": first, "median_s": median,
                     "times_s": times}
    print(f"fdl {name:<10}: {median * 1e3:8.1f} ms per slice "
          f"(first call incl. compile {first:.2f} s)", flush=True)
  results["cg_sense"]["iterations"] = args.cg_iters
  results["cs_wavelet"]["iterations"] = args.cs_iters

  try:
    import sigpy.mri.app  # pylint: disable=g-import-not-at-top
  except ImportError:
    results["sigpy"] = "not installed (pip install sigpy to compare)"
    print("sigpy: not installed; skipped")
  else:
    y = np.asarray(kspace[0])
    mps = np.asarray(maps[0])
    weights = np.broadcast_to(np.asarray(mask[0]), y.shape).astype(np.float32)
    run = lambda: sigpy.mri.app.SenseRecon(y, mps, lamda=0.0, weights=weights,
                                           max_iter=args.cg_iters,
                                           show_pbar=False).run()
    first, median, times = time_calls(run, args.repeats)
    results["sigpy_cg_sense"] = {"median_s": median, "times_s": times}
    results["sigpy_over_fdl"] = median / results["cg_sense"]["median_s"]
    print(f"sigpy cg_sense: {median * 1e3:8.1f} ms per slice; "
          f"sigpy / fdl = {results['sigpy_over_fdl']:.2f}")

  os.makedirs(args.out, exist_ok=True)
  path = os.path.join(args.out, "mri_recon.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump(results, f, indent=2)
  print(f"wrote {path}")


if __name__ == "__main__":
  main()
