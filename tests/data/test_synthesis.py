"""`fdl.data.synthesis`: labels exact through deformations (identity, integer shifts,
random maps keep the label set, affine maps scale tissue volumes by det M), contrast
orderings, smooth bias, k-space that recovers the image at the requested SNR and
passes the data-crime audit (while a phase-free image is flagged), slices and their
provenance; synthetic lesions (inside the host tissues, count, size and contrast as
drawn, exact masks, their own generator so the lesion-free output is untouched)."""

import json

import numpy as np
import pytest
from scipy import ndimage

from fdl.data import synthesis as syn
from fdl.data.mri_volumes import Volume, normalize_volume
from fdl.mri.data_audit import SYMMETRY_RATIO, audit
from fdl.mri.processing import coil_combine

NO_GEOMETRY = dict(max_rotation_deg=0.0, max_scale=0.0, max_shear=0.0,
                   max_translation_vox=0.0, elastic_std_vox=0.0)
CLEAN = dict(mean_jitter=0.0, texture_std=(0.0, 0.0), blur_sigma_vox=(0.0, 0.0),
             bias_std=0.0, noise_std=(0.0, 0.0))


def _brain(shape, radii=(0.42, 0.36, 0.25), scale=None):
  """Nested ellipsoids (2-D ellipses): CSF shell, GM shell, WM core, midline CSF.

  `scale` (per axis) stretches the normalized radius, e.g. for mm-true spheres on
  anisotropic voxels."""
  grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) / n for n in shape], indexing="ij")
  scale = np.ones(len(shape)) if scale is None else np.asarray(scale, float)
  stretch = (1.0, 1.15, 0.9)[:len(shape)]
  r = np.sqrt(sum((g * s / f) ** 2 for g, s, f in zip(grids, scale, stretch)))
  labels = np.zeros(shape, np.int32)
  labels[r < radii[0]] = 1
  labels[r < radii[1]] = 2
  labels[r < radii[2]] = 3
  labels[(np.abs(grids[0]) < 0.03) & (r < radii[1])] = 1
  return labels


@pytest.fixture(scope="module")
def brain2d():
  return _brain((48, 48))


@pytest.fixture(scope="module")
def brain3d():
  return _brain((32, 32, 32))


# ---------------------------------------------------------------- geometry


@pytest.mark.parametrize("shape", [(48, 40), (20, 24, 18)])
def test_identity_deformation_keeps_labels_exactly(shape):
  labels = _brain(shape)
  coords = syn.random_deformation(shape, np.random.default_rng(3), **NO_GEOMETRY)
  np.testing.assert_array_equal(coords, syn.identity_coords(shape))
  out = syn.warp_labels(labels, coords)
  assert out.dtype == labels.dtype
  np.testing.assert_array_equal(out, labels)
  np.testing.assert_array_equal(syn.warp_image(labels.astype(np.float32), coords),
                                labels.astype(np.float32))


@pytest.mark.parametrize("shape, shift", [((48, 48), (3, -5)), ((20, 22, 18), (2, 0, -3))])
def test_integer_translation_is_an_exact_shift(shape, shift):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 4, shape).astype(np.int32)  # worst case: no smoothness
  out = syn.warp_labels(labels, syn.deformation_coords(shape, translation_vox=shift))
  rolled = np.roll(labels, shift, axis=tuple(range(len(shape))))
  interior = tuple(slice(max(s, 0), n + min(s, 0)) for s, n in zip(shift, shape))
  np.testing.assert_array_equal(out[interior], rolled[interior])
  # What comes in from outside the array is background.
  assert np.all(np.delete(out, np.s_[interior[0]], axis=0) == 0)


def test_random_deformation_keeps_the_label_set(brain2d):
  # Unusual label values and dtype: nothing is interpolated, nothing new appears.
  labels = np.choose(brain2d, np.array([0, 7, 42, 9], np.int16)).astype(np.int16)
  for seed in range(5):
    coords = syn.random_deformation(labels.shape, np.random.default_rng(seed),
                                    max_rotation_deg=30, max_scale=0.2, max_shear=0.1,
                                    max_translation_vox=5, elastic_std_vox=3)
    out = syn.warp_labels(labels, coords)
    assert out.dtype == np.int16
    assert set(np.unique(out)) <= {0, 7, 42, 9}
    assert not np.array_equal(out, labels)
  # 3-D too.
  labels = _brain((20, 20, 20))
  out = syn.warp_labels(labels, syn.random_deformation(labels.shape,
                                                       np.random.default_rng(1)))
  assert set(np.unique(out)) <= set(np.unique(labels)) and out.shape == labels.shape


