"""Volumes, normalization, splits, masks and batches of learned MRI reconstruction."""

import dataclasses
import json
import zlib

import jax
import numpy as np
import pytest

from mri_reference import np_ifft2c
from fdl import data
from fdl.data import provenance as prov
from fdl.mri import io as mri_io
from fdl.mri import masks as mri_masks
from fdl.mri.simulate import simulate, simulate_to_fastmri

SHAPE = (24, 20)
CENTER_FRACTION = 0.2  # 4 centre columns of 20
SIM = dict(slices_per_volume=2, shape=SHAPE, num_coils=3, snr_db=30.0)


@pytest.fixture(scope="module")
def volumes():
  return data.load_volumes("simulated", seed=0, num_volumes=5,
                           center_fraction=CENTER_FRACTION, **SIM)


def make_pipeline(volumes, **kwargs):
  kwargs = {"val_volumes": 1, "test_volumes": 1, "mask_type": "random",
            "acceleration": 4, "center_fraction": CENTER_FRACTION, "batch_size": 2,
            "seed": 0, "maps": "true", **kwargs}
  return data.ReconPipeline(volumes, **kwargs)


def centre_rss_max(kspace, num_cols_kept):
  """Max RSS of k-space with only the central `num_cols_kept` columns (float64)."""
  w = kspace.shape[-1]
  start = (w - num_cols_kept + 1) // 2
  centre = np.zeros(kspace.shape, np.complex128)
  centre[..., start:start + num_cols_kept] = kspace[..., start:start + num_cols_kept]
  return np.sqrt(np.sum(np.abs(np_ifft2c(centre)) ** 2, axis=1)).max()


# --- volumes and normalization --------------------------------------------------------


