"""The learned-reconstruction experiment end to end on tiny simulated data: what a
run writes, the test table against the classical methods, the sealed test
volumes, the command line, real-data application, and bad input."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files, data
from fdl.evaluate import reconstruction as evaluation
from fdl.tasks import reconstruction
from fdl.train import read_jsonl

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "mri_recon.py")
REAL_DATA = os.path.join(REPO_DIR, "..", "shared", "data", "mri",
                         "lustig_brain_alias_8ch.npz")


def _config(arg="smoke", **overrides):
  config = config_files.load_config(CONFIG, arg)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def modl_run(tmp_path_factory):
  """One MoDL smoke run, watched: how often the test volumes were opened."""
  workdir = str(tmp_path_factory.mktemp("modl"))
  seen = {"test_opens": 0}
  mp = pytest.MonkeyPatch()
  real_open = data.ReconPipeline.test_volumes

  def test_volumes(self, *a, **k):
    seen["test_opens"] += 1
    return real_open(self, *a, **k)

  mp.setattr(data.ReconPipeline, "test_volumes", test_volumes)
  summary = reconstruction.train_and_evaluate(_config(model="modl"), workdir)
  mp.undo()
  return summary, workdir, seen


@pytest.mark.slow
def test_run_writes_the_workdir_contract(modl_run):
  summary, workdir, seen = modl_run
  for name in ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png",
               "reconstructions.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  assert seen["test_opens"] == 1
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  assert any("val/ssim" in r for r in records)
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    assert json.load(f)["test"] == json.loads(json.dumps(summary["test"]))


@pytest.mark.slow
def test_summary_test_entry_has_every_method_and_score(modl_run):
  summary, _, _ = modl_run
  test = summary["test"]
  for method in ("zero_filled", "cg_sense", "cs_wavelet", "model"):
    for score in ("nmse", "psnr", "ssim"):
      assert np.isfinite(test[method][score]), (method, score)
      assert test[method][f"{score}_std"] >= 0
  assert test["num_slices"] == 2 and test["num_volumes"] == 1
  # The physics works on this data: CG-SENSE (true maps) beats zero-filling.
  assert test["cg_sense"]["nmse"] < test["zero_filled"]["nmse"]
  assert test["cg_sense"]["ssim"] > test["zero_filled"]["ssim"]
  assert summary["num_params"] > 0 and summary["epochs_run"] == 2


@pytest.mark.slow
def test_provenance_records_split_by_volume_and_normalization(modl_run):
  summary, _, _ = modl_run
  prov = summary["data"]
  text = json.dumps(prov)
  assert "normalization" in text or "normalisation" in text
  # Raw simulated k-space: the data audit flags nothing and the summary says so.
  assert prov["audit"]["flagged"] == {} and summary["data_warnings"] == []
  names = [set(v) for v in prov["volumes"].values()]
  assert sum(len(n) for n in names) == len(set().union(*names)) == 4


@pytest.mark.slow
def test_trained_run_reloads_and_reproduces_its_test_score(modl_run):
  summary, workdir, _ = modl_run
  model, variables, config = reconstruction.load_trained(workdir)
  pipeline = reconstruction.make_pipeline(config)
  volume = next(iter(pipeline.test_volumes()))
  from fdl import models  # pylint: disable=g-import-not-at-top
  image = models.reconstruct(model, variables, volume["kspace"], volume["mask"],
                             volume["maps"])
  scores = evaluation.score_slices(volume["target"], image,
                                       float(volume["data_range"]))
  np.testing.assert_allclose(scores["ssim"].mean(), summary["test"]["model"]["ssim"],
                             rtol=1e-5)


@pytest.mark.skipif(not os.path.exists(REAL_DATA), reason="needs ../shared/data/mri")
@pytest.mark.slow
def test_real_brain_application(modl_run, tmp_path):
  from fdl.studies import mri_recon_real  # pylint: disable=g-import-not-at-top
  _, workdir, _ = modl_run
  summary = mri_recon_real.evaluate_on_real([workdir], str(tmp_path), REAL_DATA)
  assert summary["kspace_shape"] == [1, 8, 320, 168]  # the acquired columns only
  methods = summary["methods"]
  assert len(methods) == 3 and any(name.startswith("modl") for name in methods)
  for scores in methods.values():
    assert 0 < scores["nmse"] < 1 and 0 < scores["ssim"] <= 1
  assert os.path.getsize(tmp_path / "real_brain.png") > 0


# The scripts' smoke runs of U-Net and VarNet take 70-90 s each here; the models'
# forward, gradients and inference are covered in tests/models/test_recon_models.py.
@pytest.mark.slow
@pytest.mark.parametrize("model", ["unet", "varnet"])
def test_command_line_smoke_run_for_the_other_models(model, tmp_path):
  out = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "mri_recon.py"),
       f"--config={CONFIG}", "--config.smoke=True", f"--config.model={model}",
       f"--workdir={tmp_path}"],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=600, check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "CG-SENSE" in out.stdout and model in out.stdout
  with open(tmp_path / "summary.json", encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["model"] == model
  assert np.isfinite(summary["test"]["model"]["ssim"])
  assert json.load(open(tmp_path / "config.json"))["shape"] == [40, 36]


@pytest.mark.parametrize("overrides, match", [
    (dict(acceleration=0.5), "acceleration must be >= 1"),
    (dict(model="resnet"), "config.model must be one of"),
    (dict(batch_size=0), "config.batch_size must be >= 1"),
])
def test_bad_config_is_rejected_before_any_work(overrides, match, tmp_path):
  with pytest.raises(ValueError, match=match):
    reconstruction.train_and_evaluate(_config(**overrides), str(tmp_path))


def test_dataset_directory_without_readable_files(tmp_path):
  (tmp_path / "broken.h5").write_bytes(b"not hdf5")
  with pytest.raises((ValueError, FileNotFoundError), match="broken.h5"):
    reconstruction.train_and_evaluate(_config(dataset=str(tmp_path)),
                                      str(tmp_path / "run"))


@pytest.mark.slow
def test_two_devices_train_the_same_model_as_one(modl_run, tmp_path):
  """The global batch is split over 2 host devices; the result must not change."""
  summary, _, _ = modl_run
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
  out = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "mri_recon.py"),
       f"--config={CONFIG}:smoke", "--config.model=modl", f"--workdir={tmp_path}"],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=600, check=False, env=env)
  assert out.returncode == 0, out.stderr[-3000:]
  assert "devices: 2" in out.stdout
  with open(tmp_path / "summary.json", encoding="utf-8") as f:
    two = json.load(f)
  assert two["num_devices"] == 2 and summary["num_devices"] == 1
  for score in ("nmse", "psnr", "ssim"):
    np.testing.assert_allclose(two["test"]["model"][score],
                               summary["test"]["model"][score], rtol=1e-4)
  np.testing.assert_allclose(two["train_loss"], summary["train_loss"], rtol=1e-4)


def test_init_seed_draws_the_weights_apart_from_the_data_seed():
  """Deep-ensemble members: same data (seed), own initial weights (init_seed)."""
  import jax  # pylint: disable=g-import-not-at-top
  config = _config(model="modl")
  model = reconstruction.create_model(config)
  specs = (jax.ShapeDtypeStruct((1, 4, 40, 36), np.complex64),
           jax.ShapeDtypeStruct((1, 1, 1, 36), np.float32),
           jax.ShapeDtypeStruct((1, 4, 40, 36), np.complex64))

  def params(**overrides):
    c = _config(model="modl", **overrides)
    state, _ = reconstruction._create_state(c, model, 2, specs)  # pylint: disable=protected-access
    return jax.tree.leaves(state.params)

  default, same, other = params(), params(init_seed=0), params(init_seed=1)
  for a, b in zip(default, same):
    np.testing.assert_array_equal(a, b)  # init_seed = seed: the default weights
  assert any(not np.array_equal(a, b) for a, b in zip(default, other))
  reseeded = params(seed=1)
  for a, b in zip(other, reseeded):
    np.testing.assert_array_equal(a, b)  # weights follow init_seed, not the data seed


@pytest.mark.slow
def test_finished_summary_reuses_only_a_run_of_the_same_config(modl_run, tmp_path):
  summary, workdir, _ = modl_run
  reused = reconstruction.finished_summary(_config(model="modl"), workdir)
  assert reused["test"] == json.loads(json.dumps(summary["test"]))
  assert reconstruction.finished_summary(_config(model="modl"), str(tmp_path)) is None
  with pytest.raises(ValueError, match=r"keys \['num_epochs'\] differ"):
    reconstruction.finished_summary(_config(model="modl", num_epochs=3), workdir)


@pytest.mark.slow
def test_demo_data_are_anatomy_split_by_template_and_recorded(tmp_path):
  """`make demo`'s data, at smoke sizes: synthesized anatomy, tested on other templates."""
  demo = _config("demo")
  assert demo.dataset == "anatomy"
  config = _config(dataset="anatomy", num_volumes=4, test_volumes=2, maps="estimate")
  try:
    summary = reconstruction.train_and_evaluate(config, str(tmp_path))
  except FileNotFoundError as error:  # the message says how to install the templates
    pytest.skip(str(error))
  assert summary["data"]["dataset"] == ["anatomy"]
  assert not summary["data"]["audit"]["flags"]
  for method in ("model", "cg_sense", "cs_wavelet"):
    assert np.isfinite([summary["test"][method][k] for k in ("psnr", "ssim", "nmse")]).all()
  with open(tmp_path / "summary.json", encoding="utf-8") as f:
    written = json.load(f)
  assert written["test"]["model"]["ssim"] == pytest.approx(summary["test"]["model"]["ssim"])
  provenance = json.dumps(written["data"])
  assert "colin27" in provenance and "itk_head" in provenance and "mni152" in provenance
