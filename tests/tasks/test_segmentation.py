"""The segmentation task: data assembly (shapes, alignment, split by anatomy), masks,
scores, config errors, and (slow) a smoke run end to end through the entry point."""

import json
import os
import subprocess

import numpy as np
import pytest

from conftest import PYTHON, REPO_DIR
from fdl import config_files
from fdl.tasks import segmentation

CONFIG = os.path.join(REPO_DIR, "experiments", "configs", "segmentation.py")


def _config(arg="task,smoke", **overrides):
  config = config_files.load_config(CONFIG, arg)
  config.update(overrides)
  return config


@pytest.fixture(scope="module")
def smoke_data():
  return segmentation.make_data(_config())


def test_data_shapes_and_split_by_anatomy(smoke_data):
  config = _config()
  h, w = config.shape
  assert [len(smoke_data[s]) for s in ("train", "val", "test")] == [2, 1, 2]
  for split, volumes in smoke_data.items():
    for v in volumes:
      n = config.test_slices_per_volume if split == "test" else config.slices_per_volume
      assert v["image"].shape == (n, h, w, 1) and v["image"].dtype == np.float32
      assert v["label"].shape == (n, h, w) and v["label"].dtype == np.int32
      assert set(np.unique(v["label"])) <= {0, 1, 2, 3}
      assert v["pixel_size_mm"] > 0
  assert {v["template"] for s in ("train", "val") for v in smoke_data[s]} == {"mni152_kmeans"}
  assert [v["template"] for v in smoke_data["test"]] == ["colin27", "itk_head"]
  names = [v["name"] for vols in smoke_data.values() for v in vols]
  assert len(set(names)) == len(names)
  # Training volumes are kept light; test volumes keep their k-space for K2S.
  assert "kspace" not in smoke_data["train"][0]
  assert smoke_data["test"][0]["kspace"].shape == (config.test_slices_per_volume,
                                                   config.num_coils, h, w)
  stacked = segmentation.stack(smoke_data["train"])
  assert stacked["image"].shape[0] == stacked["label"].shape[0] == 8


def test_labels_align_with_the_image(smoke_data):
  # T1 test contrast: WM brighter than GM brighter than CSF, background darkest;
  # only true if each label sits on its own pixels.
  for v in smoke_data["test"]:
    image, label = v["image"][..., 0], v["label"]
    means = [image[label == k].mean() for k in range(4)]
    assert means[3] > means[2] > means[1] > means[0], means
    np.testing.assert_allclose(image, segmentation.normalize_input(v["target"])[..., 0])
    # A shifted label map fits the image worse.
    shifted = np.roll(label, 3, axis=2)
    spread = lambda lab: sum(image[lab == k].var() * (lab == k).sum() for k in range(4))
    assert spread(label) < 0.7 * spread(shifted)


def test_zero_filled_input_is_under_sampled_kspace():
  full = segmentation.make_data(_config(input="zero_filled", acceleration=1.0))["test"][0]
  reference = segmentation.normalize_input(full["target"])
  assert np.corrcoef(full["image"].ravel(), reference.ravel())[0, 1] > 0.97
  under = segmentation.make_data(_config(input="zero_filled", acceleration=8.0))["test"][0]
  assert np.allclose(under["mask"].mean(axis=1), 1 / 8, atol=2 / 32)
  np.testing.assert_allclose(
      under["image"], segmentation.normalize_input(
          segmentation.zero_filled_rss(under["kspace"], under["mask"])))
  assert np.abs(under["image"] - reference).mean() > 2 * np.abs(full["image"] - reference).mean()


def test_masks_are_fixed_by_seed_volume_and_slice():
  args = dict(acceleration=4.0, center_fraction=0.08, mask="random")
  a = segmentation.slice_masks(0, 3, 4, 64, **args)
  np.testing.assert_array_equal(a, segmentation.slice_masks(0, 3, 4, 64, **args))
  assert not np.array_equal(a, segmentation.slice_masks(0, 4, 4, 64, **args))
  assert not np.array_equal(a[0], a[1])
  np.testing.assert_array_equal(
      segmentation.slice_masks(0, 3, 2, 64, acceleration=1.0, center_fraction=0.08),
      np.ones((2, 64), np.float32))


def test_scores_of_a_perfect_and_a_wrong_prediction(smoke_data):
  volumes = smoke_data["test"]
  perfect = segmentation.score_volumes([v["label"] for v in volumes], volumes)
  assert perfect["mean_dice"] == 1.0 and perfect["hd95"] == 0.0
  assert set(perfect["dice"]) == {"CSF", "GM", "WM"}
  wrong = segmentation.score_volumes([np.where(v["label"] == 2, 3, v["label"])
                                      for v in volumes], volumes)
  assert wrong["dice"]["GM"] == 0.0 and wrong["dice"]["CSF"] == 1.0
  assert wrong["hd95_mm"]["CSF"] == 0.0 and wrong["hd95_mm"]["WM"] > 0
  assert "mean (fg)" in segmentation.table(wrong)


