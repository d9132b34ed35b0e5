"""Runs a fixed 10-step training problem and saves the final state (test helper).

Launched as a subprocess by the device-count and multi-host tests, since the
number of host devices and `jax.distributed` must be fixed before JAX starts:

  python tests/train_worker.py OUT.npz [--devices N]
      [--coordinator HOST:PORT --num-processes P --process-id I]

The global batch of every step is the same whatever the device or process count;
each process feeds its slice (`fdl.train.process_slice`).
"""

import argparse
import os
import sys


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("out")
  parser.add_argument("--devices", type=int, default=1)
  parser.add_argument("--coordinator")
  parser.add_argument("--num-processes", type=int, default=1)
  parser.add_argument("--process-id", type=int, default=0)
  parser.add_argument("--steps", type=int, default=10)
  args = parser.parse_args(argv)
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             f" --xla_force_host_platform_device_count={args.devices}")

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fdl import models, train  # pylint: disable=g-import-not-at-top

  if args.coordinator:
    train.initialize_distributed(args.coordinator, args.num_processes,
                                 args.process_id)
  mesh = train.make_mesh()
  model = models.CNN(features=(4, 8), dense=(16,), num_classes=3,
                     batch_norm=True, dropout=0.25)
  schedule = train.make_schedule("warmup_cosine", learning_rate=0.05,
                                 total_steps=args.steps, warmup_steps=2)
  tx = train.make_optimizer("nesterov", schedule, weight_decay=1e-4,
                            grad_clip_norm=5.0)
  state = train.create_train_state(model, tx, (1, 8, 8, 3), seed=3, mesh=mesh)
  step = train.make_train_step(train.classification_loss(label_smoothing=0.1),
                               mesh=mesh, learning_rate=schedule, l2=1e-3)
  rng = np.random.RandomState(0)
  global_batch = 16
  rows = train.process_slice(global_batch)
  losses = []
  for _ in range(args.steps):
    x = rng.randn(global_batch, 8, 8, 3).astype(np.float32)
    y = rng.randint(0, 3, size=global_batch).astype(np.int32)
    state, metrics = step(state, {"image": x[rows], "label": y[rows]})
    losses.append(float(train.to_host(metrics)["loss"]))
  flat = {}
  for path, leaf in jax.tree_util.tree_leaves_with_path(
      {"params": state.params, "batch_stats": state.batch_stats}):
    flat[jax.tree_util.keystr(path)] = train.to_host(leaf)
  flat["__losses__"] = np.asarray(losses)
  flat["__num_devices__"] = np.asarray(len(jax.devices()))
  if jax.process_index() == 0:
    np.savez(args.out, **flat)
  if args.coordinator:
    jax.distributed.shutdown()


if __name__ == "__main__":
  main(sys.argv[1:])
