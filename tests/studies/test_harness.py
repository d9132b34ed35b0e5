"""The run harness (sub-runs, reuse-or-refuse, interruption, summary), the one smoke
mechanism, config loading, and the entry points' shared main."""

import json
import os
import subprocess

import ml_collections
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.studies import harness

CONFIGS = os.path.join(REPO_DIR, "experiments", "configs")
EXPERIMENTS = os.path.join(REPO_DIR, "experiments")


# --- config files -----------------------------------------------------------------------


def test_load_config_calls_get_config_with_its_argument():
  smoke = harness.load_config(os.path.join(CONFIGS, "mri_recon.py"), "smoke")
  full = harness.load_config(os.path.join(CONFIGS, "mri_recon.py"))
  assert smoke.smoke and smoke.smoke_applied and tuple(smoke.shape) == (40, 36)
  assert not full.smoke and tuple(full.shape) == (96, 96)


def test_load_config_names_a_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match="nope.py not found"):
    harness.load_config(str(tmp_path / "nope.py"))
  empty = tmp_path / "empty.py"
  empty.write_text("x = 1\n")
  with pytest.raises(AttributeError, match="defines no get_config"):
    harness.load_config(str(empty))


def test_config_files_import_no_trainer():
  """Every config file loads in a fresh interpreter without JAX or fdl.train."""
  code = ("import sys, glob; from fdl import config_files\n"
          f"for p in sorted(glob.glob({os.path.join(CONFIGS, '*.py')!r})):\n"
          "  for arg in (None, 'smoke'):\n"
          "    assert config_files.load_config(p, arg).smoke == (arg == 'smoke'), p\n"
          "bad = [m for m in ('jax', 'fdl.train', 'fdl.tasks', 'fdl.studies.harness')\n"
          "       if m in sys.modules]\n"
          "assert not bad, bad\n")
  done = subprocess.run([PYTHON, "-c", code], cwd=REPO_DIR, capture_output=True,
                        text=True, timeout=120, check=False)
  assert done.returncode == 0, done.stderr[-3000:]


# --- smoke --------------------------------------------------------------------------------


def _study_config(**overrides):
  config = ml_collections.ConfigDict(dict(
      smoke=False, steps=100, progress=True,
      recon=dict(smoke=False, num_epochs=8, shape=(96, 96), dataset="simulated",
                 maps="estimate", modl=dict(width=48, dropout=0.1))))
  config.update(overrides)
  return config


def test_smoke_is_applied_once_from_data():
  sizes = {"steps": 3, "recon": {"num_epochs": 2, "modl": {"width": 4},
                                 "maps": lambda c: "true" if c.dataset == "simulated"
                                 else c.maps}}
  config = config_files.apply_smoke(_study_config(), sizes)
  assert config.smoke and config.smoke_applied and config.steps == 3
  recon = config.recon
  assert recon.smoke and recon.smoke_applied  # a nested config is marked shrunk too
  assert (recon.num_epochs, recon.modl.width, recon.maps) == (2, 4, "true")
  assert recon.modl.dropout == 0.1  # nested sizes update key by key
  # An override after get_config("smoke") survives resolving (shrunk once).
  config.steps = 7
  assert config_files.resolve_smoke(config, "scarce_data") is config
  assert config_files.resolve_smoke(recon, "mri_recon").num_epochs == 2


def test_resolve_smoke_shrinks_a_copy_when_asked_by_flag():
  config = ml_collections.ConfigDict(dict(smoke=True, dataset="simulated",
                                          maps="estimate", num_epochs=8))
  config.lock()  # as --config gives it
  shrunk = config_files.resolve_smoke(config, "mri_recon")
  assert shrunk is not config and shrunk.smoke_applied
  assert (shrunk.num_epochs, shrunk.maps, config.num_epochs) == (2, "true", 8)
  plain = _study_config()
  assert config_files.resolve_smoke(plain, "mri_recon") is plain
  with pytest.raises(ValueError, match="no smoke sizes named 'nope'"):
    config_files.apply_smoke(_study_config(), "nope")


