"""Optimizers and schedules by name: values against hand formulas, bad names."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fdl import train


def test_constant_schedule():
  s = train.make_schedule("constant", learning_rate=0.3, total_steps=10)
  assert [float(s(i)) for i in (0, 5, 10)] == pytest.approx([0.3] * 3)


def test_step_schedule_decays_at_boundaries():
  s = train.make_schedule("step", learning_rate=1.0, total_steps=100,
                          boundaries=(0.5, 0.8), decay_factor=0.1)
  got = [float(s(i)) for i in (0, 49, 50, 79, 80, 99)]
  np.testing.assert_allclose(got, [1, 1, 0.1, 0.1, 0.01, 0.01], rtol=1e-6)


def test_cosine_schedule_matches_formula():
  lr, total, end = 0.2, 40, 0.02
  s = train.make_schedule("cosine", learning_rate=lr, total_steps=total,
                          end_learning_rate=end)
  for t in (0, 7, 20, 33, 40):
    want = end + (lr - end) * 0.5 * (1 + math.cos(math.pi * t / total))
    assert float(s(t)) == pytest.approx(want, rel=1e-5)


def test_warmup_cosine_schedule_matches_formula():
  lr, total, warm = 1.0, 110, 10
  s = train.make_schedule("warmup_cosine", learning_rate=lr, total_steps=total,
                          warmup_steps=warm)
  assert float(s(0)) == 0.0
  assert float(s(5)) == pytest.approx(0.5, rel=1e-6)
  assert float(s(10)) == pytest.approx(1.0, rel=1e-6)
  assert float(s(60)) == pytest.approx(0.5, rel=1e-5)  # half-way down the cosine
  assert float(s(110)) == pytest.approx(0.0, abs=1e-7)


def _one_update(name, grads, params, **kw):
  tx = train.make_optimizer(name, 0.1, **kw)
  state = tx.init(params)
  updates, state = tx.update(grads, state, params)
  updates2, _ = tx.update(grads, state, optax.apply_updates(params, updates))
  return updates, updates2


def test_momentum_and_nesterov_against_formula():
  params = {"kernel": jnp.ones((2, 2)), "bias": jnp.zeros(2)}
  grads = {"kernel": jnp.full((2, 2), 2.0), "bias": jnp.full((2,), 1.0)}
  u1, u2 = _one_update("momentum", grads, params, momentum=0.9)
  np.testing.assert_allclose(u1["kernel"], -0.1 * 2.0)
  np.testing.assert_allclose(u2["kernel"], -0.1 * (0.9 * 2.0 + 2.0), rtol=1e-6)
  n1, _ = _one_update("nesterov", grads, params, momentum=0.9)
  np.testing.assert_allclose(n1["kernel"], -0.1 * (2.0 + 0.9 * 2.0), rtol=1e-6)


def test_weight_decay_applies_to_kernels_only():
  params = {"kernel": jnp.full((2, 2), 3.0), "bias": jnp.full((2,), 3.0)}
  zeros = jax.tree.map(jnp.zeros_like, params)
  u, _ = _one_update("sgd", zeros, params, weight_decay=0.5)
  np.testing.assert_allclose(u["kernel"], -0.1 * 0.5 * 3.0, rtol=1e-6)
  np.testing.assert_allclose(u["bias"], 0.0)
  u, _ = _one_update("adamw", zeros, params, weight_decay=0.5)
  np.testing.assert_allclose(u["kernel"], -0.1 * 0.5 * 3.0, rtol=1e-6)
  np.testing.assert_allclose(u["bias"], 0.0)


def test_adam_first_step_is_signed_learning_rate():
  params = {"kernel": jnp.ones((3, 1))}
  grads = {"kernel": jnp.asarray([[2.0], [-0.5], [1e-3]])}
  u, _ = _one_update("adam", grads, params)
  np.testing.assert_allclose(u["kernel"][:, 0], [-0.1, 0.1, -0.1], rtol=1e-4)


def test_gradient_clipping():
  params = {"kernel": jnp.zeros((4, 1))}
  grads = {"kernel": jnp.full((4, 1), 3.0)}  # global norm 6
  u, _ = _one_update("sgd", grads, params, grad_clip_norm=1.5)
  np.testing.assert_allclose(np.linalg.norm(u["kernel"]), 0.1 * 1.5, rtol=1e-6)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="rmsprop", learning_rate=0.1), r"optimizer must be one of .*'adamw'.*got 'rmsprop'"),
    (dict(name="sgd", learning_rate=-1.0), r"learning_rate must be > 0; got -1.0"),
    (dict(name="momentum", learning_rate=0.1, momentum=1.5), r"momentum must be in \[0, 1\)"),
    (dict(name="adamw", learning_rate=0.1, weight_decay=-1), r"weight_decay must be >= 0"),
    (dict(name="sgd", learning_rate=0.1, grad_clip_norm=0.0), r"grad_clip_norm must be > 0"),
])
def test_bad_optimizer_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train.make_optimizer(**kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="linear", learning_rate=0.1, total_steps=10), r"schedule must be one of \('constant', 'step', 'cosine', 'warmup_cosine'\); got 'linear'"),
    (dict(name="cosine", learning_rate=0.1, total_steps=0), r"total_steps must be > 0; got 0"),
    (dict(name="warmup_cosine", learning_rate=0.1, total_steps=10, warmup_steps=-1), r"warmup_steps must be >= 0; got -1"),
    (dict(name="step", learning_rate=0.1, total_steps=10, boundaries=(1.5,)), r"boundaries must be fractions in \(0, 1\)"),
])
def test_bad_schedule_arguments(kwargs, match):
  with pytest.raises(ValueError, match=match):
    train.make_schedule(**kwargs)
