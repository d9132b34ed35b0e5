"""Device mesh, shardings and host<->device movement for data parallelism.

fdl is data-parallel through `jax.jit` with `NamedSharding` over a 1-D mesh whose
single axis is named ``data``: the train state is replicated, every batch is split
along its leading axis. Because jit compiles one *global* program, batch statistics,
losses and gradients are means over the global batch whatever the device count, so
1 device and N devices compute the same numbers (up to float summation order). The
same code runs with several processes (`jax.distributed`): each process feeds its
own slice of the global batch.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def make_mesh(num_devices: int | None = None) -> Mesh:
  """A 1-D ``("data",)`` mesh over the first `num_devices` global devices.

  Args:
    num_devices: how many devices to use; None means all of `jax.devices()`.

  Returns:
    A `Mesh` with one axis named ``data``.
  """
  devices = jax.devices()
  if num_devices is None:
    num_devices = len(devices)
  if not 1 <= num_devices <= len(devices):
    raise ValueError(
        f"num_devices must be in [1, {len(devices)}] (the devices JAX sees); "
        f"got {num_devices}")
  return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  """Sharding that keeps a full copy on every device of `mesh`."""
  return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
  """Sharding that splits the leading (batch) axis over the ``data`` axis."""
  return NamedSharding(mesh, P(DATA_AXIS))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
  """Moves a host batch onto the mesh, split along the batch axis.

  Args:
    batch: pytree of host arrays with a leading batch axis. In a single-process
      run it is the global batch; with several processes it is this process's
      slice, and the global batch is the concatenation in process order.
    mesh: the data-parallel mesh.

  Returns:
    The same pytree of global `jax.Array`s sharded with ``P("data")``.
  """
  sharding = batch_sharded(mesh)
  num_shards = mesh.shape[DATA_AXIS]
  local_shards = num_shards // jax.process_count()

  def put(path, x):
    x = np.asarray(x)
    if x.ndim == 0:
      raise ValueError(
          f"batch{jax.tree_util.keystr(path)} must have a leading batch axis; "
          f"got a scalar")
    if x.shape[0] % local_shards:
      raise ValueError(
          f"batch{jax.tree_util.keystr(path)} has {x.shape[0]} examples on this "
          f"process, not divisible by its {local_shards} devices of the 'data' "
          f"mesh axis; choose a batch size that is a multiple of "
          f"{num_shards} (the global device count)")
    return jax.make_array_from_process_local_data(sharding, x)

  return jax.tree_util.tree_map_with_path(put, batch)


def to_host(tree: Any) -> Any:
  """Fetches a pytree of (possibly multi-process, replicated) arrays to NumPy.

  Fully addressable arrays are gathered; arrays that span other processes must be
  replicated (metrics, parameters), and the local copy is returned.
  """
  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      if not x.sharding.is_fully_replicated:
        raise ValueError(
            "to_host needs replicated arrays in a multi-process run; got one "
            f"sharded as {x.sharding}")
      return np.asarray(x.addressable_data(0))
    return np.asarray(x)

  return jax.tree.map(get, tree)