def test_differing_keys_are_dotted_and_ignore_harmless_ones():
  a = config_files.as_json(_study_config())
  b = config_files.as_json(_study_config(steps=5, progress=False))
  b["recon"]["modl"]["width"] = 8
  b["recon"]["progress"] = True
  assert config_files.differing_keys(a, b) == ["progress", "recon.modl.width",
                                               "recon.progress", "steps"]
  assert config_files.differing_keys(a, b, ignore=("progress", "steps")) == [
      "recon.modl.width"]


# --- run_study ----------------------------------------------------------------------------


class _Stub:
  """A sub-run that records its calls; finished once it has run."""

  def __init__(self, name, result=None):
    self.name, self.calls = name, 0
    self.result = result if result is not None else {"value": len(name)}

  def run(self, workdir):
    self.calls += 1
    os.makedirs(workdir, exist_ok=True)
    if not self.result.get("interrupted"):
      with open(os.path.join(workdir, "done.json"), "w", encoding="utf-8") as f:
        json.dump(self.result, f)
    return self.result

  def finished(self, workdir):
    path = os.path.join(workdir, "done.json")
    if not os.path.exists(path):
      return None
    with open(path, encoding="utf-8") as f:
      return json.load(f)

  def subrun(self):
    return harness.SubRun(self.name, run=self.run, finished=self.finished)


def _study(config, workdir, stubs):
  return harness.run_study(
      config, workdir, [s.subrun() for s in stubs],
      lambda results: {"total": sum(r["value"] for r in results.values()),
                       "names": list(results)},
      process_index=0)


def test_second_run_reuses_finished_subruns(tmp_path, capsys):
  stubs = [_Stub("a"), _Stub("bb")]
  summary = _study(_study_config(), str(tmp_path), stubs)
  assert summary == {"total": 3, "names": ["a", "bb"]}
  assert [s.calls for s in stubs] == [1, 1]
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk == summary
  assert json.loads((tmp_path / "config.json").read_text())["steps"] == 100
  out = capsys.readouterr().out
  assert "[1/2] a\n" in out and "[2/2] bb\n" in out
  # Again, with a harmless change: nothing is run again.
  again = _study(_study_config(progress=False), str(tmp_path), stubs)
  assert again == summary and [s.calls for s in stubs] == [1, 1]
  assert "[1/2] a: finished, reused" in capsys.readouterr().out


def test_rerun_with_another_config_is_refused_naming_the_keys(tmp_path):
  stubs = [_Stub("a")]
  _study(_study_config(), str(tmp_path), stubs)
  changed = _study_config(steps=5)
  changed.recon.modl.width = 8
  with pytest.raises(ValueError, match=r"keys \['recon.modl.width', 'steps'\] differ"):
    _study(changed, str(tmp_path), stubs)
  assert stubs[0].calls == 1
  assert json.loads((tmp_path / "config.json").read_text())["steps"] == 100


def test_interrupted_subrun_stops_the_study_without_a_summary(tmp_path):
  stubs = [_Stub("a"), _Stub("b", {"interrupted": True, "signal": 15}), _Stub("c")]
  out = _study(_study_config(), str(tmp_path), stubs)
  assert out == {"interrupted": True, "signal": 15, "subrun": "b"}
  assert [s.calls for s in stubs] == [1, 1, 0]
  assert not (tmp_path / "summary.json").exists()
  assert harness.exit_code(out) == 128 + 15
  assert harness.exit_code({"interrupted": True}) == 128 + 15  # no signal: SIGTERM's
  assert harness.exit_code({"total": 3}) == 0
  # The rerun resumes: a is reused, b runs again (now finishing), then c.
  stubs[1].result = {"value": 1}
  assert _study(_study_config(), str(tmp_path), stubs)["total"] == 3
  assert [s.calls for s in stubs] == [1, 2, 1]


