"""Tests of fdl.evaluate.segmentation: Dice, HD95, volumes and lesion detection against
hand-computed cases.

Every expected number below is derived by hand in the comment next to it; a brute-force
float64 reference (all pairwise surface distances) checks HD95 on random shapes too.
"""

import math
import re

import numpy as np
import pytest
from scipy import ndimage

from fdl.evaluate import segmentation as seg


def square(shape, top, left, side):
  mask = np.zeros(shape, bool)
  mask[top:top + side, left:left + side] = True
  return mask


def disc(shape, radius):
  yy, xx = np.indices(shape)
  cy, cx = (shape[0] - 1) / 2, (shape[1] - 1) / 2
  return (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2


def brute_force_hd(pred, target, spacing, percentile=95.0):
  """Surfaces by explicit face-neighbour tests, distances by all pairs, float64."""

  def surface_points(mask):
    padded = np.pad(mask, 1)
    interior = np.ones_like(mask)
    for axis in range(mask.ndim):
      for step in (-1, 1):
        neighbour = np.roll(padded, step, axis=axis)[(slice(1, -1),) * mask.ndim]
        interior &= neighbour
    return np.argwhere(mask & ~interior) * np.asarray(spacing, np.float64)

  a, b = surface_points(pred), surface_points(target)
  pairwise = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
  return np.percentile(np.concatenate([pairwise.min(1), pairwise.min(0)]), percentile)


# --------------------------------------------------------------------------- Dice


def test_dice_of_squares_offset_by_k_rows():
  # Two 6x6 squares, the second 2 rows lower: overlap 4 x 6 = 24, Dice 2*24/72 = 2/3.
  a, b = square((12, 12), 2, 3, 6), square((12, 12), 4, 3, 6)
  scores = seg.dice(a.astype(int), b.astype(int))
  assert scores == {0: pytest.approx(2 * (144 - 48) / (108 + 108)), 1: pytest.approx(2 / 3)}
  assert seg.mean_foreground_dice(a.astype(int), b.astype(int)) == pytest.approx(2 / 3)


def test_dice_single_pixel_difference():
  target = square((9, 9), 2, 2, 5).astype(int)
  pred = target.copy()
  pred[4, 7] = 1  # one extra pixel: 2 * 25 / (26 + 25)
  assert seg.dice(pred, target, labels=[1]) == {1: pytest.approx(50 / 51)}


def test_dice_with_a_missing_class_is_nan_and_left_out_of_the_mean():
  target = np.array([[0, 1, 1], [2, 2, 0]])
  pred = np.array([[0, 1, 0], [2, 2, 2]])
  scores = seg.dice(pred, target, labels=[0, 1, 2, 3])
  # 0: pred {00, 02}, target {00, 12}: 2*1/4. 1: 2*1/(1+2). 2: 2*2/(3+2). 3: absent from both.
  assert scores[0] == pytest.approx(1 / 2) and scores[1] == pytest.approx(2 / 3)
  assert scores[2] == pytest.approx(4 / 5) and math.isnan(scores[3])
  assert list(scores) == [0, 1, 2, 3]
  expected = (2 / 3 + 4 / 5) / 2
  assert seg.mean_foreground_dice(pred, target, [0, 1, 2, 3]) == pytest.approx(expected)
  assert seg.mean_foreground_dice(pred, target, [0, 1, 2, 3], background=None) == \
      pytest.approx((1 / 2 + 2 / 3 + 4 / 5) / 3)
  # A class in only one map scores 0; no foreground at all gives NaN.
  assert seg.dice(np.zeros((2, 2), int), np.eye(2, dtype=int), [1]) == {1: 0.0}
  assert math.isnan(seg.mean_foreground_dice(np.zeros((3, 3), int), np.zeros((3, 3), int)))


# --------------------------------------------------------------------------- HD95


@pytest.mark.parametrize('axis, k, spacing, expected', [
    (0, 2, (2.0, 0.5), 4.0),  # k rows of 2 mm
    (1, 3, (2.0, 0.5), 1.5),  # k columns of 0.5 mm
    (0, 1, (0.7, 1.3), 0.7),
])
def test_hd95_of_squares_offset_by_k_is_k_spacings(axis, k, spacing, expected):
  # Shift along `axis` by k < side. The s pixels of A's leading edge are exactly
  # k * spacing[axis] from B's leading edge and nothing of B's surface is closer (any
  # other point of B's surface is at least k steps away along `axis`); likewise for B's
  # trailing edge. Every other surface pixel is at most that far from the other surface.
  # So the top 2s of the 2 (4s - 4) pooled distances equal the maximum, far more than 5 %.
  side = 6
  a = square((14, 14), 3, 3, side)
  b = np.roll(a, k, axis=axis)
  assert seg.hausdorff95(a, b, spacing) == pytest.approx(expected, abs=1e-12)
  assert seg.hausdorff95(b, a, spacing) == pytest.approx(expected, abs=1e-12)
  assert seg.hausdorff95(a, b, spacing, percentile=100) == pytest.approx(expected, abs=1e-12)
  assert seg.dice(a.astype(int), b.astype(int), [1])[1] == pytest.approx((side - k) / side)


def test_hd95_of_cubes_offset_along_the_slice_axis():
  # The same argument in 3-D: a face of s^2 voxels at k * 3 mm, out of 2 (s^3 - (s-2)^3).
  a = np.zeros((12, 10, 10), bool)
  a[2:7, 2:7, 2:7] = True
  b = np.roll(a, 2, axis=0)
  assert seg.hausdorff95(a, b, (3.0, 1.0, 0.5)) == pytest.approx(6.0, abs=1e-12)


def test_hd95_single_pixel_difference_by_hand():
  # Target: a 5x5 square. Prediction: plus the pixel (4, 7) right of its right edge.
  # Each surface has 16 pixels ((4, 6) is interior in the prediction, (4, 7) is new).
  # Non-zero distances: (4, 7) -> (4, 6) is dx; (4, 6) -> nearest prediction surface is
  # (4, 7) at dx or (3, 6), (5, 6) at dy. Pooled: 30 zeros and two values d.
  # np.percentile(., 95) sits at index 0.95 * 31 = 29.45: 0.45 * d.
  target = square((9, 9), 2, 2, 5)
  pred = target.copy()
  pred[4, 7] = True
  assert seg.hausdorff95(pred, target, (1.0, 1.0)) == pytest.approx(0.45)
  assert seg.hausdorff95(pred, target, (1.0, 1.0), percentile=100) == pytest.approx(1.0)
  # dy = 2, dx = 0.5: d = min(dx, dy) = 0.5 for both.
  assert seg.hausdorff95(pred, target, (2.0, 0.5)) == pytest.approx(0.45 * 0.5)


def test_hd95_of_a_disc_and_a_bigger_disc_is_about_the_radius_difference():
  # Concentric discs of radius 8 and 12 pixels at 0.5 mm: every surface point of one is
  # about 4 pixels (2 mm) from the other's surface, up to the pixel grid (< 1 pixel).
  small, big = disc((41, 41), 8), disc((41, 41), 12)
  hd = seg.hausdorff95(small, big, (0.5, 0.5))
  assert abs(hd - 2.0) < 0.5
  np.testing.assert_allclose(hd, brute_force_hd(small, big, (0.5, 0.5)), rtol=1e-12)
  # Anisotropic spacing doubles the distances along rows only: HD95 is then set by the
  # rows, about 4 pixels * 1 mm.
  assert abs(seg.hausdorff95(small, big, (1.0, 0.5)) - 4.0) < 1.0


@pytest.mark.parametrize('shape, spacing', [((17, 13), (1.5, 0.7)),
                                            ((7, 9, 8), (3.0, 0.9, 1.1))])
def test_hd_matches_brute_force_reference_on_random_blobs(shape, spacing):
  rng = np.random.default_rng(0)
  for trial in range(3):
    # Smoothed noise thresholded at 0: blobs with holes and several components.
    a = ndimage.gaussian_filter(rng.normal(size=shape), 1.0) > 0
    b = ndimage.gaussian_filter(rng.normal(size=shape), 1.0) > 0
    assert a.any() and b.any()
    for q in (95.0, 50.0, 100.0):
      np.testing.assert_allclose(seg.hausdorff95(a, b, spacing, percentile=q),
                                 brute_force_hd(a, b, spacing, q), rtol=1e-12, atol=1e-12,
                                 err_msg=f'trial {trial}, percentile {q}')


def test_surface_counts_the_array_edge_as_outside():
  full = np.ones((4, 5), bool)
  # Only the 2 x 3 centre has every face neighbour inside.
  assert int(seg.surface(full).sum()) == 20 - 6
  assert seg.hausdorff95(full, full, (1.0, 1.0)) == 0.0


def test_hd95_of_empty_masks():
  empty, some = np.zeros((5, 5), bool), square((5, 5), 1, 1, 2)
  assert math.isnan(seg.hausdorff95(empty, empty, (1.0, 1.0)))
  assert seg.hausdorff95(empty, some, (1.0, 1.0)) == math.inf
  assert seg.hausdorff95(some, empty, (1.0, 1.0)) == math.inf


# --------------------------------------------------------------------------- volumes


def test_volume_difference_by_hand():
  target = square((9, 9), 2, 2, 5)
  pred = target.copy()
  pred[4, 7] = True
  # One extra pixel of 2 x 0.5 mm: +1 mm^2, relative 1/25.
  assert seg.volume_difference(pred, target, (2.0, 0.5)) == pytest.approx((1.0, 0.04))
  vol = seg.volume_difference(target, pred, (2.0, 0.5))
  assert (vol.absolute_mm3, vol.relative) == pytest.approx((-1.0, -1 / 26))
  # 3-D: 8 voxels of 3 x 1 x 0.5 mm against 27: (8 - 27) * 1.5 mm^3.
  a, b = np.zeros((4, 4, 4), bool), np.zeros((4, 4, 4), bool)
  a[:2, :2, :2], b[:3, :3, :3] = True, True
  assert seg.volume_difference(a, b, (3.0, 1.0, 0.5)) == pytest.approx((-28.5, 8 / 27 - 1))


def test_volume_difference_of_empty_masks():
  empty, some = np.zeros((3, 3), bool), np.eye(3, dtype=bool)
  absolute, relative = seg.volume_difference(empty, empty, (1.0, 1.0))
  assert absolute == 0.0 and math.isnan(relative)
  assert seg.volume_difference(some, empty, (1.0, 2.0)) == (6.0, math.inf)
  assert seg.volume_difference(empty, some, (1.0, 2.0)) == (-6.0, -1.0)


# --------------------------------------------------------------------------- scores


def test_score_segmentation_of_a_volume_by_hand():
  target = np.zeros((4, 8, 8), int)
  target[1:3, 2:6, 2:6] = 1  # 32 voxels
  target[1:3, 0, 0:2] = 2  # 4 voxels
  pred = target.copy()
  pred[1:3, 2:6, 5] = 0  # class 1 loses a 2 x 4 column slab: 24 voxels left
  pred[0, 7, 7] = 2  # class 2 gains a far-away voxel
  scores = seg.score_segmentation(pred, target, (3.0, 1.0, 1.0),
                                  {0: 'background', 1: 'organ', 2: 'lesion', 3: 'cyst'})
  organ, lesion, cyst = (scores['per_class'][n] for n in ('organ', 'lesion', 'cyst'))
  assert list(scores['per_class']) == ['background', 'organ', 'lesion', 'cyst']
  assert organ['dice'] == pytest.approx(2 * 24 / (24 + 32))
  assert lesion['dice'] == pytest.approx(2 * 4 / (5 + 4))
  assert math.isnan(cyst['dice']) and math.isnan(cyst['hd95_mm'])
  assert scores['mean_dice'] == pytest.approx((48 / 56 + 8 / 9) / 2)
  # Organ: the target box is 2 voxels deep, so all its voxels are surface, and the
  # prediction (the box minus its W = 5 slab) lies on it: 24 zeros from the prediction;
  # from the target 24 zeros and the 8 slab voxels at 1 mm. Sorted 48 zeros, 8 ones:
  # index 0.95 * 55 = 52.25 falls among the ones.
  assert organ['hd95_mm'] == pytest.approx(1.0)
  # Lesion: the extra voxel (0, 7, 7) is sqrt(3^2 + 7^2 + 6^2) mm from (1, 0, 1); the
  # other 8 pooled distances are 0: index 0.95 * 8 = 7.6 gives 0.6 * sqrt(94).
  assert lesion['hd95_mm'] == pytest.approx(0.6 * math.sqrt(94))
  assert (organ['volume_pred_mm3'], organ['volume_target_mm3']) == (72.0, 96.0)
  assert (organ['volume_diff_mm3'], organ['volume_diff_rel']) == (-24.0, -0.25)
  assert (lesion['volume_diff_mm3'], lesion['volume_diff_rel']) == (3.0, 0.25)
  assert cyst['volume_diff_mm3'] == 0.0 and math.isnan(cyst['volume_diff_rel'])
  assert scores['mean_hd95_mm'] == pytest.approx((organ['hd95_mm'] + lesion['hd95_mm']) / 2)
  assert scores['voxel_sizes'] == (3.0, 1.0, 1.0) and scores['background'] == 0


def test_score_segmentation_accepts_a_list_of_names_and_a_2d_slice():
  target = square((8, 8), 1, 1, 4).astype(int)
  scores = seg.score_segmentation(target, target, (0.5, 0.5), ['bg', 'fg'])
  assert scores['mean_dice'] == 1.0 and scores['per_class']['fg']['hd95_mm'] == 0.0
  assert scores['per_class']['fg']['volume_target_mm3'] == 16 * 0.25


def test_format_table_lists_every_class_and_the_means():
  target = square((8, 8), 1, 1, 4).astype(int)
  pred = target.copy()
  pred[7, 7] = 2
  names = ['background', 'organ', 'lesion']
  table = seg.format_table(seg.score_segmentation(pred, target, (1.0, 1.0), names), names)
  lines = table.splitlines()
  assert lines[0].split() == ['class', 'label', 'dice', 'hd95_mm', 'vol_pred_mm3',
                              'vol_ref_mm3', 'vol_diff_mm3', 'diff_%']
  assert [line.split()[0] for line in lines[2:]] == ['background', 'organ', 'lesion', 'mean']
  assert lines[3].split()[2:] == ['1.0000', '0.00', '16.0', '16.0', '0.0', '0.00']
  assert lines[4].split()[2:] == ['0.0000', 'inf', '1.0', '0.0', '1.0', 'inf']
  assert lines[5].split()[2:] == ['0.5000', 'inf']
  assert seg.format_table(seg.score_segmentation(pred, target, (1.0, 1.0), names)) == table


# --------------------------------------------------------------------------- lesions


def _two_lesions_one_hit_one_invented():
  """Reference: a 2x2 blob and a 1x2 blob. Prediction: one pixel inside the first
  (detected), nothing on the second (missed), and a 2x1 blob elsewhere (invented)."""
  ref = np.zeros((8, 8), bool)
  ref[1:3, 1:3] = True
  ref[5, 5:7] = True
  pred = np.zeros((8, 8), bool)
  pred[2, 2] = True
  pred[5:7, 0] = True
  return pred, ref


def test_lesion_detection_hit_missed_and_invented():
  pred, ref = _two_lesions_one_hit_one_invented()
  r = seg.lesion_detection(pred, ref)
  assert r == {'num_reference': 2, 'num_predicted': 2, 'detected': 1, 'missed': 1,
               'invented': 1, 'sensitivity': 0.5, 'precision': 0.5}
  assert all(type(r[k]) is int for k in ('num_reference', 'num_predicted', 'detected',
                                         'missed', 'invented'))
  # The perfect prediction, and one component spanning both lesions: both detected,
  # one predicted component, none invented.
  assert seg.lesion_detection(ref, ref)['sensitivity'] == 1.0
  bridge = ref.copy()
  bridge[3:5, 2] = True
  bridge[4, 2:6] = True  # reaches (5, 5) by a face
  r = seg.lesion_detection(bridge, ref)
  assert (r['num_predicted'], r['detected'], r['invented'], r['precision']) == (1, 2, 0, 1.0)
  # 0/1 integers are masks too.
  assert seg.lesion_detection(pred.astype(np.uint8), ref.astype(int)) == \
      seg.lesion_detection(pred, ref)


def test_lesion_detection_connectivity_joins_diagonal_pixels():
  # Two diagonal neighbours: two lesions with face connectivity, one with full.
  ref = np.zeros((4, 4), bool)
  ref[1, 1] = ref[2, 2] = True
  pred = np.zeros((4, 4), bool)
  pred[1, 1] = True
  face = seg.lesion_detection(pred, ref, connectivity=1)
  assert (face['num_reference'], face['detected'], face['missed']) == (2, 1, 1)
  assert face['sensitivity'] == 0.5
  full = seg.lesion_detection(pred, ref, connectivity=2)
  assert (full['num_reference'], full['detected'], full['missed']) == (1, 1, 0)
  assert full['sensitivity'] == 1.0


def test_lesion_detection_min_size_drops_small_components():
  ref = np.zeros((6, 10), bool)
  ref[1:3, 1:3] = True  # 4 pixels
  ref[4, 8] = True      # 1 pixel
  pred = np.zeros((6, 10), bool)
  pred[4, 8] = True     # 1 pixel, on the small lesion
  pred[0, 6:9] = True   # 3 pixels, invented
  r = seg.lesion_detection(pred, ref)
  assert (r['num_reference'], r['detected'], r['num_predicted'], r['invented']) == \
      (2, 1, 2, 1)
  # min_size 3: the small lesion and the single predicted pixel are gone from both
  # masks: one reference lesion, missed; one predicted component, invented.
  r = seg.lesion_detection(pred, ref, min_size=3)
  assert r == {'num_reference': 1, 'num_predicted': 1, 'detected': 0, 'missed': 1,
               'invented': 1, 'sensitivity': 0.0, 'precision': 0.0}
  # min_size 5: nothing left.
  r = seg.lesion_detection(pred, ref, min_size=5)
  assert (r['num_reference'], r['num_predicted']) == (0, 0)


def test_lesion_detection_of_empty_masks():
  empty = np.zeros((5, 5), bool)
  one = empty.copy()
  one[2, 2] = True
  r = seg.lesion_detection(empty, empty)
  assert r['num_reference'] == r['num_predicted'] == 0
  assert math.isnan(r['sensitivity']) and math.isnan(r['precision'])
  r = seg.lesion_detection(empty, one)  # a lesion, nothing predicted
  assert (r['missed'], r['sensitivity']) == (1, 0.0) and math.isnan(r['precision'])
  r = seg.lesion_detection(one, empty)  # nothing to find, one false positive
  assert r['invented'] == 1 and r['precision'] == 0.0 and math.isnan(r['sensitivity'])


def test_lesion_detection_in_3d():
  ref = np.zeros((4, 6, 6), bool)
  ref[0:2, 0:2, 0:2] = True  # a cube
  ref[3, 4, 4] = True        # a voxel
  ref[2, 2, 2] = True        # corner-touching the cube: separate unless connectivity 3
  pred = np.zeros_like(ref)
  pred[1, 1, 1] = True       # inside the cube
  pred[3, 0, 5] = True       # invented
  r = seg.lesion_detection(pred, ref)
  assert (r['num_reference'], r['detected'], r['missed'], r['invented']) == (3, 1, 2, 1)
  r = seg.lesion_detection(pred, ref, connectivity=3)
  assert (r['num_reference'], r['detected'], r['missed']) == (2, 1, 1)
  # Against scipy's own count of the components.
  assert seg.lesion_detection(ref, ref, connectivity=2)['num_reference'] == ndimage.label(
      ref, ndimage.generate_binary_structure(3, 2))[1]


def test_sum_lesion_detection_pools_counts():
  pred, ref = _two_lesions_one_hit_one_invented()
  a = seg.lesion_detection(pred, ref)                  # 2 ref, 1 det, 2 pred, 1 inv
  b = seg.lesion_detection(ref, ref)                   # 2 ref, 2 det, 2 pred, 0 inv
  c = seg.lesion_detection(np.zeros((3, 3), bool), np.zeros((3, 3), bool))  # NaN rates
  total = seg.sum_lesion_detection([a, b, c])
  assert total == {'num_reference': 4, 'num_predicted': 4, 'detected': 3, 'missed': 1,
                   'invented': 1, 'sensitivity': 0.75, 'precision': 0.75}
  empty = seg.sum_lesion_detection([])
  assert empty['num_reference'] == 0 and math.isnan(empty['sensitivity'])
  # The pooled result of one is that one.
  assert seg.sum_lesion_detection([a]) == a


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize('call, match', [
    (lambda: seg.dice(np.zeros((2, 3), int), np.zeros((3, 2), int)),
     'pred must have the shape of target; got pred int64 (2, 3) and target int64 (3, 2)'),
    (lambda: seg.dice(np.zeros((2, 3)), np.zeros((2, 3), int)),
     'pred must be an integer label map [H, W] or [D, H, W]; got float64 (2, 3)'),
    (lambda: seg.hausdorff95(np.ones((3, 3), bool), np.ones((3, 3), bool), (1.0,)),
     'voxel_sizes must be 2 positive finite spacings in mm, one per axis of the masks; '
     'got (1.0,)'),
    (lambda: seg.hausdorff95(np.ones((3, 3), bool), np.ones((3, 3), bool), (1.0, 0.0)),
     'voxel_sizes must be 2 positive finite spacings'),
    (lambda: seg.hausdorff95(np.full((3, 3), 2), np.ones((3, 3), bool), (1.0, 1.0)),
     'pred_mask must be a boolean (or 0/1 integer) mask'),
    (lambda: seg.hausdorff95(np.ones((3, 3), bool), np.ones((3, 3), bool), (1.0, 1.0),
                             percentile=101),
     'percentile must be a number in [0, 100]; got 101'),
    (lambda: seg.volume_difference(np.ones((3, 3), bool), np.ones((3, 4), bool), (1, 1)),
     'pred_mask must have the shape of target_mask'),
    (lambda: seg.score_segmentation(np.array([[0, 2]]), np.array([[0, 1]]), (1.0, 1.0),
                                    ['bg', 'fg']),
     "label_names must name every label in the maps; labels [2] have no name"),
    (lambda: seg.score_segmentation(np.array([[0, 1]]), np.array([[0, 1]]), (1.0, 1.0),
                                    'bg'),
     'label_names must be a non-empty sequence of distinct names'),
    (lambda: seg.format_table({'mean_dice': 1.0}), 'scores must be the dict of '
                                                   'score_segmentation'),
    (lambda: seg.lesion_detection(np.ones((3, 3), bool), np.ones((3, 4), bool)),
     'pred_mask must have the shape of target_mask; got pred_mask bool (3, 3) and '
     'target_mask bool (3, 4)'),
    (lambda: seg.lesion_detection(np.full((3, 3), 2), np.ones((3, 3), bool)),
     'pred_mask must be a boolean (or 0/1 integer) mask'),
    (lambda: seg.lesion_detection(np.ones((3, 3), bool), np.ones((3, 3), bool),
                                  connectivity=3),
     'connectivity must be an int in [1, 2] for 2-D masks; got 3'),
    (lambda: seg.lesion_detection(np.ones((3, 3), bool), np.ones((3, 3), bool),
                                  min_size=0),
     'min_size must be an int >= 1 (voxels); got 0'),
    (lambda: seg.sum_lesion_detection([{'detected': 1}]),
     "results[0] must be a lesion_detection dict with the counts"),
])
def test_bad_inputs_name_the_argument(call, match):
  with pytest.raises(ValueError, match=re.escape(match)):
    call()