def test_simulated_volumes_are_the_documented_simulations_scaled_by_centre_lines(volumes):
  assert [v.name for v in volumes] == [f"simulated_{i:04d}" for i in range(5)]
  for i, v in enumerate(volumes):
    raw = simulate(jax.random.fold_in(jax.random.PRNGKey(0), i), num_slices=2,
                   shape=SHAPE, num_coils=3, snr_db=30.0)
    assert v.kspace.dtype == np.complex64 and v.kspace.shape == (2, 3, *SHAPE)
    assert v.target.dtype == np.float32 and v.target.shape == (2, *SHAPE)
    scale = 1.0 / centre_rss_max(raw["kspace"], 4)
    assert v.scale == pytest.approx(scale, rel=1e-6)
    assert centre_rss_max(v.kspace, 4) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(v.kspace, raw["kspace"] * scale, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(v.target, raw["target"] * scale, rtol=1e-6)
    np.testing.assert_array_equal(v.maps, raw["maps"])
    assert v.source["normalization"]["center_columns"] == [8, 12]
  # The scale comes from k-space, not from the target: the target's maximum
  # is not pinned to 1 (it differs per volume).
  assert len({round(v.data_range, 4) for v in volumes}) == 5


def test_fastmri_directory_matches_simulation_and_skips_a_corrupt_file(tmp_path, capsys):
  paths = simulate_to_fastmri(jax.random.PRNGKey(3), tmp_path, 3, num_slices=2,
                              shape=SHAPE, num_coils=3, snr_db=30.0)
  (tmp_path / "broken.h5").write_bytes(b"not an hdf5 file")
  (tmp_path / "notes.txt").write_text("ignored: not .h5")
  from_files = data.load_volumes(tmp_path, seed=0, center_fraction=CENTER_FRACTION)
  err = capsys.readouterr().err
  assert "warning" in err and "broken.h5" in err
  simulated = data.load_volumes("simulated", seed=3, num_volumes=3,
                                center_fraction=CENTER_FRACTION, **SIM)
  assert [v.name for v in from_files] == [f"simulated_{i:04d}" for i in range(3)]
  for f, s, path in zip(from_files, simulated, paths):
    assert f.maps is None
    assert f.scale == pytest.approx(s.scale, rel=1e-6)
    np.testing.assert_array_equal(f.kspace, s.kspace)
    # target = the file's reconstruction_rss, scaled like the k-space.
    np.testing.assert_allclose(f.target, mri_io.read_fastmri(path)["target"] * f.scale,
                               rtol=1e-6)
    assert f.source["file"]["path"] == str(path)
    # The data-crime record: a file cannot vouch for its k-space; a simulation can.
    assert f.source["kspace_origin"]["kind"] == "as stored in the file"
    assert f.source["kspace_origin"]["from_processed_images"] is None
    assert "SIMULATED" in str(f.source["kspace_origin"]["acquisition"])
    assert s.source["kspace_origin"] == {
        "kind": "simulated", "from_processed_images": False,
        "how": s.source["kspace_origin"]["how"]}
  capped = data.load_volumes(tmp_path, seed=0, num_volumes=1, slices_per_volume=1,
                             center_fraction=CENTER_FRACTION)
  assert len(capped) == 1 and capped[0].kspace.shape[0] == 1
  with pytest.raises(ValueError, match="maps='true'.*simulated_0000"):
    make_pipeline(from_files + [dataclasses.replace(simulated[0], name="extra")],
                  maps="true")
  # ESPIRiT on 8 centre columns (8 x 8 calibration, 3 x 3 kernels): close to
  # the true maps of the simulation the files were written from.
  p = make_pipeline(from_files, maps="estimate", center_fraction=0.4, acceleration=2,
                    kernel_size=3)
  assert p.provenance["maps"]["calib_size"] == 8
  by_name = {v.name: v for v in simulated}
  for batch, name in zip(p.val_batches(), p.split_names("val")):
    true = by_name[name].maps
    on_object = by_name[name].target > 0.2 * by_name[name].target.max()
    overlap = np.abs(np.sum(np.conj(batch["maps"]) * true, axis=1))
    assert np.median(overlap[on_object]) > 0.999  # measured 0.99993
  # 4 centre columns are too few: every map is zeroed, and the pipeline says so.
  capsys.readouterr()
  p = make_pipeline(from_files, maps="estimate", kernel_size=3)
  assert "all-zero coil maps for 4 of 4 slices" in capsys.readouterr().err


def test_file_without_target_uses_rss_of_full_kspace_cropped_to_recon_size(tmp_path):
  raw = simulate(jax.random.PRNGKey(5), num_slices=2, shape=SHAPE, num_coils=3)
  mri_io.write_fastmri(tmp_path / "vol.h5", raw["kspace"], encoding_size=(24, 20, 1),
                       recon_size=(12, 10, 1))
  (v,) = data.load_volumes(tmp_path, seed=0, center_fraction=CENTER_FRACTION)
  rss = np.sqrt(np.sum(np.abs(np_ifft2c(raw["kspace"].astype(np.complex128))) ** 2, 1))
  assert v.target.shape == (2, 12, 10)
  np.testing.assert_allclose(v.target, rss[:, 6:18, 5:15] * v.scale, rtol=1e-5)


@pytest.mark.parametrize("setup, error, match", [
    ("missing", FileNotFoundError, "no_such_dir"),
    ("empty", ValueError, "contains no .h5 files"),
    ("unreadable", ValueError, r"no readable(.|\n)*a\.h5(.|\n)*b\.h5"),
])
def test_bad_directories_raise_naming_the_path(tmp_path, setup, error, match):
  directory = tmp_path / "no_such_dir"
  if setup != "missing":
    directory.mkdir()
  if setup == "unreadable":
    (directory / "a.h5").write_bytes(b"")
    (directory / "b.h5").write_bytes(b"garbage")
  with pytest.raises(error, match=match) as info:
    data.load_volumes(directory, seed=0, center_fraction=CENTER_FRACTION)
  assert str(directory) in str(info.value)
  if setup == "unreadable":  # each file with the reason it failed
    assert str(info.value).count("not a readable HDF5 file") == 2


# --- splits ---------------------------------------------------------------------------


def test_splits_are_by_volume_disjoint_covering_and_seeded(volumes):
  seen = set()
  for seed in range(6):
    p = make_pipeline(volumes, seed=seed)
    names = {s: p.split_names(s) for s in ("train", "val", "test")}
    assert [len(names[s]) for s in ("train", "val", "test")] == [3, 1, 1]
    assert sorted(sum(names.values(), [])) == [v.name for v in volumes]
    assert p.provenance["volumes"] == names
    assert p.provenance["slices"] == {"train": 6, "val": 2, "test": 2}
    again = make_pipeline(volumes, seed=seed)
    assert all(again.split_names(s) == names[s] for s in names)
    seen.add(tuple(names["test"] + names["val"]))
  assert len(seen) > 1  # the seed moves volumes between splits


# --- training batches -----------------------------------------------------------------


def test_train_batches_hold_masked_kspace_of_the_shuffled_slices(volumes):
  p = make_pipeline(volumes, batch_size=2)
  train = {v.name: v for v in volumes if v.name in p.split_names("train")}
  ordered = [(name, s) for name in p.split_names("train") for s in range(2)]
  assert p.steps_per_epoch == 3 and p.mask_shape == (1, 1, 20)
  assert (p.num_coils, p.image_shape, p.target_shape) == (3, SHAPE, SHAPE)
  batches = list(p.train_batches(0))
  assert len(batches) == len(p.train_batches(0)) == 3
  order = p.train_order(0)
  assert sorted(order.tolist()) == [0, 1, 2, 3, 4, 5]
  for step, batch in enumerate(batches):
    assert batch["kspace"].dtype == np.complex64
    assert batch["kspace"].shape == (2, 3, *SHAPE)
    assert batch["mask"].dtype == np.float32 and batch["mask"].shape == (2, 1, 1, 20)
    assert batch["maps"].shape == (2, 3, *SHAPE) and batch["target"].shape == (2, *SHAPE)
    assert batch["data_range"].dtype == np.float32
    for row, slice_id in enumerate(order[2 * step:2 * step + 2]):
      name, s = ordered[slice_id]
      v, mask = train[name], batch["mask"][row]
      # The documented key of a training mask.
      key = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(
          jax.random.PRNGKey(0), 1), 0), int(slice_id))
      np.testing.assert_array_equal(
          mask[0, 0], mri_masks.random_mask(key, 20, 4, CENTER_FRACTION))
      sampled = np.broadcast_to(mask, v.kspace[s].shape) == 1
      assert np.all(batch["kspace"][row][~sampled] == 0)
      np.testing.assert_array_equal(batch["kspace"][row][sampled], v.kspace[s][sampled])
      np.testing.assert_array_equal(batch["target"][row], v.target[s])
      np.testing.assert_array_equal(batch["maps"][row], v.maps[s])
      assert batch["data_range"][row] == np.float32(v.target.max())


