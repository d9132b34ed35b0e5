"""The fdl side of the step benchmark: the model, batch and train step of a workload.

The step is `fdl.train.make_train_step` (jit, state donated), exactly as the
experiments use it, with Adam and the workload's loss: cross-entropy for the
classifiers, L1 for the reconstruction networks.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fdl import losses, models
from fdl.bench.specs import LEARNING_RATE
from fdl.mri import masks, simulate
from fdl.train import state as state_lib
from fdl.train import step as step_lib


def model_kwargs(spec: dict) -> dict:
  """The keyword arguments of the registry model (`fdl.models.create_model`) a spec names."""
  name = spec["name"]
  if name == "mlp":
    return dict(hidden=tuple(spec["hidden"]), num_classes=spec["num_classes"])
  if name == "cnn":
    return dict(features=tuple(spec["features"]), dense=tuple(spec["dense"]),
                num_classes=spec["num_classes"], pool="max", batch_norm=False)
  if name == "resnet18":
    return dict(stage_sizes=tuple(spec["stage_sizes"]), block="basic",
                num_classes=spec["num_classes"], stem="cifar", width=spec["width"])
  if name == "unet":
    return dict(out_channels=1, base_channels=spec["channels"], num_pools=spec["pools"])
  if name == "modl":
    return dict(num_iters=spec["num_iters"], cg_iters=spec["cg_iters"],
                depth=spec["depth"], width=spec["width"])
  if name == "varnet":
    return dict(num_cascades=spec["num_cascades"], channels=spec["channels"],
                pools=spec["pools"], sens_channels=spec["sens_channels"],
                sens_pools=spec["sens_pools"])
  raise ValueError(f"unknown workload {name!r}")


# Workload name -> registry name (the workload's ResNet-18 writes its stages out, so
# that the tiny variant can shrink them).
_REGISTRY_NAMES = {"resnet18": "resnet"}


def create_model(spec: dict):
  """The flax module a spec describes, built by the model registry."""
  return models.create_model(_REGISTRY_NAMES.get(spec["name"], spec["name"]),
                             **model_kwargs(spec))


def input_keys(spec: dict) -> tuple[str, ...]:
  """The batch keys passed to the model, in order."""
  return ("kspace", "mask", "maps") if spec["kind"] == "kspace" else ("image",)


def make_batch(spec: dict, seed: int = 0) -> dict[str, np.ndarray]:
  """One batch of the workload as NumPy arrays (fdl layouts), the same for every framework.

  Returns:
    classification: ``image`` float32 ``[B, H, W, 3]``, ``label`` int32 ``[B]``;
    image: ``image`` and ``target`` float32 ``[B, H, W, 1]``;
    kspace: ``kspace`` complex64 ``[B, C, N, N]`` (under-sampled, scaled so the
    target's maximum is 1), ``mask`` float32 ``[B, 1, 1, N]``, ``maps`` complex64
    ``[B, C, N, N]``, ``target`` float32 ``[B, N, N]``, ``data_range`` ``[B]``.
  """
  rng = np.random.default_rng(seed)
  batch = spec["batch"]
  if spec["kind"] == "classification":
    return {"image": rng.standard_normal((batch, *spec["image"]), dtype=np.float32),
            "label": rng.integers(0, spec["num_classes"], batch).astype(np.int32)}
  if spec["kind"] == "image":
    shape = (batch, *spec["image"])
    return {"image": rng.standard_normal(shape, dtype=np.float32),
            "target": rng.standard_normal(shape, dtype=np.float32)}
  size = spec["size"]
  sim = simulate(jax.random.PRNGKey(seed), num_slices=batch, shape=(size, size),
                 num_coils=spec["coils"], snr_db=30.0)
  mask = np.asarray(masks.equispaced_mask(jax.random.PRNGKey(seed + 1), size,
                                          spec["acceleration"],
                                          spec["center_lines"] / size), np.float32)
  mask = np.broadcast_to(mask.reshape(1, 1, 1, size), (batch, 1, 1, size)).copy()
  scale = 1.0 / float(sim["target"].max())
  return {"kspace": (sim["kspace"] * mask * scale).astype(np.complex64),
          "mask": mask, "maps": sim["maps"].astype(np.complex64),
          "target": (sim["target"] * scale).astype(np.float32),
          "data_range": np.ones((batch,), np.float32)}


# Only the loss: the torch peer computes no metrics either.
_l1_loss = losses.StepLoss(lambda outputs, batch: (
    jnp.mean(jnp.abs(outputs - batch["target"])), {}), target_key="target")
_cross_entropy_loss = losses.StepLoss(lambda logits, batch: (
    jnp.mean(losses.cross_entropy(logits, batch["label"])), {}),
                                      target_key="label", target_integer=True)


def loss_fn(spec: dict) -> Callable:
  """``(outputs, batch) -> (loss, {})``: cross-entropy or L1, the loss alone."""
  return _cross_entropy_loss if spec["kind"] == "classification" else _l1_loss


def create_state(spec: dict, *, mesh=None, seed: int = 0):
  """The workload's initial `TrainState` (Adam, learning rate `LEARNING_RATE`)."""
  return state_lib.create_train_state(
      create_model(spec), optax.adam(LEARNING_RATE),
      example_inputs=_input_specs(spec), seed=seed, mesh=mesh)


def build_step(spec: dict, *, mesh=None) -> Callable[[Any, dict], tuple[Any, dict]]:
  """The jitted, state-donating ``train_step(state, batch)`` of `fdl.train`."""
  return step_lib.make_train_step(loss_fn(spec), mesh=mesh, input_key=input_keys(spec))


def _input_specs(spec: dict) -> list[jax.ShapeDtypeStruct]:
  """Shapes and dtypes of one example's model inputs (batch 1), from the spec alone."""
  if spec["kind"] != "kspace":
    return [jax.ShapeDtypeStruct((1, *spec["image"]), jnp.float32)]
  coils = (1, spec["coils"], spec["size"], spec["size"])
  return [jax.ShapeDtypeStruct(coils, jnp.complex64),
          jax.ShapeDtypeStruct((1, 1, 1, spec["size"]), jnp.float32),
          jax.ShapeDtypeStruct(coils, jnp.complex64)]


def num_params(spec: dict) -> int:
  """Trainable parameters of the workload's fdl model (shapes only, nothing computed)."""
  variables = jax.eval_shape(functools.partial(create_model(spec).init, train=False),
                             jax.random.key(0), *_input_specs(spec))
  return state_lib.num_params(variables["params"])
