"""Augmentations against hand-computed results and a float64 bilinear reference."""

import math

import numpy as np
import pytest

from fdl.data import augment as aug


def _image(h=6, w=6, c=3, seed=0):
  return np.random.default_rng(seed).uniform(-2, 2, (h, w, c)).astype(np.float32)


def test_flip_is_column_reversal():
  x = _image(5, 7)
  np.testing.assert_array_equal(aug.horizontal_flip(x), x[:, ::-1])
  assert aug.horizontal_flip(x)[0, 0, 0] == x[0, 6, 0]


def test_random_flip_flips_about_half_the_time_and_is_seeded():
  x = _image()
  rng = np.random.default_rng(3)
  flipped = [np.array_equal(aug.random_flip(x, rng), x[:, ::-1]) for _ in range(400)]
  assert 160 < sum(flipped) < 240
  again = np.random.default_rng(3)
  assert flipped == [np.array_equal(aug.random_flip(x, again), x[:, ::-1])
                     for _ in range(400)]


@pytest.mark.parametrize("padding", [1, 2, 4])
def test_padded_crop_matches_numpy_pad_at_every_offset(padding):
  x = _image(5, 6, 2)
  padded = np.pad(x, ((padding, padding), (padding, padding), (0, 0)))
  for top in range(2 * padding + 1):
    for left in range(2 * padding + 1):
      np.testing.assert_array_equal(aug.crop_padded(x, padding, top, left),
                                    padded[top:top + 5, left:left + 6])
  np.testing.assert_array_equal(aug.crop_padded(x, padding, padding, padding), x)


def test_padded_crop_shift_by_hand():
  x = np.arange(1, 10, dtype=np.uint8).reshape(3, 3, 1)
  # Origin (0, 0) of the 1-padded image: the image moves one pixel down-right.
  assert aug.crop_padded(x, 1, 0, 0)[..., 0].tolist() == [[0, 0, 0], [0, 1, 2],
                                                          [0, 4, 5]]
  assert aug.crop_padded(x, 1, 2, 1)[..., 0].tolist() == [[4, 5, 6], [7, 8, 9],
                                                          [0, 0, 0]]
  assert aug.crop_padded(x, 1, 0, 0).dtype == np.uint8
  with pytest.raises(ValueError, match=r"top and left must be in \[0, 2\]"):
    aug.crop_padded(x, 1, 3, 0)


def test_random_crop_uses_the_drawn_offsets_and_covers_them_all():
  x = _image(4, 4, 1)
  padded = np.pad(x, ((2, 2), (2, 2), (0, 0)))
  rng = np.random.default_rng(7)
  seen = set()
  for _ in range(300):
    out = aug.random_crop(x, rng, 2)
    matches = [(t, l) for t in range(5) for l in range(5)
               if np.array_equal(out, padded[t:t + 4, l:l + 4])]
    assert len(matches) == 1
    seen.add(matches[0])
  assert len(seen) == 25


def test_rotation_zero_scale_one_is_exact_identity():
  x = _image(7, 5)
  out = aug.affine_resample(x, 0.0, 1.0)
  assert out.dtype == np.float32
  np.testing.assert_array_equal(out, x)
  u8 = np.arange(60, dtype=np.uint8).reshape(4, 5, 3)
  np.testing.assert_array_equal(aug.affine_resample(u8, 0.0, 1.0), u8)


@pytest.mark.parametrize("size", [6, 7])
def test_quarter_turns_equal_rot90(size):
  x = _image(size, size)
  np.testing.assert_allclose(aug.affine_resample(x, 90.0, 1.0), np.rot90(x),
                             atol=1e-5)
  np.testing.assert_allclose(aug.affine_resample(x, -90.0, 1.0),
                             np.rot90(x, k=-1), atol=1e-5)
  np.testing.assert_allclose(aug.affine_resample(x, 180.0, 1.0), x[::-1, ::-1],
                             atol=1e-5)


def test_half_turn_of_non_square_image():
  x = _image(5, 8)
  np.testing.assert_allclose(aug.affine_resample(x, 180.0, 1.0), x[::-1, ::-1],
                             atol=1e-5)


def _bilinear_reference(x, degrees, scale):
  """Pixel-by-pixel float64 bilinear sampling, zeros outside."""
  h, w, c = x.shape
  t = math.radians(degrees)
  out = np.zeros((h, w, c))
  ci, cj = (h - 1) / 2, (w - 1) / 2
  for i in range(h):
    for j in range(w):
      u, v = i - ci, j - cj
      r = ci + (math.cos(t) * u + math.sin(t) * v) / scale
      q = cj + (-math.sin(t) * u + math.cos(t) * v) / scale
      r0, q0 = math.floor(r), math.floor(q)
      for rr, wr in ((r0, 1 - (r - r0)), (r0 + 1, r - r0)):
        for qq, wq in ((q0, 1 - (q - q0)), (q0 + 1, q - q0)):
          if 0 <= rr < h and 0 <= qq < w:
            out[i, j] += wr * wq * x[rr, qq]
  return out


