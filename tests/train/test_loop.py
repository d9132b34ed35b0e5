"""The training loop: resume and interruption equivalence, non-finite losses,
early stopping, and what a run writes."""

import json
import os
import signal

import jax
import numpy as np
import pytest

from fdl import models, train

BATCHES_PER_EPOCH = 4


@pytest.fixture(scope="module")
def setup():
  """One compiled train/eval step pair shared by every test of this file."""
  mesh = train.make_mesh()
  model = models.MLP(hidden=(8,), num_classes=2, dropout=0.2)
  schedule = train.make_schedule("cosine", learning_rate=0.1, total_steps=12)
  tx = train.make_optimizer("momentum", schedule)
  loss = train.classification_loss()
  step = train.make_train_step(loss, mesh=mesh, learning_rate=schedule, l2=1e-3)
  eval_step = train.make_eval_step(loss, mesh=mesh)
  new_state = lambda: train.create_train_state(model, tx, (1, 3), seed=0, mesh=mesh)
  return new_state, step, eval_step


def _data(epoch, nan_at=None, on_batch=None):
  """Deterministic batches of an epoch; optionally poisoned or with a hook."""
  rng = np.random.RandomState(100 + epoch)
  out = []
  for i in range(BATCHES_PER_EPOCH):
    x = rng.randn(8, 3).astype(np.float32)
    y = (x[:, 0] * x[:, 1] > 0).astype(np.int32)
    if nan_at == (epoch, i):
      x[0, 0] = np.nan
    out.append({"image": x, "label": y})
  if on_batch is None:
    return out

  def gen():
    for i, b in enumerate(out):
      on_batch(epoch, i)
      yield b
  return gen()


VAL = [_data(99)[0]]


def _fit(setup, workdir, num_epochs, data=_data, **kw):
  new_state, step, eval_step = setup
  return train.fit(new_state(), step, data, num_epochs=num_epochs,
                   eval_step=eval_step, val_data=VAL, workdir=workdir,
                   log_every=3, progress=False, **kw)


def _assert_same_params(a, b):
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(
      np.asarray(x), np.asarray(y)), a.params, b.params)
  jax.tree.map(lambda x, y: np.testing.assert_array_equal(
      np.asarray(x), np.asarray(y)), a.opt_state, b.opt_state)


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory):
  """An uninterrupted 3-epoch run."""
  return _fit(setup, str(tmp_path_factory.mktemp("ref")), 3)


def test_uninterrupted_run_writes_metrics_and_checkpoints(reference, tmp_path_factory):
  assert reference.epochs_run == 3 and not reference.interrupted
  assert int(reference.state.step) == 3 * BATCHES_PER_EPOCH
  assert [h["step"] for h in reference.history] == [4, 8, 12]
  # train/loss of an epoch is the mean over its steps
  assert all(np.isfinite(h["train/loss"]) for h in reference.history)


def test_metrics_jsonl_and_tensorboard(setup, tmp_path):
  _fit(setup, str(tmp_path), 1)
  records = train.read_jsonl(str(tmp_path / "metrics.jsonl"))
  step_records = [r for r in records if "train/steps_per_second" in r]
  epoch_records = [r for r in records if "val/loss" in r]
  assert [r["step"] for r in step_records] == [3, 4]
  for key in ("train/loss", "train/learning_rate", "train/grad_norm",
              "train/param_norm", "train/update_norm", "train/accuracy",
              "train/examples_per_second"):
    assert key in step_records[0], key
  assert epoch_records[0]["step"] == 4 and "val/accuracy" in epoch_records[0]
  events = os.listdir(tmp_path / "tensorboard")
  assert any(name.startswith("events.out.tfevents") for name in events)


def test_resume_after_epoch_matches_uninterrupted(setup, reference, tmp_path):
  first = _fit(setup, str(tmp_path), 1)
  assert first.epochs_run == 1
  resumed = _fit(setup, str(tmp_path), 3)
  assert resumed.epochs_run == 3
  _assert_same_params(resumed.state, reference.state)
  assert [h["train/loss"] for h in resumed.history] == pytest.approx(
      [h["train/loss"] for h in reference.history], rel=1e-6)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_epoch_saves_and_resumes_exactly(setup, reference, tmp_path,
                                                    signum):
  def send_sigterm(epoch, i):
    if (epoch, i) == (1, 2):  # after 6 steps: mid-epoch, off the log cadence
      os.kill(os.getpid(), signum)

  stopped = _fit(setup, str(tmp_path), 3,
                 data=lambda e: _data(e, on_batch=send_sigterm))
  assert stopped.interrupted
  assert int(stopped.state.step) == 7  # the step in flight finished
  resumed = _fit(setup, str(tmp_path), 3)
  assert not resumed.interrupted and resumed.epochs_run == 3
  _assert_same_params(resumed.state, reference.state)
  assert resumed.history[1]["train/loss"] == pytest.approx(
      reference.history[1]["train/loss"], rel=1e-6)