@pytest.mark.parametrize("params", [
    dict(scale=(1.2, 0.9)),
    dict(scale=(0.85, 0.8), rotation_deg=25.0, shear=0.1, translation_vox=(1.5, -2.0)),
])
def test_affine_deformation_scales_tissue_volumes_by_the_jacobian(params):
  labels = _brain((96, 96), radii=(0.3, 0.26, 0.18))  # room to grow
  out = syn.warp_labels(labels, syn.deformation_coords(labels.shape, **params))
  det = np.linalg.det(syn.affine_matrix(2, **{k: v for k, v in params.items()
                                              if k != "translation_vox"}))
  np.testing.assert_allclose(det, np.prod(params["scale"]), rtol=1e-12)
  for label in (1, 2, 3):
    ratio = np.sum(out == label) / np.sum(labels == label)
    np.testing.assert_allclose(ratio, det, rtol=0.06)
  # Whole brain, the best-resolved count.
  np.testing.assert_allclose(np.sum(out > 0) / np.sum(labels > 0), det, rtol=0.02)


def test_affine_3d_jacobian():
  labels = _brain((32, 32, 32), radii=(0.3, 0.26, 0.18))
  scale = (1.15, 0.9, 1.05)
  coords = syn.deformation_coords(labels.shape, scale=scale, rotation_deg=(10, -5, 20),
                                  shear=(0.05, 0.0, -0.05))
  out = syn.warp_labels(labels, coords)
  np.testing.assert_allclose(np.sum(out > 0) / np.sum(labels > 0), np.prod(scale),
                             rtol=0.03)


def test_linear_warp_of_probabilities_keeps_their_sum():
  rng = np.random.default_rng(0)
  probs = rng.dirichlet(np.ones(4), size=(32, 32)).transpose(2, 0, 1)  # [4, H, W]
  coords = syn.random_deformation((32, 32), rng)
  warped = np.stack([syn.warp_image(p.astype(np.float64), coords, 1, cval=float(k == 0))
                     for k, p in enumerate(probs)])
  np.testing.assert_allclose(warped.sum(0), 1.0, atol=1e-12)
  assert warped.min() >= 0


def test_smooth_random_field_is_smooth():
  rng = np.random.default_rng(0)
  field = syn.smooth_random_field((48, 48), rng, grid=4, std=0.3)
  assert 0.05 < field.std() < 0.6
  energy = np.mean(np.diff(field, axis=0) ** 2) + np.mean(np.diff(field, axis=1) ** 2)
  # White noise of the same variance has energy 4 var; a field of ~2 cycles per
  # 48 pixels has about 2 (2 pi 2 / 48)^2 var ~ 0.14 var.
  assert energy / field.var() < 0.05
  white = rng.standard_normal((48, 48))
  assert (np.mean(np.diff(white, axis=0) ** 2) + np.mean(np.diff(white, axis=1) ** 2)
          ) / white.var() > 3.0


# ---------------------------------------------------------------- contrast


def test_synthesize_image_is_deterministic(brain2d):
  kwargs = dict(contrast="random", deformation=syn.DEFAULT_DEFORMATION)
  a = syn.synthesize_image(brain2d, np.random.default_rng(5), **kwargs)
  b = syn.synthesize_image(brain2d, np.random.default_rng(5), **kwargs)
  c = syn.synthesize_image(brain2d, np.random.default_rng(6), **kwargs)
  assert a[0].dtype == np.float32 and a[1].dtype == np.int32
  np.testing.assert_array_equal(a[0], b[0])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[1], c[1])
  assert 0.0 <= a[0].min() and a[0].max() <= 1.0


@pytest.mark.parametrize("contrast, order", [
    ("t1", (3, 2, 1)),   # WM > GM > CSF
    ("t2", (1, 2, 3)),   # CSF > GM > WM
    ("pd", (2, 3, 1)),   # GM > WM > CSF
])
def test_named_contrasts_have_the_typical_ordering(brain2d, contrast, order):
  image, labels = syn.synthesize_image(brain2d, np.random.default_rng(0),
                                       contrast=contrast, **CLEAN)
  np.testing.assert_array_equal(labels, brain2d)
  means = [image[labels == k].mean() for k in order]
  assert means[0] > means[1] > means[2], means
  assert np.all(image[labels == 0] == 0)
  # Noiseless and bias-free: the image is exactly the reference means, the
  # brightest tissue at 1 (robust max).
  np.testing.assert_allclose([image[labels == k].std() for k in range(4)], 0, atol=1e-6)
  reference = syn.contrast_means(contrast)[list(order)]
  np.testing.assert_allclose(np.array(means) / means[0], reference / reference[0],
                             rtol=1e-5)
  assert means[0] == pytest.approx(1.0)


