"""Losses, metrics and weight penalties as pure ``jax.numpy`` functions.

Every loss returns one value per example (shape ``[batch]``, float32), so the
caller chooses the reduction (mean, masked mean, per-example weights). All
functions are ``jax.jit``-compatible; shape and dtype checks are static and
run at trace time. Keyword options that decide shapes (``win_size``) must be
Python values, not traced arrays.

The registry :data:`LOSSES` maps config names to loss functions; use
:func:`get_loss` to look one up with a clear error for unknown names.

The steps of `fdl.train` take a :class:`StepLoss`, ``(outputs, batch) -> (loss,
metrics)`` plus the batch key of its target: :func:`classification_loss`,
:func:`regression_loss` and :func:`reconstruction_loss` build them from the
per-example losses above, reduced by :func:`weighted_mean`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "LOSSES",
    "RECONSTRUCTION_LOSSES",
    "SEGMENTATION_LOSSES",
    "StepLoss",
    "WEIGHT_KEY",
    "classification_loss",
    "joint_loss",
    "reconstruction_loss",
    "regression_loss",
    "segmentation_loss",
    "weighted_mean",
    "accuracy",
    "all_weights",
    "cross_entropy",
    "get_loss",
    "hard_dice",
    "kernels_only",
    "l1_penalty",
    "l2_penalty",
    "mae",
    "mse",
    "pixel_accuracy",
    "segmentation_cross_entropy",
    "soft_cross_entropy",
    "soft_dice_loss",
    "ssim",
    "ssim_loss",
    "autoencoder_loss",
    "bernoulli_nll",
    "elbo_loss",
    "gan_discriminator_loss",
    "gan_generator_loss",
    "gaussian_kl",
    "gaussian_nll",
    "vae_loss",
]

Array = jax.Array
ArrayLike = jax.typing.ArrayLike
PathPredicate = Callable[[tuple[Any, ...], Array], bool]


# ---------------------------------------------------------------------------
# Boundary checks (static: shapes and dtypes only, fine under tracing).


def _describe(x: Array) -> str:
  return f"{jnp.dtype(x.dtype).name} {tuple(x.shape)}"


def _shape_str(shape: tuple[int, ...]) -> str:
  return "[" + ", ".join(str(d) for d in shape) + "]"


def _is_concrete(x: Any) -> bool:
  return not isinstance(x, jax.core.Tracer)


def _check_logits(logits: ArrayLike) -> Array:
  logits = jnp.asarray(logits)
  if logits.ndim != 2 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(
        "logits must be real floating [batch, classes]; "
        f"got {_describe(logits)}"
    )
  return logits


def _check_labels(labels: ArrayLike, logits: Array) -> Array:
  labels = jnp.asarray(labels)
  if (
      not jnp.issubdtype(labels.dtype, jnp.integer)
      or labels.shape != logits.shape[:1]
  ):
    raise ValueError(
        "labels must be integer [batch] matching logits "
        f"{_shape_str(logits.shape)}; got {_describe(labels)}"
    )
  return labels


def _check_pair(
    pred: ArrayLike, target: ArrayLike, *, min_rank: int = 1
) -> tuple[Array, Array]:
  pred, target = jnp.asarray(pred), jnp.asarray(target)
  if pred.shape != target.shape:
    raise ValueError(
        f"pred and target must have the same shape; got pred {_describe(pred)} "
        f"and target {_describe(target)}"
    )
  if pred.ndim < min_rank:
    raise ValueError(
        f"pred must have a leading batch axis (rank >= {min_rank}); "
        f"got {_describe(pred)}"
    )
  return pred, target


def _compute_dtype(dtype: Any) -> Any:
  """At least float32 (complex64 for complex inputs); keeps float64 if enabled."""
  if jnp.issubdtype(dtype, jnp.complexfloating):
    return jnp.promote_types(dtype, jnp.complex64)
  if jnp.issubdtype(dtype, jnp.floating):
    return jnp.promote_types(dtype, jnp.float32)
  return jnp.float32


# ---------------------------------------------------------------------------
# Classification.


def cross_entropy(
    logits: ArrayLike, labels: ArrayLike, *, label_smoothing: float = 0.0
) -> Array:
  r"""Softmax cross-entropy with integer labels, per example.

  With smoothing :math:`\varepsilon` the target distribution over ``C``
  classes is :math:`q = (1-\varepsilon)\,\mathrm{onehot}(y) + \varepsilon/C`
  and the loss is

  .. math::
      \ell = -\sum_c q_c \log\mathrm{softmax}(z)_c
           = -(1-\varepsilon)\log p_y - \frac{\varepsilon}{C}\sum_c \log p_c .

  Args:
    logits: unnormalised scores, real floating ``[batch, classes]``; computed
      in at least float32.
    labels: integer class indices ``[batch]`` in ``[0, classes)``. Values
      outside that range are traced and cannot be checked statically; they
      give a NaN loss so a non-finite check on the step catches them.
    label_smoothing: :math:`\varepsilon` in ``[0, 1)``.

  Returns:
    Per-example loss ``[batch]``, float32 (float64 if logits are float64).

  Raises:
    ValueError: ``logits`` is not rank 2 floating, ``labels`` is not integer
      ``[batch]``, or ``label_smoothing`` is outside ``[0, 1)``.

  Examples:
    Uniform logits over ``C`` classes give ``log C``:

    >>> import jax.numpy as jnp
    >>> loss = cross_entropy(jnp.zeros((2, 4)), jnp.array([0, 3]))
    >>> loss.shape, loss.dtype
    ((2,), dtype('float32'))
    >>> bool(jnp.allclose(loss, jnp.log(4.0)))
    True
  """
  logits = _check_logits(logits)
  labels = _check_labels(labels, logits)
  if np.ndim(label_smoothing) != 0:
    raise ValueError(
        "label_smoothing must be a scalar in [0, 1); "
        f"got shape {np.shape(label_smoothing)}"
    )
  if _is_concrete(label_smoothing) and not 0.0 <= float(label_smoothing) < 1.0:
    raise ValueError(f"label_smoothing must be in [0, 1); got {label_smoothing}")

  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(_compute_dtype(logits.dtype)), axis=-1)
  label_logp = jnp.take_along_axis(logp, labels[:, None], axis=-1)[:, 0]
  eps = jnp.asarray(label_smoothing, logp.dtype)
  # Written as (1-eps)*nll + eps*uniform term; equals soft_cross_entropy
  # with smoothed targets without materialising the one-hot matrix.
  loss = -(1.0 - eps) * label_logp - eps * jnp.mean(logp, axis=-1)
  in_range = (labels >= 0) & (labels < num_classes)
  return jnp.where(in_range, loss, jnp.nan)


def soft_cross_entropy(logits: ArrayLike, targets: ArrayLike) -> Array:
  r"""Cross-entropy against a target distribution, per example.

  .. math:: \ell = -\sum_c t_c \log\mathrm{softmax}(z)_c

  Terms with :math:`t_c = 0` contribute exactly zero, so logits of
  ``-inf`` (masked classes) are allowed where the target is zero.

  Args:
    logits: unnormalised scores, real floating ``[batch, classes]``.
    targets: probabilities, real floating ``[batch, classes]`` (rows
      should sum to 1; not checked, values are traced).

  Returns:
    Per-example loss ``[batch]``, float32.

  Raises:
    ValueError: ``logits`` is not rank 2 floating or ``targets`` does not
      match its shape.

  Examples:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[0.0, 0.0]])
    >>> round(float(soft_cross_entropy(logits, jnp.array([[0.5, 0.5]]))[0]), 4)
    0.6931
  """
  logits = _check_logits(logits)
  targets = jnp.asarray(targets)
  if targets.shape != logits.shape or not jnp.issubdtype(
      targets.dtype, jnp.floating
  ):
    raise ValueError(
        "targets must be real floating probabilities matching logits "
        f"{_shape_str(logits.shape)}; got {_describe(targets)}"
    )
  dtype = _compute_dtype(jnp.result_type(logits.dtype, targets.dtype))
  logp = jax.nn.log_softmax(logits.astype(dtype), axis=-1)
  targets = targets.astype(dtype)
  terms = jnp.where(targets == 0, 0.0, targets * logp)
  return -jnp.sum(terms, axis=-1)


def accuracy(logits: ArrayLike, labels: ArrayLike) -> Array:
  """Top-1 correctness per example.

  Args:
    logits: real floating ``[batch, classes]``.
    labels: integer ``[batch]``.

  Returns:
    ``[batch]`` float32, 1.0 where ``argmax(logits) == labels`` else 0.0.
    Ties go to the lowest class index (``jnp.argmax``).

  Raises:
    ValueError: same checks as :func:`cross_entropy`.

  Examples:
    >>> import jax.numpy as jnp
    >>> accuracy(jnp.array([[2.0, 1.0], [0.0, 3.0]]), jnp.array([0, 0])).tolist()
    [1.0, 0.0]
  """
  logits = _check_logits(logits)
  labels = _check_labels(labels, logits)
  return (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)


# ---------------------------------------------------------------------------
# Regression.


def _per_example_mean(x: Array) -> Array:
  return jnp.mean(x, axis=tuple(range(1, x.ndim)))


def mse(pred: ArrayLike, target: ArrayLike) -> Array:
  r"""Mean squared error per example: :math:`\mathrm{mean}_{i}|p_i - t_i|^2`.

  The mean runs over all non-batch axes. Complex inputs use the modulus, so
  the result is real.

  Args:
    pred: ``[batch, ...]`` real or complex.
    target: same shape as ``pred``.

  Returns:
    ``[batch]`` real, at least float32 (float32 for complex64 inputs).

  Raises:
    ValueError: shapes differ, or ``pred`` has no batch axis (rank 0).

  Examples:
    >>> import jax.numpy as jnp
    >>> mse(jnp.array([[1.0, 3.0]]), jnp.zeros((1, 2))).tolist()
    [5.0]
    >>> mse(jnp.array([[3 + 4j]]), jnp.zeros((1, 1), jnp.complex64)).tolist()
    [25.0]
  """
  pred, target = _check_pair(pred, target)
  diff = pred.astype(_compute_dtype(pred.dtype)) - target.astype(
      _compute_dtype(target.dtype)
  )
  if jnp.iscomplexobj(diff):
    sq = jnp.square(diff.real) + jnp.square(diff.imag)
  else:
    sq = jnp.square(diff)
  return _per_example_mean(sq)


def mae(pred: ArrayLike, target: ArrayLike) -> Array:
  r"""Mean absolute error per example: :math:`\mathrm{mean}_{i}|p_i - t_i|`.

  The mean runs over all non-batch axes. Complex inputs use the modulus.

  Args:
    pred: ``[batch, ...]`` real or complex.
    target: same shape as ``pred``.

  Returns:
    ``[batch]`` real, at least float32.

  Raises:
    ValueError: shapes differ, or ``pred`` has no batch axis (rank 0).

  Examples:
    >>> import jax.numpy as jnp
    >>> mae(jnp.array([[1.0, -3.0]]), jnp.zeros((1, 2))).tolist()
    [2.0]
  """
  pred, target = _check_pair(pred, target)
  diff = pred.astype(_compute_dtype(pred.dtype)) - target.astype(
      _compute_dtype(target.dtype)
  )
  return _per_example_mean(jnp.abs(diff))


# ---------------------------------------------------------------------------
# Image similarity.


def _box_mean(x: Array, win_size: int) -> Array:
  """Mean over each ``win_size x win_size`` window, 'valid' region, NHWC."""
  # The init value must be a concrete 0 (not a jnp array) for JAX to lower
  # this to reduce_window_sum, which has a transpose rule for jax.grad.
  summed = jax.lax.reduce_window(
      x,
      np.zeros((), x.dtype),
      jax.lax.add,
      window_dimensions=(1, win_size, win_size, 1),
      window_strides=(1, 1, 1, 1),
      padding="VALID",
  )
  return summed / (win_size * win_size)


def ssim(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    data_range: ArrayLike | None = None,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Array:
  r"""Structural similarity per image, fastMRI definition.

  Local statistics use a uniform ``win_size x win_size`` window evaluated on
  the 'valid' region only (no padding), with sample-covariance normalisation
  :math:`N_P/(N_P-1)`, :math:`N_P = \text{win\_size}^2`. With
  :math:`L` = ``data_range``, :math:`C_1 = (k_1 L)^2`, :math:`C_2 = (k_2 L)^2`:

  .. math::
      \mathrm{SSIM} = \frac{(2\mu_x\mu_y + C_1)(2\sigma_{xy} + C_2)}
                           {(\mu_x^2 + \mu_y^2 + C_1)(\sigma_x^2 + \sigma_y^2 + C_2)}

  averaged over the map and the channels. This matches
  ``skimage.metrics.structural_similarity(target, pred, data_range=L,
  win_size=7, K1=0.01, K2=0.03, gaussian_weights=False,
  use_sample_covariance=True)`` (skimage crops the same border) and
  fastMRI's ``evaluate.ssim`` / ``SSIMLoss``, except that the default
  ``data_range`` here is per image rather than per volume.

  Args:
    pred: real images ``[batch, H, W, C]`` (NHWC) or ``[batch, H, W]``.
      For complex MRI images pass magnitudes (``jnp.abs``).
    target: same shape as ``pred``.
    data_range: dynamic range :math:`L`, a scalar or ``[batch]`` array.
      Default: per-image maximum of ``target`` (over H, W, C), as fastMRI
      does; an all-zero target then gives NaN.
    win_size: odd window side, at least 3; ``H`` and ``W`` must be at least
      ``win_size``. Must be a Python int (it sets shapes).
    k1: stability constant for the luminance term.
    k2: stability constant for the contrast/structure term.

  Returns:
    ``[batch]`` float32, 1.0 for identical images.

  Raises:
    ValueError: shapes differ, rank not 3 or 4, images smaller than
      ``win_size``, bad ``win_size``, or ``data_range`` shape is neither
      scalar nor ``[batch]``.
    TypeError: complex ``pred`` or ``target``.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.arange(2 * 9 * 11, dtype=jnp.float32).reshape(2, 9, 11) % 7
    >>> round(float(ssim(x, x)[0]), 6)
    1.0
    >>> bool((ssim(x + 1.0, x) < 1.0).all())
    True
  """
  pred, target = _check_pair(pred, target)
  for name, arr in (("pred", pred), ("target", target)):
    if jnp.issubdtype(arr.dtype, jnp.complexfloating) or arr.dtype == jnp.bool_:
      raise TypeError(
          f"{name} must be real images [batch, H, W(, C)] "
          f"(take jnp.abs of complex images); got {_describe(arr)}"
      )
  if pred.ndim not in (3, 4):
    raise ValueError(
        "pred must be images [batch, H, W, C] or [batch, H, W]; "
        f"got {_describe(pred)}"
    )
  if not isinstance(win_size, (int, np.integer)) or win_size < 3 or win_size % 2 == 0:
    raise ValueError(f"win_size must be an odd int >= 3; got {win_size!r}")
  if pred.ndim == 3:
    pred, target = pred[..., None], target[..., None]
  batch, height, width, _ = pred.shape
  if height < win_size or width < win_size:
    raise ValueError(
        f"pred must have H and W >= win_size={win_size}; "
        f"got H={height}, W={width}"
    )

  dtype = _compute_dtype(jnp.result_type(pred.dtype, target.dtype))
  x, y = pred.astype(dtype), target.astype(dtype)

  if data_range is None:
    data_range = jnp.max(y, axis=(1, 2, 3))
  else:
    if isinstance(data_range, (int, float)) and not data_range > 0:
      raise ValueError(f"data_range must be positive; got {data_range!r}")
    data_range = jnp.asarray(data_range, dtype)
    if data_range.shape not in ((), (batch,)):
      raise ValueError(
          f"data_range must be a scalar or [batch] = [{batch}]; "
          f"got {_describe(data_range)}"
      )
  data_range = jnp.broadcast_to(data_range.astype(dtype), (batch,))
  data_range = data_range[:, None, None, None]
  c1 = (k1 * data_range) ** 2
  c2 = (k2 * data_range) ** 2

  # (Co)variances are shift-invariant: centre each image first so the
  # E[x^2] - E[x]^2 differences do not cancel catastrophically in float32
  # when images carry a large offset.
  x_off = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  y_off = jnp.mean(y, axis=(1, 2, 3), keepdims=True)
  xc, yc = x - x_off, y - y_off
  ux_c, uy_c = _box_mean(xc, win_size), _box_mean(yc, win_size)
  uxx = _box_mean(xc * xc, win_size)
  uyy = _box_mean(yc * yc, win_size)
  uxy = _box_mean(xc * yc, win_size)
  num_px = win_size * win_size
  cov_norm = num_px / (num_px - 1.0)
  vx = cov_norm * (uxx - ux_c * ux_c)
  vy = cov_norm * (uyy - uy_c * uy_c)
  vxy = cov_norm * (uxy - ux_c * uy_c)
  ux, uy = ux_c + x_off, uy_c + y_off

  numerator = (2.0 * ux * uy + c1) * (2.0 * vxy + c2)
  denominator = (ux * ux + uy * uy + c1) * (vx + vy + c2)
  ssim_map = numerator / denominator
  return jnp.mean(ssim_map, axis=(1, 2, 3))


def ssim_loss(
    pred: ArrayLike,
    target: ArrayLike,
    *,
    data_range: ArrayLike | None = None,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> Array:
  """``1 - ssim(pred, target, ...)`` per image, ``[batch]`` float32.

  Arguments, defaults and errors are those of :func:`ssim`.

  Examples:
    >>> import jax.numpy as jnp
    >>> x = jnp.ones((1, 8, 8)).at[:, 2:5, 3:6].set(3.0)
    >>> round(float(ssim_loss(x, x)[0]), 6)
    0.0
  """
  return 1.0 - ssim(
      pred, target, data_range=data_range, win_size=win_size, k1=k1, k2=k2
  )


# ---------------------------------------------------------------------------
# Segmentation (per-pixel classification of images or volumes).


def _check_seg_inputs(logits: ArrayLike, labels: ArrayLike, *,
                      min_classes: int = 1) -> tuple[Array, Array]:
  """Checks logits ``[batch, *spatial, classes]`` against labels ``[batch, *spatial]``."""
  logits, labels = jnp.asarray(logits), jnp.asarray(labels)
  if logits.ndim < 3 or not jnp.issubdtype(logits.dtype, jnp.floating):
    raise ValueError(
        "logits must be real floating [batch, H, W, classes] (or [batch, *spatial, "
        f"classes]); got {_describe(logits)}"
    )
  if logits.shape[-1] < min_classes:
    raise ValueError(
        f"logits must have at least {min_classes} classes on the last axis; "
        f"got {_describe(logits)}"
    )
  if not jnp.issubdtype(labels.dtype, jnp.integer) or labels.shape != logits.shape[:-1]:
    raise ValueError(
        "labels must be integer [batch, *spatial] matching logits "
        f"{_shape_str(logits.shape)} without its class axis; got {_describe(labels)}"
    )
  return logits, labels


def _labels_in_range(labels: Array, num_classes: int) -> Array:
  """``[batch]`` bool: every label of the example is in ``[0, num_classes)``."""
  ok = (labels >= 0) & (labels < num_classes)
  return jnp.all(ok.reshape(labels.shape[0], -1), axis=-1)


def soft_dice_loss(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    include_background: bool = False,
    eps: float = 1e-6,
) -> Array:
  r"""Soft Dice loss per example, averaged over classes.

  With :math:`p = \mathrm{softmax}(z)` over the class axis and :math:`y` the one-hot
  labels, for each example and class :math:`c` (sums over all pixels or voxels
  :math:`i` of the example)

  .. math::
      D_c = \frac{2\sum_i p_{ic} y_{ic} + \epsilon}{\sum_i p_{ic} + \sum_i y_{ic} + \epsilon},
      \qquad \ell = 1 - \frac{1}{|S|}\sum_{c \in S} D_c ,

  where :math:`S` is every class, or classes ``1..C-1`` when ``include_background`` is
  False (class 0 is background). Each example is its own Dice (no pooling over the
  batch). Every class in :math:`S` counts, present in the labels or not: a class absent
  from an example's labels has :math:`D_c = \epsilon / (\sum_i p_{ic} + \epsilon)`, about
  1 (no loss) only when its predicted mass is far below :math:`\epsilon`, and about 0
  (loss 1, with a vanishing gradient) otherwise. Add the cross-entropy
  (``segmentation_loss("dice_ce")``) to penalise false positives on such examples.

  Args:
    logits: unnormalised scores, real floating ``[batch, H, W, classes]`` (any spatial
      rank: ``[batch, *spatial, classes]``); computed in at least float32.
    labels: integer class indices ``[batch, H, W]`` (``[batch, *spatial]``) in
      ``[0, classes)``. Values outside that range are traced and cannot be checked
      statically; they give a NaN loss for their example.
    include_background: whether class 0 is in :math:`S`.
    eps: the smoothing :math:`\epsilon > 0` of numerator and denominator.

  Returns:
    Per-example loss ``[batch]``, float32 (float64 for float64 logits), in ``[0, 1]``.

  Raises:
    ValueError: logits are not real floating of rank >= 3, labels do not match them,
      ``include_background`` is False with a single class, or ``eps`` is not positive.

  Examples:
    A confident, correct prediction has a loss near 0, a wrong one near 1:

    >>> import jax, jax.numpy as jnp
    >>> labels = jnp.array([[[0, 1], [1, 1]]])  # [1, 2, 2]
    >>> logits = 50.0 * jax.nn.one_hot(labels, 2)
    >>> round(float(soft_dice_loss(logits, labels)[0]), 4)
    0.0
    >>> round(float(soft_dice_loss(logits, 1 - labels)[0]), 4)
    1.0
  """
  logits, labels = _check_seg_inputs(logits, labels,
                                     min_classes=1 if include_background else 2)
  if not isinstance(eps, (int, float, np.floating)) or not eps > 0:
    raise ValueError(f"eps must be a positive float; got {eps!r}")
  num_classes = logits.shape[-1]
  dtype = _compute_dtype(logits.dtype)
  probs = jax.nn.softmax(logits.astype(dtype), axis=-1)
  onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)
  spatial = tuple(range(1, logits.ndim - 1))
  intersection = jnp.sum(probs * onehot, axis=spatial)  # [batch, classes]
  total = jnp.sum(probs, axis=spatial) + jnp.sum(onehot, axis=spatial)
  dice = (2.0 * intersection + eps) / (total + eps)
  if not include_background:
    dice = dice[:, 1:]
  loss = 1.0 - jnp.mean(dice, axis=-1)
  return jnp.where(_labels_in_range(labels, num_classes), loss, jnp.nan)


def segmentation_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> Array:
  r"""Softmax cross-entropy averaged over the pixels (voxels) of each example.

  .. math:: \ell = -\frac{1}{N}\sum_{i=1}^{N} \log \mathrm{softmax}(z_i)_{y_i}

  Args:
    logits: real floating ``[batch, H, W, classes]`` (``[batch, *spatial, classes]``).
    labels: integer ``[batch, H, W]`` (``[batch, *spatial]``) in ``[0, classes)``;
      out-of-range values give a NaN loss for their example.

  Returns:
    Per-example loss ``[batch]``, float32 (float64 for float64 logits).

  Raises:
    ValueError: logits are not real floating of rank >= 3, or labels do not match.

  Examples:
    >>> import jax.numpy as jnp
    >>> loss = segmentation_cross_entropy(jnp.zeros((2, 3, 5, 4)), jnp.zeros((2, 3, 5), int))
    >>> bool(jnp.allclose(loss, jnp.log(4.0)))
    True
  """
  logits, labels = _check_seg_inputs(logits, labels)
  num_classes = logits.shape[-1]
  logp = jax.nn.log_softmax(logits.astype(_compute_dtype(logits.dtype)), axis=-1)
  label_logp = jnp.take_along_axis(logp, labels[..., None], axis=-1)[..., 0]
  loss = -jnp.mean(label_logp.reshape(labels.shape[0], -1), axis=-1)
  return jnp.where(_labels_in_range(labels, num_classes), loss, jnp.nan)


def hard_dice(logits: ArrayLike, labels: ArrayLike, *,
              include_background: bool = False) -> Array:
  r"""Dice of the argmax prediction per example, averaged over the classes scored.

  For each class :math:`c` with predicted set :math:`P_c = \{i: \arg\max z_i = c\}` and
  labelled set :math:`T_c`, :math:`D_c = 2|P_c \cap T_c| / (|P_c| + |T_c|)`. A class
  absent from both the prediction and the labels of an example has no Dice and is left
  out of that example's mean (the convention of `fdl.evaluate.segmentation.dice`); an
  example with none of the scored classes in either gets 1.0 (both agree there is
  nothing), so the value is always finite.

  Args:
    logits: real floating ``[batch, *spatial, classes]``.
    labels: integer ``[batch, *spatial]``.
    include_background: whether class 0 is scored.

  Returns:
    ``[batch]`` float32 in ``[0, 1]``. Not differentiable (argmax); for monitoring.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> labels = jnp.array([[[0, 1, 1, 1]]])
    >>> pred = jax.nn.one_hot(jnp.array([[[0, 0, 1, 1]]]), 2)
    >>> round(float(hard_dice(pred, labels)[0]), 4)  # 2 * 2 / (2 + 3)
    0.8
  """
  logits, labels = _check_seg_inputs(logits, labels,
                                     min_classes=1 if include_background else 2)
  num_classes = logits.shape[-1]
  pred = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=jnp.float32)
  target = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32)
  spatial = tuple(range(1, logits.ndim - 1))
  intersection = jnp.sum(pred * target, axis=spatial)
  total = jnp.sum(pred, axis=spatial) + jnp.sum(target, axis=spatial)
  if not include_background:
    intersection, total = intersection[:, 1:], total[:, 1:]
  present = total > 0
  dice = jnp.where(present, 2.0 * intersection / jnp.where(present, total, 1.0), 0.0)
  count = jnp.sum(present, axis=-1)
  return jnp.where(count > 0, jnp.sum(dice, axis=-1) / jnp.maximum(count, 1), 1.0)


def pixel_accuracy(logits: ArrayLike, labels: ArrayLike) -> Array:
  """Fraction of pixels (voxels) whose argmax class equals the label, per example.

  Args:
    logits: real floating ``[batch, *spatial, classes]``.
    labels: integer ``[batch, *spatial]``.

  Returns:
    ``[batch]`` float32 in ``[0, 1]``; ties go to the lowest class index.

  Examples:
    >>> import jax.numpy as jnp
    >>> logits = jnp.array([[[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]]])  # [1, 1, 3, 2]
    >>> round(float(pixel_accuracy(logits, jnp.array([[[0, 1, 1]]]))[0]), 4)
    0.6667
  """
  logits, labels = _check_seg_inputs(logits, labels)
  correct = (jnp.argmax(logits, axis=-1) == labels).astype(jnp.float32)
  return jnp.mean(correct.reshape(labels.shape[0], -1), axis=-1)


# ---------------------------------------------------------------------------
# Weight penalties.


def _key_name(key: Any) -> Any:
  for attr in ("key", "name", "idx"):
    if hasattr(key, attr):
      return getattr(key, attr)
  return key


def kernels_only(path: tuple[Any, ...], leaf: Array) -> bool:
  """Selects leaves whose last key is ``'kernel'`` (Dense/Conv weights).

  Excludes biases, normalisation scale/bias and PReLU/other learnable
  activation parameters. Default ``include`` of the penalties.
  """
  del leaf
  return bool(path) and path[-1] == "kernel"


def all_weights(path: tuple[Any, ...], leaf: Array) -> bool:
  """Selects every leaf of the parameter tree."""
  del path, leaf
  return True


def _selected_leaves(params: Any, include: PathPredicate | None) -> list[Array]:
  include = kernels_only if include is None else include
  if not callable(include):
    raise TypeError(
        "include must be a predicate (path, leaf) -> bool such as "
        f"kernels_only or all_weights; got {type(include).__name__}"
    )
  flat, _ = jax.tree_util.tree_flatten_with_path(params)
  selected = []
  for key_path, leaf in flat:
    path = tuple(_key_name(k) for k in key_path)
    if include(path, leaf):
      leaf = jnp.asarray(leaf)
      selected.append(leaf.astype(_compute_dtype(leaf.dtype)))
  return selected


def l1_penalty(params: Any, *, include: PathPredicate | None = None) -> Array:
  r"""Unscaled L1 penalty :math:`\sum_{w \in S} |w|` over selected leaves.

  Multiply by the regularisation strength yourself; the coefficient belongs
  in the config, not here.

  Args:
    params: parameter pytree (e.g. ``variables['params']``).
    include: predicate ``include(path, leaf) -> bool`` where ``path`` is the
      tuple of key names (dict keys, attribute names, sequence indices) from
      the root to the leaf. Default :func:`kernels_only`.

  Returns:
    Scalar, float32 (or wider if params are float64); 0.0 if nothing is
    selected.

  Examples:
    >>> import jax.numpy as jnp
    >>> params = {'dense': {'kernel': jnp.array([[1.0, -2.0]]),
    ...                     'bias': jnp.array([5.0])}}
    >>> float(l1_penalty(params)), float(l1_penalty(params, include=all_weights))
    (3.0, 8.0)
  """
  leaves = _selected_leaves(params, include)
  total = jnp.zeros((), jnp.float32)
  for leaf in leaves:
    total = total + jnp.sum(jnp.abs(leaf))
  return total


def l2_penalty(params: Any, *, include: PathPredicate | None = None) -> Array:
  r"""Unscaled squared-L2 penalty :math:`\sum_{w \in S} |w|^2`.

  Not halved: the gradient of ``lam * l2_penalty(params)`` is ``2 * lam * w``
  on selected leaves and exactly zero elsewhere.

  Args:
    params: parameter pytree.
    include: predicate on ``(path, leaf)``; default :func:`kernels_only`.

  Returns:
    Scalar, float32 (or wider if params are float64); 0.0 if nothing is
    selected.

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> params = {'dense': {'kernel': jnp.array([[1.0, -2.0]]),
    ...                     'bias': jnp.array([5.0])}}
    >>> float(l2_penalty(params))
    5.0
    >>> grads = jax.grad(lambda p: 0.1 * l2_penalty(p))(params)
    >>> bool(jnp.allclose(grads['dense']['kernel'], 0.2 * params['dense']['kernel']))
    True
    >>> grads['dense']['bias'].tolist()
    [0.0]
  """
  leaves = _selected_leaves(params, include)
  total = jnp.zeros((), jnp.float32)
  for leaf in leaves:
    if jnp.iscomplexobj(leaf):
      sq = jnp.square(leaf.real) + jnp.square(leaf.imag)
    else:
      sq = jnp.square(leaf)
    total = total + jnp.sum(sq)
  return total


# ---------------------------------------------------------------------------
# Registry.

LOSSES: dict[str, Callable[..., Array]] = {
    "cross_entropy": cross_entropy,
    "soft_cross_entropy": soft_cross_entropy,
    "mse": mse,
    "mae": mae,
    "ssim_loss": ssim_loss,
}


def get_loss(name: str) -> Callable[..., Array]:
  """Looks up a per-example loss by config name.

  Raises:
    ValueError: ``name`` is not in :data:`LOSSES`; the message lists the
      known names.

  Examples:
    >>> get_loss('mse') is mse
    True
  """
  try:
    return LOSSES[name]
  except (KeyError, TypeError):
    raise ValueError(
        f"name must be a known loss, one of {sorted(LOSSES)}; got {name!r}"
    ) from None


# ---------------------------------------------------------------------------
# The loss adapters of the training and evaluation steps.

WEIGHT_KEY = "weight"


@dataclasses.dataclass(frozen=True)
class StepLoss:
  """A step's loss: ``loss(outputs, batch) -> (scalar loss, {name: scalar metric})``.

  The one protocol between a loss and `fdl.train.make_train_step` /
  `make_eval_step`. Means are over the global batch, weighted by ``batch["weight"]``
  when present (`weighted_mean`).

  Attributes:
    fn: the function ``(outputs, batch) -> (loss, metrics)``.
    target_key: the batch key the loss compares the outputs with, checked by the steps
      before compiling (present, same batch size); None for a loss without a
      reference (self-supervised k-space losses).
    target_integer: whether ``batch[target_key]`` must be integer labels ``[batch]``.
  """
  fn: Callable[[Array, Mapping[str, Array]], tuple[Array, dict]]
  target_key: str | None = None
  target_integer: bool = False

  def __call__(self, outputs: Array, batch: Mapping[str, Array]) -> tuple[Array, dict]:
    return self.fn(outputs, batch)


def weighted_mean(values: Array, batch: Mapping[str, Array]) -> Array:
  """Mean of per-example `values`, weighted by ``batch["weight"]`` if present.

  Evaluation pads the last batch to a multiple of the device count; padding
  examples carry weight 0 so they change neither sums nor counts.
  """
  if WEIGHT_KEY not in batch:
    return values.mean()
  weight = batch[WEIGHT_KEY].astype(values.dtype)
  return (values * weight).sum() / jnp.maximum(weight.sum(), 1.0)


def classification_loss(*, label_smoothing: float = 0.0,
                        target_key: str = "label") -> StepLoss:
  """Mean cross-entropy on integer labels, reporting accuracy too.

  Args:
    label_smoothing: epsilon of label smoothing, in [0, 1).
    target_key: batch key of the integer labels ``[batch]``.
  """
  if not 0.0 <= label_smoothing < 1.0:
    raise ValueError(
        f"label_smoothing must be in [0, 1); got {label_smoothing!r}")

  def loss_fn(logits, batch):
    labels = batch[target_key]
    loss = weighted_mean(cross_entropy(logits, labels,
                                      label_smoothing=label_smoothing), batch)
    return loss, {"accuracy": weighted_mean(accuracy(logits, labels), batch)}

  return StepLoss(loss_fn, target_key=target_key, target_integer=True)


def regression_loss(name: str = "mse", *, target_key: str = "target") -> StepLoss:
  """Mean regression loss by name (``mse``, ``mae``, ``ssim_loss``)."""
  if name not in ("mse", "mae", "ssim_loss"):
    raise ValueError(
        f"regression loss must be one of ('mse', 'mae', 'ssim_loss'); got {name!r}")
  per_example = get_loss(name)

  def loss_fn(outputs, batch):
    return weighted_mean(per_example(outputs, batch[target_key]), batch), {}

  return StepLoss(loss_fn, target_key=target_key, target_integer=False)


RECONSTRUCTION_LOSSES = ("l1", "ssim", "mixed")


def reconstruction_loss(name: str = "l1", *, ssim_weight: float = 0.84,
                        target_key: str = "target",
                        data_range_key: str = "data_range") -> StepLoss:
  """Loss of a magnitude reconstruction ``[B, H, W]`` against ``batch["target"]``.

  The output is center-cropped to the target's ``[h, w]`` first (fastMRI
  targets are cropped to the reconstruction size). With ``e = |out - target|``
  and ``L = batch["data_range"]`` (``[B]``, the target volume's maximum):

  - ``l1``: ``mean(e)``;
  - ``ssim``: ``1 - SSIM(out, target; L)`` (7x7 box window, as fastMRI);
  - ``mixed``: ``ssim_weight * (1 - SSIM) + (1 - ssim_weight) * mean(e)``
    (Zhao et al., "Loss functions for image restoration with neural networks",
    IEEE TCI 2017, weight 0.84).

  Every variant also reports the per-batch means of ``l1``, ``ssim``, ``psnr``
  (dB, with ``L``) and ``nmse`` as metrics.
  """
  if name not in RECONSTRUCTION_LOSSES:
    raise ValueError(
        f"reconstruction loss must be one of {RECONSTRUCTION_LOSSES}; got {name!r}")
  if not 0.0 <= ssim_weight <= 1.0:
    raise ValueError(f"ssim_weight must be in [0, 1]; got {ssim_weight!r}")

  def loss_fn(outputs, batch):
    target = batch[target_key].astype(jnp.float32)
    top = (outputs.shape[-2] - target.shape[-2]) // 2
    left = (outputs.shape[-1] - target.shape[-1]) // 2
    outputs = outputs[..., top:top + target.shape[-2], left:left + target.shape[-1]]
    data_range = batch[data_range_key].astype(jnp.float32)
    l1 = mae(outputs, target)
    similarity = ssim(outputs, target, data_range=data_range)
    sq_err = jnp.sum(jnp.square(outputs - target), axis=(-2, -1))
    mse = sq_err / (target.shape[-2] * target.shape[-1])
    per_example = {"l1": l1, "ssim": 1.0 - similarity,
                   "mixed": ssim_weight * (1.0 - similarity) + (1.0 - ssim_weight) * l1}[name]
    metrics = {
        "l1": weighted_mean(l1, batch), "ssim": weighted_mean(similarity, batch),
        "psnr": weighted_mean(20.0 * jnp.log10(data_range) - 10.0 * jnp.log10(mse), batch),
        "nmse": weighted_mean(sq_err / jnp.sum(jnp.square(target), axis=(-2, -1)), batch)}
    return weighted_mean(per_example, batch), metrics

  return StepLoss(loss_fn, target_key=target_key, target_integer=False)


SEGMENTATION_LOSSES = ("dice", "ce", "dice_ce")


def segmentation_loss(name: str = "dice_ce", *, dice_weight: float = 1.0,
                      ce_weight: float = 1.0, include_background: bool = False,
                      eps: float = 1e-6, target_key: str = "label") -> StepLoss:
  """Loss of per-pixel logits ``[B, H, W, K]`` against integer labels ``batch["label"]``.

  With the per-example `soft_dice_loss` (foreground classes unless
  ``include_background``) and `segmentation_cross_entropy` (mean over pixels):

  - ``dice``: ``mean(soft_dice_loss)``;
  - ``ce``: ``mean(segmentation_cross_entropy)``;
  - ``dice_ce``: ``dice_weight * dice + ce_weight * ce`` (the weights are used by this
    variant only).

  Means are over the batch, weighted by ``batch["weight"]`` when present
  (`weighted_mean`). Every variant reports as metrics the batch means of

  - ``dice``: the *hard* Dice of the argmax prediction (`hard_dice`), per example over
    the foreground classes present in its prediction or labels (the classes of the soft
    Dice when ``include_background``);
  - ``pixel_accuracy``: the fraction of pixels whose argmax class is the label;
  - ``soft_dice_loss`` and ``cross_entropy``: the two terms, unweighted.

  The labels are integer ``[B, H, W]`` (any spatial rank matching the logits). The step's
  ``target_integer`` check is for ``[batch]`` class labels, so this `StepLoss` leaves it
  False and checks the labels' dtype and shape itself, at trace time.

  Args:
    name: one of `SEGMENTATION_LOSSES`.
    dice_weight: weight of the soft Dice term of ``dice_ce``, >= 0.
    ce_weight: weight of the cross-entropy term of ``dice_ce``, >= 0.
    include_background: whether the soft Dice (and the ``dice`` metric) count class 0.
    eps: the smoothing of `soft_dice_loss`.
    target_key: batch key of the integer labels.

  Raises:
    ValueError: unknown ``name``, or a negative weight.
  """
  if name not in SEGMENTATION_LOSSES:
    raise ValueError(
        f"segmentation loss must be one of {SEGMENTATION_LOSSES}; got {name!r}")
  for field, value in (("dice_weight", dice_weight), ("ce_weight", ce_weight)):
    if not isinstance(value, (int, float)) or not value >= 0:
      raise ValueError(f"{field} must be a float >= 0; got {value!r}")
  if not isinstance(eps, (int, float)) or not eps > 0:
    raise ValueError(f"eps must be a positive float; got {eps!r}")

  def loss_fn(logits, batch):
    labels = batch[target_key]
    dice_term = soft_dice_loss(logits, labels, include_background=include_background,
                               eps=eps)
    ce_term = segmentation_cross_entropy(logits, labels)
    per_example = {"dice": dice_term, "ce": ce_term,
                   "dice_ce": dice_weight * dice_term + ce_weight * ce_term}[name]
    metrics = {
        "dice": weighted_mean(
            hard_dice(logits, labels, include_background=include_background), batch),
        "pixel_accuracy": weighted_mean(pixel_accuracy(logits, labels), batch),
        "soft_dice_loss": weighted_mean(dice_term, batch),
        "cross_entropy": weighted_mean(ce_term, batch),
    }
    return weighted_mean(per_example, batch), metrics

  return StepLoss(loss_fn, target_key=target_key, target_integer=False)


def joint_loss(segmentation: StepLoss, reconstruction: StepLoss, *,
               recon_weight: float = 1.0) -> StepLoss:
  """The loss of a network that outputs ``(image, logits)`` (`fdl.models.ReconSegmenter`).

  ``segmentation(logits, batch) + recon_weight * reconstruction(image, batch)``; the
  metrics are the segmentation loss's (so ``dice`` keeps its name for model selection)
  and the reconstruction loss's prefixed ``recon_`` (``recon_loss`` its value).

  Args:
    segmentation: e.g. `segmentation_loss` ``("dice_ce")`` on ``batch["label"]``.
    reconstruction: e.g. `reconstruction_loss` ``("l1")`` on ``batch["target"]``.
    recon_weight: weight of the reconstruction term, >= 0 (0: segmentation only; the
      reconstruction metrics are still reported).

  >>> import jax.numpy as jnp
  >>> seg = StepLoss(lambda o, b: (o.sum(), {"dice": o.mean()}), target_key="label")
  >>> rec = StepLoss(lambda o, b: (2 * o.sum(), {"l1": o.mean()}), target_key="target")
  >>> image, logits = jnp.ones(2), jnp.ones(3)
  >>> loss, m = joint_loss(seg, rec, recon_weight=0.5)((image, logits), {})
  >>> float(loss), sorted(m), float(m["recon_loss"])
  (5.0, ['dice', 'recon_l1', 'recon_loss'], 4.0)
  """
  if isinstance(recon_weight, bool) or not isinstance(recon_weight, (int, float)) or (
      not recon_weight >= 0):
    raise ValueError(f"recon_weight must be a float >= 0; got {recon_weight!r}")

  def loss_fn(outputs, batch):
    if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
      raise ValueError("joint_loss needs the model outputs (image, logits); got "
                       f"{type(outputs).__name__}")
    image, logits = outputs
    seg_loss, metrics = segmentation(logits, batch)
    rec_loss, rec_metrics = reconstruction(image, batch)
    metrics = {**metrics, **{f"recon_{k}": v for k, v in rec_metrics.items()},
               "recon_loss": rec_loss}
    return seg_loss + recon_weight * rec_loss, metrics

  return StepLoss(loss_fn, target_key=segmentation.target_key, target_integer=False)


# ---------------------------------------------------------------------------
# Generative models: autoencoders, the VAE's ELBO, the GAN's losses.

LIKELIHOODS = ("bernoulli", "gaussian")


def _sum_per_example(x: Array) -> Array:
  return jnp.sum(x, axis=tuple(range(1, x.ndim)))


def bernoulli_nll(logits: ArrayLike, target: ArrayLike) -> Array:
  r"""Bernoulli negative log-likelihood of `target` under logits, summed per example.

  .. math:: -\log p(x \mid \ell) = \sum_i \log(1 + e^{\ell_i}) - x_i \ell_i

  (binary cross-entropy with logits). Grey levels :math:`x_i \in [0, 1]` are allowed as
  soft targets, as is usual for VAEs on MNIST-like images; the minimum over
  :math:`\ell_i` is then the binary entropy of :math:`x_i`, not 0, so the value is not
  a normalized density of continuous images (see the continuous Bernoulli,
  Loaiza-Ganem & Cunningham, NeurIPS 2019).

  Args:
    logits: real ``[batch, ...]`` (e.g. NHWC decoder outputs).
    target: same shape, values in ``[0, 1]`` (not checked: traced).

  Returns:
    ``[batch]`` float32, in nats.

  Examples:
    >>> import jax.numpy as jnp
    >>> round(float(bernoulli_nll(jnp.zeros((1, 3)), jnp.ones((1, 3)))[0]), 4)  # 3 log 2
    2.0794
  """
  logits, target = _check_pair(logits, target, min_rank=2)
  dtype = _compute_dtype(jnp.result_type(logits.dtype, target.dtype))
  logits, target = logits.astype(dtype), target.astype(dtype)
  return _sum_per_example(jnp.logaddexp(0.0, logits) - target * logits)


def gaussian_nll(mean: ArrayLike, target: ArrayLike, *, sigma: float = 1.0) -> Array:
  r"""Negative log-density of `target` under :math:`N(\mathrm{mean}, \sigma^2 I)`, per example.

  .. math:: \sum_i \frac{(x_i - \mu_i)^2}{2\sigma^2} + \log\sigma + \tfrac12\log 2\pi

  Args:
    mean: real ``[batch, ...]``.
    target: same shape.
    sigma: the fixed standard deviation (> 0), in the units of `target`.

  Returns:
    ``[batch]`` float32, in nats (the constant included, so it is a log-density).
  """
  mean, target = _check_pair(mean, target, min_rank=2)
  if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma > 0:
    raise ValueError(f"sigma must be a float > 0; got {sigma!r}")
  dtype = _compute_dtype(jnp.result_type(mean.dtype, target.dtype))
  sq = jnp.square(mean.astype(dtype) - target.astype(dtype))
  return _sum_per_example(sq / (2.0 * sigma**2) + np.log(sigma) + 0.5 * np.log(2 * np.pi))


def gaussian_kl(mean: ArrayLike, logvar: ArrayLike) -> Array:
  r"""KL divergence of :math:`N(\mu, \mathrm{diag}\,e^{v})` from :math:`N(0, I)`, per example.

  Closed form (Kingma & Welling 2014, appendix B):

  .. math:: \mathrm{KL}(q \,\|\, p) = \tfrac12 \sum_j \left(e^{v_j} + \mu_j^2 - 1 - v_j\right)

  Args:
    mean: :math:`\mu`, real ``[batch, latent_dim]``.
    logvar: :math:`v = \log\sigma^2`, same shape.

  Returns:
    ``[batch]`` float32, in nats; 0 exactly when ``mean == 0`` and ``logvar == 0``.

  Examples:
    >>> import jax.numpy as jnp
    >>> gaussian_kl(jnp.array([[0.0, 2.0]]), jnp.zeros((1, 2))).tolist()  # mu^2 / 2
    [2.0]
  """
  mean, logvar = jnp.asarray(mean), jnp.asarray(logvar)
  if mean.shape != logvar.shape or mean.ndim != 2:
    raise ValueError("mean and logvar must both be [batch, latent_dim]; got mean "
                     f"{_describe(mean)} and logvar {_describe(logvar)}")
  dtype = _compute_dtype(jnp.result_type(mean.dtype, logvar.dtype))
  mean, logvar = mean.astype(dtype), logvar.astype(dtype)
  return 0.5 * jnp.sum(jnp.exp(logvar) + jnp.square(mean) - 1.0 - logvar, axis=-1)


def _reconstruction_nll(likelihood: str, outputs: Array, target: Array,
                        sigma: float) -> Array:
  if likelihood == "bernoulli":
    return bernoulli_nll(outputs, target)
  return gaussian_nll(outputs, target, sigma=sigma)


def _check_likelihood(likelihood: Any) -> None:
  if likelihood not in LIKELIHOODS:
    raise ValueError(f"likelihood must be one of {LIKELIHOODS}; got {likelihood!r}")


def _check_beta(beta: Any) -> None:
  if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
    raise ValueError(f"beta must be a float >= 0; got {beta!r}")


def elbo_loss(outputs: ArrayLike, target: ArrayLike, mean: ArrayLike,
              logvar: ArrayLike, *, likelihood: str = "bernoulli", beta: float = 1.0,
              sigma: float = 1.0) -> Array:
  r"""The negative evidence lower bound of a VAE, per example (one sample of z).

  .. math::
      -\mathrm{ELBO}(x) = -\log p(x \mid z) + \beta\,\mathrm{KL}(q(z \mid x) \,\|\, N(0, I)),
      \quad z = \mu + e^{v/2}\varepsilon

  With ``beta == 1`` this is the bound :math:`-\log p(x) \le -\mathrm{ELBO}` of Kingma &
  Welling (2014), estimated with the one sample of :math:`z` that produced `outputs`
  (unbiased for the ELBO); ``beta != 1`` is the beta-VAE objective.

  Args:
    outputs: decoder outputs ``[batch, ...]`` at the sampled z: Bernoulli logits
      (``likelihood='bernoulli'``, `bernoulli_nll`, for targets in ``[0, 1]``) or
      Gaussian means (``'gaussian'``, `gaussian_nll` with fixed `sigma`).
    target: the input images, same shape as `outputs`.
    mean, logvar: the posterior's :math:`\mu` and :math:`v = \log\sigma^2`,
      ``[batch, latent_dim]``.
    likelihood: ``'bernoulli'`` or ``'gaussian'``.
    beta: weight of the KL term, >= 0.
    sigma: the Gaussian likelihood's standard deviation (ignored for Bernoulli).

  Returns:
    ``[batch]`` float32 in nats per image (divide by the pixel count for nats per pixel).

  Raises:
    ValueError: shapes disagree, unknown `likelihood`, negative `beta`.
  """
  _check_likelihood(likelihood)
  _check_beta(beta)
  outputs, target = _check_pair(outputs, target, min_rank=2)
  kl = gaussian_kl(mean, logvar)
  if kl.shape[0] != outputs.shape[0]:
    raise ValueError(f"mean must have the batch size of outputs ({outputs.shape[0]}); "
                     f"got {_describe(jnp.asarray(mean))}")
  return _reconstruction_nll(likelihood, outputs, target, sigma) + beta * kl


def _reconstruction_mse(likelihood: str, outputs: Array, target: Array) -> Array:
  image = jax.nn.sigmoid(outputs) if likelihood == "bernoulli" else outputs
  return mse(image, target)


def vae_loss(*, likelihood: str = "bernoulli", beta: float = 1.0, sigma: float = 1.0,
             target_key: str = "image") -> StepLoss:
  """The mean negative ELBO (`elbo_loss`) of a VAE's ``(outputs, mean, logvar)``.

  Metrics: ``neg_elbo`` (the loss at ``beta = 1``), ``reconstruction_nll``, ``kl`` (nats
  per image) and ``mse``, the per-pixel mean squared error of the mean image
  (``sigmoid(outputs)`` for Bernoulli) against the target.

  Args:
    likelihood, beta, sigma: as in `elbo_loss`.
    target_key: batch key of the images the VAE reconstructs (its own input).
  """
  _check_likelihood(likelihood)
  _check_beta(beta)

  def loss_fn(model_outputs, batch):
    if not isinstance(model_outputs, (tuple, list)) or len(model_outputs) != 3:
      raise ValueError("vae_loss needs the model outputs (outputs, mean, logvar); got "
                       f"{type(model_outputs).__name__}")
    outputs, mean, logvar = model_outputs
    target = batch[target_key]
    nll = _reconstruction_nll(likelihood, outputs, target, sigma)
    kl = gaussian_kl(mean, logvar)
    metrics = {"neg_elbo": weighted_mean(nll + kl, batch),
               "reconstruction_nll": weighted_mean(nll, batch),
               "kl": weighted_mean(kl, batch),
               "mse": weighted_mean(_reconstruction_mse(likelihood, outputs, target),
                                    batch)}
    return weighted_mean(nll + beta * kl, batch), metrics

  return StepLoss(loss_fn, target_key=target_key, target_integer=False)


def autoencoder_loss(*, likelihood: str = "bernoulli", sigma: float = 1.0,
                     target_key: str = "image") -> StepLoss:
  """Mean reconstruction negative log-likelihood of a deterministic autoencoder.

  The loss is `bernoulli_nll` (or `gaussian_nll`) in nats per image; the metric ``mse``
  is the per-pixel mean squared error of the mean image against the target.
  """
  _check_likelihood(likelihood)

  def loss_fn(outputs, batch):
    target = batch[target_key]
    nll = _reconstruction_nll(likelihood, outputs, target, sigma)
    return weighted_mean(nll, batch), {
        "mse": weighted_mean(_reconstruction_mse(likelihood, outputs, target), batch)}

  return StepLoss(loss_fn, target_key=target_key, target_integer=False)


def gan_discriminator_loss(real_logits: ArrayLike, fake_logits: ArrayLike) -> Array:
  r"""The discriminator's loss per example: :math:`-\log D(x) - \log(1 - D(G(z)))`.

  With :math:`D = \mathrm{sigmoid}(\ell)`: ``softplus(-real) + softplus(fake)``
  (Goodfellow et al. 2014), stable for any logits.

  Args:
    real_logits: ``[batch]`` logits of real images.
    fake_logits: ``[batch]`` logits of generated images (the same batch size).

  Returns:
    ``[batch]`` float32 in nats; ``2 log 2`` when both logits are 0.
  """
  real, fake = _check_pair(real_logits, fake_logits)
  real = real.astype(_compute_dtype(real.dtype))
  fake = fake.astype(_compute_dtype(fake.dtype))
  return jax.nn.softplus(-real) + jax.nn.softplus(fake)


def gan_generator_loss(fake_logits: ArrayLike) -> Array:
  r"""The generator's non-saturating loss per example: :math:`-\log D(G(z))`.

  ``softplus(-fake)``: its gradient stays large while the discriminator rejects the
  samples, unlike the saturating :math:`\log(1 - D(G(z)))` (Goodfellow et al. 2014).

  Args:
    fake_logits: ``[batch]`` logits of generated images.

  Returns:
    ``[batch]`` float32 in nats.
  """
  fake = jnp.asarray(fake_logits)
  if fake.ndim < 1:
    raise ValueError(f"fake_logits must have a batch axis; got {_describe(fake)}")
  return jax.nn.softplus(-fake.astype(_compute_dtype(fake.dtype)))
