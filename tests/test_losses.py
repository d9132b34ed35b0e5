"""Tests for fdl.losses: float64 NumPy references, skimage SSIM, penalties, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fdl import losses

RNG = np.random.default_rng(0)


# ---------------------------------------------------------------------------
# NumPy float64 references.


def _np_log_softmax(z):
    z = np.asarray(z, np.float64)
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _np_cross_entropy(logits, labels, eps=0.0):
    num_classes = logits.shape[-1]
    targets = (1.0 - eps) * np.eye(num_classes)[labels] + eps / num_classes
    return -(targets * _np_log_softmax(logits)).sum(axis=-1)


def _smooth_image(rng, height, width, channels=None):
    """Positive, smooth-ish random image: low-frequency sinusoids plus noise."""
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    shape = (height, width) if channels is None else (height, width, channels)
    img = np.zeros(shape)
    for _ in range(3):
        fy, fx = rng.uniform(0.05, 0.3, size=2)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(fy * yy + fx * xx + phase)
        img += wave if channels is None else wave[..., None] * rng.uniform(0.5, 1.5, channels)
    return img + 3.0 + 0.1 * rng.standard_normal(shape)


# ---------------------------------------------------------------------------
# Classification.


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.5])
def test_cross_entropy_matches_numpy(eps):
    logits = RNG.normal(scale=3.0, size=(6, 5)).astype(np.float32)
    labels = RNG.integers(0, 5, size=6)
    got = losses.cross_entropy(logits, labels, label_smoothing=eps)
    assert got.shape == (6,) and got.dtype == jnp.float32
    np.testing.assert_allclose(got, _np_cross_entropy(logits, labels, eps), rtol=1e-5)


def test_cross_entropy_smoothing_equals_soft_cross_entropy():
    logits = RNG.normal(size=(4, 7)).astype(np.float32)
    labels = np.array([0, 6, 3, 3])
    eps = 0.2
    targets = ((1 - eps) * np.eye(7)[labels] + eps / 7).astype(np.float32)
    np.testing.assert_allclose(
        losses.cross_entropy(logits, labels, label_smoothing=eps),
        losses.soft_cross_entropy(logits, targets),
        rtol=1e-6,
    )
    np.testing.assert_allclose(
        losses.soft_cross_entropy(logits, targets),
        -(targets * _np_log_softmax(logits)).sum(-1),
        rtol=1e-5,
    )


def test_cross_entropy_known_values():
    # Uniform logits: log C regardless of label or smoothing.
    for eps in (0.0, 0.3):
        labels = jnp.array([0, 4, 9])
        got = losses.cross_entropy(jnp.zeros((3, 10)), labels, label_smoothing=eps)
        np.testing.assert_allclose(got, np.full(3, np.log(10.0)), rtol=1e-6)
    # Two classes, logits (0, log 3): p = (1/4, 3/4).
    got = losses.cross_entropy(jnp.array([[0.0, np.log(3.0)]] * 2), jnp.array([0, 1]))
    np.testing.assert_allclose(got, [np.log(4.0), np.log(4.0 / 3.0)], rtol=1e-6)


def test_cross_entropy_out_of_range_label_is_nan_and_jits():
    fn = jax.jit(losses.cross_entropy, static_argnames="label_smoothing")
    got = fn(jnp.zeros((3, 4)), jnp.array([1, 4, -1]))
    assert np.isfinite(got[0]) and np.isnan(got[1]) and np.isnan(got[2])


def test_soft_cross_entropy_masked_logits():
    logits = jnp.array([[0.0, -jnp.inf, 0.0]])
    targets = jnp.array([[0.5, 0.0, 0.5]])
    np.testing.assert_allclose(losses.soft_cross_entropy(logits, targets), [np.log(2.0)], rtol=1e-6)
    grad = jax.grad(lambda z: losses.soft_cross_entropy(z, targets).sum())(logits)
    assert np.all(np.isfinite(grad))


def test_accuracy():
    logits = jnp.array([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    got = losses.accuracy(logits, jnp.array([1, 1, 2]))
    assert got.dtype == jnp.float32
    np.testing.assert_array_equal(got, [1.0, 0.0, 1.0])


# ---------------------------------------------------------------------------
# Regression.


@pytest.mark.parametrize("complex_input", [False, True])
def test_mse_mae_match_numpy(complex_input):
    shape = (3, 4, 5, 2)
    pred = RNG.standard_normal(shape)
    target = RNG.standard_normal(shape)
    if complex_input:
        pred = pred + 1j * RNG.standard_normal(shape)
        target = target + 1j * RNG.standard_normal(shape)
        pred, target = pred.astype(np.complex64), target.astype(np.complex64)
    else:
        pred, target = pred.astype(np.float32), target.astype(np.float32)
    diff = pred.astype(np.complex128 if complex_input else np.float64) - target
    for fn, ref in (
        (losses.mse, (np.abs(diff) ** 2).mean(axis=(1, 2, 3))),
        (losses.mae, np.abs(diff).mean(axis=(1, 2, 3))),
    ):
        got = fn(pred, target)
        assert got.shape == (3,) and got.dtype == jnp.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5)


# ---------------------------------------------------------------------------
# SSIM.


def test_ssim_matches_skimage_grayscale():
    rng = np.random.default_rng(1)
    target = np.stack([_smooth_image(rng, 19, 23) for _ in range(3)])
    pred = target + 0.3 * rng.standard_normal(target.shape)
    got = losses.ssim(pred.astype(np.float32), target.astype(np.float32))
    assert got.shape == (3,) and got.dtype == jnp.float32
    ref = [
        structural_similarity(
            t, p, data_range=t.max(), win_size=7, K1=0.01, K2=0.03,
            gaussian_weights=False, use_sample_covariance=True,
        )
        for t, p in zip(target, pred)
    ]
    np.testing.assert_allclose(got, ref, atol=1e-4)
    assert 0.2 < min(ref) < max(ref) < 0.99  # a non-trivial comparison


def test_ssim_matches_skimage_nhwc_with_data_range():
    rng = np.random.default_rng(2)
    target = np.stack([_smooth_image(rng, 21, 17, channels=2) for _ in range(2)])
    pred = 0.9 * target + 0.2 * rng.standard_normal(target.shape)
    data_range = np.array([5.0, 8.0])
    ref = [
        structural_similarity(
            t, p, data_range=dr, win_size=7, K1=0.01, K2=0.03,
            gaussian_weights=False, use_sample_covariance=True, channel_axis=-1,
        )
        for t, p, dr in zip(target, pred, data_range)
    ]
    got = losses.ssim(pred.astype(np.float32), target.astype(np.float32), data_range=data_range)
    np.testing.assert_allclose(got, ref, atol=1e-4)
    # Scalar data_range broadcasts over the batch.
    got_scalar = losses.ssim(pred, target, data_range=5.0)
    np.testing.assert_allclose(got_scalar[0], ref[0], atol=1e-4)


def test_ssim_identity_and_loss():
    rng = np.random.default_rng(3)
    x = jnp.asarray(np.stack([_smooth_image(rng, 9, 12) for _ in range(2)]), jnp.float32)
    np.testing.assert_allclose(losses.ssim(x, x), [1.0, 1.0], atol=1e-6)
    y = x + 0.5 * jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
    np.testing.assert_allclose(losses.ssim_loss(y, x), 1.0 - losses.ssim(y, x), atol=1e-7)
    assert np.all(losses.ssim_loss(y, x) > 0.01)
    loss_fn = jax.jit(lambda p: losses.ssim_loss(p, x).mean())
    grad = jax.grad(loss_fn)(y)
    assert grad.shape == y.shape and np.all(np.isfinite(grad))


# ---------------------------------------------------------------------------
# Penalties.


def _params():
    rng = np.random.default_rng(4)
    f32 = lambda *s: jnp.asarray(rng.standard_normal(s), jnp.float32)  # noqa: E731
    return {
        "params": {
            "Conv_0": {"kernel": f32(3, 3, 1, 2), "bias": f32(2)},
            "BatchNorm_0": {"scale": f32(2), "bias": f32(2)},
            "block": {"Dense_0": {"kernel": f32(4, 3), "bias": f32(3)}, "alpha": f32(1)},
        }
    }


def _f64(x):
    return np.asarray(x, np.float64)


def test_penalty_values_match_numpy():
    params = _params()
    p = params["params"]
    kernels = [_f64(p["Conv_0"]["kernel"]), _f64(p["block"]["Dense_0"]["kernel"])]
    every = [_f64(x) for x in jax.tree.leaves(params)]
    assert len(every) == 7
    l1_kernels = sum(np.abs(k).sum() for k in kernels)
    l2_kernels = sum((k**2).sum() for k in kernels)
    np.testing.assert_allclose(losses.l1_penalty(params), l1_kernels, rtol=1e-6)
    np.testing.assert_allclose(losses.l2_penalty(params), l2_kernels, rtol=1e-6)
    l1_all = losses.l1_penalty(params, include=losses.all_weights)
    l2_all = losses.l2_penalty(params, include=losses.all_weights)
    np.testing.assert_allclose(l1_all, sum(np.abs(x).sum() for x in every), rtol=1e-6)
    np.testing.assert_allclose(l2_all, sum((x**2).sum() for x in every), rtol=1e-6)
    bn = p["BatchNorm_0"]
    np.testing.assert_allclose(
        losses.l2_penalty(params, include=lambda path, leaf: "BatchNorm_0" in path),
        (_f64(bn["scale"]) ** 2).sum() + (_f64(bn["bias"]) ** 2).sum(),
        rtol=1e-6,
    )
    assert float(losses.l2_penalty({"bias": jnp.ones(3)})) == 0.0


def test_l2_penalty_gradient():
    params = _params()
    lam = 0.05
    grads = jax.jit(jax.grad(lambda p: lam * losses.l2_penalty(p)))(params)
    for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]:
        w = params
        for key in path:
            w = w[key.key]
        if path[-1].key == "kernel":
            np.testing.assert_allclose(g, 2 * lam * w, rtol=1e-6)
        else:
            np.testing.assert_array_equal(g, np.zeros_like(w))
    grads_all = jax.grad(lambda p: lam * losses.l2_penalty(p, include=losses.all_weights))(params)
    bias = params["params"]["Conv_0"]["bias"]
    np.testing.assert_allclose(grads_all["params"]["Conv_0"]["bias"], 2 * lam * bias, rtol=1e-6)
    grads_l1 = jax.grad(lambda p: losses.l1_penalty(p))(params)
    kernel = params["params"]["Conv_0"]["kernel"]
    np.testing.assert_array_equal(grads_l1["params"]["Conv_0"]["kernel"], np.sign(kernel))


def test_predicates():
    assert losses.kernels_only(("params", "Dense_0", "kernel"), None)
    assert not losses.kernels_only(("params", "Dense_0", "bias"), None)
    assert not losses.kernels_only((), None)
    assert losses.all_weights(("alpha",), None)


# ---------------------------------------------------------------------------
# Registry and errors.


def test_registry():
    assert set(losses.LOSSES) == {"cross_entropy", "soft_cross_entropy", "mse", "mae", "ssim_loss"}
    for name, fn in losses.LOSSES.items():
        assert losses.get_loss(name) is fn
    with pytest.raises(ValueError, match=r"name must be a known loss.*'mse'.*got 'msee'"):
        losses.get_loss("msee")


LOGITS = jnp.zeros((4, 10))
LABELS = jnp.zeros(4, int)
IMG = jnp.ones((2, 9, 9))
CIMG = jnp.ones((2, 9, 9), jnp.complex64)


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: losses.cross_entropy(jnp.zeros((4, 10, 1)), LABELS), ValueError,
         r"logits must be real floating \[batch, classes\]; got float32 \(4, 10, 1\)"),
        (lambda: losses.cross_entropy(jnp.zeros((4, 10), int), LABELS), ValueError,
         r"logits must be real floating"),
        (lambda: losses.cross_entropy(LOGITS, jnp.zeros(4)), ValueError,
         r"labels must be integer \[batch\] matching logits \[4, 10\]; got float32 \(4,\)"),
        (lambda: losses.cross_entropy(LOGITS, jnp.zeros(3, int)), ValueError,
         r"labels must be integer \[batch\] matching logits \[4, 10\]; got int32 \(3,\)"),
        (lambda: losses.accuracy(LOGITS, jnp.zeros((4, 1), int)), ValueError,
         r"labels must be integer"),
        (lambda: losses.cross_entropy(LOGITS, LABELS, label_smoothing=1.0), ValueError,
         r"label_smoothing must be in \[0, 1\); got 1.0"),
        (lambda: losses.cross_entropy(LOGITS, LABELS, label_smoothing=-0.1), ValueError,
         r"label_smoothing must be in \[0, 1\)"),
        (lambda: losses.soft_cross_entropy(LOGITS, jnp.zeros((4, 9))), ValueError,
         r"targets must be real floating probabilities matching logits \[4, 10\]; "
         r"got float32 \(4, 9\)"),
        (lambda: losses.mse(jnp.zeros((2, 3)), jnp.zeros((2, 4))), ValueError,
         r"pred and target must have the same shape; "
         r"got pred float32 \(2, 3\) and target float32 \(2, 4\)"),
        (lambda: losses.mae(jnp.zeros(()), jnp.zeros(())), ValueError,
         r"pred must have a leading batch axis"),
        (lambda: losses.ssim(jnp.ones((2, 6, 9)), jnp.ones((2, 6, 9))), ValueError,
         r"pred must have H and W >= win_size=7; got H=6, W=9"),
        (lambda: losses.ssim(jnp.ones((2, 9)), jnp.ones((2, 9))), ValueError,
         r"pred must be images \[batch, H, W, C\] or \[batch, H, W\]"),
        (lambda: losses.ssim(IMG, jnp.ones((2, 9, 8))), ValueError, r"pred and target"),
        (lambda: losses.ssim(CIMG, CIMG), TypeError, r"pred must be real images"),
        (lambda: losses.ssim(IMG, IMG, win_size=4), ValueError,
         r"win_size must be an odd int >= 3; got 4"),
        (lambda: losses.ssim(IMG, IMG, data_range=jnp.ones(3)), ValueError,
         r"data_range must be a scalar or \[batch\] = \[2\]; got float32 \(3,\)"),
        (lambda: losses.ssim(IMG, IMG, data_range=0.0), ValueError,
         r"data_range must be positive"),
        (lambda: losses.l2_penalty({"kernel": jnp.ones(2)}, include="kernel"), TypeError,
         r"include must be a predicate"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_checks_run_under_jit():
    with pytest.raises(ValueError, match="labels must be integer"):
        jax.jit(losses.cross_entropy)(LOGITS, jnp.zeros(4))


def test_step_losses_carry_their_target_key_and_reduce_by_weight():
  loss = losses.classification_loss()
  assert isinstance(loss, losses.StepLoss)
  assert (loss.target_key, loss.target_integer) == ("label", True)
  logits = jnp.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]])
  batch = {"label": jnp.array([0, 0, 1]), "weight": jnp.array([1.0, 1.0, 0.0])}
  value, metrics = loss(logits, batch)
  # The weight-0 row (a padding copy) counts in neither the sum nor the count.
  expected = np.mean([np.log1p(np.exp(-2.0)), np.log1p(np.exp(2.0))])
  np.testing.assert_allclose(value, expected, rtol=1e-6)
  np.testing.assert_allclose(metrics["accuracy"], 0.5)
  assert losses.regression_loss("mae").target_key == "target"
  assert losses.reconstruction_loss("ssim").target_integer is False


# ---------------------------------------------------------------------------
# Segmentation losses: float64 NumPy references, hand cases, gradients.


def _np_softmax(z):
  return np.exp(_np_log_softmax(z))


def _np_soft_dice(logits, labels, include_background=False, eps=1e-6):
  """Per-example soft Dice loss in float64, class by class with explicit loops."""
  probs = _np_softmax(logits)
  num_classes = logits.shape[-1]
  out = []
  for p, y in zip(probs, labels):
    dices = []
    for c in range(0 if include_background else 1, num_classes):
      pc, yc = p[..., c], (y == c).astype(np.float64)
      dices.append((2 * (pc * yc).sum() + eps) / (pc.sum() + yc.sum() + eps))
    out.append(1.0 - np.mean(dices))
  return np.array(out)


def _np_seg_ce(logits, labels):
  logp = _np_log_softmax(logits)
  picked = np.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  return -picked.reshape(len(labels), -1).mean(axis=-1)


SEG_LOGITS = RNG.normal(size=(3, 5, 7, 4)).astype(np.float32)
SEG_LABELS = RNG.integers(0, 4, size=(3, 5, 7))
SEG_LABELS[2] = np.where(SEG_LABELS[2] == 3, 0, SEG_LABELS[2])  # class 3 absent in example 2


@pytest.mark.parametrize("include_background", [False, True])
def test_soft_dice_loss_matches_float64_reference(include_background):
  got = losses.soft_dice_loss(SEG_LOGITS, SEG_LABELS, include_background=include_background)
  assert got.shape == (3,) and got.dtype == jnp.float32
  expected = _np_soft_dice(SEG_LOGITS, SEG_LABELS, include_background)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_soft_dice_loss_on_volumes_matches_reference():
  logits = RNG.normal(size=(2, 3, 4, 5, 3)).astype(np.float32)
  labels = RNG.integers(0, 3, size=(2, 3, 4, 5))
  np.testing.assert_allclose(losses.soft_dice_loss(logits, labels),
                             _np_soft_dice(logits, labels), rtol=1e-5, atol=1e-6)


def test_soft_dice_hand_cases():
  labels = np.zeros((3, 4, 4), np.int32)
  labels[:, 1:3, 1:3] = 1  # a 2x2 square of class 1 in every example
  perfect = 40.0 * np.eye(2, dtype=np.float32)[labels]
  all_background = 40.0 * np.eye(2, dtype=np.float32)[np.zeros_like(labels)]
  half = np.zeros((3, 4, 4, 2), np.float32)  # p = 0.5 everywhere
  loss = losses.soft_dice_loss(np.stack([perfect[0], all_background[0], half[0]]), labels)
  # Perfect: D = (8 + eps) / (8 + eps) = 1. All background: D = eps / (4 + eps) ~ 0.
  # p = 1/2: D = (2 * 2 + eps) / (8 + 4 + eps) = 1/3.
  np.testing.assert_allclose(loss, [0.0, 1.0, 2.0 / 3.0], atol=1e-5)


def test_soft_dice_absent_class_counts_unless_its_mass_is_below_eps():
  labels = np.zeros((1, 4, 4), np.int32)  # only background
  confident = 40.0 * np.eye(2, dtype=np.float32)[labels]  # p(class 1) ~ 16 exp(-40)
  unsure = np.zeros((1, 4, 4, 2), np.float32)  # p(class 1) = 1/2, mass 8
  np.testing.assert_allclose(losses.soft_dice_loss(confident, labels), [0.0], atol=1e-5)
  np.testing.assert_allclose(losses.soft_dice_loss(unsure, labels),
                             [1 - 1e-6 / (8 + 1e-6)], rtol=1e-6)


def test_segmentation_cross_entropy_matches_float64_reference():
  got = losses.segmentation_cross_entropy(SEG_LOGITS, SEG_LABELS)
  assert got.shape == (3,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, _np_seg_ce(SEG_LOGITS, SEG_LABELS), rtol=1e-5)


def test_segmentation_losses_give_nan_for_out_of_range_labels():
  labels = SEG_LABELS.copy()
  labels[1, 0, 0] = 4
  for fn in (losses.soft_dice_loss, losses.segmentation_cross_entropy):
    got = np.asarray(fn(SEG_LOGITS, labels))
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()


def test_hard_dice_and_pixel_accuracy_by_hand():
  labels = np.array([[[0, 1, 1, 2]], [[0, 0, 0, 0]], [[0, 0, 2, 2]]])  # [3, 1, 4]
  pred = np.array([[[0, 1, 2, 2]], [[0, 0, 0, 0]], [[0, 1, 2, 2]]])
  logits = np.eye(3, dtype=np.float32)[pred]
  # Example 0: class 1: 2*1/(1+2) = 2/3, class 2: 2*1/(2+1) = 2/3.
  # Example 1: no foreground anywhere -> 1.0. Example 2: class 1 only predicted -> 0,
  # class 2: 1 -> mean 1/2.
  np.testing.assert_allclose(losses.hard_dice(logits, labels), [2 / 3, 1.0, 0.5],
                             rtol=1e-6)
  np.testing.assert_allclose(losses.pixel_accuracy(logits, labels), [0.75, 1.0, 0.75])
  # With background: example 1 is 1.0 (class 0 perfect, others absent from both).
  np.testing.assert_allclose(
      losses.hard_dice(logits, labels, include_background=True),
      [(1.0 + 2 / 3 + 2 / 3) / 3, 1.0, (2 / 3 + 0.0 + 1.0) / 3], rtol=1e-6)


def test_segmentation_step_losses_sum_weight_and_report_metrics():
  batch = {"label": jnp.asarray(SEG_LABELS), "weight": jnp.array([1.0, 0.0, 1.0])}
  dice = _np_soft_dice(SEG_LOGITS, SEG_LABELS)
  ce = _np_seg_ce(SEG_LOGITS, SEG_LABELS)
  keep = [0, 2]  # the weight-0 example counts nowhere
  expected = {"dice": dice[keep].mean(), "ce": ce[keep].mean(),
              "dice_ce": (0.5 * dice + 2.0 * ce)[keep].mean()}
  for name, value in expected.items():
    loss = losses.segmentation_loss(name, dice_weight=0.5, ce_weight=2.0)
    assert (loss.target_key, loss.target_integer) == ("label", False)
    got, metrics = jax.jit(loss)(jnp.asarray(SEG_LOGITS), batch)
    np.testing.assert_allclose(got, value, rtol=1e-5)
  assert set(metrics) == {"dice", "pixel_accuracy", "soft_dice_loss", "cross_entropy"}
  np.testing.assert_allclose(metrics["soft_dice_loss"], dice[keep].mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["cross_entropy"], ce[keep].mean(), rtol=1e-5)
  accuracy = (SEG_LOGITS.argmax(-1) == SEG_LABELS).reshape(3, -1).mean(-1)
  np.testing.assert_allclose(metrics["pixel_accuracy"], accuracy[keep].mean(), rtol=1e-6)


def test_segmentation_loss_gradients_are_finite_and_descend():
  loss = losses.segmentation_loss("dice_ce")
  batch = {"label": jnp.asarray(SEG_LABELS)}
  value_and_grad = jax.jit(jax.value_and_grad(lambda z: loss(z, batch)[0]))
  logits = jnp.asarray(SEG_LOGITS)
  value, grad = value_and_grad(logits)
  assert grad.shape == logits.shape and bool(jnp.isfinite(grad).all())
  assert float(jnp.abs(grad).max()) > 0
  smaller, _ = value_and_grad(logits - 1.0 * grad / jnp.linalg.norm(grad))
  assert float(smaller) < float(value)
  # Saturated (confident) logits still give finite gradients.
  _, grad = value_and_grad(1e4 * logits)
  assert bool(jnp.isfinite(grad).all())


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: losses.soft_dice_loss(jnp.ones((2, 4, 5, 3)), jnp.zeros((2, 5, 4), int)),
         r"labels must be integer \[batch, \*spatial\] matching logits \[2, 4, 5, 3\]"),
        (lambda: losses.soft_dice_loss(jnp.ones((2, 4, 4, 1)), jnp.zeros((2, 4, 4), int)),
         r"logits must have at least 2 classes on the last axis; got float32 \(2, 4, 4, 1\)"),
        (lambda: losses.soft_dice_loss(jnp.ones((2, 4)), jnp.zeros((2,), int)),
         r"logits must be real floating \[batch, H, W, classes\]"),
        (lambda: losses.segmentation_cross_entropy(SEG_LOGITS, SEG_LABELS.astype(float)),
         r"labels must be integer \[batch, \*spatial\] matching logits \[3, 5, 7, 4\] "
         r"without its class axis; got float32 \(3, 5, 7\)"),
        (lambda: losses.soft_dice_loss(SEG_LOGITS, SEG_LABELS, eps=0.0),
         r"eps must be a positive float; got 0.0"),
        (lambda: losses.segmentation_loss("focal"),
         r"segmentation loss must be one of \('dice', 'ce', 'dice_ce'\); got 'focal'"),
        (lambda: losses.segmentation_loss(ce_weight=-1.0),
         r"ce_weight must be a float >= 0; got -1.0"),
    ],
)
def test_segmentation_bad_inputs(call, match):
  with pytest.raises(ValueError, match=match):
    call()


def test_joint_loss_adds_the_weighted_reconstruction_term():
  rng = np.random.default_rng(3)
  logits = jnp.asarray(rng.normal(size=(2, 9, 8, 3)), jnp.float32)  # SSIM needs >= 7 x 7
  labels = jnp.asarray(rng.integers(0, 3, (2, 9, 8)))
  image = jnp.asarray(rng.uniform(size=(2, 9, 8)), jnp.float32)
  target = jnp.asarray(rng.uniform(size=(2, 9, 8)), jnp.float32)
  batch = {"label": labels, "target": target, "data_range": jnp.ones(2, jnp.float32)}
  seg = losses.segmentation_loss("dice_ce")
  rec = losses.reconstruction_loss("l1")
  joint = losses.joint_loss(seg, rec, recon_weight=0.25)
  assert joint.target_key == "label"
  value, metrics = jax.jit(joint)((image, logits), batch)
  seg_value, _ = seg(logits, batch)
  l1 = np.abs(np.asarray(image) - np.asarray(target)).mean()
  np.testing.assert_allclose(value, float(seg_value) + 0.25 * l1, rtol=1e-5)
  np.testing.assert_allclose(metrics["recon_loss"], l1, rtol=1e-5)
  assert {"dice", "recon_l1", "recon_ssim", "recon_psnr", "recon_nmse"} <= set(metrics)
  with pytest.raises(ValueError, match="recon_weight"):
    losses.joint_loss(seg, rec, recon_weight=-1.0)
  with pytest.raises(ValueError, match=r"\(image, logits\)"):
    joint(logits, batch)
