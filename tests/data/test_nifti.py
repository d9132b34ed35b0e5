"""NIfTI reading (RAS+, voxel sizes, errors, exact labels) and the anatomy sources.

Synthetic files are tiny and written here with nibabel. The real sources load
each full volume once per module (module-scoped fixtures) and skip, with the
install command, where their package is absent.
"""

import gzip
import os

import nibabel as nib
import numpy as np
import pytest

from fdl import data
from fdl.data import anatomy
from fdl.data.nifti import load_label_nifti, load_nifti, save_nifti


def _pattern(shape=(4, 5, 6)):
  # Every voxel distinct, so any flip or transpose shows.
  return np.arange(np.prod(shape), dtype=np.float32).reshape(shape) * 1.5 - 7


def _write(path, array, affine):
  nib.save(nib.Nifti1Image(np.asarray(array), np.asarray(affine, float)),
           str(path))
  return str(path)


def test_exports():
  for name in ("load_nifti", "load_label_nifti", "save_nifti", "Anatomy",
               "TISSUE_LABELS", "mni152", "colin27", "itk_head"):
    assert hasattr(data, name), name
  assert data.TISSUE_LABELS == {0: "background", 1: "CSF", 2: "GM", 3: "WM"}


def test_ras_file_round_trips_unchanged(tmp_path):
  a = _pattern()
  p = tmp_path / "ras.nii.gz"
  save_nifti(p, a, (0.5, 2.0, 3.0))
  out, vs = load_nifti(p)
  assert out.dtype == np.float32 and out.shape == (4, 5, 6)
  np.testing.assert_array_equal(out, a)
  assert vs == (0.5, 2.0, 3.0)
  assert nib.aff2axcodes(nib.load(str(p)).affine) == ("R", "A", "S")


def test_flipped_x_axis_is_reoriented(tmp_path):
  # Stored LAS: voxel i runs to the Left, so RAS+ is the array flipped on x.
  a = _pattern()
  affine = np.diag([-2.0, 1.0, 1.0, 1.0])
  out, vs = load_nifti(_write(tmp_path / "las.nii", a, affine))
  np.testing.assert_array_equal(out, a[::-1])
  assert vs == (2.0, 1.0, 1.0)


def test_permuted_and_flipped_axes_are_reoriented(tmp_path):
  # Stored L, S, A (like the ITK head): column 0 -> -x (2 mm), column 1 -> +z
  # (3 mm), column 2 -> +y (5 mm). RAS+ = transpose to (i, k, j), flip i.
  a = _pattern((4, 5, 6))
  affine = np.array([[-2.0, 0, 0, 10], [0, 0, 5.0, -20], [0, 3.0, 0, 7],
                     [0, 0, 0, 1]])
  p = _write(tmp_path / "lsa.nii.gz", a, affine)
  out, vs = load_nifti(p)
  expected = np.transpose(a, (0, 2, 1))[::-1]
  assert out.shape == (4, 6, 5)
  np.testing.assert_array_equal(out, expected)
  assert vs == (2.0, 5.0, 3.0)
  # The voxel [0, 0, 0] of the output is the right-, posterior-, inferior-most.
  labels, lvs = load_label_nifti(_write(tmp_path / "lsa_lab.nii.gz",
                                        a.astype(np.int16) + 10, affine))
  np.testing.assert_array_equal(labels, expected.astype(np.int16) + 10)
  assert lvs == vs


def test_anisotropic_voxel_sizes_and_scaling(tmp_path):
  img = nib.Nifti1Image(np.ones((3, 4, 5), np.int16),
                        np.diag([0.7, 1.3, 2.9, 1.0]))
  img.header.set_slope_inter(0.5, 10.0)
  p = str(tmp_path / "scaled.nii")
  nib.save(img, p)
  out, vs = load_nifti(p)
  np.testing.assert_allclose(vs, (0.7, 1.3, 2.9), rtol=1e-6)
  np.testing.assert_allclose(out, 10.5)
  assert out.dtype == np.float32


