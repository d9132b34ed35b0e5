"""Data parallelism: 1 device, 4 host devices and 2 processes (gloo) reach the
same parameters and batch statistics after 10 steps of the same global batches.

Each configuration runs `train_worker.py` in its own process, because the device
count and `jax.distributed` are fixed when JAX starts. All four processes are
launched at once to keep the wall time low.
"""

import os
import socket
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR, TESTS_DIR

WORKER = os.path.join(TESTS_DIR, "train_worker.py")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  out = tmp_path_factory.mktemp("parallel")
  env = dict(os.environ, PYTHONPATH=REPO_DIR)
  env.pop("XLA_FLAGS", None)
  port = _free_port()
  commands = {
      "one_device": [WORKER, str(out / "one.npz")],
      "four_devices": [WORKER, str(out / "four.npz"), "--devices", "4"],
  }
  for pid in range(2):
    commands[f"process_{pid}"] = [
        WORKER, str(out / "two_process.npz"), "--coordinator",
        f"127.0.0.1:{port}", "--num-processes", "2", "--process-id", str(pid)]
  procs = {name: subprocess.Popen([PYTHON] + cmd, env=env, cwd=REPO_DIR,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True)
           for name, cmd in commands.items()}
  for name, proc in procs.items():
    try:
      output, _ = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
      for p in procs.values():
        p.kill()
      raise AssertionError(f"{name} did not finish in 240 s")
    assert proc.returncode == 0, f"{name} failed:\n{output[-3000:]}"
  return {name: dict(np.load(out / f"{name}.npz"))
          for name in ("one", "four", "two_process")}


def _assert_same_state(a, b, rtol=1e-5):
  keys = [k for k in a if not k.startswith("__")]
  assert sorted(keys) == sorted(k for k in b if not k.startswith("__"))
  assert any("batch_stats" in k for k in keys)
  for k in keys:
    scale = np.abs(a[k]).max()
    err = np.abs(a[k] - b[k]).max()
    assert err <= rtol * scale, f"{k}: relative difference {err / scale:.2e}"


@pytest.mark.slow
def test_runs_used_the_intended_device_counts(runs):
  assert int(runs["one"]["__num_devices__"]) == 1
  assert int(runs["four"]["__num_devices__"]) == 4
  assert int(runs["two_process"]["__num_devices__"]) == 2


@pytest.mark.slow
def test_four_devices_match_one_device(runs):
  _assert_same_state(runs["one"], runs["four"])
  np.testing.assert_allclose(runs["one"]["__losses__"], runs["four"]["__losses__"],
                             rtol=1e-5)


@pytest.mark.slow
def test_two_processes_match_single_process(runs):
  _assert_same_state(runs["one"], runs["two_process"])
  np.testing.assert_allclose(runs["one"]["__losses__"],
                             runs["two_process"]["__losses__"], rtol=1e-5)


@pytest.mark.slow
def test_training_moved_the_parameters(runs):
  # Guards against a vacuous comparison: 10 steps changed the loss.
  losses = runs["one"]["__losses__"]
  assert len(losses) == 10 and np.ptp(losses) > 1e-3