def test_subrun_names_must_be_unique(tmp_path):
  with pytest.raises(ValueError, match="unique"):
    _study(_study_config(), str(tmp_path), [_Stub("a"), _Stub("a")])


def test_only_process_zero_writes(tmp_path, capsys):
  harness.run_study(_study_config(), str(tmp_path), [_Stub("a").subrun()],
                    lambda results: {"n": len(results)}, process_index=1)
  assert not (tmp_path / "config.json").exists()
  assert not (tmp_path / "summary.json").exists()
  assert capsys.readouterr().out == ""


# --- the entry points' main ---------------------------------------------------------------


def _script(name, *args, timeout=120):
  return subprocess.run([PYTHON, os.path.join(EXPERIMENTS, name), *args],
                        cwd=REPO_DIR, capture_output=True, text=True, timeout=timeout,
                        check=False)


@pytest.mark.parametrize("args, message", [
    (["--config.optimizer=adamax"], "error: optimizer must be one of"),
    (["--config.batch_size=0"], r"error: config.batch_size must be in [1, 600]"),
    (["--config.nokey=1"], "error: the config has no key 'nokey'"),
    (["--config.num_epochs=abc"], "error: flag --config.num_epochs=abc"),
    (["--config=/nonexistent/config.py"], "error: --config: [Errno 2] No such file"),
])
def test_input_errors_print_one_line_and_exit_2(tmp_path, args, message):
  # No --config for most: the script's own experiments/configs/nonlinearity.py.
  done = _script("nonlinearity.py", f"--workdir={tmp_path / 'w'}", *args)
  assert done.returncode == 2, done.stderr[-3000:]
  assert message in done.stderr
  assert "Traceback" not in done.stderr
  assert not (tmp_path / "w" / "summary.json").exists()


def test_verbose_shows_the_traceback(tmp_path):
  done = _script("nonlinearity.py", f"--workdir={tmp_path}", "--config.optimizer=adamax",
                 "--verbose")
  assert done.returncode == 1
  assert "Traceback" in done.stderr and "ValueError: optimizer must be one of" in done.stderr


def test_default_config_is_the_scripts_own(tmp_path):
  """No --config at all: experiments/configs/nonlinearity.py, shrunk by the flag."""
  done = _script("nonlinearity.py", f"--workdir={tmp_path}", "--config.smoke=True",
                 timeout=300)
  assert done.returncode == 0, done.stderr[-3000:]
  assert "linear_accuracy" in done.stdout and "[2/2] mlp" in done.stdout
  config = json.loads((tmp_path / "config.json").read_text())
  assert config["dataset"] == "moons" and config["smoke"] and config["num_epochs"] == 3
  assert not (tmp_path / ".lock").exists()  # released


def test_a_locked_workdir_is_refused_naming_the_holder(tmp_path):
  holder = subprocess.Popen(
      [PYTHON, "-c", "import sys, time\nfrom fdl.train.workdir import WorkdirLock\n"
       f"WorkdirLock({str(tmp_path)!r}, process_index=0).acquire()\n"
       "print('held', flush=True)\ntime.sleep(120)\n"],
      cwd=REPO_DIR, stdout=subprocess.PIPE, text=True)
  try:
    assert holder.stdout.readline().strip() == "held"
    done = _script("nonlinearity.py", f"--workdir={tmp_path}", "--config.smoke=True")
    assert done.returncode == 2, done.stderr[-3000:]
    assert "error: work directory" in done.stderr
    assert f"pid {holder.pid}" in done.stderr
    assert not (tmp_path / "config.json").exists()
  finally:
    holder.kill()
    holder.wait()


def test_mri_recon_real_takes_its_own_flags(tmp_path):
  done = _script("mri_recon_real.py", f"--workdirs={tmp_path / 'none'}",
                 f"--out={tmp_path / 'out'}")
  assert done.returncode == 2, done.stderr[-3000:]
  assert "error: " in done.stderr and "finished mri_recon work directory" in done.stderr
  assert "Traceback" not in done.stderr