def test_random_contrasts_vary(brain2d):
  orders = set()
  for seed in range(12):
    image, labels = syn.synthesize_image(brain2d, np.random.default_rng(seed), **CLEAN)
    orders.add(tuple(np.argsort([image[labels == k].mean() for k in (1, 2, 3)])))
  assert len(orders) >= 4  # of the 6 possible orderings


def test_labels_correspond_exactly_to_the_image_geometry(brain2d):
  # Without blur, bias and noise, each pixel's intensity is its label's mean: the
  # returned labels are the ones the image was painted from, after deformation.
  for seed in range(3):
    image, labels = syn.synthesize_image(brain2d, np.random.default_rng(seed),
                                         contrast="t1",
                                         deformation=syn.DEFAULT_DEFORMATION, **CLEAN)
    assert not np.array_equal(labels, brain2d)
    assert set(np.unique(labels)) <= {0, 1, 2, 3}
    for k in range(4):
      values = np.unique(image[labels == k])
      assert values.size == 1, (k, values[:5])


def test_probability_maps_mix_intensities_and_give_argmax_labels(brain2d):
  onehot = np.stack([(brain2d == k) for k in range(4)]).astype(np.float64)
  soft = np.stack([ndimage.gaussian_filter(p, 1.0) for p in onehot])
  soft /= soft.sum(0, keepdims=True)
  image, labels = syn.synthesize_image(None, np.random.default_rng(0), probabilities=soft,
                                       contrast="t1", **CLEAN)
  np.testing.assert_array_equal(labels, np.argmax(soft, 0))
  means = syn.contrast_means("t1")
  expected = np.tensordot(means, soft, axes=1)
  peak = np.percentile(expected[labels > 0], 99.0)
  np.testing.assert_allclose(image, np.clip(expected / peak, 0, 1), atol=1e-6)
  # K = 3 (tissues only, background implied) gives the same result.
  image3, labels3 = syn.synthesize_image(None, np.random.default_rng(0),
                                         probabilities=soft[1:], contrast="t1", **CLEAN)
  np.testing.assert_allclose(image3, image, atol=1e-6)
  np.testing.assert_array_equal(labels3, labels)


def test_bias_field_is_smooth_in_the_image(brain2d):
  flat, labels = syn.synthesize_image(brain2d, np.random.default_rng(1), contrast="t1",
                                      **CLEAN)
  biased, _ = syn.synthesize_image(brain2d, np.random.default_rng(1), contrast="t1",
                                   **{**CLEAN, "bias_std": 0.5, "robust_percentile": 100})
  inside = labels > 0
  log_ratio = np.log(biased[inside] / flat[inside])
  assert log_ratio.std() > 0.01  # a bias was applied...
  field = np.zeros(brain2d.shape)
  field[inside] = log_ratio - log_ratio.mean()
  both = inside[1:, :] & inside[:-1, :]
  step = np.diff(field, axis=0)[both]
  assert np.mean(step ** 2) / log_ratio.var() < 0.05  # ...and it is smooth


# ---------------------------------------------------------------- k-space


def _magnitude(brain2d, seed=0):
  return syn.synthesize_image(brain2d, np.random.default_rng(seed), contrast="t1")[0]