def test_non_finite_loss_names_step_and_keeps_last_checkpoint(setup, tmp_path):
  with pytest.raises(FloatingPointError,
                     match=r"non-finite loss nan at step 7 \(epoch 2\).*checkpoint \(step 4\)"):
    _fit(setup, str(tmp_path), 3, data=lambda e: _data(e, nan_at=(1, 2)))
  # The checkpoint written before the bad step is intact and finite, and equals
  # a clean one-epoch run.
  clean = _fit(setup, None, 1)
  ckpt = train.Checkpointer(str(tmp_path / "checkpoints"))
  assert ckpt.all_steps() == [4]
  new_state, _, _ = setup
  restored, meta = ckpt.restore(new_state())
  ckpt.close()
  assert meta["epoch"] == 1
  _assert_same_params(restored, clean.state)


def test_early_stopping_record_on_scripted_sequence():
  es = train.EarlyStopping(metric="val/loss", patience=2, min_delta=0.05)
  values = [1.0, 0.8, 0.78, 0.9]
  stops = [es.update(epoch, v) for epoch, v in enumerate(values)]
  # 0.78 is not better than 0.8 by more than 0.05: epochs 2 and 3 do not count
  assert stops == [False, False, False, True]
  assert es.best_epoch == 1 and es.best == 0.8
  es = train.EarlyStopping(metric="val/accuracy", mode="max", patience=1)
  assert [es.update(e, v) for e, v in enumerate([0.5, 0.6, 0.6])] == [False, False, True]
  with pytest.raises(ValueError, match=r"mode must be 'min' or 'max'; got 'up'"):
    train.EarlyStopping(mode="up")
  with pytest.raises(ValueError, match=r"patience must be >= 1; got 0"):
    train.EarlyStopping(patience=0)


def test_fit_stops_early_and_restores_best(setup, tmp_path):
  new_state, step, _ = setup
  scripted = iter([0.9, 0.5, 0.7, 0.6, 0.8, 0.1])

  def scripted_eval(state, batch):
    del state, batch
    return {"loss": np.float32(next(scripted)), "count": np.float32(1)}

  result = train.fit(
      new_state(), step, _data, num_epochs=6, eval_step=scripted_eval,
      val_data=VAL, workdir=str(tmp_path), progress=False,
      early_stopping=train.EarlyStopping(metric="val/loss", patience=3))
  assert result.stopped_early
  assert result.epochs_run == 5  # epochs 3, 4, 5 without improvement on 0.5
  assert result.best_epoch == 1
  assert int(result.state.step) == 2 * BATCHES_PER_EPOCH  # the best epoch's state
  clean = _fit(setup, None, 2)
  _assert_same_params(result.state, clean.state)
  # a finished run does not train again when called with the same workdir
  again = train.fit(new_state(), step, _data, num_epochs=6, eval_step=scripted_eval,
                    val_data=VAL, workdir=str(tmp_path), progress=False,
                    early_stopping=train.EarlyStopping(metric="val/loss", patience=3))
  assert again.stopped_early and again.epochs_run == 5


def test_fit_arguments_are_checked(setup):
  new_state, step, eval_step = setup
  with pytest.raises(ValueError, match=r"num_epochs must be >= 1; got 0"):
    train.fit(new_state(), step, _data, num_epochs=0)
  with pytest.raises(ValueError, match=r"early_stopping needs eval_step and val_data"):
    train.fit(new_state(), step, _data, num_epochs=1,
              early_stopping=train.EarlyStopping())


def test_signal_after_an_epochs_last_step_resumes_exactly(setup, reference, tmp_path):
  """The interrupt checkpoint then sits at the epoch's end step; the resumed
  run's epoch-end checkpoint must replace it, not collide with it."""
  last = BATCHES_PER_EPOCH - 1

  def send_sigterm(epoch, i):
    if (epoch, i) == (1, last):
      os.kill(os.getpid(), signal.SIGTERM)

  stopped = _fit(setup, str(tmp_path), 3,
                 data=lambda e: _data(e, on_batch=send_sigterm))
  assert stopped.interrupted and int(stopped.state.step) == 2 * BATCHES_PER_EPOCH
  resumed = _fit(setup, str(tmp_path), 3)
  assert resumed.epochs_run == 3
  _assert_same_params(resumed.state, reference.state)
  assert [h["step"] for h in resumed.history] == [4, 8, 12]
