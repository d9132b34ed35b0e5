"""Multi-host set-up through `jax.distributed`, including on CPU with gloo."""

from __future__ import annotations

import jax

from fdl.data.batching import process_slice  # noqa: F401  (fdl.train.process_slice)


def initialize(coordinator_address: str | None = None,
               num_processes: int | None = None,
               process_id: int | None = None,
               *, cpu_collectives: str = "gloo") -> None:
  """Joins this process to a multi-process JAX run.

  Must be called before any other JAX call that touches devices. On GPU/TPU
  clusters the three arguments can usually be left None (auto-detected). On CPU,
  cross-process collectives need an implementation: gloo works on one machine and
  over TCP, which is how the multi-host tests run two processes on 127.0.0.1.

  Args:
    coordinator_address: ``"host:port"`` of process 0's coordinator.
    num_processes: total number of processes.
    process_id: this process's index in ``[0, num_processes)``.
    cpu_collectives: ``"gloo"`` (or ``"mpi"``) for CPU collectives.
  """
  if num_processes is not None and process_id is not None and not (
      0 <= process_id < num_processes):
    raise ValueError(
        f"process_id must be in [0, {num_processes}); got {process_id}")
  jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes,
                             process_id=process_id)