def test_kspace_recovers_the_image_at_high_snr(brain2d):
  image = _magnitude(brain2d)
  out = syn.synthesize_kspace(image, np.random.default_rng(0), num_coils=4, snr_db=60.0)
  assert out["kspace"].shape == (4, 48, 48) and out["kspace"].dtype == np.complex64
  assert out["maps"].shape == (4, 48, 48) and out["maps"].dtype == np.complex64
  assert out["target"].dtype == np.float32
  np.testing.assert_allclose((np.abs(out["maps"]) ** 2).sum(0), 1.0, atol=1e-5)
  # The target is the RSS of the noiseless coil images = the magnitude.
  np.testing.assert_allclose(out["target"], image, atol=1e-6)
  np.testing.assert_allclose(np.abs(out["image"]), image, atol=1e-6)
  combined = coil_combine(out["kspace"][None], out["maps"][None])[0]
  rel = np.linalg.norm(combined - out["image"]) / np.linalg.norm(out["image"])
  assert rel < 3e-3, rel  # noise at -60 dB per coil: ~1e-3
  # Without noise, exact to float32.
  clean = syn.synthesize_kspace(image, np.random.default_rng(0), num_coils=4,
                                snr_db=np.inf)
  rel = (np.linalg.norm(coil_combine(clean["kspace"][None], clean["maps"][None])[0]
                        - clean["image"]) / np.linalg.norm(clean["image"]))
  assert rel < 1e-5
  # The phase is there: not real up to a constant.
  phase = np.angle(out["image"][image > 0.1] * np.conj(out["image"][24, 24]))
  assert phase.std() > 0.2


@pytest.mark.parametrize("snr_db", [10.0, 25.0])
def test_measured_snr_matches_snr_db(brain2d, snr_db):
  image = np.stack([_magnitude(brain2d, 0), _magnitude(brain2d, 1)])
  out = syn.synthesize_kspace(image, np.random.default_rng(2), num_coils=4, snr_db=snr_db)
  assert out["kspace"].shape == (2, 4, 48, 48) and out["noise_std"].shape == (4,)
  clean = out["kspace"] - out["noise"]
  measured = 10 * np.log10(np.mean(np.abs(clean) ** 2, axis=(0, 2, 3))
                           / np.mean(np.abs(out["noise"]) ** 2, axis=(0, 2, 3)))
  np.testing.assert_allclose(measured, snr_db, atol=0.2)
  np.testing.assert_allclose(np.mean(np.abs(out["noise"]) ** 2, axis=(0, 2, 3)),
                             out["noise_std"] ** 2, rtol=0.05)


def test_audit_passes_on_synthesized_kspace_and_flags_a_phase_free_image(brain3d):
  for seed in range(4):
    out = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.5), template="toy", seed=seed,
                                num_slices=2, shape=(48, 48), num_coils=4)
    for s in range(2):
      for maps in (None, out["maps"][s:s + 1]):
        result = audit(out["kspace"][s:s + 1], maps=maps)
        assert result["flags"] == [], (seed, s, result)
        assert result["asymmetry_ratio"] > 2 * SYMMETRY_RATIO
  # Negative control: the same magnitude with only a global phase is the k-space of
  # a real image; the audit (through the maps) flags it, with and without noise.
  for snr_db in (np.inf, 30.0):
    out = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.5), template="toy", seed=0,
                                num_slices=2, shape=(48, 48), num_coils=4,
                                snr_db=snr_db, phase_rms=0.0)
    result = audit(out["kspace"], maps=out["maps"])
    assert result["conjugate_symmetric"] and result["flags"] == ["conjugate_symmetric"]


# ---------------------------------------------------------------- slices


def test_synthesize_slices_outputs_provenance_and_determinism(brain3d):
  kwargs = dict(template="toy-ellipsoids", num_slices=3, shape=(40, 48), num_coils=4,
                contrast=("t1", "t2", "pd", "random"))
  a = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=7, **kwargs)
  b = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=7, **kwargs)
  c = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=8, **kwargs)
  shapes = {"kspace": ((3, 4, 40, 48), np.complex64), "maps": ((3, 4, 40, 48), np.complex64),
            "image": ((3, 40, 48), np.complex64), "target": ((3, 40, 48), np.float32),
            "noise": ((3, 4, 40, 48), np.complex64), "noise_std": ((3, 4), np.float32),
            "labels": ((3, 40, 48), np.int32)}
  for key, (shape, dtype) in shapes.items():
    assert a[key].shape == shape and a[key].dtype == dtype, key
    np.testing.assert_array_equal(a[key], b[key])
    assert not np.array_equal(a[key], c[key]) or key in ("maps",), key
  assert a["provenance"] == b["provenance"]
  p = a["provenance"]
  assert p["synthesized"] is True and p["template"] == "toy-ellipsoids"
  assert p["generator"] == "fdl.data.synthesis (SynthSeg-style domain randomization)"
  assert p["seed"] == 7 and p["contrast"] == ["t1", "t2", "pd", "random"]
  assert [s["contrast"] for s in p["samples"]] == [s["contrast"] for s in b["provenance"]
                                                   ["samples"]]
  assert p["kspace_origin"]["from_processed_images"] is False
  assert len(p["template_sha256"]) == 64
  json.dumps(p)  # JSON-able
  # Sample s depends on (seed, s) only: a longer run with the same slice positions
  # repeats it (3 slices at the centre of a 1-plane slab are all the same plane).
  one = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=7, slab_fraction=0.0,
                              **{**kwargs, "num_slices": 1})
  three = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=7, slab_fraction=0.0,
                                **kwargs)
  np.testing.assert_array_equal(one["kspace"][0], three["kspace"][0])
  assert len(set(three["slice_index"].tolist())) == 1
  # The labels are the target's: exact label values, tissue where the target is.
  assert set(np.unique(a["labels"])) <= {0, 1, 2, 3}
  # Background holds only blur spill-over and noise.
  assert a["target"][a["labels"] == 0].mean() < 0.05


