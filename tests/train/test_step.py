"""Compiled train/eval steps: values against a float64 NumPy step, determinism,
metrics, bf16 compute, no recompilation, and bad batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl import models, train

LR, L2 = 0.5, 0.01


@pytest.fixture(scope="module")
def linear_setup():
  mesh = train.make_mesh()
  model = models.MLP(hidden=(), num_classes=3)
  tx = train.make_optimizer("sgd", LR)
  step = train.make_train_step(train.classification_loss(), mesh=mesh,
                               learning_rate=LR, l2=L2, donate=False)
  return model, tx, step, mesh


def _batch(seed, n=6, d=5, classes=3):
  rng = np.random.RandomState(seed)
  return {"image": rng.randn(n, d).astype(np.float32),
          "label": rng.randint(0, classes, n).astype(np.int32)}


def test_sgd_step_matches_numpy_float64(linear_setup):
  model, tx, step, mesh = linear_setup
  state = train.create_train_state(model, tx, (1, 5), seed=1, mesh=mesh)
  batch = _batch(0)
  new_state, metrics = step(state, batch)

  w = np.asarray(state.params["Dense_0"]["kernel"], np.float64)
  b = np.asarray(state.params["Dense_0"]["bias"], np.float64)
  x, y = batch["image"].astype(np.float64), batch["label"]
  logits = x @ w + b
  p = np.exp(logits - logits.max(1, keepdims=True))
  p /= p.sum(1, keepdims=True)
  loss = -np.log(p[np.arange(len(y)), y]).mean()
  dlogits = (p - np.eye(3)[y]) / len(y)
  gw = x.T @ dlogits + 2 * L2 * w  # the L2 penalty covers kernels only
  gb = dlogits.sum(0)
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(metrics["total_loss"], loss + L2 * (w**2).sum(), rtol=1e-5)
  np.testing.assert_allclose(new_state.params["Dense_0"]["kernel"], w - LR * gw,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(new_state.params["Dense_0"]["bias"], b - LR * gb,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(metrics["grad_norm"],
                             np.sqrt((gw**2).sum() + (gb**2).sum()), rtol=1e-5)
  np.testing.assert_allclose(metrics["update_norm"],
                             LR * np.sqrt((gw**2).sum() + (gb**2).sum()), rtol=1e-5)
  np.testing.assert_allclose(metrics["learning_rate"], LR)
  assert int(new_state.step) == 1


def test_step_does_not_recompile(linear_setup):
  model, tx, step, mesh = linear_setup
  state = train.create_train_state(model, tx, (1, 5), seed=1, mesh=mesh)
  for seed in range(3):
    state, _ = step(state, _batch(seed))
  assert step.jitted._cache_size() == 1


def test_bad_batches_are_rejected_by_name(linear_setup):
  model, tx, step, mesh = linear_setup
  state = train.create_train_state(model, tx, (1, 5), mesh=mesh)
  good = _batch(0)
  with pytest.raises(ValueError, match=r"batch must contain the key 'label'; got keys \['image'\]"):
    step(state, {"image": good["image"]})
  with pytest.raises(TypeError, match=r"batch\['image'\] must be a float or complex array; got int32"):
    step(state, {"image": good["image"].astype(np.int32), "label": good["label"]})
  with pytest.raises(TypeError, match=r"batch\['label'\] must be integer labels \[batch\]; got float32"):
    step(state, {"image": good["image"], "label": good["label"].astype(np.float32)})
  with pytest.raises(ValueError, match=r"batch\['label'\] must have the batch size of batch\['image'\] \(6\); got 4"):
    step(state, {"image": good["image"], "label": good["label"][:4]})
  with pytest.raises(TypeError, match=r"batch must be a mapping"):
    step(state, (good["image"], good["label"]))


def test_mesh_and_penalty_arguments_are_checked():
  with pytest.raises(ValueError, match=r"num_devices must be in \[1, 1\].*got 2"):
    train.make_mesh(2)
  with pytest.raises(ValueError, match=r"l1 and l2 must be >= 0"):
    train.make_train_step(train.classification_loss(), l2=-1.0)
  with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\); got 1.0"):
    train.classification_loss(label_smoothing=1.0)


@pytest.fixture(scope="module")
def dropout_cnn():
  mesh = train.make_mesh()
  model = models.CNN(features=(4,), dense=(8,), num_classes=3, dropout=0.5,
                     batch_norm=True)
  tx = train.make_optimizer("adam", 1e-2)
  step = train.make_train_step(train.classification_loss(), mesh=mesh,
                               donate=True)
  eval_step = train.make_eval_step(train.classification_loss(), mesh=mesh)
  return model, tx, step, eval_step, mesh


def _image_batch(seed):
  rng = np.random.RandomState(seed)
  return {"image": rng.randn(4, 6, 6, 2).astype(np.float32),
          "label": rng.randint(0, 3, 4).astype(np.int32)}


def _run(setup, seed, steps=3):
  model, tx, step, _, mesh = setup
  state = train.create_train_state(model, tx, (1, 6, 6, 2), seed=seed, mesh=mesh)
  losses = []
  for i in range(steps):
    state, m = step(state, _image_batch(i))
    losses.append(float(m["loss"]))
  return state, losses


def test_training_is_deterministic_per_seed(dropout_cnn):
  a, la = _run(dropout_cnn, seed=7)
  b, lb = _run(dropout_cnn, seed=7)
  c, lc = _run(dropout_cnn, seed=8)
  assert la == lb
  jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
  jax.tree.map(np.testing.assert_array_equal, a.batch_stats, b.batch_stats)
  assert la != lc
  # batch statistics moved away from their initial values
  assert float(jnp.abs(a.batch_stats["BatchNorm_0"]["mean"]).sum()) > 0


def test_eval_step_is_deterministic_and_weighted(dropout_cnn):
  state, _ = _run(dropout_cnn, seed=0)
  _, _, _, eval_step, _ = dropout_cnn
  batch = _image_batch(5)
  m1, m2 = eval_step(state, batch), eval_step(state, batch)
  assert float(m1["loss"]) == float(m2["loss"])
  assert float(m1["count"]) == 4
  half1 = {k: v[:2] for k, v in batch.items()}
  half2 = {k: v[2:] for k, v in batch.items()}
  # evaluate() weights by batch size: two halves give the mean of the whole.
  whole = train.evaluate(state, eval_step, [batch])
  halves = train.evaluate(state, eval_step, [half1, half2])
  assert halves["val/loss"] == pytest.approx(whole["val/loss"], rel=1e-5)


def test_bf16_compute_keeps_float32_params():
  model = models.CNN(features=(4,), dense=(), num_classes=3, dtype=jnp.bfloat16)
  tx = train.make_optimizer("sgd", 0.1)
  state = train.create_train_state(model, tx, (1, 6, 6, 2))
  step = train.make_train_step(train.classification_loss())
  state, metrics = step(state, _image_batch(0))
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(state.params))
  assert metrics["loss"].dtype == jnp.float32
  assert np.isfinite(float(metrics["loss"]))


def test_weights_exclude_padding_from_eval(dropout_cnn):
  state, _ = _run(dropout_cnn, seed=0)
  _, _, _, eval_step, _ = dropout_cnn
  batch = _image_batch(5)
  real = {k: v[:3] for k, v in batch.items()}
  padded = {k: v.copy() for k, v in batch.items()}
  padded["image"][3] = 100.0  # garbage in the padding slot
  padded["weight"] = np.asarray([1, 1, 1, 0], np.float32)
  m_real = eval_step(state, dict(real, weight=np.ones(3, np.float32)))
  m_pad = eval_step(state, padded)
  assert float(m_pad["count"]) == 3.0
  assert float(m_pad["loss"]) == pytest.approx(float(m_real["loss"]), rel=1e-5)
  assert float(m_pad["accuracy"]) == pytest.approx(float(m_real["accuracy"]), rel=1e-6)
