"""A tiny, slow `fit` run in its own process (helper of test_reliability.py).

  python tests/train/reliability_worker.py WORKDIR [--epochs N]
      [--ready PATH --ready-after K] [--delay SECONDS]

Trains a 2-class MLP on 4 deterministic batches per epoch, sleeping `delay`
seconds per batch so that a test can act on the running process. After `K`
batches have been consumed it writes PATH (the test's cue: `fit` holds its
lock, and with K > 4 the first epoch's checkpoint exists). It exits with
`fdl.train.exit_status` of the result; a busy work directory prints the error
and exits with status 3.
"""

import argparse
import os
import sys
import time

BATCHES_PER_EPOCH = 4
BUSY_STATUS = 3


def build():
  """``(new_state, train_step, data)`` of the tiny run, also used in-process."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fdl import models, train  # pylint: disable=g-import-not-at-top

  mesh = train.make_mesh()
  model = models.MLP(hidden=(8,), num_classes=2)
  tx = train.make_optimizer("momentum", 0.1)
  step = train.make_train_step(train.classification_loss(), mesh=mesh)

  def new_state():
    return train.create_train_state(model, tx, (1, 3), seed=0, mesh=mesh)

  def data(epoch):
    rng = np.random.RandomState(100 + epoch)
    out = []
    for _ in range(BATCHES_PER_EPOCH):
      x = rng.randn(8, 3).astype(np.float32)
      out.append({"image": x, "label": (x[:, 0] > 0).astype(np.int32)})
    return out

  return new_state, step, data


def main(argv):
  parser = argparse.ArgumentParser()
  parser.add_argument("workdir")
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--ready")
  parser.add_argument("--ready-after", type=int, default=1)
  parser.add_argument("--delay", type=float, default=0.2)
  args = parser.parse_args(argv)

  from fdl import train  # pylint: disable=g-import-not-at-top

  new_state, step, data = build()
  consumed = 0

  def slow_data(epoch):
    nonlocal consumed
    for batch in data(epoch):
      yield batch
      consumed += 1
      if args.ready and consumed == args.ready_after:
        with open(args.ready, "w", encoding="utf-8") as f:
          f.write(str(os.getpid()))
      time.sleep(args.delay)

  try:
    result = train.fit(new_state(), step, slow_data, num_epochs=args.epochs,
                       workdir=args.workdir, log_every=1, progress=False)
  except train.WorkdirBusyError as e:
    print(f"worker: {e}", file=sys.stderr, flush=True)
    return BUSY_STATUS
  return train.exit_status(result)


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