def test_slice_positions_follow_the_documented_rule(brain3d):
  occupied = np.flatnonzero(np.any(brain3d > 0, axis=(0, 1)))
  first, last = occupied[0], occupied[-1]
  positions = syn.slice_positions(brain3d, 4, axis=2, slab_fraction=0.5)
  lo, hi = first + 0.25 * (last - first), last - 0.25 * (last - first)
  expected = np.floor(lo + (hi - lo) * (np.arange(4) + 0.5) / 4 + 0.5)
  np.testing.assert_array_equal(positions, expected)
  assert np.all((positions >= lo - 0.5) & (positions <= hi + 0.5))
  assert syn.slice_positions(brain3d, 1, axis=0).tolist() == [round((first + last) / 2)]


def test_anisotropic_voxels_keep_mm_proportions():
  # A sphere of radius 12 mm on 1 x 1 x 2 mm voxels: 32 x 32 x 16 voxels.
  spacing = np.array([1.0, 1.0, 2.0])
  grids = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * d
                        for n, d in zip((32, 32, 16), spacing)], indexing="ij")
  r = np.sqrt(sum(g ** 2 for g in grids))
  labels = np.where(r < 12, 3, np.where(r < 14, 1, 0)).astype(np.int32)
  # Slicing along axis 0: the plane is Y (1 mm) x Z (2 mm), 32 x 16 voxels.
  plane_labels, pixel = syn.plane_to_grid(labels[16], spacing[1:], (48, 48))
  assert pixel == pytest.approx(32.0 / 48)
  rows = np.flatnonzero(np.any(plane_labels > 0, axis=1))
  cols = np.flatnonzero(np.any(plane_labels > 0, axis=0))
  extent_rows, extent_cols = (rows[-1] - rows[0] + 1) * pixel, (cols[-1] - cols[0] + 1) * pixel
  # A circle, not a 2:1 ellipse; the diameter of the r < 14 mm disc in this plane.
  assert abs(extent_rows - extent_cols) <= 2 * 2.0  # within a voxel at each end
  np.testing.assert_allclose(extent_rows, 2 * np.sqrt(14 ** 2 - 0.5 ** 2), atol=2.0)
  out = syn.synthesize_slices(labels, spacing, template="sphere", seed=0, num_slices=1,
                              axis=0, shape=(48, 48), num_coils=2, deformation=None,
                              fov_margin=None)
  np.testing.assert_array_equal(out["labels"][0], plane_labels)
  assert out["provenance"]["pixel_size_mm"] == pytest.approx(pixel)
  # Default framing: the brain's bounding box (28 mm across, 14 Z voxels of 2 mm) plus
  # 10 % fills the grid: 48 / 1.1 ~ 44 pixels across, still round.
  out = syn.synthesize_slices(labels, spacing, template="sphere", seed=0, num_slices=1,
                              axis=0, shape=(48, 48), num_coils=2, deformation=None)
  pixel = out["provenance"]["pixel_size_mm"]
  assert pixel == pytest.approx(28 * 1.1 / 48)
  brain = out["labels"][0] > 0
  rows = np.flatnonzero(brain.any(1))
  cols = np.flatnonzero(brain.any(0))
  assert abs(len(rows) - 48 / 1.1) <= 2 and abs(len(cols) - 48 / 1.1) <= 3


def test_synthesized_slices_become_a_volume(brain3d):
  out = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), template="toy", seed=0,
                              num_slices=2, shape=(32, 32), num_coils=4)
  volume = normalize_volume("synth_toy_0000", out["kspace"], out["target"], out["maps"],
                            0.25, {"dataset": "synthesized", **out["provenance"]})
  assert isinstance(volume, Volume) and volume.num_slices == 2
  assert volume.source["synthesized"] is True and volume.source["template"] == "toy"
  assert np.isfinite(volume.scale) and volume.scale > 0


