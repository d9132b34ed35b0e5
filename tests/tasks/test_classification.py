"""The CIFAR classification pipeline end to end on small data: what a run writes,
the sealed test split, resume equivalence, 1 vs 4 devices, and bad input."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files, data
from fdl.tasks import classification
from fdl.train import read_jsonl

CONFIGS = os.path.join(REPO_DIR, "experiments", "configs")


def _config(name="cifar.py", arg="smoke", **overrides):
  config = config_files.load_config(os.path.join(CONFIGS, name), arg)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """One smoke run, watched: which splits fit saw and how often test was opened."""
  workdir = str(tmp_path_factory.mktemp("smoke"))
  seen = {"splits": [], "evaluate_test": 0, "fit_kwargs": None}
  mp = pytest.MonkeyPatch()
  real_make_splits, real_eval, real_fit = (
      data.make_splits, classification.evaluate_test, classification.fit)

  def make_splits(*a, **k):
    splits = real_make_splits(*a, **k)
    seen["splits"].append(splits)
    return splits

  def evaluate_test(*a, **k):
    seen["evaluate_test"] += 1
    return real_eval(*a, **k)

  def fit(*a, **k):
    seen["fit_kwargs"] = k
    return real_fit(*a, **k)

  mp.setattr(data, "make_splits", make_splits)
  mp.setattr(classification, "evaluate_test", evaluate_test)
  mp.setattr(classification, "fit", fit)
  summary = classification.train_and_evaluate(_config(), workdir)
  mp.undo()
  return summary, workdir, seen


@pytest.mark.slow
def test_run_writes_everything(smoke_run):
  summary, workdir, _ = smoke_run
  for name in ("config.json", "metrics.jsonl", "summary.json",
               "learning_curves.png", "confusion_matrix.png"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  assert os.listdir(os.path.join(workdir, "tensorboard"))
  assert os.listdir(os.path.join(workdir, "checkpoints"))
  for key in ("train_loss", "val_accuracy", "test_accuracy", "best_epoch",
              "epochs_run", "num_devices", "num_params", "examples_per_sec",
              "data", "evaluated_checkpoint_step"):
    assert key in summary, key
  assert summary["epochs_run"] == 2 and summary["num_devices"] == 1
  assert summary["data"]["splits"]["sizes"] == {"train": 448, "val": 64, "test": 128}
  assert len(summary["data"]["normalization"]["mean"]) == 3
  assert summary["tests"]["test"]["num_examples"] == 128
  records = read_jsonl(os.path.join(workdir, "metrics.jsonl"))
  names = set().union(*records)
  for name in classification.TRAIN_METRICS + classification.EVAL_METRICS:
    assert name in names, name
  # train_loss is the mean over the final epoch's steps, as logged
  last_epoch = [r for r in records if "val/loss" in r][-1]
  assert summary["train_loss"] == pytest.approx(last_epoch["train/loss"])
  on_disk = json.loads(open(os.path.join(workdir, "summary.json")).read())
  assert on_disk["test_accuracy"] == summary["test_accuracy"]


@pytest.mark.slow
def test_the_synthetic_data_is_learned(smoke_run):
  summary, _, _ = smoke_run
  assert summary["val_accuracy"] > 0.25  # chance is 0.10


@pytest.mark.slow
def test_test_split_is_sealed_and_evaluated_once(smoke_run):
  summary, _, seen = smoke_run
  (splits,) = seen["splits"]
  assert splits.test.evaluations == 1
  assert seen["evaluate_test"] == 1
  # fit got the validation batches, never the test ones
  val_batches = seen["fit_kwargs"]["val_data"]()
  assert sum(len(b["label"]) for b in val_batches) == 64
  # the best validation checkpoint is the one evaluated
  assert summary["evaluated_checkpoint_step"] == 7 * summary["best_epoch"]
  with pytest.raises(RuntimeError, match="already evaluated"):
    splits.test.open()


@pytest.mark.slow
def test_resume_with_more_epochs_matches_a_single_run(smoke_run, tmp_path, capsys):
  single, _, _ = smoke_run
  # The schedule length is fixed so that the shorter first run uses the same
  # learning rates as the single run.
  classification.train_and_evaluate(_config(num_epochs=1, schedule_epochs=2),
                                    str(tmp_path))
  resumed = classification.train_and_evaluate(
      _config(num_epochs=2, schedule_epochs=2), str(tmp_path))
  assert "warning" not in capsys.readouterr().out
  assert resumed["epochs_run"] == 2
  for key in ("train_loss", "val_accuracy", "test_accuracy"):
    assert resumed[key] == pytest.approx(single[key], rel=1e-6), key


@pytest.mark.slow
def test_four_devices_report_the_same_train_loss(tmp_path):
  """The issue's command, with the default config, on 1 and on 4 host devices."""
  env = dict(os.environ, PYTHONPATH=REPO_DIR)
  procs = {}
  for devices in (1, 4):
    env_d = dict(env, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    procs[devices] = subprocess.Popen(
        [PYTHON, os.path.join(REPO_DIR, "experiments", "cifar.py"),
         f"--config={os.path.join(CONFIGS, 'cifar.py')}",
         f"--workdir={tmp_path / str(devices)}", "--config.dataset=synthetic",
         "--config.model=cnn", "--config.batch_size=64", "--config.num_epochs=2",
         "--config.progress=False"],
        env=env_d, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
  summaries = {}
  for devices, proc in procs.items():
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out[-3000:]
    summaries[devices] = json.loads((tmp_path / str(devices) / "summary.json").read_text())
  assert summaries[1]["num_devices"] == 1 and summaries[4]["num_devices"] == 4
  assert summaries[4]["train_loss"] == pytest.approx(summaries[1]["train_loss"], rel=1e-4)
  assert summaries[4]["val_accuracy"] == pytest.approx(summaries[1]["val_accuracy"], abs=1e-6)


@pytest.mark.slow
def test_resume_with_a_longer_schedule_warns(tmp_path, capsys):
  classification.train_and_evaluate(_config(num_epochs=2), str(tmp_path))
  capsys.readouterr()
  classification.train_and_evaluate(_config(num_epochs=3), str(tmp_path))
  out = capsys.readouterr().out
  assert "schedule spanned 2 epochs; it now spans 3" in out
  assert "--config.schedule_epochs to 2" in out


@pytest.mark.parametrize("overrides, error, match", [
    (dict(model="vgg"), ValueError, r"config.model must be one of \('mlp', 'cnn', 'resnet9'.*got 'vgg'"),
    (dict(batch_size=1024), ValueError, r"batch_size 1024 does not fit the train split of 448 examples"),
    (dict(num_epochs=0), ValueError, r"config.num_epochs must be >= 1; got 0"),
    (dict(dataset="npz", train_file="/nonexistent/train.npz"), (FileNotFoundError, ValueError, OSError), r"/nonexistent/train.npz"),
    (dict(dataset="imagenet"), ValueError, r"'imagenet'"),
    (dict(model="resnet18", dropout=0.5, model_kwargs={}), ValueError, r"config.dropout applies to \('mlp', 'cnn', 'alexnet_cifar'.*resnet18 has none"),
])
def test_bad_config_values_are_named(tmp_path, overrides, error, match):
  with pytest.raises(error, match=match):
    classification.train_and_evaluate(_config(**overrides), str(tmp_path))


@pytest.mark.slow
def test_cpu_recipe_smoke_on_real_cifar10(tmp_path):
  config = _config("cifar10_cpu.py", "smoke")
  if not os.path.exists(config.train_file):
    pytest.skip("shared CIFAR-10 copy not present")
  summary = classification.train_and_evaluate(config, str(tmp_path))
  assert summary["tests"]["test"]["num_examples"] == 1000
  assert summary["tests"]["cifar10_test"]["num_examples"] == 10000
  assert summary["data"]["splits"]["sizes"]["train"] == 50000 - config.val_size


def test_flip_averaged_logits_are_the_mean_over_the_mirror_image():
  import jax
  import jax.numpy as jnp
  from fdl import models
  model = models.CNN(features=(4,), dense=(), num_classes=3)
  x = jax.random.normal(jax.random.key(0), (2, 6, 5, 1))
  variables = model.init(jax.random.key(1), x, train=False)
  apply = classification.flip_averaged(model.apply)
  expected = (model.apply(variables, x, train=False)
              + model.apply(variables, x[:, :, ::-1], train=False)) / 2
  np.testing.assert_allclose(apply(variables, x, train=False), expected, rtol=1e-6)
  # A non-symmetric model: the averaged logits differ from the plain ones.
  assert not np.allclose(expected, model.apply(variables, x, train=False), atol=1e-4)
  # Training calls are unchanged.
  np.testing.assert_array_equal(apply(variables, x, train=True),
                                model.apply(variables, x, train=True))


def test_the_vit_comparison_shares_the_cpu_recipe_but_model_optimizer_and_epochs():
  recipe = _config("cifar10_cpu.py", None).to_dict()
  vit = _config("cifar10_vit.py", None).to_dict()
  resnet = _config("cifar10_vit.py", "resnet9").to_dict()
  assert resnet == {**recipe, "num_epochs": resnet["num_epochs"]}
  assert vit["model"] == "vit_cifar" and vit["optimizer"] == "adamw"
  changed = {k for k in recipe if vit[k] != recipe[k]}
  assert changed == {"model", "num_epochs", "optimizer", "learning_rate", "weight_decay",
                     "warmup_epochs", "grad_clip_norm"}
  # The same data, split, augmentation and test sets.
  for key in ("train_file", "test_file", "extra_test_files", "val_size", "augmentation",
              "batch_size", "label_smoothing", "seed"):
    assert vit[key] == recipe[key] == resnet[key], key
  smoke = _config("cifar10_vit.py", "smoke")
  assert smoke.smoke and smoke.model == "vit_cifar" and smoke.model_kwargs.depth == 1
  with pytest.raises(ValueError, match="config argument must be vit, resnet9 or smoke"):
    _config("cifar10_vit.py", "vgg")
