"""Augmentation of multi-coil k-space, maps and target (fdl.data.recon_augment),
and its wiring into ReconPipeline's training batches (plus train_slices)."""

import jax
import numpy as np
import pytest

from mri_reference import crandn, np_fft2c, np_ifft2c
from fdl import data
from fdl.data import recon_augment as ra

COILS, H, W = 3, 13, 10  # odd and non-square


def rss(coil_images):
  return np.sqrt(np.sum(np.abs(coil_images) ** 2, axis=0))


@pytest.fixture(scope="module")
def slice_data():
  """Noiseless data whose target is the RSS of its coil images, as simulated."""
  rng = np.random.default_rng(0)
  coil_images = crandn(rng, COILS, H, W)
  maps = crandn(rng, COILS, H, W).astype(np.complex64)
  kspace = np_fft2c(coil_images).astype(np.complex64)
  return kspace, maps, rss(coil_images).astype(np.float32)


def test_flips_are_exact_index_reversals(slice_data):
  kspace, maps, target = slice_data
  for transform, axis in ((ra.Transform(True, False, 0.0, 1.0), -1),
                          (ra.Transform(False, True, 0.0, 1.0), -2)):
    new_k, new_maps, new_target = ra.augment_slice(kspace, maps, target, transform)
    reference = np.flip(np_ifft2c(kspace.astype(np.complex128)), axis=axis)
    np.testing.assert_allclose(np_ifft2c(new_k), reference, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(new_maps, np.flip(maps, axis=axis))
    np.testing.assert_array_equal(new_target, np.flip(target, axis=axis))
    # The target of noiseless data stays the RSS of the augmented coil images.
    np.testing.assert_allclose(new_target, rss(np_ifft2c(new_k)), atol=1e-5)
    assert (new_k.dtype, new_maps.dtype, new_target.dtype) == (
        np.complex64, np.complex64, np.float32)


def test_kspace_maps_and_target_move_together(slice_data):
  kspace, maps, target = slice_data
  transform = ra.Transform(True, True, 17.0, 1.12)
  coil_images = np_ifft2c(kspace.astype(np.complex128))
  moved = ra.transform_images(coil_images, transform)
  new_k, new_maps, new_target = ra.augment_slice(kspace, maps, target, transform)
  # ifft of the augmented k-space is the augmented coil images.
  np.testing.assert_allclose(np_ifft2c(new_k), moved, atol=1e-5)
  # Maps get the very same resampling (complex = real and imaginary parts).
  np.testing.assert_allclose(new_maps, ra.transform_images(maps, transform), atol=0)
  np.testing.assert_allclose(
      new_maps.real, ra.transform_images(maps.real, transform), atol=1e-6)
  # "transform": the target moved by T; "rss": recomputed from the new data.
  np.testing.assert_allclose(new_target, ra.transform_images(target, transform),
                             atol=1e-6)
  _, _, rss_target = ra.augment_slice(kspace, maps, target, transform,
                                      target_rule="rss")
  np.testing.assert_allclose(rss_target, rss(np_ifft2c(new_k)), rtol=1e-5, atol=1e-6)
  assert new_k.shape == kspace.shape and new_target.shape == target.shape


def test_rotation_direction_and_zero_fill():
  image = np.random.default_rng(1).standard_normal((7, 7)).astype(np.float32)
  np.testing.assert_allclose(ra.transform_images(image, ra.Transform(False, False, 90.0, 1.0)),
                             np.rot90(image), atol=1e-5)
  shrunk = ra.transform_images(np.ones((9, 9), np.float32),
                               ra.Transform(False, False, 0.0, 0.5))
  assert shrunk[0, 0] == 0 and shrunk[4, 4] == 1  # zooming out uncovers zeros


def test_identity_returns_the_input(slice_data):
  kspace, maps, target = slice_data
  out = ra.augment_slice(kspace, maps, target, ra.IDENTITY)
  assert out[0] is kspace and out[1] is maps and out[2] is target
  # Through the FFTs and back: flipping twice is the identity within 1e-6.
  flip = ra.Transform(True, True, 0.0, 1.0)
  twice = ra.augment_slice(*ra.augment_slice(kspace, maps, target, flip), flip)
  scale = np.abs(kspace).max()
  assert np.abs(twice[0] - kspace).max() <= 1e-6 * scale
  np.testing.assert_array_equal(twice[1], maps)
  np.testing.assert_array_equal(twice[2], target)


def test_cropped_target_follows_the_crop_convention():
  # fastMRI-like: the target is the centre [h, w] crop of the RSS image.
  rng = np.random.default_rng(2)
  coil_images = crandn(rng, 2, 12, 10)
  full = rss(coil_images).astype(np.float32)
  target = full[2:10, 1:9]  # fdl.mri.metrics.center_crop offsets for (8, 8)
  new_k, _, new_target = ra.augment_slice(np_fft2c(coil_images).astype(np.complex64),
                                          None, target, ra.Transform(True, True, 0.0, 1.0))
  np.testing.assert_array_equal(new_target, full[::-1, ::-1][2:10, 1:9])
  np.testing.assert_allclose(new_target, rss(np_ifft2c(new_k))[2:10, 1:9], atol=1e-5)


def test_draws_are_deterministic_per_key_and_in_range():
  config = ra.ReconAugment(hflip=0.5, vflip=0.5, max_degrees=10.0, scale_range=0.1)
  keys = [jax.random.PRNGKey(i) for i in range(40)]
  draws = [ra.draw_transform(np.asarray(k), config) for k in keys]
  assert draws == [ra.draw_transform(np.asarray(k), config) for k in keys]
  assert len(set(draws)) == 40
  assert all(abs(d.degrees) <= 10 and 0.9 <= d.scale <= 1.1 for d in draws)
  assert 5 < sum(d.hflip for d in draws) < 35  # p = 1/2
  # Switching the rotation off leaves the flips drawn from the same key alone.
  no_rotation = ra.ReconAugment(hflip=0.5, vflip=0.5)
  assert [ra.draw_transform(np.asarray(k), no_rotation)[:2] for k in keys] == [
      d[:2] for d in draws]


def test_bad_settings_raise():
  with pytest.raises(ValueError, match="hflip must be a probability"):
    ra.ReconAugment(hflip=1.5)
  with pytest.raises(ValueError, match="scale_range must be in"):
    ra.ReconAugment(scale_range=1.0)
  with pytest.raises(ValueError, match="unknown augmentation settings \\['flip'\\]"):
    ra.ReconAugment.from_dict({"flip": True})
  assert ra.ReconAugment.from_dict({"enabled": False, "hflip": 1.0}) is None
  with pytest.raises(ValueError, match="target_rule must be one of"):
    ra.augment_slice(np.zeros((1, 4, 4), np.complex64), None, np.zeros((4, 4)),
                     ra.IDENTITY, target_rule="noisy")


# --- the pipeline -----------------------------------------------------------------

PIPELINE = dict(val_volumes=1, test_volumes=1, mask_type="equispaced", acceleration=2.0,
                center_fraction=0.2, batch_size=2, seed=0, maps="true")
AUGMENT = dict(hflip=0.5, vflip=0.5, max_degrees=10.0, scale_range=0.1)


@pytest.fixture(scope="module")
def volumes():
  return data.load_volumes("simulated", seed=0, num_volumes=4, slices_per_volume=2,
                           shape=(12, 11), num_coils=2, center_fraction=0.2)


def first_batch(batches):
  return next(iter(batches))


def test_pipeline_augments_training_batches_only(volumes):
  plain = data.ReconPipeline(volumes, **PIPELINE)
  augmented = data.ReconPipeline(volumes, **PIPELINE, augment=AUGMENT)
  again = data.ReconPipeline(volumes, **PIPELINE, augment=ra.ReconAugment(**AUGMENT))
  batch, plain_batch = first_batch(augmented.train_batches(1)), first_batch(
      plain.train_batches(1))
  for key in batch:  # deterministic per seed, epoch and slice
    np.testing.assert_array_equal(batch[key], first_batch(again.train_batches(1))[key])
  np.testing.assert_array_equal(batch["mask"], plain_batch["mask"])
  assert not np.allclose(batch["kspace"], plain_batch["kspace"])
  assert not np.allclose(batch["kspace"],
                         first_batch(augmented.train_batches(2))["kspace"])
  # Row i: the slice's fully sampled data moved by its own draw, then masked.
  ids = augmented.train_order(1)[:2]
  keys = augmented.augment_keys(1, ids)
  table = augmented._slices["train"]  # pylint: disable=protected-access
  for row, (i, key) in enumerate(zip(ids, keys)):
    volume = augmented._splits["train"][table[0][i]]  # pylint: disable=protected-access
    s = table[1][i]
    k, maps, target = ra.augment_slice(volume.kspace[s], volume.maps[s],
                                       volume.target[s],
                                       ra.draw_transform(key, augmented.augment))
    np.testing.assert_array_equal(batch["kspace"][row], k * batch["mask"][row])
    np.testing.assert_array_equal(batch["maps"][row], maps)
    np.testing.assert_array_equal(batch["target"][row], target)
  for a, b in zip(augmented.val_batches(), plain.val_batches()):
    for key in a:
      np.testing.assert_array_equal(a[key], b[key])
  assert "augment" in augmented.provenance and "augment" not in plain.provenance


def test_identity_augmentation_and_default_are_bit_identical(volumes):
  plain = data.ReconPipeline(volumes, **PIPELINE)
  identity = data.ReconPipeline(volumes, **PIPELINE, augment=dict(hflip=0.0))
  a, b = first_batch(plain.train_batches(0)), first_batch(identity.train_batches(0))
  for key in a:
    np.testing.assert_array_equal(a[key], b[key])


def test_train_slices_keeps_the_first_slices(volumes):
  full = data.ReconPipeline(volumes, **PIPELINE)
  scarce = data.ReconPipeline(volumes, **PIPELINE, train_slices=3)
  assert scarce.steps_per_epoch == 1 and full.steps_per_epoch == 2
  assert scarce.provenance["slices"] == {"test": 2, "val": 2, "train": 3}
  assert scarce.split_names("test") == full.split_names("test")
  assert scarce.split_names("val") == full.split_names("val")
  assert set(scarce.train_order(0)[:2]) <= {0, 1, 2}
  with pytest.raises(ValueError, match="train_slices must be None or an int in \\[1, 4\\]"):
    data.ReconPipeline(volumes, **PIPELINE, train_slices=5)
