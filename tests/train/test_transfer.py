"""Transfer learning (fdl.train.transfer): partial restore, frozen parameters, and
the init_from / freeze keys of the reconstruction trainer."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl.train import (Checkpointer, TrainState, make_optimizer, make_train_step,
                       regression_loss, transfer)


class _Net(nn.Module):
  """A body shared by all variants and a head whose width varies."""

  outputs: int = 3
  extra: bool = False

  @nn.compact
  def __call__(self, x, *, train: bool):
    del train
    x = nn.relu(nn.Dense(8, name="body")(x))
    if self.extra:
      x = nn.Dense(8, name="adapter")(x)
    return nn.Dense(self.outputs, name="head")(x)


def _dense(rng, fan_in, fan_out):
  return {"kernel": rng.standard_normal((fan_in, fan_out)).astype(np.float32),
          "bias": rng.standard_normal(fan_out).astype(np.float32)}


def _params(outputs=3, extra=False, seed=0):
  """Random parameters laid out as `_Net(outputs, extra)`'s (no Flax init: fast)."""
  rng = np.random.default_rng(seed)
  params = {"body": _dense(rng, 5, 8), "head": _dense(rng, 8, outputs)}
  if extra:
    params["adapter"] = _dense(rng, 8, 8)
  return params


def _state(outputs=3, seed=0):
  """A `TrainState` of `_Net(outputs)` built without compiling anything."""
  tx = make_optimizer("adam", 1e-2, weight_decay=1e-3, grad_clip_norm=1.0)
  params = jax.tree.map(jnp.asarray, _params(outputs, seed=seed))
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats={},
                    opt_state=tx.init(params), rng=jax.random.PRNGKey(seed),
                    apply_fn=_Net(outputs).apply, tx=tx)


def _leaves(tree):
  return {k: np.asarray(v) for k, v in transfer.flatten_paths(tree).items()}


def test_partial_restore_copies_matching_leaves_and_keeps_the_rest():
  source = _params(outputs=3, seed=1)
  target = _params(outputs=4, extra=True, seed=2)
  restored, report = transfer.partial_restore(target, source)
  src, tgt, out = _leaves(source), _leaves(target), _leaves(restored)
  # head/bias is [3] vs [4], head/kernel [8, 3] vs [8, 4]: both skipped.
  assert set(report.copied) == {"body/bias", "body/kernel"}
  assert report.skipped == {"head/bias": {"source": [3], "target": [4]},
                            "head/kernel": {"source": [8, 3], "target": [8, 4]}}
  assert set(report.missing) == {"adapter/bias", "adapter/kernel"}
  assert report.unused == ()
  for path in report.copied:
    np.testing.assert_array_equal(out[path], src[path])
    assert out[path].dtype == tgt[path].dtype
  for path in list(report.skipped) + list(report.missing):
    np.testing.assert_array_equal(out[path], tgt[path])
  assert jax.tree.structure(restored) == jax.tree.structure(target)
  assert report.to_dict()["num_copied"] == 2


def test_init_state_from_a_checkpoint(tmp_path):
  trained = _state(outputs=3, seed=1)
  checkpointer = Checkpointer(str(tmp_path / "checkpoints"))
  checkpointer.save(trained, {"epoch": 1})
  checkpointer.close()
  fresh = _state(outputs=2, seed=5)
  state, report = transfer.init_state_from(fresh, str(tmp_path))
  assert set(report.copied) == {"body/bias", "body/kernel"}
  out, src, new = _leaves(state.params), _leaves(trained.params), _leaves(fresh.params)
  np.testing.assert_array_equal(out["body/kernel"], src["body/kernel"])
  np.testing.assert_array_equal(out["head/kernel"], new["head/kernel"])
  assert int(state.step) == 0
  with pytest.raises(ValueError, match="no parameter of the source matches"):
    transfer.init_state_from(fresh, {"params": {"other": {"kernel": np.zeros(2)}}})
  with pytest.raises(FileNotFoundError, match="is not a directory"):
    transfer.init_state_from(fresh, str(tmp_path / "missing"))


def test_frozen_parameters_stay_bit_identical_while_the_rest_train():
  state, frozen = transfer.freeze_state(_state(outputs=3), ["body/*"])
  assert frozen == ["body/bias", "body/kernel"]
  before = _leaves(state.params)
  step = make_train_step(regression_loss("mse"), input_key="image")
  rng = np.random.default_rng(0)
  for _ in range(3):
    batch = {"image": rng.standard_normal((4, 5)).astype(np.float32),
             "target": rng.standard_normal((4, 3)).astype(np.float32)}
    state, metrics = step(state, batch)
  after = _leaves(state.params)
  for path in frozen:
    assert after[path].tobytes() == before[path].tobytes(), path
  for path in ("head/bias", "head/kernel"):
    assert np.abs(after[path] - before[path]).max() > 1e-4, path
  assert float(metrics["update_norm"]) > 0