def test_train_masks_are_fresh_per_example_and_epoch_and_reproducible(volumes):
  # 2x: 6 of the 16 outer columns on average, so masks rarely repeat.
  p = make_pipeline(volumes, mask_type="random", acceleration=2)
  ids = np.arange(16)
  epoch0, epoch1 = p.train_masks(0, ids), p.train_masks(1, ids)
  assert len({m.tobytes() for m in epoch0}) > 8          # between examples
  assert np.mean(np.any(epoch0 != epoch1, axis=(1, 2, 3))) > 0.5  # between epochs
  same = make_pipeline(volumes, mask_type="random", acceleration=2)
  np.testing.assert_array_equal(same.train_masks(0, ids), epoch0)
  first = [b["mask"] for b in p.train_batches(3)]
  second = [b["mask"] for b in same.train_batches(3)]
  np.testing.assert_array_equal(first, second)
  assert len({p.train_order(e).tobytes() for e in range(5)}) > 1  # reshuffled


@pytest.mark.parametrize("mask_type", ["random", "equispaced", "poisson"])
def test_achieved_acceleration_is_close_to_requested(volumes, mask_type):
  p = make_pipeline(volumes, mask_type=mask_type, acceleration=4)
  masks = p.train_masks(0, np.arange(8 if mask_type == "poisson" else 200))
  shape = p.mask_shape
  assert masks.shape[1:] == shape
  points = np.prod(shape)
  sampled = masks.reshape(len(masks), -1).sum(axis=1)
  # Every mask samples the full centre columns 8..11.
  assert np.all(masks[..., 8:12] == 1)
  if mask_type == "random":   # independent columns: right on average
    assert points / sampled.mean() == pytest.approx(4, rel=0.1)
  elif mask_type == "equispaced":  # within two lines of W / 4 = 5
    assert np.all(np.abs(sampled - 5) <= 2)
  else:                       # bisected to 5 % per mask
    assert np.all(np.abs(points / sampled - 4) <= 0.05 * 4)
    assert len({m.tobytes() for m in masks}) == len(masks)


def test_acceleration_one_is_fully_sampled(volumes):
  p = make_pipeline(volumes, acceleration=1)
  batch = next(iter(p.train_batches(0)))
  assert np.all(batch["mask"] == 1)


def test_per_process_rows_concatenate_to_the_global_batch(volumes):
  whole = make_pipeline(volumes, batch_size=4, process_index=0, process_count=1)
  parts = [make_pipeline(volumes, batch_size=4, process_index=i, process_count=2)
           for i in range(2)]
  for b, b0, b1 in zip(whole.train_batches(2), *(q.train_batches(2) for q in parts)):
    assert b0["kspace"].shape[0] == 2
    for key in b:
      np.testing.assert_array_equal(b[key], np.concatenate([b0[key], b1[key]]))