# ---------------------------------------------------------------- lesions


def test_lesion_mask_lies_in_the_host_tissues(brain2d):
  for seed in range(6):
    rng = np.random.default_rng(seed)
    mask = syn.random_lesion_mask(brain2d, rng, pixel_size_mm=0.5, count=(1, 3))
    assert mask.dtype == bool and mask.shape == brain2d.shape and mask.any()
    assert set(np.unique(brain2d[mask])) <= {2, 3}  # GM and WM by default
    only_wm = syn.random_lesion_mask(brain2d, np.random.default_rng(seed),
                                     pixel_size_mm=0.5, host_labels=(3,))
    assert only_wm.any() and np.all(brain2d[only_wm] == 3)
  # No host pixel: no lesion.
  csf = np.where(brain2d > 0, 1, 0).astype(np.int32)
  assert not syn.random_lesion_mask(csf, np.random.default_rng(0), pixel_size_mm=1.0).any()
  assert not syn.random_lesion_mask(brain2d, np.random.default_rng(0), pixel_size_mm=1.0,
                                    count=(0, 0)).any()


def test_lesion_mask_is_deterministic(brain2d):
  kwargs = dict(pixel_size_mm=0.5, count=(2, 3))
  a = syn.random_lesion_mask(brain2d, np.random.default_rng(4), **kwargs)
  b = syn.random_lesion_mask(brain2d, np.random.default_rng(4), **kwargs)
  c = syn.random_lesion_mask(brain2d, np.random.default_rng(5), **kwargs)
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_lesion_count_gives_separate_components():
  # Small lesions (radius <= 1.5 (1.3) px) in a uniform host: each lesion is one
  # face-connected region, so two lesions whose centres are far apart are two components.
  labels = np.full((40, 40), 3, np.int32)
  separated = 0
  for seed in range(10):
    masks, records = syn._draw_lesions(
        labels, np.random.default_rng(seed), pixel_size_mm=1.0, count=(2, 2),
        radius_mm=(1.0, 1.5), host_labels=(3,), irregularity=0.3, max_elongation=2.0)
    assert len(masks) == len(records) == 2
    for mask in masks:
      assert ndimage.label(mask)[1] == 1
    union = syn.random_lesion_mask(labels, np.random.default_rng(seed), pixel_size_mm=1.0,
                                   count=(2, 2), radius_mm=(1.0, 1.5))
    np.testing.assert_array_equal(union, masks[0] | masks[1])
    # Largest extent from the centre: 1.5 * sqrt(2) * 1.3 < 2.8 px.
    a, b = (np.asarray(r["centre_vox"]) for r in records)
    if np.abs(a - b).max() > 6:
      separated += 1
      assert ndimage.label(union)[1] == 2
  assert separated >= 8
  counts = {len(syn._draw_lesions(labels, np.random.default_rng(seed), pixel_size_mm=1.0,
                                  count=(1, 3), radius_mm=(1.0, 1.0), host_labels=(3,),
                                  irregularity=0.0, max_elongation=1.0)[0])
            for seed in range(20)}
  assert counts == {1, 2, 3}


@pytest.mark.parametrize("irregularity", [0.0, 0.3])
def test_lesion_area_honours_radius_and_irregularity(irregularity):
  # One lesion of radius r in [3, 4] mm at 0.5 mm pixels (6-8 px) in a uniform host,
  # away from the array's edge: its area lies between (1 -+ irregularity)^2 pi r^2,
  # up to the pixels its boundary crosses (~ the perimeter).
  labels = np.full((96, 96), 3, np.int32)
  checked = 0
  for seed in range(8):
    masks, records = syn._draw_lesions(
        labels, np.random.default_rng(seed), pixel_size_mm=0.5, count=(1, 1),
        radius_mm=(3.0, 4.0), host_labels=(3,), irregularity=irregularity,
        max_elongation=2.0)
    (mask,), (record,) = masks, records
    r_px = record["radius_mm"] / 0.5
    assert 3.0 <= record["radius_mm"] <= 4.0
    axes = np.asarray(record["semi_axes_vox"])
    np.testing.assert_allclose(np.prod(axes), r_px ** 2, rtol=1e-12)
    assert axes.max() / axes.min() <= 2.0 + 1e-12
    reach = (1 + irregularity) * axes.max() + 1
    centre = np.asarray(record["centre_vox"])
    if np.any(centre < reach) or np.any(centre > 95 - reach):
      continue  # cut by the array's edge
    checked += 1
    area = mask.sum()
    perimeter = 2 * np.pi * r_px * np.sqrt(2.0)
    lo = (1 - irregularity) ** 2 * np.pi * r_px ** 2 - perimeter
    hi = (1 + irregularity) ** 2 * np.pi * r_px ** 2 + perimeter
    assert lo <= area <= hi, (seed, area, lo, hi)
    assert record["num_pixels"] == area
    if irregularity == 0.0:  # an exact ellipse of area pi r^2
      np.testing.assert_allclose(area, np.pi * r_px ** 2, rtol=0.08)
  assert checked >= 4