def test_patterns_globs_and_regexes():
  params = _params(outputs=3, extra=True)
  paths = list(transfer.flatten_paths(params))
  assert transfer.match_paths(paths, ["*/kernel"]) == [
      "adapter/kernel", "body/kernel", "head/kernel"]
  assert transfer.match_paths(paths, ["re:(body|adapter)/bias"]) == [
      "adapter/bias", "body/bias"]
  labels = transfer.frozen_labels(params, ["head/*"])
  assert labels["head"]["kernel"] == "frozen" and labels["body"]["kernel"] == "trainable"


def test_pattern_matching_nothing_raises():
  params = _params()
  with pytest.raises(ValueError, match="'encoder/\\*' matches no parameter path"):
    transfer.frozen_labels(params, ["body/*", "encoder/*"])
  with pytest.raises(ValueError, match="match all 4 parameters"):
    transfer.frozen_labels(params, ["*"])
  with pytest.raises(ValueError, match="not one string"):
    transfer.frozen_labels(params, "body/*")
  with pytest.raises(ValueError, match="not a valid regular expression"):
    transfer.frozen_labels(params, ["re:("])


def test_freeze_optimizer_is_multi_transform_with_zero_updates():
  params = {"a": jnp.ones(2), "b": jnp.ones(3)}
  tx = transfer.freeze_optimizer(optax.sgd(0.5), {"a": "frozen", "b": "trainable"})
  grads = {"a": jnp.full(2, 2.0), "b": jnp.full(3, 2.0)}
  updates, _ = tx.update(grads, tx.init(params), params)
  np.testing.assert_array_equal(updates["a"], np.zeros(2))
  np.testing.assert_array_equal(updates["b"], np.full(3, -1.0))


@pytest.mark.slow
def test_reconstruction_init_from_and_freeze(tmp_path):
  """Pretrain a smoke U-Net, fine-tune it with a frozen encoder on 2 slices."""
  import os  # pylint: disable=g-import-not-at-top
  from conftest import REPO_DIR  # pylint: disable=g-import-not-at-top
  from fdl import config_files  # pylint: disable=g-import-not-at-top
  from fdl.tasks import reconstruction  # pylint: disable=g-import-not-at-top
  config = config_files.load_config(
      os.path.join(REPO_DIR, "experiments", "configs", "mri_recon.py"), "smoke")
  config.model = "unet"
  source_dir, tuned_dir = str(tmp_path / "source"), str(tmp_path / "tuned")
  reconstruction.train_and_evaluate(config, source_dir)
  config.init_from = source_dir
  config.freeze = ("norm_unet/unet/down_*",)
  config.train_slices = 2
  config.augment.enabled = True
  summary = reconstruction.train_and_evaluate(config, tuned_dir)
  assert summary["transfer"]["num_skipped"] == 0
  assert summary["transfer"]["num_missing"] == 0
  assert summary["data"]["slices"]["train"] == 2
  _, tuned, _ = reconstruction.load_trained(tuned_dir)
  source = transfer.load_variables(source_dir)
  tuned, source = _leaves(tuned["params"]), _leaves(source["params"])
  assert summary["transfer"]["num_copied"] == len(tuned) == len(source)
  for path in summary["transfer"]["frozen"]:
    np.testing.assert_array_equal(tuned[path], source[path])
  changed = [p for p in tuned if p not in summary["transfer"]["frozen"]
             and not np.array_equal(tuned[p], source[p])]
  assert changed


@pytest.mark.slow
def test_scarce_data_experiment_smoke(tmp_path):
  """The scarce-data experiment at smoke sizes: table, figure, equal budgets."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  from conftest import REPO_DIR  # pylint: disable=g-import-not-at-top
  from fdl import config_files  # pylint: disable=g-import-not-at-top
  from fdl.studies import scarce_data  # pylint: disable=g-import-not-at-top
  config = config_files.load_config(
      os.path.join(REPO_DIR, "experiments", "configs", "scarce_data.py"), "smoke")
  config.compilation_cache = False  # a process-wide setting: leave pytest's alone
  summary = scarce_data.run(config, str(tmp_path))
  rows = {(r["n"], r["method"]): r for r in summary["results"]}
  assert set(rows) == {(n, m) for n in config.train_sizes for m in config.methods}
  for r in summary["results"] + summary["reference"]:
    assert 0 < r["ssim"] <= 1 and r["nmse"] > 0 and np.isfinite(r["psnr"])
  assert [r["method"] for r in summary["reference"]] == [
      "pretrained", "zero_filled", "cg_sense", "cs_wavelet"]
  for run in summary["runs"]:
    assert run["train_slices"] == run["n"]
    if run["method"] == "finetune":
      assert run["transfer"]["num_copied"] > 0 and run["transfer"]["num_skipped"] == 0
  for n in config.train_sizes:
    assert len({r["steps"] for r in summary["runs"] if r["n"] == n}) == 1
  assert os.path.getsize(tmp_path / "ssim_vs_n.png") > 0
  with open(tmp_path / "summary.json", encoding="utf-8") as f:
    assert json.load(f)["results"] == json.loads(json.dumps(summary["results"]))