# --- validation and test --------------------------------------------------------------


def test_val_masks_are_fixed_per_slice_and_padding_is_weighted(volumes):
  p = make_pipeline(volumes, val_volumes=2, batch_size=3, mask_type="equispaced")
  batches = list(p.val_batches())
  assert len(batches) == len(p.val_batches()) == 2
  np.testing.assert_array_equal(batches[0]["weight"], [1, 1, 1])
  np.testing.assert_array_equal(batches[1]["weight"], [1, 0, 0])
  # Padding rows copy the last real slice, so metrics on them stay finite.
  for key in ("kspace", "mask", "target", "data_range"):
    np.testing.assert_array_equal(batches[1][key][1], batches[1][key][0])
  slices = [(name, s) for name in p.split_names("val") for s in range(2)]
  masks = np.concatenate([b["mask"] for b in batches])[:4]
  for (name, s), mask in zip(slices, masks):
    key = jax.random.PRNGKey(zlib.crc32(f"{name}/{s}".encode()))
    np.testing.assert_array_equal(
        mask[0, 0], mri_masks.equispaced_mask(key, 20, 4, CENTER_FRACTION))
  again = [b["mask"] for b in p.val_batches()]
  other = make_pipeline(volumes, val_volumes=2, batch_size=3, mask_type="equispaced")
  np.testing.assert_array_equal([b["mask"] for b in batches], again)
  np.testing.assert_array_equal(again, [b["mask"] for b in other.val_batches()])


def test_test_split_is_sealed_after_one_opening(volumes):
  p = make_pipeline(volumes, mask_type="poisson", acceleration=3)
  (test_name,) = p.split_names("test")
  (volume,) = [v for v in volumes if v.name == test_name]
  opened = list(p.test_volumes())
  assert [t["name"] for t in opened] == [test_name]
  t = opened[0]
  assert t["mask"].shape == (2, 1, *SHAPE) and t["kspace"].shape == (2, 3, *SHAPE)
  np.testing.assert_array_equal(t["kspace"], volume.kspace * t["mask"])
  np.testing.assert_array_equal(t["target"], volume.target)
  np.testing.assert_array_equal(t["maps"], volume.maps)
  assert t["data_range"] == pytest.approx(float(volume.target.max()))
  key = jax.random.PRNGKey(zlib.crc32(f"{test_name}/1".encode()))
  np.testing.assert_array_equal(t["mask"][1, 0], mri_masks.poisson_mask(
      key, SHAPE, 3, calib=(24, 4)))
  with pytest.raises(RuntimeError, match="sealed"):
    p.test_volumes()


def test_provenance_is_json_and_hashes_the_split_kspace(volumes):
  p = make_pipeline(volumes)
  record = json.loads(json.dumps(p.provenance))
  by_name = {v.name: v for v in volumes}
  for split in ("train", "val", "test"):
    names = record["volumes"][split]
    assert record["kspace_sha256"][split] == prov.sha256_arrays(
        *[by_name[n].kspace for n in names])
  assert record["normalization"]["scale"] == pytest.approx(
      {v.name: v.scale for v in volumes})
  assert record["mask"]["type"] == "random" and record["maps"]["method"] == "true"


def test_provenance_audits_the_volumes_and_names_the_processed_ones(volumes):
  from fdl.tasks import reconstruction  # pylint: disable=g-import-not-at-top
  raw = make_pipeline(volumes)
  assert raw.provenance["audit"]["flagged"] == {} and raw.provenance["audit"]["flags"] == []
  assert reconstruction.audit_warnings(raw) == []
  # One volume with its outer 2 + 2 columns zeroed: k-space zero-padded from 16 to 20.
  kspace = volumes[2].kspace.copy()
  kspace[..., :2] = 0
  kspace[..., -2:] = 0
  padded = list(volumes)
  padded[2] = dataclasses.replace(volumes[2], kspace=kspace)
  pipeline = make_pipeline(padded)
  audit = json.loads(json.dumps(pipeline.provenance))["audit"]
  assert audit["flagged"] == {volumes[2].name: ["zero_padded"]}
  assert audit["zero_pad_factor"] == {volumes[2].name: pytest.approx(20 / 16)}
  (warning,) = reconstruction.audit_warnings(pipeline)
  assert "1 of 5 volumes" in warning and volumes[2].name in warning


# --- coil maps ------------------------------------------------------------------------