def test_lesion_mask_in_3d():
  labels = _brain((24, 24, 24))
  mask = syn.random_lesion_mask(labels, np.random.default_rng(0), pixel_size_mm=1.0,
                                count=(2, 2), radius_mm=(2.0, 3.0))
  assert mask.shape == labels.shape and mask.any()
  assert set(np.unique(labels[mask])) <= {2, 3}


LESIONS = {"probability": 1.0, "count": (1, 3), "radius_mm": (1.5, 3.0)}
SLICES = dict(template="toy", num_slices=2, shape=(40, 40), num_coils=2)


def test_slices_without_lesions_are_unchanged(brain3d):
  plain = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, **SLICES)
  none = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, lesions=None, **SLICES)
  for key in plain:
    if key != "provenance":
      np.testing.assert_array_equal(plain[key], none[key], err_msg=key)
  assert plain["provenance"] == none["provenance"]
  assert "lesions" not in plain["provenance"]
  assert all("lesions" not in s for s in plain["provenance"]["samples"])
  assert plain["lesions"].shape == (2, 40, 40) and plain["lesions"].dtype == bool
  assert not plain["lesions"].any()


def test_slices_with_lesions_change_only_the_lesions(brain3d):
  plain = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, **SLICES)
  a = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, lesions=LESIONS, **SLICES)
  b = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, lesions=LESIONS, **SLICES)
  for key in a:
    if key != "provenance":
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert a["provenance"] == b["provenance"]
  json.dumps(a["provenance"])
  # The tissue labels are the tissue labels; the lesions lie in GM and WM.
  np.testing.assert_array_equal(a["labels"], plain["labels"])
  assert a["lesions"].any(axis=(1, 2)).all()
  assert set(np.unique(a["labels"][a["lesions"]])) <= {2, 3}
  p = a["provenance"]
  assert p["lesions"]["probability"] == 1.0 and p["lesions"]["count"] == [1, 3]
  assert p["lesion_rng"] == "numpy.random.default_rng([seed, sample, 1])"
  for s, sample in enumerate(p["samples"]):
    record = sample["lesions"]
    assert record["present"] and 1 <= record["num_lesions"] <= 3
    assert len(record["contrast_factors"]) == record["num_lesions"]
    for f in record["contrast_factors"]:
      assert 0.3 <= abs(f - 1) <= 0.8
    assert record["num_pixels"] == a["lesions"][s].sum()
    # The tissue draws are those without lesions.
    plain_sample = {k: v for k, v in plain["provenance"]["samples"][s].items()
                    if k != "robust_max"}
    assert {k: v for k, v in sample.items() if k not in ("lesions", "robust_max")
            } == plain_sample
  # Away from the lesions (beyond the blur's reach: sigma <= 1 px, truncated at 4
  # sigma), the target is the lesion-free one up to the normalization's scale.
  for s in range(2):
    near = ndimage.binary_dilation(a["lesions"][s], np.ones((3, 3), bool), iterations=5)
    x, y = a["target"][s], plain["target"][s]
    far = ~near & (y > 0.05) & (x < 1) & (y < 1)  # clipped pixels aside
    ratio = x[far] / y[far]
    np.testing.assert_allclose(ratio, np.median(ratio), rtol=1e-4)
    # Inside them it is not (small, blurred lesions: a few percent of full scale on
    # average, against < 1e-4 far away).
    diff = np.abs(x / np.median(ratio) - y)
    assert diff[a["lesions"][s]].mean() > 0.005 > 50 * diff[far].max()