def test_trailing_singleton_4d_is_squeezed(tmp_path):
  a = _pattern()
  p = _write(tmp_path / "v4.nii.gz", a[..., None], np.eye(4))
  out, _ = load_nifti(p)
  np.testing.assert_array_equal(out, a)


def test_real_4d_file_raises_with_name_and_shape(tmp_path):
  p = _write(tmp_path / "series.nii.gz", np.zeros((4, 5, 6, 3), np.float32),
             np.eye(4))
  with pytest.raises(ValueError, match=r"series\.nii\.gz.*\(4, 5, 6, 3\)"):
    load_nifti(p)


def test_missing_file_raises_file_not_found(tmp_path):
  p = str(tmp_path / "nowhere.nii.gz")
  with pytest.raises(FileNotFoundError, match="nowhere.nii.gz"):
    load_nifti(p)
  with pytest.raises(FileNotFoundError, match="nowhere.nii.gz"):
    load_label_nifti(p)


@pytest.mark.parametrize("kind", ["truncated_gz", "garbage_nii", "garbage_gz",
                                  "truncated_nii"])
def test_corrupt_file_raises_one_line_value_error(tmp_path, kind):
  good = tmp_path / ("good.nii.gz" if kind.endswith("gz") else "good.nii")
  save_nifti(good, np.random.default_rng(0).random((16, 16, 16)), (1, 1, 1))
  raw = good.read_bytes()
  rng = np.random.default_rng(1)
  bad = tmp_path / f"bad_{kind}{'.nii.gz' if kind.endswith('gz') else '.nii'}"
  if kind.startswith("truncated"):
    bad.write_bytes(raw[:len(raw) // 2])
  else:
    bad.write_bytes(rng.integers(0, 256, 2000, dtype=np.uint8).tobytes())
  with pytest.raises(ValueError) as info:
    load_nifti(bad)
  msg = str(info.value)
  assert bad.name in msg and "\n" not in msg
  assert "not a readable NIfTI" in msg and "(" in msg  # The reason follows.


def test_gzip_of_a_non_nifti_is_refused(tmp_path):
  p = tmp_path / "text.nii.gz"
  with gzip.open(p, "wb") as f:
    f.write(b"hello, not an image\n" * 40)
  with pytest.raises(ValueError, match="text.nii.gz"):
    load_nifti(p)


def test_labels_stay_exact_and_int32(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.choice([0, 3, 7, 1000, 65535, 70000], size=(5, 6, 7))
  # Stored as float64 with an LAS affine: values must survive exactly.
  p = _write(tmp_path / "lab.nii.gz", labels.astype(np.float64),
             np.diag([-1.0, 1, 1, 1]))
  out, vs = load_label_nifti(p)
  assert out.dtype == np.int32 and vs == (1.0, 1.0, 1.0)
  np.testing.assert_array_equal(out, labels[::-1])
  assert set(np.unique(out).tolist()) == {0, 3, 7, 1000, 65535, 70000}


def test_non_integer_labels_are_refused_with_an_example(tmp_path):
  labels = np.zeros((3, 3, 3), np.float32)
  labels[1, 2, 0] = 2.5
  p = _write(tmp_path / "soft.nii.gz", labels, np.eye(4))
  with pytest.raises(ValueError, match=r"soft\.nii\.gz.*2\.5"):
    load_label_nifti(p)


def test_save_nifti_checks_arguments(tmp_path):
  with pytest.raises(ValueError, match="3-D"):
    save_nifti(tmp_path / "a.nii", np.zeros((3, 3)), (1, 1, 1))
  with pytest.raises(ValueError, match="voxel_sizes"):
    save_nifti(tmp_path / "a.nii", np.zeros((3, 3, 3)), (1, 0, 1))
  with pytest.raises(ValueError, match=r"\.nii"):
    save_nifti(tmp_path / "a.npy", np.zeros((3, 3, 3)), (1, 1, 1))
  save_nifti(tmp_path / "b.nii", np.array([[[1, 2]]], np.uint8), (1, 1, 1))
  assert nib.load(str(tmp_path / "b.nii")).get_data_dtype() == np.int32


# ---------------------------------------------------------------- from_files


def test_from_files_reads_a_pair_in_ras(tmp_path):
  img = _pattern()
  lab = (np.arange(img.size) % 3).reshape(img.shape)
  affine = np.diag([-1.0, 2.0, 1.0, 1.0])
  a = anatomy.from_files(_write(tmp_path / "t1.nii.gz", img, affine),
                         _write(tmp_path / "seg.nii.gz", lab.astype(np.uint8),
                                affine),
                         {0: "background", 1: "GM", 2: "WM"})
  np.testing.assert_array_equal(a.image, img[::-1])
  np.testing.assert_array_equal(a.labels, lab[::-1])
  assert a.voxel_sizes == (1.0, 2.0, 1.0) and a.name == "t1.nii.gz"
  np.testing.assert_array_equal(a.brain_mask, lab[::-1] != 0)
  assert a.label_names == {0: "background", 1: "GM", 2: "WM"}


def test_from_files_mismatches_raise(tmp_path):
  img = _write(tmp_path / "t1.nii.gz", _pattern(), np.eye(4))
  small = _write(tmp_path / "small.nii.gz", np.zeros((4, 5, 5), np.uint8),
                 np.eye(4))
  with pytest.raises(ValueError, match=r"shape.*small\.nii\.gz.*\(4, 5, 5\)"):
    anatomy.from_files(img, small, {0: "bg"})
  shifted = _write(tmp_path / "shifted.nii.gz", np.zeros((4, 5, 6), np.uint8),
                   np.array([[1.0, 0, 0, 2], [0, 1, 0, 0], [0, 0, 1, 0],
                             [0, 0, 0, 1]]))
  with pytest.raises(ValueError, match=r"affines.*shifted\.nii\.gz"):
    anatomy.from_files(img, shifted, {0: "bg"})
  lab = _write(tmp_path / "lab.nii.gz", np.full((4, 5, 6), 4, np.uint8),
               np.eye(4))
  with pytest.raises(ValueError, match=r"lab\.nii\.gz.*\[4\]"):
    anatomy.from_files(img, lab, {0: "bg"})


def test_downsample_block_mean_and_mode():
  labels = np.zeros((4, 4, 2), np.int32)
  labels[:2, :2, :] = 2
  labels[0, 0, 0] = 1       # Minority voxel in the 2-block.
  labels[2:, 2:, :] = 3
  labels[2, 2, :] = 1       # Tie 3 vs 1 (4 each) -> the smaller, 1.
  labels[3, 3, :] = 1
  image = np.arange(32, dtype=np.float32).reshape(4, 4, 2)
  a = anatomy.Anatomy("toy", image, labels, dict(data.TISSUE_LABELS),
                      (1.0, 1.0, 2.0), np.diag([1.0, 1.0, 2.0, 1.0]),
                      labels > 0)
  d = anatomy.downsample(a, 2)
  assert d.shape == (2, 2, 1) and d.voxel_sizes == (2.0, 2.0, 4.0)
  np.testing.assert_array_equal(d.labels[..., 0], [[2, 0], [0, 1]])
  np.testing.assert_allclose(d.image, image.reshape(2, 2, 2, 2, 1, 2).mean(
      axis=(1, 3, 5)))
  np.testing.assert_array_equal(d.brain_mask[..., 0], [[True, False],
                                                       [False, True]])
  # Block centres: the new voxel 0 sits midway between old voxels 0 and 1.
  np.testing.assert_allclose(d.affine[:3, 3], [0.5, 0.5, 1.0])
  with pytest.raises(ValueError, match="factor"):
    anatomy.downsample(a, 0)


# ---------------------------------------------------------------- real sources


def _source(fn):
  try:
    return fn()
  except FileNotFoundError as e:
    pytest.skip(str(e))


@pytest.fixture(scope="module")
def mni():
  return _source(anatomy.mni152)


@pytest.fixture(scope="module")
def colin():
  return _source(anatomy.colin27)


@pytest.fixture(scope="module")
def itk():
  return _source(anatomy.itk_head)


def _check_common(a, shape, voxel_sizes):
  assert a.shape == shape and a.labels.shape == shape
  assert a.image.dtype == np.float32 and a.labels.dtype == np.int32
  assert a.voxel_sizes == voxel_sizes
  assert set(np.unique(a.labels).tolist()) == {0, 1, 2, 3}
  assert a.label_names == data.TISSUE_LABELS
  assert a.brain_mask.dtype == np.bool_
  # Labels are background exactly outside the brain mask.
  np.testing.assert_array_equal(a.labels > 0, a.brain_mask)
  assert a.provenance["license"] and a.provenance["files"]
  for path in a.provenance["files"].values():
    assert os.path.isfile(path)


def _inferior_posterior_mm(a):
  """y centroid (mm) of the brain's top quarter minus its bottom quarter.

  The cerebellum and brainstem sit low and back; the top of the brain is
  central. With superior = +z and anterior = +y this is clearly positive; a
  flipped z or y makes it negative.
  """
  idx = np.argwhere(a.brain_mask)
  lo, hi = idx[:, 2].min(), idx[:, 2].max()
  low = idx[idx[:, 2] < lo + 0.25 * (hi - lo), 1].mean()
  top = idx[idx[:, 2] > lo + 0.75 * (hi - lo), 1].mean()
  return (top - low) * a.voxel_sizes[1]


def test_mni152(mni):
  _check_common(mni, (197, 233, 189), (1.0, 1.0, 1.0))
  assert set(mni.tissues) == {"CSF", "GM", "WM"}
  for p in mni.tissues.values():
    assert p.dtype == np.float32 and p.min() >= 0 and p.max() <= 1
  total = mni.tissues["CSF"] + mni.tissues["GM"] + mni.tissues["WM"]
  assert total[mni.brain_mask].min() >= 0.999  # CSF fills the rest of 1.
  f = mni.label_fractions()
  assert 0.06 < f["CSF"] < 0.11 and 0.54 < f["GM"] < 0.62
  assert 0.30 < f["WM"] < 0.38
  assert 1.8e6 < mni.brain_mask.sum() < 1.95e6  # mm^3 at 1 mm.
  assert "152" in mni.provenance["subject"]
  assert "CSF" in mni.provenance["tissues"]


def test_mni152_kmeans_labels_follow_the_colin27_rule(mni):
  km = anatomy.mni152(labels="kmeans")
  assert km.name == "mni152_kmeans"
  np.testing.assert_array_equal(km.brain_mask, mni.brain_mask)
  np.testing.assert_array_equal(km.labels > 0, mni.labels > 0)
  # Classes ordered by T1 intensity: every CSF voxel darker than every GM voxel,
  # every GM voxel darker than every WM voxel (a 1-D k-means partition).
  t1 = km.image
  for low, high in ((1, 2), (2, 3)):
    assert t1[km.labels == low].max() <= t1[km.labels == high].min()
  f = km.label_fractions()
  assert 0.12 < f["CSF"] < 0.17 and 0.45 < f["GM"] < 0.51 and 0.35 < f["WM"] < 0.41
  assert "k-means" in km.provenance["labels"] and len(km.provenance["kmeans_centres"]) == 3
  with pytest.raises(ValueError, match="mni152 labels must be one of"):
    anatomy.mni152(labels="atlas")


def test_mni152_orientation(mni):
  # The symmetric template mirrors exactly about x = 0 (the central column).
  assert mni.affine[0, 3] + 98 * mni.affine[0, 0] == 0.0
  np.testing.assert_array_equal(mni.image, mni.image[::-1])
  assert np.abs(mni.image - mni.image[:, ::-1]).mean() > 0.3 * mni.image.mean()
  # More brain above the anterior commissure (world z = 0) than below.
  k0 = int(round(-mni.affine[2, 3] / mni.affine[2, 2]))
  assert mni.brain_mask[:, :, k0 + 1:].sum() > 1.3 * mni.brain_mask[
      :, :, :k0].sum()
  assert _inferior_posterior_mm(mni) > 15


def test_colin27(colin):
  _check_common(colin, (181, 217, 181), (1.0, 1.0, 1.0))
  f = colin.label_fractions()
  assert 0.08 < f["CSF"] < 0.15 and 0.43 < f["GM"] < 0.53
  assert 0.35 < f["WM"] < 0.45
  c = colin.provenance["kmeans_centres"]
  assert c == sorted(c) and 45 < c[0] < 60 and 100 < c[2] < 115
  assert "k-means" in colin.provenance["tissues"]
  assert "mni152" in colin.provenance["independence"]
  # The head (scalp, skull) lies outside the brain mask.
  assert colin.image[~colin.brain_mask].max() > 200
  assert _inferior_posterior_mm(colin) > 12


def test_colin27_left_is_low_x():
  # AAL (colin27 grid) names hemispheres: Precentral_L = 1, Precentral_R = 2.
  path = os.path.join(anatomy.MRICRON_TEMPLATES, "aal.nii.gz")
  if not os.path.isfile(path):
    pytest.skip("needs the AAL atlas: apt-get install mricron-data")
  labels, vs = load_label_nifti(path)
  assert labels.shape == (181, 217, 181) and vs == (1.0, 1.0, 1.0)
  x_left = np.argwhere(labels == 1)[:, 0].mean()
  x_right = np.argwhere(labels == 2)[:, 0].mean()
  assert x_right - x_left > 60  # mm: right hemisphere at larger x.


def test_stored_las_atlas_matches_flipped_raw():
  path = os.path.join(anatomy.MRICRON_TEMPLATES,
                      "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz")
  if not os.path.isfile(path):
    pytest.skip("needs HarvardOxford: apt-get install mricron-data")
  img = nib.load(path)
  assert nib.aff2axcodes(img.affine) == ("L", "A", "S")
  labels, _ = load_label_nifti(path)
  np.testing.assert_array_equal(labels, np.asarray(img.dataobj)[::-1])
  assert set(np.unique(labels).tolist()) == set(range(49))


def test_itk_head(itk):
  # Stored 128 x 128 x 62 (L, S, A) at 2 x 2 x 3 mm.
  _check_common(itk, (128, 62, 128), (2.0, 3.0, 2.0))
  f = itk.label_fractions()
  assert 0.15 < f["CSF"] < 0.23 and 0.40 < f["GM"] < 0.49
  assert 0.32 < f["WM"] < 0.42
  # T1 contrast: CSF darkest, WM brightest (medians 50, 76, 102).
  med = [np.median(itk.image[itk.labels == k]) for k in (1, 2, 3)]
  assert med[0] < med[1] < med[2] and 20 < med[2] - med[1] < 35
  assert "independent" in itk.provenance["independence"]
  assert _inferior_posterior_mm(itk) > 20
  stripped = anatomy.itk_head(skull_stripped=True)
  assert stripped.image[~stripped.brain_mask].max() == 0


def test_downsample_real_source(itk):
  d = anatomy.downsample(itk, 2)
  assert d.shape == (64, 31, 64) and d.voxel_sizes == (4.0, 6.0, 4.0)
  assert set(np.unique(d.labels).tolist()) == {0, 1, 2, 3}
  f, g = itk.label_fractions(), d.label_fractions()
  for k in ("GM", "WM", "CSF"):
    assert abs(f[k] - g[k]) < 0.06
  np.testing.assert_allclose(d.image.mean(), itk.image[:128, :62].mean(),
                             rtol=1e-4)


def test_missing_debian_files_say_how_to_install(monkeypatch, tmp_path):
  monkeypatch.setattr(anatomy, "MRICRON_TEMPLATES", str(tmp_path))
  monkeypatch.setattr(anatomy, "ITK_EXAMPLES_DATA", str(tmp_path))
  with pytest.raises(FileNotFoundError, match="apt-get install mricron-data"):
    anatomy.colin27()
  with pytest.raises(FileNotFoundError,
                     match="apt-get install insighttoolkit5-examples"):
    anatomy.itk_head()
  monkeypatch.setattr(anatomy.importlib.util, "find_spec", lambda name: None)
  with pytest.raises(FileNotFoundError, match="pip install nilearn"):
    anatomy.mni152()