def test_lesion_label_set_marks_the_synthesized_lesions_and_counts_them():
  config = _config("task,smoke,lesions",
                   lesions={**config_files.load_config(CONFIG, "task").lesions.to_dict(),
                            "probability": 1.0, "radius_mm": (3.0, 5.0)})
  data = segmentation.make_data(config)
  volume = data["test"][0]
  assert volume["label_names"] == segmentation.LESION_NAMES
  assert set(np.unique(volume["label"])) == {0, 1}
  # The labels are the synthesis' lesion masks: lesion pixels differ from the same
  # anatomy synthesized without lesions, and the tissue labels lie under them.
  plain = segmentation.make_data(_config("task,smoke"))["test"][0]
  lesion = volume["label"] == 1
  assert np.all(plain["label"][lesion] >= 2)  # in grey or white matter
  changed = np.abs(volume["target"] - plain["target"]) > 1e-3
  assert changed[lesion].mean() > 0.8
  from scipy import ndimage
  count = sum(ndimage.label(m)[1] for m in lesion)
  perfect = segmentation.score_volumes([v["label"] for v in data["test"]], data["test"])
  d = perfect["lesion_detection"]
  assert perfect["dice"] == {"lesion": 1.0}
  assert d["missed"] == d["invented"] == 0 and d["detected"] == d["num_reference"]
  assert perfect["per_volume"][volume["name"]]["lesion_detection"]["num_reference"] == count
  empty = segmentation.score_volumes([np.zeros_like(v["label"]) for v in data["test"]],
                                     data["test"])
  assert empty["lesion_detection"]["missed"] == d["num_reference"]
  assert "lesions:" in segmentation.table(empty)


@pytest.mark.parametrize("overrides, message", [
    ({"input": "image_domain"}, "config.input must be one of"),
    ({"label_set": "tumours"}, "config.label_set must be one of"),
    ({"acceleration": 0.5}, "acceleration must be >= 1"),
    ({"loss": "focal"}, "config.loss must be one of"),
    ({"test_templates": ("mni152_kmeans",)}, "disjoint"),
    ({"num_epochs": 0}, "num_epochs must be >= 1"),
    ({"mask": "radial"}, "config.mask must be one of"),
])
def test_config_errors(tmp_path, overrides, message):
  with pytest.raises(ValueError, match=message):
    segmentation.train_and_evaluate(_config(**overrides), str(tmp_path))
  assert not os.listdir(tmp_path)  # refused before writing anything


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
  """The entry point's smoke run (``--config.smoke=True``)."""
  workdir = str(tmp_path_factory.mktemp("segmentation"))
  proc = subprocess.run(
      [PYTHON, os.path.join(REPO_DIR, "experiments", "segmentation.py"),
       "--config", CONFIG + ":task", "--workdir", workdir, "--config.smoke=True"],
      capture_output=True, text=True, cwd=REPO_DIR, timeout=600, check=False)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc.stdout, workdir


@pytest.mark.slow
def test_smoke_run_writes_everything(smoke_run):
  stdout, workdir = smoke_run
  for name in ("config.json", "metrics.jsonl", "summary.json", "learning_curves.png",
               "segmentations.png", "per_class.txt"):
    assert os.path.getsize(os.path.join(workdir, name)) > 0, name
  with open(os.path.join(workdir, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  scores = summary["test"]["fully_sampled"]
  assert set(scores["dice"]) == {"CSF", "GM", "WM"}
  assert 0 <= scores["mean_dice"] <= 1 and scores["hd95"] >= 0
  assert scores["num_volumes"] == 2
  assert "mean (fg)" in stdout
  records = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
  keys = set().union(*records)
  assert set(segmentation.TRAIN_METRICS + segmentation.EVAL_METRICS) <= keys


@pytest.mark.slow
def test_sealed_test_once_with_the_best_checkpoint(tmp_path, monkeypatch):
  calls = []
  real = segmentation.score_volumes
  monkeypatch.setattr(segmentation, "score_volumes",
                      lambda *a, **k: calls.append(1) or real(*a, **k))
  summary = segmentation.train_and_evaluate(_config(input="zero_filled"), str(tmp_path))
  assert len(calls) == 1
  assert set(summary["test"]) == {"zero_filled"}
  best = summary["best_epoch"]
  assert summary["evaluated_checkpoint_step"] == best * summary["steps_per_epoch"]
  # The evaluated checkpoint loads back and predicts the same test scores.
  model, variables, config = segmentation.load_trained(str(tmp_path))
  volumes = segmentation.make_data(config)["test"]
  preds = [segmentation.predict_labels(model.apply, variables, v["image"], 4)
           for v in volumes]
  again = real(preds, volumes)
  assert again["mean_dice"] == pytest.approx(summary["test"]["zero_filled"]["mean_dice"])
