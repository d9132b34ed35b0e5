"""The step benchmark: FLOP counts against analytic counts, and one tiny run of the
command line with every field of its JSON (no timing is asserted)."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl.bench import fdl_workloads, pure_jax, specs, steps


def _compiled_flops(name: str) -> float:
  spec = specs.get_spec(name)
  batch = fdl_workloads.make_batch(spec)
  state = fdl_workloads.create_state(spec)
  step = fdl_workloads.build_step(spec)
  return steps._cost_flops(step.jitted.lower(state, batch).compile())  # pylint: disable=protected-access


def _train_flops(forward_macs_per_example: int, batch: int) -> float:
  # A training step is one forward pass and a backward pass of about twice its
  # cost (gradients of inputs and of weights): 3 x 2 x MACs.
  return 3 * 2 * forward_macs_per_example * batch


def test_mlp_flops_match_the_analytic_count():
  spec = specs.get_spec("mlp")
  macs = 3072 * 512 + 512 * 512 + 512 * 10
  analytic = _train_flops(macs, spec["batch"])
  assert abs(_compiled_flops("mlp") / analytic - 1) < 0.4


def test_cnn_flops_match_the_analytic_count():
  spec = specs.get_spec("cnn")
  macs = (32 * 32 * 32 * 3 * 9  # conv1 on 32x32
          + 16 * 16 * 64 * 32 * 9  # conv2 on 16x16
          + 4096 * 256 + 256 * 10)
  analytic = _train_flops(macs, spec["batch"])
  assert abs(_compiled_flops("cnn") / analytic - 1) < 0.4


def test_specs_reject_unknown_workloads():
  with pytest.raises(ValueError, match="workload must be one of"):
    specs.get_spec("transformer")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
  out = tmp_path_factory.mktemp("bench") / "steps.json"
  proc = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "benchmarks", "steps.py"), "--tiny", "--steps", "2",
       "--workloads", "mlp,modl", "--devices", "1,2", "--json", str(out),
       # torch.compile takes 30-60 s per model on 2 cores: see the slow test.
       "--frameworks", "fdl,torch-eager"],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with open(out, encoding="utf-8") as f:
    return json.load(f), proc.stdout


@pytest.mark.slow
def test_json_has_a_record_per_workload_and_framework_with_every_field(tiny_run):
  result, stdout = tiny_run
  frameworks = {r["framework"] for r in result["records"]}
  try:
    import torch  # pylint: disable=g-import-not-at-top,unused-import
    assert {"fdl", "torch-eager"} <= frameworks  # the peer ran in the same invocation
  except ImportError:
    assert frameworks == {"fdl", "torch-eager"}  # torch-eager as an error record
  for name in ("mlp", "modl"):
    fdl = [r for r in result["records"] if r["workload"] == name and r["framework"] == "fdl"]
    assert len(fdl) == 1
  timed = [r for r in result["records"] if "error" not in r]
  for record in timed:
    for field in steps.RECORD_FIELDS + ("machine", "versions", "device_kind",
                                        "device_count"):
      assert field in record, (record["workload"], record["framework"], field)
    assert record["step_time_s"] > 0 and record["examples_per_sec"] > 0
    assert record["flops_per_step"] > 0 and record["peak_flops"] > 0
    np.testing.assert_allclose(record["achieved_flops"],
                               record["flops_per_step"] / record["step_time_s"])
    assert record["num_params"] == fdl_workloads.num_params(
        specs.get_spec(record["workload"], tiny=True))
    assert record["timed_steps"] == 2 and np.isfinite(record["final_loss"])
  assert result["machine"]["device_count"] >= 1 and result["machine"]["jax"]
  assert "mlp" in stdout and "GFLOP/s" in stdout


@pytest.mark.slow
def test_extras_pipeline_inference_and_device_scaling(tiny_run):
  result, _ = tiny_run
  assert result["input_pipeline"]["examples_per_sec"] > 0
  methods = {e["method"] for e in result["mri_inference"]}
  assert methods == {"modl", "cg_sense"}
  scaling = result["device_scaling"]
  assert [s["num_devices"] for s in scaling] == [1, 2]
  # Same global batch, same steps: the split over devices changes nothing.
  np.testing.assert_allclose(scaling[1]["final_loss"], scaling[0]["final_loss"], rtol=1e-5)
  np.testing.assert_allclose(scaling[1]["param_sq_norm"], scaling[0]["param_sq_norm"],
                             rtol=1e-5)


def test_overhead_pure_jax_step_computes_fdls_function():
  # The hand-written pure-JAX cnn step and fdl's step start from the same parameters
  # and must reach the same loss; which is faster is not asserted.
  record = pure_jax.overhead("cnn", tiny=True, steps=2, warmup=1)
  assert record["losses_match"], record
  np.testing.assert_allclose(record["final_loss_fdl"], record["final_loss_pure_jax"],
                             rtol=1e-5)
  np.testing.assert_allclose(record["first_loss_fdl"], record["first_loss_pure_jax"],
                             rtol=1e-5)
  assert record["final_loss_fdl"] != record["first_loss_fdl"]  # the steps trained
  assert record["pure_jax_step_time_s"] > 0 and record["fdl_step_time_s"] > 0
  assert len(record["pure_jax_step_times_s"]) == len(record["fdl_step_times_s"]) == 2
  np.testing.assert_allclose(record["fdl_over_pure_jax"],
                             record["fdl_step_time_s"] / record["pure_jax_step_time_s"])
  assert "pure-JAX step (cnn)" in pure_jax.format_line(record)


@pytest.mark.slow
def test_bad_arguments_are_named():
  proc = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "benchmarks", "steps.py"), "--workloads", "mlp,gpt"],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=120, check=False)
  assert proc.returncode != 0 and "--workloads: unknown ['gpt']" in proc.stderr


@pytest.mark.slow
def test_torch_compile_records_or_refuses_a_wrong_compiled_model(tmp_path):
  pytest.importorskip("torch")
  out = tmp_path / "steps.json"
  proc = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "benchmarks", "steps.py"), "--tiny", "--steps", "2",
       "--workloads", "mlp,modl", "--devices", "", "--no-extras", "--json", str(out)],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=900, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  records = json.load(open(out, encoding="utf-8"))["records"]
  compiled = {r["workload"]: r for r in records if r["framework"] == "torch-compile"}
  eager = {r["workload"]: r for r in records if r["framework"] == "torch-eager"}
  assert "error" not in compiled["mlp"] and compiled["mlp"]["compile_time_s"] > 0
  # Either it computes eager's function (then it is timed) or it is refused, saying so.
  if "error" in compiled["modl"]:
    assert "different function" in compiled["modl"]["error"]
  else:
    np.testing.assert_allclose(compiled["modl"]["final_loss"], eager["modl"]["final_loss"],
                               rtol=1e-3)


@pytest.mark.slow
def test_fdl_with_xla_default_convolutions_trains_the_same_function():
  # The before / after of the CPU convolution lowering, timed side by side, must be
  # the same model: same parameters, same losses after the same steps.
  records = steps.benchmark_workload("cnn", steps=2, warmup=1, peak_flops=1.0, tiny=True,
                                     frameworks=("fdl", "fdl-xla-conv"), log=lambda _: None)
  by_framework = {r["framework"]: r for r in records}
  assert set(by_framework) == {"fdl", "fdl-xla-conv"}
  assert by_framework["fdl"]["num_params"] == by_framework["fdl-xla-conv"]["num_params"]
  np.testing.assert_allclose(by_framework["fdl"]["final_loss"],
                             by_framework["fdl-xla-conv"]["final_loss"], rtol=1e-5)
