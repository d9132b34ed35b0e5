"""The sequence task: digits read as rows / pixels, honest splits, one sealed test look."""

import json
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files, data
from fdl.tasks import sequence
from fdl.train.metric_writer import read_jsonl

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "sequence.py")


def _config(arg=None, **overrides):
  config = config_files.load_config(CONFIG, arg)
  config.update(overrides)
  return config


def test_rows_reading_gives_row_t_of_the_image_at_step_t():
  images = np.random.default_rng(0).integers(0, 256, (3, 8, 8, 1), dtype=np.uint8)
  seq = sequence.read_sequences(images, "rows")
  assert seq.shape == (3, 8, 8) and seq.dtype == np.uint8
  for n in range(3):
    for t in range(8):
      np.testing.assert_array_equal(seq[n, t], images[n, t, :, 0])


def test_pixels_reading_is_raster_order():
  images = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8, 1)
  seq = sequence.read_sequences(images, "pixels")
  assert seq.shape == (2, 64, 1)
  for t in (0, 7, 8, 37, 63):
    assert seq[1, t, 0] == images[1, t // 8, t % 8, 0] == 64 + t


def test_rows_reading_of_odd_multichannel_images_keeps_channels_innermost():
  images = np.arange(2 * 3 * 5 * 2).reshape(2, 3, 5, 2)
  seq = sequence.read_sequences(images, "rows")
  assert seq.shape == (2, 3, 10)
  # Step 1 of image 1: row 1, pixels left to right, (channel 0, channel 1) per pixel.
  np.testing.assert_array_equal(seq[1, 1], [40, 41, 42, 43, 44, 45, 46, 47, 48, 49])
  assert sequence.read_sequences(images, "pixels").shape == (2, 15, 2)


def test_bad_reading_arguments_are_named():
  with pytest.raises(ValueError, match=re.escape(
      "read must be one of ('rows', 'pixels'); got 'columns'")):
    sequence.read_sequences(np.zeros((1, 8, 8, 1)), "columns")
  with pytest.raises(ValueError, match=re.escape(
      "images must be [N, H, W, C] (rank 4); got shape (1, 8, 8)")):
    sequence.read_sequences(np.zeros((1, 8, 8)), "rows")


@pytest.fixture(scope="module")
def splits():
  return sequence.make_sequence_splits(_config())


def test_splits_are_disjoint_cover_the_digits_and_keep_the_test_sealed(splits):
  idx = splits.indices
  assert {k: len(v) for k, v in idx.items()} == {"train": 1259, "val": 269, "test": 269}
  every = np.concatenate([idx["train"], idx["val"], idx["test"]])
  np.testing.assert_array_equal(np.sort(every), np.arange(1797))
  assert splits.train["sequence"].shape == (1259, 8, 8)
  assert splits.val["sequence"].shape == (269, 8, 8)
  assert splits.train["sequence"].dtype == np.float32
  assert splits.test.evaluations == 0 and splits.test.size == 269


def test_splits_are_deterministic_and_depend_on_the_seed(splits):
  again = sequence.make_sequence_splits(_config())
  for name in ("train", "val", "test"):
    np.testing.assert_array_equal(again.indices[name], splits.indices[name])
  np.testing.assert_array_equal(again.train["sequence"], splits.train["sequence"])
  other = sequence.make_sequence_splits(_config(seed=1))
  assert not np.array_equal(other.indices["test"], splits.indices["test"])


def test_sequences_are_the_images_normalized_by_training_statistics(splits):
  source = data.load_source("digits")
  train = source.train_images[splits.indices["train"]].astype(np.float64) / 255
  mean, std = train.mean(), train.std()
  np.testing.assert_allclose(splits.stats.mean, [mean], rtol=1e-12)
  np.testing.assert_allclose(splits.stats.std, [std], rtol=1e-12)
  # Row t of validation sequence k is row t of its image, normalized with train stats.
  k = 5
  image = source.train_images[splits.indices["val"][k], :, :, 0] / 255
  np.testing.assert_allclose(splits.val["sequence"][k], (image - mean) / std, rtol=1e-5,
                             atol=1e-5)
  np.testing.assert_array_equal(splits.val["label"],
                                source.train_labels[splits.indices["val"]])
  # Training sequences have mean 0 and std 1 (float64 sums of float32 values).
  x = splits.train["sequence"].astype(np.float64)
  assert abs(x.mean()) < 1e-6 and abs(x.std() - 1) < 1e-6


def test_pixel_splits_hold_the_same_digits_as_64_steps():
  rows = sequence.make_sequence_splits(_config())
  pixels = sequence.make_sequence_splits(_config(read="pixels"))
  assert pixels.sequence_shape == (64, 1)
  np.testing.assert_array_equal(pixels.train["sequence"].reshape(-1, 8, 8),
                                rows.train["sequence"])


@pytest.mark.parametrize("overrides, message", [
    (dict(read="columns"), "config.read must be one of ('rows', 'pixels'); got 'columns'"),
    (dict(cells=("lstm", "transformer")),
     "config.cells must hold cells from ('rnn', 'lstm', 'gru'); got 'transformer'"),
    (dict(cells=()), "config.cells must be a non-empty tuple of distinct cells"),
    (dict(cells=("gru", "gru")), "config.cells must be a non-empty tuple of distinct cells"),
    (dict(hidden=0), "hidden must be a positive int; got 0"),
    (dict(readout="max"), "readout must be one of ('last', 'mean'); got 'max'"),
    (dict(batch_size=0), "config.batch_size must be an integer >= 1; got 0"),
    (dict(num_epochs=0), "config.num_epochs must be an integer >= 1; got 0"),
    (dict(batch_size=5000), "config.batch_size must be in [1, 1259] (the training split)"),
    (dict(optimizer="adamax"), "optimizer must be one of"),
    (dict(early_stopping_patience=-1), "config.early_stopping_patience must be >= 0"),
])
def test_invalid_config_values_are_named_before_training(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    sequence.train_and_evaluate(_config(**overrides), str(tmp_path))
  assert not (tmp_path / "lstm").exists()


def test_a_workdir_of_another_config_is_refused(tmp_path):
  (tmp_path / "config.json").write_text(json.dumps(_config().to_dict()))
  with pytest.raises(ValueError, match=re.escape("keys ['hidden'] differ")):
    sequence.train_and_evaluate(_config(hidden=32), str(tmp_path))


@pytest.mark.slow
def test_smoke_run_end_to_end_opens_the_test_split_once_after_all_training(
    tmp_path, monkeypatch):
  looks = []
  evaluate_test = sequence.evaluate_test

  def spy(states, splits):
    # Every model has finished training (its metrics are written) before the one look.
    looks.append({c: (tmp_path / c / "metrics.jsonl").exists() for c in states})
    return evaluate_test(states, splits)

  monkeypatch.setattr(sequence, "evaluate_test", spy)
  summary = sequence.train_and_evaluate(_config(smoke=True), str(tmp_path))
  assert looks == [{"rnn": True, "lstm": True, "gru": True}]
  assert summary["split_sizes"] == {"train": 1259, "val": 269, "test": 269}
  assert summary["sequence_shape"] == [8, 8]
  assert set(summary["test_accuracy"]) == {"rnn", "lstm", "gru"}
  for cell, model in summary["models"].items():
    assert 0.0 <= summary["test_accuracy"][cell] <= 1.0
    assert model["test"]["num_examples"] == 269
    assert model["epochs_run"] == 2
    # Smoke sizes: 16 hidden units on rows of 8 pixels, 10 classes.
    assert model["num_params"] == {"rnn": 16 * 25, "lstm": 4 * 16 * 25,
                                   "gru": 3 * 16 * 25 + 16}[cell] + 170
    records = read_jsonl(str(tmp_path / cell / "metrics.jsonl"))
    keys = set().union(*records)
    assert set(sequence.TRAIN_METRICS) <= keys and set(sequence.EVAL_METRICS) <= keys
  on_disk = json.loads((tmp_path / "summary.json").read_text())
  assert on_disk["test_accuracy"] == pytest.approx(summary["test_accuracy"])
  assert (tmp_path / "learning_curves.png").stat().st_size > 10_000
  assert json.loads((tmp_path / "config.json").read_text())["smoke"] is True
  # The printed report carries the same numbers.
  shown = json.loads(sequence.report(summary))
  assert shown["test_accuracy"] == {c: round(a, 4) for c, a in
                                    summary["test_accuracy"].items()}


@pytest.mark.slow
def test_script_runs_from_the_command_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=REPO_DIR)
  done = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "sequence.py"),
       f"--config={CONFIG}", f"--workdir={tmp_path}", "--config.smoke=True",
       "--config.cells=('lstm',)"],
      env=env, capture_output=True, text=True, timeout=600)
  assert done.returncode == 0, done.stderr[-3000:]
  summary = json.loads((tmp_path / "summary.json").read_text())
  assert list(summary["test_accuracy"]) == ["lstm"]
  assert '"test_accuracy"' in done.stdout
  refused = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "sequence.py"),
       f"--config={CONFIG}", f"--workdir={tmp_path}", "--config.read=columns"],
      env=env, capture_output=True, text=True, timeout=300)
  assert refused.returncode == 2
  assert "error: config.read must be one of ('rows', 'pixels'); got 'columns'" in (
      refused.stderr)