@pytest.mark.parametrize("degrees, scale", [(17.0, 1.0), (-8.5, 0.9), (30.0, 1.15),
                                            (0.0, 1.1)])
def test_affine_matches_float64_reference(degrees, scale):
  x = _image(9, 7, 2, seed=1)
  np.testing.assert_allclose(aug.affine_resample(x, degrees, scale),
                             _bilinear_reference(x.astype(np.float64), degrees, scale),
                             rtol=1e-5, atol=1e-5)


def test_zoom_about_the_centre_keeps_the_centre_pixel():
  x = _image(7, 7)
  out = aug.affine_resample(x, 0.0, 2.0)
  np.testing.assert_allclose(out[3, 3], x[3, 3], rtol=1e-6)
  # Zooming in by 2 samples at half-pixel steps: pixel (3, 4) is halfway
  # between source pixels (3, 3) and (3, 4).
  np.testing.assert_allclose(out[3, 4], (x[3, 3] + x[3, 4]) / 2, rtol=1e-6)


def test_cutout_zeroes_exactly_the_square():
  x = np.ones((8, 8, 3), np.float32)
  out = aug.cutout(x, 2, 3, 4)
  expected = np.ones_like(x)
  expected[2:6, 3:7] = 0
  np.testing.assert_array_equal(out, expected)
  assert (out == 0).sum() == 4 * 4 * 3
  np.testing.assert_array_equal(x, 1)  # the input is not modified


@pytest.mark.parametrize("top, left, rows, cols", [
    (-2, -1, (0, 2), (0, 3)),  # top-left corner: 2 x 3 inside
    (6, 5, (6, 8), (5, 8)),    # bottom-right: 2 x 3 inside
    (-4, 2, (0, 0), (2, 6)),   # entirely above: nothing
])
def test_cutout_is_clipped_at_the_borders(top, left, rows, cols):
  x = np.ones((8, 8, 1))
  out = aug.cutout(x, top, left, 4, fill=-3.0)
  expected = np.ones_like(x)
  expected[rows[0]:rows[1], cols[0]:cols[1]] = -3.0
  np.testing.assert_array_equal(out, expected)


def test_random_cutout_square_is_one_clipped_block():
  x = np.ones((10, 10, 1))
  rng = np.random.default_rng(0)
  sizes = set()
  for _ in range(200):
    zero = aug.random_cutout(x, rng, 4)[..., 0] == 0
    r, c = np.nonzero(zero)
    assert zero[r.min():r.max() + 1, c.min():c.max() + 1].all()
    assert r.max() - r.min() < 4 and c.max() - c.min() < 4
    sizes.add(int(zero.sum()))
  assert 16 in sizes and min(sizes) < 16  # whole squares and clipped ones


def test_augment_image_off_is_identity_and_on_is_seeded():
  x = _image(8, 8)
  assert aug.augment_image(x, np.random.default_rng(0), aug.AugmentConfig.off()) is x
  config = aug.AugmentConfig(crop_padding=2, flip=True, rotation_degrees=15,
                             scale_range=0.1, cutout_size=3)
  a = aug.augment_image(x, np.random.default_rng(5), config)
  b = aug.augment_image(x, np.random.default_rng(5), config)
  c = aug.augment_image(x, np.random.default_rng(6), config)
  np.testing.assert_array_equal(a, b)
  assert a.shape == x.shape and a.dtype == np.float32
  assert not np.array_equal(a, c)


def test_augment_image_applies_crop_then_flip_with_the_same_draws():
  x = _image(6, 6)
  config = aug.AugmentConfig(crop_padding=2, flip=True)
  out = aug.augment_image(x, np.random.default_rng(11), config)
  rng = np.random.default_rng(11)
  expected = aug.random_flip(aug.random_crop(x, rng, 2), rng)
  np.testing.assert_array_equal(out, expected)


def test_config_validation_and_presets():
  assert not aug.AugmentConfig.off().enabled
  assert aug.AugmentConfig.cifar() == aug.AugmentConfig(crop_padding=4, flip=True)
  assert aug.AugmentConfig.from_dict({"cutout_size": 8}).cutout_size == 8
  assert aug.as_augment_config(None) == aug.AugmentConfig()
  with pytest.raises(ValueError, match=r"unknown augmentation settings \['rotate'\]"):
    aug.AugmentConfig.from_dict({"rotate": 3})
  for bad, match in [({"crop_padding": -1}, "crop_padding must be an integer >= 0"),
                     ({"rotation_degrees": 200}, r"rotation_degrees must be in \[0, 180\]"),
                     ({"scale_range": 1.0}, r"scale_range must be in \[0, 1\)"),
                     ({"cutout_size": 2.5}, "cutout_size must be an integer"),
                     ({"flip": "yes"}, "flip must be a bool")]:
    with pytest.raises(ValueError, match=match):
      aug.AugmentConfig(**bad)