def test_estimated_maps_match_the_true_maps_on_the_object():
  # 13 centre columns of 32: a 13 x 13 calibration region, 5 x 5 kernels.
  vols = data.load_volumes("simulated", seed=1, num_volumes=3, slices_per_volume=2,
                           shape=(32, 32), num_coils=4, snr_db=40.0,
                           center_fraction=0.4)
  p = make_pipeline(vols, maps="estimate", center_fraction=0.4, acceleration=2,
                    calib_size=24, kernel_size=5)
  assert p.calib_size == 13
  batch = next(iter(p.val_batches()))
  (name,) = p.split_names("val")
  (volume,) = [v for v in vols if v.name == name]
  est, true = batch["maps"], volume.maps[:2]
  # ESPIRiT maps are unique up to one phase per pixel: compare |<S_est, S_true>|.
  overlap = np.abs(np.sum(np.conj(est) * true, axis=1))
  on_object = volume.target[:2] > 0.2 * volume.target.max()
  # Measured: median 0.99999, 10th percentile 0.99997.
  assert np.median(overlap[on_object]) > 0.999
  assert np.percentile(overlap[on_object], 10) > 0.99
  # Maps depend on the centre columns only, not on any mask.
  p_other = make_pipeline(vols, maps="estimate", center_fraction=0.4, calib_size=24,
                          kernel_size=5, mask_type="equispaced", acceleration=2)
  np.testing.assert_array_equal(next(iter(p_other.val_batches()))["maps"], est)


def test_espirit_calibration_window_stays_inside_the_centre_columns():
  # Odd W = 21 with 4 centre columns [9, 13): estimate_maps reads columns
  # [10 - c // 2, 10 - c // 2 + c), which for c = 4 starts at 8 (unsampled).
  assert data.mri_volumes.center_columns(21, 0.2) == slice(9, 13)
  assert data.mri_volumes.espirit_calib_size(24, 2, (24, 21), 0.2) == 3
  assert data.mri_volumes.espirit_calib_size(24, 2, (24, 20), 0.2) == 4


# --- bad arguments --------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, match", [
    ({"acceleration": 0.5}, "acceleration.*0.5"),
    ({"val_volumes": 4}, "val_volumes=4"),
    ({"val_volumes": 0}, "val_volumes"),
    ({"test_volumes": 0}, "test_volumes"),
    ({"mask_type": "spiral"}, "mask_type.*spiral"),
    ({"center_fraction": 1.0}, "center_fraction"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": 7}, "batch_size 7 exceeds the 6 training slices"),
    ({"maps": "guess"}, "maps"),
    ({"maps": "estimate", "kernel_size": 4}, "kernel_size=4"),
    ({"acceleration": 8}, "acceleration=8"),  # the 4 centre columns alone are 1/5
    ({"center_fraction": 0.1}, "normalized with centre columns"),
    ({"batch_size": 3, "process_index": 0, "process_count": 2},
     "global batch size 3 must be divisible by the process count 2"),
])
def test_bad_pipeline_arguments_raise_naming_them(volumes, kwargs, match):
  with pytest.raises(ValueError, match=match):
    make_pipeline(volumes, **kwargs)


def test_bad_load_arguments_raise_naming_them():
  with pytest.raises(ValueError, match="num_volumes"):
    data.load_volumes("simulated", seed=0, center_fraction=0.2, slices_per_volume=1)
  with pytest.raises(ValueError, match="center_fraction"):
    data.load_volumes("simulated", seed=0, num_volumes=1, slices_per_volume=1,
                      center_fraction=0.0)


def test_acquire_uses_the_given_masks_and_keeps_the_test_split_sealed(volumes):
  p = make_pipeline(volumes, batch_size=2)
  ids = p.train_order(0)[:2]
  masks = np.zeros((2, 1, 1, 20), np.float32)
  masks[0, ..., 3:9] = 1
  masks[1, ..., ::2] = 1
  batch = p.acquire("train", ids, masks)
  np.testing.assert_array_equal(batch["mask"], masks)
  train = {v.name: v for v in volumes}
  ordered = [(name, s) for name in p.split_names("train") for s in range(2)]
  for row, slice_id in enumerate(ids):
    name, s = ordered[slice_id]
    np.testing.assert_array_equal(batch["kspace"][row], train[name].kspace[s] * masks[row])
    np.testing.assert_array_equal(batch["target"][row], train[name].target[s])
  with pytest.raises(ValueError, match="test split is sealed"):
    p.acquire("test", ids, masks)
  with pytest.raises(ValueError, match=r"masks must be \[2, 1, 1, 20\]"):
    p.acquire("train", ids, masks[:, 0])