def test_lesion_probability_zero_gives_no_lesion_and_the_plain_image(brain3d):
  plain = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3, **SLICES)
  out = syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=3,
                              lesions={"probability": 0.0}, **SLICES)
  assert not out["lesions"].any()
  np.testing.assert_array_equal(out["target"], plain["target"])
  assert [s["lesions"]["num_lesions"] for s in out["provenance"]["samples"]] == [0, 0]


def test_lesion_intensity_is_the_drawn_factor_times_the_host(brain3d):
  # No deformation, blur, bias, noise or texture, and a plain maximum: each pixel is
  # its tissue's mean, times the lesion's factor inside a lesion.
  for seed in range(3):
    out = syn.synthesize_slices(
        brain3d, (1.0, 1.0, 1.0), seed=seed, deformation=None, contrast="t1",
        lesions={"probability": 1.0, "count": (1, 1), "radius_mm": (2.0, 3.0)},
        **{**SLICES, **CLEAN, "robust_percentile": 100.0})
    for s in range(2):
      (factor,) = out["provenance"]["samples"][s]["lesions"]["contrast_factors"]
      target, labels, lesion = out["target"][s], out["labels"][s], out["lesions"][s]
      for k in np.unique(labels[lesion]):
        host = target[(labels == k) & ~lesion].mean()
        np.testing.assert_allclose(target[(labels == k) & lesion] / host, factor,
                                   rtol=1e-4)


@pytest.mark.parametrize("kwargs, match", [
    (dict(count=(3, 1)), "count"),
    (dict(count=(-1, 2)), "count"),
    (dict(count=(1.5, 2)), "count"),
    (dict(radius_mm=(0.0, 2.0)), "radius_mm"),
    (dict(radius_mm=(3.0, 2.0)), "radius_mm"),
    (dict(pixel_size_mm=0.0), "pixel_size_mm"),
    (dict(irregularity=1.0), "irregularity"),
    (dict(host_labels=()), "host_labels"),
])
def test_bad_lesion_arguments_are_named(brain2d, kwargs, match):
  with pytest.raises(ValueError, match=match):
    syn.random_lesion_mask(brain2d, np.random.default_rng(0),
                           **{"pixel_size_mm": 1.0, **kwargs})


@pytest.mark.parametrize("lesions, match", [
    ({"probability": 1.5}, r"lesions\['probability'\]"),
    ({"contrast": (0.5, 1.2)}, r"lesions\['contrast'\]"),
    ({"count": (2, 1)}, r"lesions\['count'\]"),
    ({"radius": (1, 2)}, "unknown keys"),
    ((0.5, 1.0), "mapping"),
])
def test_bad_lesion_settings_are_named(brain3d, lesions, match):
  with pytest.raises(ValueError, match=match):
    syn.synthesize_slices(brain3d, (1.0, 1.0, 1.0), seed=0, lesions=lesions, **SLICES)


@pytest.mark.parametrize("call, match", [
    (lambda b: syn.synthesize_image(b.astype(float), np.random.default_rng(0)), "labels"),
    (lambda b: syn.synthesize_image(b + 4, np.random.default_rng(0)), "labels must hold"),
    (lambda b: syn.synthesize_image(b, np.random.default_rng(0), contrast="flair"),
     "contrast"),
    (lambda b: syn.synthesize_image(b, np.random.default_rng(0),
                                    probabilities=np.ones((4,) + b.shape)), "exactly one"),
    (lambda b: syn.warp_labels(b, np.zeros((3,) + b.shape)), "coords"),
    (lambda b: syn.random_deformation(b.shape, np.random.default_rng(0), max_scale=1.5),
     "max_scale"),
    (lambda b: syn.synthesize_kspace(-np.ones(b.shape), np.random.default_rng(0)),
     "non-negative"),
    (lambda b: syn.synthesize_kspace(np.ones(b.shape), np.random.default_rng(0),
                                     num_coils=0), "num_coils"),
    (lambda b: syn.synthesize_slices(b, (1, 1), template="t", seed=0), "labels_volume"),
    (lambda b: syn.synthesize_slices(b[..., None].repeat(4, -1), (1, 1), template="t",
                                     seed=0), "voxel_sizes"),
    (lambda b: syn.synthesize_slices(np.zeros((8, 8, 8), np.int32), (1, 1, 1),
                                     template="t", seed=0), "no tissue"),
    (lambda b: syn.synthesize_slices(b[..., None].repeat(4, -1), (1, 1, 1), template="",
                                     seed=0), "template"),
])
def test_bad_arguments_are_named(brain2d, call, match):
  with pytest.raises(ValueError, match=match):
    call(brain2d)
