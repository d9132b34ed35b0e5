"""The step benchmark's framework-neutral harness: fdl's compiled steps next to peers.

For each workload of `fdl.bench.specs` this builds fdl's jitted, state-donating
`train_step`, and every *peer* handed in by the caller the same model and step in
another framework (``benchmarks/peers/torch_peer.py``: PyTorch eager and
``torch.compile``), then times them in alternating blocks so that all see the same
machine conditions. Times are medians over the timed steps, each ended by
``block_until_ready`` (fdl) or by the peer's own synchronization.

A peer is a callable ``(spec, batch) -> runner``; the runner has ``step()`` (one
synchronous training step), ``loss``, ``first_loss``, ``num_params``, ``source`` and
``compile_time_s`` (None for eager). A peer that raises while building is reported as
an error record, not fatal. Nothing here imports a peer framework.

FLOPs per step come from XLA's cost analysis of fdl's compiled step; the same
count is used for the PyTorch records (the same arithmetic, by construction).
The machine's matmul peak is measured in the same run (`matmul_peak`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fdl import data
from fdl.bench import fdl_workloads, specs as specs_lib
from fdl.bench.timing import time_calls
from fdl.models import conv
from fdl.models.conv import compiler_options
from fdl.mri import recon
from fdl.train import mesh as mesh_lib

# "fdl-xla-conv" is fdl's step with `fdl.models.conv`'s lowering forced to 'xla' (XLA's
# default convolutions and compile options): the before of the CPU convolution work,
# timed in the same run as the after.
FDL_FRAMEWORKS = ("fdl", "fdl-xla-conv")
RECORD_FIELDS = ("workload", "framework", "step_time_s", "examples_per_sec",
                 "compile_time_s", "flops_per_step", "achieved_flops", "peak_flops",
                 "fraction_of_peak", "num_params")


def machine_info(extra: dict | None = None) -> dict:
  """The machine, the library versions and the devices the numbers come from.

  Args:
    extra: entries added by the caller (a peer's version and thread count).
  """
  import flax  # pylint: disable=g-import-not-at-top
  import optax  # pylint: disable=g-import-not-at-top
  cpu = platform.processor() or platform.machine()
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    cpu = names[0] if names else cpu
  except OSError:
    pass
  return {
      "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
      "python": platform.python_version(), "jax": jax.__version__,
      "jaxlib": jax.lib.__version__ if hasattr(jax.lib, "__version__") else jax.__version__,
      "flax": flax.__version__, "optax": optax.__version__, "numpy": np.__version__,
      "device_kind": jax.devices()[0].device_kind, "device_count": jax.device_count(),
      "backend": jax.default_backend(), **(extra or {}),
  }


def matmul_peak(size: int = 2048, repeats: int = 10,
                peer_matmuls: dict[str, Callable[[np.ndarray, np.ndarray], Any]] | None = None
                ) -> dict:
  """The machine's float32 matmul rate in FLOP/s: ``2 n^3`` per ``n x n`` product.

  Measured with XLA and with each of `peer_matmuls` (name -> a synchronous
  ``matmul(a, b)`` on NumPy inputs; a peer's BLAS may be faster on a CPU), as
  ``<name>_flops``; ``peak_flops`` is the largest, the ceiling the workloads are held to.
  """
  a = jax.random.normal(jax.random.key(0), (size, size), jnp.float32)
  b = jax.random.normal(jax.random.key(1), (size, size), jnp.float32)
  matmul = jax.jit(jnp.matmul)
  jax.block_until_ready(matmul(a, b))
  flops = 2.0 * size**3
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(matmul(a, b))
    times.append(time.perf_counter() - start)
  result = {"size": size, "jax_flops": flops / statistics.median(times)}
  for name, peer_matmul in (peer_matmuls or {}).items():
    prepared = peer_matmul(np.array(a), np.array(b))  # -> a zero-argument product
    prepared()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      prepared()
      times.append(time.perf_counter() - start)
    result[f"{name}_flops"] = flops / statistics.median(times)
  result["peak_flops"] = max(v for k, v in result.items() if k.endswith("_flops"))
  return result


def _cost_flops(compiled) -> float | None:
  analysis = compiled.cost_analysis()
  if isinstance(analysis, (list, tuple)):  # older JAX: one dict per program
    analysis = analysis[0] if analysis else {}
  flops = (analysis or {}).get("flops")
  return float(flops) if flops is not None and flops >= 0 else None


class _FdlRunner:
  """fdl's step of one workload: compiled ahead of time, state held between calls."""

  def __init__(self, spec: dict, batch: dict, mesh=None, conv_lowering: str = "auto"):
    with conv.conv_lowering(conv_lowering):  # traced and compiled under this lowering
      self.state = fdl_workloads.create_state(spec, mesh=mesh)
      step = fdl_workloads.build_step(spec, mesh=mesh)
      self.num_params = fdl_workloads.num_params(spec)
      mesh = mesh or mesh_lib.make_mesh()
      self.batch = mesh_lib.shard_batch(batch, mesh)
      start = time.perf_counter()
      self.compiled = step.jitted.lower(self.state, self.batch).compile()
    self.compile_time_s = time.perf_counter() - start
    self.flops_per_step = _cost_flops(self.compiled)
    self.loss = None

  def step(self):
    # Nothing may cross between host and device inside the timed step.
    with jax.transfer_guard("disallow"):
      self.state, metrics = self.compiled(self.state, self.batch)
      jax.block_until_ready((self.state, metrics))
    self.loss = metrics["loss"]


def _timed(step: Callable[[], None]) -> float:
  start = time.perf_counter()
  step()
  return time.perf_counter() - start


def _record(spec: dict, framework: str, times: Sequence[float], runner, flops, peak,
            extra: dict) -> dict:
  step_time = statistics.median(times)
  record = {
      "workload": spec["name"], "framework": framework, "step_time_s": step_time,
      "examples_per_sec": spec["batch"] / step_time,
      "compile_time_s": runner.compile_time_s, "flops_per_step": flops,
      "achieved_flops": flops / step_time if flops else None, "peak_flops": peak,
      "fraction_of_peak": flops / step_time / peak if flops and peak else None,
      "num_params": runner.num_params, "batch_size": spec["batch"],
      "timed_steps": len(times), "step_times_s": list(times),
      "final_loss": float(runner.loss) if runner.loss is not None else None,
  }
  record.update(extra)
  return record


def benchmark_workload(name: str, *, steps: int, peak_flops: float,
                       frameworks: Sequence[str] = FDL_FRAMEWORKS, tiny: bool = False,
                       warmup: int = 2, block: int = 0,
                       peers: dict[str, Callable[[dict, dict], Any]] | None = None,
                       log: Callable[[str], None] = print) -> list[dict]:
  """Times one workload in every requested framework, alternating in blocks.

  Args:
    name: a workload of `fdl.bench.specs.WORKLOADS`.
    steps: timed steps per framework (>= 1).
    peak_flops: the machine's matmul peak, for ``fraction_of_peak``.
    frameworks: a subset of `FDL_FRAMEWORKS` and of `peers`' names; a peer that
      fails to build is skipped with a record holding ``error``.
    tiny: the test-size variant of the workload.
    warmup: untimed steps per framework after compilation.
    block: steps per framework per block; 0 picks ``max(1, steps // 4)``.
    peers: framework name -> ``(spec, batch) -> runner`` (module docstring). A peer
      named ``<x>-compile`` is checked against ``<x>-eager``: the same first loss, or
      it is not timed.
    log: where progress lines go.

  Returns:
    One record per framework that ran (see `RECORD_FIELDS`), plus error
    records for those that could not.
  """
  if steps < 1:
    raise ValueError(f"steps must be >= 1; got {steps!r}")
  peers = dict(peers or {})
  known = FDL_FRAMEWORKS + tuple(peers)
  unknown = sorted(set(frameworks) - set(known))
  if unknown:
    raise ValueError(f"frameworks must be among {known}; got {unknown}")
  frameworks = [f for f in known if f in frameworks]  # in the peers' order: eager first
  spec = specs_lib.get_spec(name, tiny=tiny)
  batch = fdl_workloads.make_batch(spec)
  runners: dict[str, Any] = {}
  errors: list[dict] = []
  if "fdl" in frameworks:
    runners["fdl"] = _FdlRunner(spec, batch)
    log(f"  {name}: fdl compiled in {runners['fdl'].compile_time_s:.1f} s")
  if "fdl-xla-conv" in frameworks:
    runners["fdl-xla-conv"] = _FdlRunner(spec, batch, conv_lowering="xla")
    log(f"  {name}: fdl-xla-conv compiled in {runners['fdl-xla-conv'].compile_time_s:.1f} s")
  flops = runners["fdl"].flops_per_step if "fdl" in runners else None
  for framework in frameworks:
    if framework.startswith("fdl"):
      continue
    try:
      runners[framework] = peers[framework](spec, batch)
    except Exception as e:  # pylint: disable=broad-except
      # A peer that cannot run here (not installed, torch.compile without a compiler,
      # complex numbers in inductor, ...) is reported, not fatal.
      errors.append({"workload": name, "framework": framework,
                     "error": f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"})
      log(f"  {name}: {framework} failed: {errors[-1]['error']}")
      continue
    eager = runners.get(framework[:-len("-compile")] + "-eager")
    if framework.endswith("-compile") and eager is not None and not math.isclose(
        runners[framework].first_loss, eager.first_loss, rel_tol=1e-3, abs_tol=1e-6):
      # Same seed, same batch: the first loss must be eager's. A compiled model that
      # computes something else is not timed (seen: MoDL, torch 2.13 Inductor on CPU).
      errors.append({"workload": name, "framework": framework, "error": (
          f"{framework} computes a different function: first loss "
          f"{runners[framework].first_loss:.6g} vs eager {eager.first_loss:.6g}; not timed")})
      log(f"  {name}: {errors[-1]['error']}")
      del runners[framework]
      continue
    if "fdl" in runners and runners[framework].num_params != runners["fdl"].num_params:
      raise AssertionError(
          f"{name}: {framework} model has {runners[framework].num_params:,} parameters, "
          f"fdl's {runners['fdl'].num_params:,}; the workloads must be the same model")
  for runner in runners.values():
    for _ in range(warmup):
      runner.step()
  block = block or max(1, steps // 4)
  times = {framework: [] for framework in runners}
  while any(len(t) < steps for t in times.values()):
    for framework, runner in runners.items():
      for _ in range(min(block, steps - len(times[framework]))):
        times[framework].append(_timed(runner.step))
  records = []
  for framework, runner in runners.items():
    extra = {"source": getattr(runner, "source", "fdl.bench.fdl_workloads")}
    records.append(_record(spec, framework, times[framework], runner, flops, peak_flops,
                           extra))
  if "fdl" in runners and spec["kind"] != "classification":
    records[0]["inference_s_per_slice"] = fdl_inference_time(spec, runners["fdl"], steps)
  return records + errors


def fdl_inference_time(spec: dict, runner: _FdlRunner, repeats: int) -> float:
  """Median time per slice of the jitted forward pass (eval mode) of a trained state."""
  keys = fdl_workloads.input_keys(spec)
  apply = jax.jit(lambda variables, *inputs: runner.state.apply_fn(
      variables, *inputs, train=False), compiler_options=compiler_options())
  variables = runner.state.variables
  inputs = [runner.batch[k] for k in keys]
  _, median, _ = time_calls(lambda: apply(variables, *inputs), max(2, repeats))
  return median / spec["batch"]


def cg_sense_time(*, tiny: bool = False, iters: int = 10, repeats: int = 5) -> dict:
  """Time per slice of fdl's CG-SENSE on the MRI workloads' slice (8 coils, 256x256, 4x)."""
  spec = specs_lib.get_spec("modl", tiny=tiny)
  batch = fdl_workloads.make_batch(spec)
  kspace, maps, mask = (jnp.asarray(batch[k]) for k in ("kspace", "maps", "mask"))
  solve = jax.jit(lambda k, s, m: recon.cg_sense(k, s, m, num_iters=iters))
  first, median, _ = time_calls(lambda: solve(kspace, maps, mask), repeats)
  return {"method": "cg_sense", "framework": "fdl", "iterations": iters,
          "shape": list(kspace.shape), "inference_s_per_slice": median / spec["batch"],
          "compile_and_first_s": first}


def input_pipeline_rate(*, batch_size: int = 128, epochs: int = 3) -> dict:
  """Examples/s of fdl's CIFAR-style grain pipeline with augmentation (crop 4 + flip).

  Runs on the synthetic 32x32x3 source (no download), in this process
  (``num_workers=0``), so the number is one CPU core's rate.
  """
  source = data.load_source("synthetic", seed=0)
  splits = data.make_splits(source, seed=0)
  pipeline = data.ClassificationPipeline(
      splits, batch_size=batch_size, seed=0, pad_multiple=1,
      augmentation={"crop_padding": 4, "flip": True})
  count, start = 0, time.perf_counter()
  for epoch in range(epochs):
    for batch in pipeline.train_batches(epoch):
      count += len(batch["label"])
  seconds = time.perf_counter() - start
  return {"pipeline": "cifar grain, crop_padding=4 + flip, num_workers=0",
          "examples": count, "seconds": seconds, "examples_per_sec": count / seconds}


def format_table(records: Sequence[dict]) -> str:
  """Records as a fixed-width table, with the fdl / peer time ratio per workload."""
  fdl_times = {r["workload"]: r["step_time_s"] for r in records
               if r.get("framework") == "fdl" and "step_time_s" in r}
  lines = [f"{'workload':<9} {'framework':<14} {'step ms':>9} {'ex/s':>9} "
           f"{'compile s':>9} {'GFLOP/step':>10} {'GFLOP/s':>8} {'peak %':>7} "
           f"{'params':>11} {'peer/fdl':>8}"]
  for r in records:
    if "error" in r:
      lines.append(f"{r['workload']:<9} {r['framework']:<14} {r['error'][:80]}")
      continue
    gflop = r["flops_per_step"] / 1e9 if r["flops_per_step"] else float("nan")
    rate = r["achieved_flops"] / 1e9 if r["achieved_flops"] else float("nan")
    frac = 100 * r["fraction_of_peak"] if r["fraction_of_peak"] else float("nan")
    compile_s = f"{r['compile_time_s']:.1f}" if r["compile_time_s"] is not None else "-"
    ratio = ""
    if r["framework"] != "fdl" and r["workload"] in fdl_times:
      ratio = f"{r['step_time_s'] / fdl_times[r['workload']]:.2f}"
    lines.append(f"{r['workload']:<9} {r['framework']:<14} {r['step_time_s'] * 1e3:>9.2f} "
                 f"{r['examples_per_sec']:>9.1f} {compile_s:>9} {gflop:>10.3f} "
                 f"{rate:>8.1f} {frac:>6.1f}% {r['num_params']:>11,} {ratio:>8}")
  return "\n".join(lines)


def _scaling_child(name: str, steps: int, tiny: bool) -> dict:
  """Runs in a subprocess with forced host devices: fdl's step over all its devices."""
  spec = specs_lib.get_spec(name, tiny=tiny)
  runner = _FdlRunner(spec, fdl_workloads.make_batch(spec))  # all devices
  runner.step()  # warm-up
  times = [_timed(runner.step) for _ in range(steps)]
  params = mesh_lib.to_host(runner.state.params)
  return {"workload": name, "framework": "fdl", "num_devices": jax.device_count(),
          "step_time_s": statistics.median(times),
          "examples_per_sec": spec["batch"] / statistics.median(times),
          "steps_run": steps + 1, "final_loss": float(runner.loss),
          "param_sq_norm": float(sum(np.sum(np.square(np.asarray(p, np.float64)))
                                     for p in jax.tree.leaves(params)))}


def device_scaling(name: str, device_counts: Sequence[int], *, steps: int,
                   tiny: bool = False, timeout_s: float = 1800) -> list[dict]:
  """fdl's step of `name` on 1, 2, 4, ... forced host devices, one subprocess each.

  On a CPU the forced devices share the same cores, so the times show the
  overhead of splitting the batch, not a speed-up; the point is correctness:
  ``final_loss`` and ``param_sq_norm`` after the same steps must agree across
  device counts. On GPUs or TPUs, run the benchmark itself on the real devices.
  """
  records = []
  for count in device_counts:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={count}",
               JAX_PLATFORMS="cpu")
    code = ("import json; from fdl.bench import steps; "
            f"print('RESULT ' + json.dumps(steps._scaling_child({name!r}, {steps}, {tiny})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=timeout_s, check=False)
    lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
    if out.returncode != 0 or not lines:
      raise RuntimeError(f"device scaling run with {count} devices failed "
                         f"(exit {out.returncode}):\n{out.stderr[-2000:]}")
    records.append(json.loads(lines[-1][len("RESULT "):]))
  return records
