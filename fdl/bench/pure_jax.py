"""fdl's own overhead: its train step next to a hand-written pure-JAX step of one workload.

The pure-JAX step has none of fdl's training machinery (no `TrainState`, no mesh
shardings, no dropout key, no metrics): it is ``jax.jit(donate_argnums=0)`` of

    loss, grads = jax.value_and_grad(mean softmax cross-entropy (optax))(params)
    updates, opt_state = optax.adam(LEARNING_RATE).update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)

on a plain ``(params, opt_state)`` tuple. The forward is the same flax module
(`fdl_workloads.create_model`, e.g. ``fdl.models.CNN``), applied to the same
initial parameters (copied from fdl's state before its first step), so both steps
compute the same function and their losses agree step for step; the ratio of
their times is what fdl's step adds (its global norms included: they are part of
what fdl's step computes).

Both are compiled ahead of time for one device and timed in alternating blocks,
as `fdl.bench.steps.benchmark_workload` times fdl against PyTorch: median step
time after warm-up, each step ended by ``jax.block_until_ready``, no host-device
transfer allowed inside a timed step.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

import jax
import numpy as np
import optax

from fdl.bench import fdl_workloads, specs as specs_lib, steps as steps_lib
from fdl.models.conv import compiler_options
from fdl.train import mesh as mesh_lib

# Workloads whose pure-JAX step is written here: classifiers without batch norm
# (their loss is cross-entropy, their variables are parameters only).
WORKLOADS = ("mlp", "cnn")
LOSS_RTOL = 1e-5


def pure_jax_step(model):
  """``step((params, opt_state), batch) -> ((params, opt_state), loss)``, jitted, donated."""
  tx = optax.adam(specs_lib.LEARNING_RATE)

  def loss_fn(params, image, label):
    logits = model.apply({"params": params}, image, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, label).mean()

  def step(train_state, batch):
    params, opt_state = train_state
    loss, grads = jax.value_and_grad(loss_fn)(params, batch["image"], batch["label"])
    updates, opt_state = tx.update(grads, opt_state, params)
    return (optax.apply_updates(params, updates), opt_state), loss

  # The same convolution lowering as fdl's step (a property of the model's convolution,
  # not of fdl's training machinery, which is what this comparison isolates).
  return jax.jit(step, donate_argnums=0, compiler_options=compiler_options()), tx


class _PureJaxRunner:
  """The hand-written step, compiled ahead of time, its state held between calls."""

  def __init__(self, spec: dict, batch: dict, params: Any, device):
    jitted, tx = pure_jax_step(fdl_workloads.create_model(spec))
    params = jax.device_put(params, device)
    self.state = (params, jax.jit(tx.init)(params))
    self.batch = jax.device_put(batch, device)
    compiled = jitted.lower(self.state, self.batch)
    self.compiled = compiled.compile()
    self.flops_per_step = steps_lib._cost_flops(self.compiled)  # pylint: disable=protected-access
    self.loss = None

  def step(self):
    with jax.transfer_guard("disallow"):
      self.state, loss = self.compiled(self.state, self.batch)
      jax.block_until_ready((self.state, loss))
    self.loss = loss


def _close(a: float, b: float) -> bool:
  return math.isclose(a, b, rel_tol=LOSS_RTOL, abs_tol=1e-7)


def overhead(spec_name: str = "cnn", *, steps: int = 20, warmup: int = 2, tiny: bool = False,
             block: int = 0) -> dict:
  """Times fdl's `make_train_step` against the hand-written pure-JAX step, same run.

  Args:
    spec_name: a workload of `WORKLOADS`.
    steps: timed steps per step function (>= 1).
    warmup: untimed steps of each after compiling (at least 1 is run: its loss,
      at the shared initial parameters, is ``first_loss_*``).
    tiny: the test-size variant of the workload.
    block: steps per step function per block; 0 picks ``max(1, steps // 4)``.

  Returns:
    ``workload``, ``pure_jax_step_time_s`` and ``fdl_step_time_s`` (medians),
    ``fdl_over_pure_jax`` (their ratio), the per-step times, ``first_loss_*``
    and ``final_loss_*`` (after the same ``1 + ...`` steps of each), the FLOPs
    XLA counts in each compiled step, and ``losses_match``: first and final
    losses agree to `LOSS_RTOL` relative.
  """
  if spec_name not in WORKLOADS:
    raise ValueError(f"spec_name must be one of {WORKLOADS}; got {spec_name!r}")
  if steps < 1:
    raise ValueError(f"steps must be >= 1; got {steps!r}")
  spec = specs_lib.get_spec(spec_name, tiny=tiny)
  batch = fdl_workloads.make_batch(spec)
  mesh = mesh_lib.make_mesh(1)  # both on one device: fdl's shardings are then no-ops
  fdl = steps_lib._FdlRunner(spec, batch, mesh=mesh)  # pylint: disable=protected-access
  # The same initial parameters, as independent buffers (fdl's step donates its own).
  params = jax.tree.map(np.array, mesh_lib.to_host(fdl.state.params))
  pure = _PureJaxRunner(spec, batch, params, mesh.devices.flat[0])
  runners = {"pure_jax": pure, "fdl": fdl}
  first = {}
  for name, runner in runners.items():
    for i in range(max(1, warmup)):
      runner.step()
      if i == 0:
        first[name] = float(runner.loss)
  block = block or max(1, steps // 4)
  times: dict[str, list[float]] = {name: [] for name in runners}
  while any(len(t) < steps for t in times.values()):
    for name, runner in runners.items():
      for _ in range(min(block, steps - len(times[name]))):
        times[name].append(steps_lib._timed(runner.step))  # pylint: disable=protected-access
  final = {name: float(runner.loss) for name, runner in runners.items()}
  median = {name: statistics.median(t) for name, t in times.items()}
  return {
      "workload": spec_name, "tiny": tiny, "batch_size": spec["batch"],
      "pure_jax_step_time_s": median["pure_jax"], "fdl_step_time_s": median["fdl"],
      "fdl_over_pure_jax": median["fdl"] / median["pure_jax"],
      "pure_jax_step_times_s": times["pure_jax"], "fdl_step_times_s": times["fdl"],
      "timed_steps": steps, "warmup": max(1, warmup), "block": block,
      "first_loss_pure_jax": first["pure_jax"], "first_loss_fdl": first["fdl"],
      "final_loss_pure_jax": final["pure_jax"], "final_loss_fdl": final["fdl"],
      "losses_match": (_close(first["pure_jax"], first["fdl"])
                       and _close(final["pure_jax"], final["fdl"])),
      "pure_jax_flops_per_step": pure.flops_per_step,
      "fdl_flops_per_step": fdl.flops_per_step,
      "device_kind": mesh.devices.flat[0].device_kind,
      "pure_jax": "jax.jit(donate_argnums=0): value_and_grad(optax softmax cross-entropy "
                  "of the same flax module), optax.adam, optax.apply_updates",
  }


def format_line(record: dict) -> str:
  """One line: ``fdl step vs hand-written pure-JAX step (cnn): a ms vs b ms (r x)``."""
  return (f"fdl step vs hand-written pure-JAX step ({record['workload']}): "
          f"{record['fdl_step_time_s'] * 1e3:.2f} ms vs "
          f"{record['pure_jax_step_time_s'] * 1e3:.2f} ms "
          f"({record['fdl_over_pure_jax']:.3f}x); losses "
          f"{'match' if record['losses_match'] else 'DIFFER'} "
          f"(final {record['final_loss_fdl']:.6f} vs {record['final_loss_pure_jax']:.6f})")
