"""The train state: one explicit pytree holding everything a step changes."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.sharding import Mesh

from fdl.train import mesh as mesh_lib


class TrainState(struct.PyTreeNode):
  """Everything that changes during training, as one pytree.

  Attributes:
    step: int32 scalar, the number of optimizer steps taken.
    params: the model's ``params`` collection (float32).
    batch_stats: the model's ``batch_stats`` collection, ``{}`` without batch norm.
    opt_state: the Optax optimizer state.
    rng: a raw ``uint32[2]`` PRNG key fixed for the run. A step's key is
      ``fold_in(rng, step)``, so a resumed run draws the same numbers as an
      uninterrupted one.
    apply_fn: the model's ``apply`` (static, not a leaf).
    tx: the optimizer (static, not a leaf).
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def step_key(self) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(rng, step)``."""
    return jax.random.fold_in(self.rng, self.step)

  @property
  def variables(self) -> dict:
    """``{'params': ..., 'batch_stats': ...}`` as `model.apply` expects."""
    if self.batch_stats:
      return {"params": self.params, "batch_stats": self.batch_stats}
    return {"params": self.params}


def create_train_state(
    model: nn.Module,
    tx: optax.GradientTransformation,
    input_shape: Sequence[int] | None = None,
    *,
    seed: int = 0,
    mesh: Mesh | None = None,
    input_dtype=jnp.float32,
    example_inputs: Sequence[Any] | None = None,
) -> TrainState:
  """Initializes a model and optimizer into a replicated `TrainState`.

  The state is created by a jitted function with replicated output shardings, so
  it is born on the devices of `mesh` (also across processes) without a host copy.

  Args:
    model: a Flax linen module with ``__call__(x, *, train)``.
    tx: an Optax optimizer.
    input_shape: shape of one input batch, e.g. ``(1, 32, 32, 3)``.
    seed: the run's seed; parameters and the state key derive from it.
    mesh: the data-parallel mesh; None means all devices.
    input_dtype: dtype of the dummy input used for shape inference.
    example_inputs: instead of `input_shape`, one or more example inputs
      (arrays or `jax.ShapeDtypeStruct`s) for a model called with several
      positional inputs, e.g. ``(kspace, mask, maps)``; zeros of their shapes and
      dtypes are used.

  Returns:
    A `TrainState` at step 0, replicated over `mesh`.
  """
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  if (input_shape is None) == (example_inputs is None):
    raise ValueError("give exactly one of input_shape and example_inputs")
  if example_inputs is None:
    specs = [jax.ShapeDtypeStruct(tuple(int(d) for d in input_shape), input_dtype)]
  else:
    specs = [jax.ShapeDtypeStruct(tuple(x.shape), x.dtype)
             for x in example_inputs]

  def init(key):
    params_key, dropout_key, state_key = jax.random.split(key, 3)
    variables = model.init({"params": params_key, "dropout": dropout_key},
                           *(jnp.zeros(s.shape, s.dtype) for s in specs), train=False)
    params = variables["params"]
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        batch_stats=variables.get("batch_stats", {}),
        opt_state=tx.init(params),
        rng=state_key,
        apply_fn=model.apply,
        tx=tx)

  init = jax.jit(init, out_shardings=mesh_lib.replicated(mesh))
  return init(jax.random.PRNGKey(seed))


def num_params(params: Any) -> int:
  """Total number of scalars in a parameter pytree."""
  return sum(int(p.size) for p in jax.tree.leaves(params))
