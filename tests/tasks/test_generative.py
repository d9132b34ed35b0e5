"""Tests of the generative losses and steps (fdl.losses, fdl.tasks.generative), end to end slow."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy import integrate

from conftest import REPO_DIR
from fdl import config_files, losses
from fdl.models.autoencoder import _TinyVAE
from fdl.models.gan import _TinyDCGAN
from fdl.tasks import generative
from fdl.train.state import create_train_state

RNG = np.random.default_rng(0)


# --- the ELBO and the GAN losses against hand computations ------------------------------


def _kl_by_quadrature(mu, logvar):
  """KL(N(mu, e^v) || N(0, 1)) = int q log(q / p) dz, one dimension, numerically."""
  s = np.exp(0.5 * logvar)
  q = lambda z: np.exp(-0.5 * ((z - mu) / s) ** 2) / (s * np.sqrt(2 * np.pi))
  log_ratio = lambda z: (-0.5 * ((z - mu) / s) ** 2 - np.log(s)) + 0.5 * z**2
  value, _ = integrate.quad(lambda z: q(z) * log_ratio(z), mu - 12 * s, mu + 12 * s,
                            limit=200)
  return value


def test_gaussian_kl_closed_form_matches_numerical_integration():
  mean = np.array([[0.0, 1.5, -0.7], [2.0, 0.0, 0.3]])
  logvar = np.array([[0.0, -1.0, 0.8], [0.5, -3.0, 0.0]])
  expected = [sum(_kl_by_quadrature(m, v) for m, v in zip(mr, vr))
              for mr, vr in zip(mean, logvar)]
  got = losses.gaussian_kl(jnp.asarray(mean, jnp.float32), jnp.asarray(logvar, jnp.float32))
  assert got.shape == (2,) and got.dtype == jnp.float32
  np.testing.assert_allclose(got, expected, rtol=1e-5)
  assert float(losses.gaussian_kl(jnp.zeros((1, 4)), jnp.zeros((1, 4)))[0]) == 0.0


def test_elbo_is_bce_plus_kl_by_hand():
  logits = np.array([[[0.0], [2.0]], [[-1.0], [0.5]]])  # [batch 2, 2, 1]
  target = np.array([[[1.0], [0.0]], [[0.5], [1.0]]])
  mean, logvar = np.array([[0.5, -1.0], [0.0, 0.0]]), np.array([[0.0, 0.2], [-0.5, 0.0]])
  # BCE by hand: -[t log sigmoid(l) + (1 - t) log(1 - sigmoid(l))], summed per image.
  p = 1 / (1 + np.exp(-logits))
  bce = -(target * np.log(p) + (1 - target) * np.log(1 - p)).sum((1, 2))
  np.testing.assert_allclose(bce[0], np.log(2) + np.log(1 + np.exp(2.0)), rtol=1e-12)
  kl = 0.5 * (np.exp(logvar) + mean**2 - 1 - logvar).sum(1)
  args = [jnp.asarray(a, jnp.float32) for a in (logits, target, mean, logvar)]
  np.testing.assert_allclose(losses.elbo_loss(*args), bce + kl, rtol=1e-6)
  np.testing.assert_allclose(losses.elbo_loss(*args, beta=0.25), bce + 0.25 * kl, rtol=1e-6)
  np.testing.assert_allclose(losses.bernoulli_nll(args[0], args[1]), bce, rtol=1e-6)
  # Gaussian likelihood with sigma 0.5: sum (x - mu)^2 / (2 sigma^2) + log sigma + log(2 pi)/2.
  gauss = ((target - logits) ** 2 / 0.5 + np.log(0.5) + 0.5 * np.log(2 * np.pi)).sum((1, 2))
  np.testing.assert_allclose(
      losses.elbo_loss(*args, likelihood="gaussian", sigma=0.5), gauss + kl, rtol=1e-6)


def test_vae_loss_adapter_reports_its_terms():
  logits = jnp.asarray(RNG.normal(size=(3, 4, 4, 1)), jnp.float32)
  image = jnp.asarray(RNG.uniform(size=(3, 4, 4, 1)), jnp.float32)
  mean, logvar = jnp.asarray(RNG.normal(size=(3, 2)), jnp.float32), jnp.zeros((3, 2))
  loss, metrics = losses.vae_loss(beta=2.0)((logits, mean, logvar), {"image": image})
  nll, kl = losses.bernoulli_nll(logits, image), losses.gaussian_kl(mean, logvar)
  np.testing.assert_allclose(loss, (nll + 2 * kl).mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics["neg_elbo"], (nll + kl).mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics["kl"], kl.mean(), rtol=1e-6)
  np.testing.assert_allclose(metrics["mse"], np.mean((jax.nn.sigmoid(logits) - image) ** 2),
                             rtol=1e-6)


def test_gan_losses_by_hand():
  real, fake = jnp.array([0.0, 2.0, -1.0]), jnp.array([0.0, -3.0, 1.0])
  sp = lambda x: np.log1p(np.exp(x))
  np.testing.assert_allclose(losses.gan_discriminator_loss(real, fake),
                             [2 * np.log(2), sp(-2.0) + sp(-3.0), sp(1.0) + sp(1.0)],
                             rtol=1e-6)
  # Non-saturating: -log D(G(z)) = -log sigmoid(l).
  np.testing.assert_allclose(losses.gan_generator_loss(fake),
                             -np.log(1 / (1 + np.exp(-np.asarray(fake)))), rtol=1e-6)


@pytest.mark.parametrize("call, message", [
    (lambda: losses.elbo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 2)),
                              jnp.zeros((2, 2)), likelihood="poisson"),
     "likelihood must be one of ('bernoulli', 'gaussian'); got 'poisson'"),
    (lambda: losses.elbo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 2)),
                              jnp.zeros((2, 2)), beta=-1.0),
     "beta must be a float >= 0; got -1.0"),
    (lambda: losses.elbo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 4)), jnp.zeros((2, 2)),
                              jnp.zeros((2, 2))),
     "pred and target must have the same shape"),
    (lambda: losses.gaussian_kl(jnp.zeros((2, 2)), jnp.zeros((2, 3))),
     "mean and logvar must both be [batch, latent_dim]"),
    (lambda: losses.elbo_loss(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((3, 2)),
                              jnp.zeros((3, 2))),
     "mean must have the batch size of outputs (2)"),
    (lambda: losses.gaussian_nll(jnp.zeros((2, 3)), jnp.zeros((2, 3)), sigma=0.0),
     "sigma must be a float > 0; got 0.0"),
])
def test_bad_loss_arguments_raise_value_errors(call, message):
  with pytest.raises(ValueError, match=re.escape(message)):
    call()


# --- the sample score and the data ------------------------------------------------------


def test_classifier_score_by_hand():
  one_hot = np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]]
  score = generative.classifier_score(one_hot)
  assert score["inception_score"] == pytest.approx(4.0, rel=1e-12)  # K confident, diverse
  assert score["mean_max_prob"] == 1.0
  assert score["class_entropy"] == pytest.approx(np.log(4), rel=1e-12)
  collapsed = generative.classifier_score(np.eye(4)[[2] * 8])  # confident, one class
  assert collapsed["inception_score"] == pytest.approx(1.0) and collapsed["class_entropy"] == 0
  probs = RNG.dirichlet(np.ones(5), size=7)
  marginal = probs.mean(0)
  kl = (probs * np.log(probs / marginal)).sum(1)
  got = generative.classifier_score(probs)
  assert got["inception_score"] == pytest.approx(np.exp(kl.mean()), rel=1e-12)
  assert got["mean_max_prob"] == pytest.approx(probs.max(1).mean(), rel=1e-12)
  with pytest.raises(ValueError, match=re.escape("probs must be [N, K] class probabilities; "
                                                 "got shape (3,)")):
    generative.classifier_score(np.ones(3) / 3)


def test_to_unit_images_scales_resizes_and_greys():
  images = RNG.integers(0, 256, size=(3, 8, 8, 1), dtype=np.uint8)
  out = generative.to_unit_images(images, 16, grey=True)
  assert out.shape == (3, 16, 16, 1) and out.dtype == np.float32
  assert out.min() >= 0 and out.max() <= 1
  np.testing.assert_allclose(out.mean((1, 2, 3)), (images / 255.0).mean((1, 2, 3)), atol=0.02)
  flat = np.full((2, 8, 8, 1), 51, np.uint8)
  np.testing.assert_allclose(generative.to_unit_images(flat, 16, grey=True), 0.2, rtol=1e-6)
  red = np.zeros((1, 4, 4, 3), np.uint8)
  red[..., 0] = 255
  np.testing.assert_allclose(generative.to_unit_images(red, None, grey=True), 0.299,
                             rtol=1e-6)
  assert generative.to_unit_images(red, None, grey=False).shape == (1, 4, 4, 3)
  with pytest.raises(ValueError, match=re.escape("images must be uint8 [N, H, W, C]")):
    generative.to_unit_images(images.astype(np.float32), 16, grey=True)


# --- the autoencoder steps --------------------------------------------------------------


@pytest.fixture(scope="module")
def vae_state():
  return create_train_state(_TinyVAE(), optax.adam(1e-2), (1, 8, 12, 1), seed=3)


def test_vae_step_draws_eps_from_fold_in_of_the_state_key(vae_state):
  loss_fn = losses.vae_loss()
  step = generative.make_autoencoder_train_step(loss_fn, donate=False)
  batch = {"image": jnp.asarray(RNG.uniform(size=(3, 8, 12, 1)), jnp.float32)}
  expected = []
  state = vae_state
  for _ in range(2):
    outputs = state.apply_fn({"params": state.params}, batch["image"], train=True,
                             rngs={"latent": jax.random.fold_in(state.rng, state.step)})
    expected.append(float(loss_fn(outputs, batch)[0]))
    state, metrics = step(state, batch)
    assert float(metrics["loss"]) == pytest.approx(expected[-1], rel=1e-5)
  assert expected[0] != expected[1] and int(state.step) == 2
  # Determinism: the same state and batch give the same step, bit for bit.
  again, metrics_again = step(vae_state, batch)
  first, metrics_first = step(vae_state, batch)
  assert float(metrics_again["loss"]) == float(metrics_first["loss"])
  jax.tree.map(np.testing.assert_array_equal, again.params, first.params)
  # The eval step samples z with a fixed key: the same number twice.
  evaluate = generative.make_autoencoder_eval_step(loss_fn, sample=True)
  a, b = evaluate(state, batch), evaluate(state, batch)
  assert float(a["neg_elbo"]) == float(b["neg_elbo"]) and float(a["count"]) == 3.0


def test_autoencoder_steps_reject_bad_batches(vae_state):
  step = generative.make_autoencoder_train_step(losses.vae_loss(), donate=False)
  with pytest.raises(ValueError, match=re.escape(
      "batch['image'] must be float images [batch, H, W, C]; got int32 (3, 8, 12, 1)")):
    step(vae_state, {"image": np.zeros((3, 8, 12, 1), np.int32)})
  with pytest.raises(ValueError, match=re.escape(
      "batch must be a mapping with the key 'image'; got ['x']")):
    step(vae_state, {"x": np.zeros((3, 8, 12, 1), np.float32)})


# --- the GAN step -----------------------------------------------------------------------

REAL = jnp.asarray(RNG.uniform(-1, 1, size=(3, 8, 12, 1)), jnp.float32)  # odd batch
G, D = generative.GENERATOR, generative.DISCRIMINATOR


@pytest.fixture(scope="module")
def gan():
  """A tiny GAN state and its step. One optimizer object for both networks, with the
  learning rate in its state (inject_hyperparams), so that all tests share one compile."""
  tx = optax.inject_hyperparams(optax.adam)(learning_rate=1e-2, b1=0.5)
  return (generative.create_gan_state(_TinyDCGAN(), tx, tx, seed=1),
          generative.make_gan_step(donate=False))


def _with_learning_rates(state, g_lr, d_lr):
  opt = {}
  for name, lr in ((G, g_lr), (D, d_lr)):
    hyper = dict(state.opt_state[name].hyperparams, learning_rate=jnp.asarray(lr))
    opt[name] = state.opt_state[name]._replace(hyperparams=hyper)
  return state.replace(opt_state=opt)


def _changed(a, b):
  return [not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]


def test_each_network_is_updated_only_through_its_own_optimizer(gan):
  state, gan_step = gan
  frozen_g = _with_learning_rates(state, 0.0, 1e-2)
  new, _ = gan_step(frozen_g, {"image": REAL})
  assert not any(_changed(frozen_g.params[G], new.params[G]))
  assert all(_changed(frozen_g.params[D], new.params[D]))
  frozen_d = _with_learning_rates(state, 1e-2, 0.0)
  new, _ = gan_step(frozen_d, {"image": REAL})
  assert not any(_changed(frozen_d.params[D], new.params[D]))
  assert all(_changed(frozen_d.params[G], new.params[G]))
  assert int(new.step) == 1


def test_gan_step_losses_and_generator_gradient_by_hand(gan):
  state, gan_step = gan
  new, metrics = gan_step(state, {"image": REAL})
  apply = state.apply_fn
  sp = jax.nn.softplus

  @jax.jit
  def by_hand(params, batch_stats, new_d_params, rng):
    z = jax.random.normal(jax.random.fold_in(rng, 0), (3, 4))

    def generate(gp):
      return apply({"params": {G: gp}, "batch_stats": {G: batch_stats[G]}}, z,
                   train=True, method="generate", mutable=["batch_stats"])[0]

    def discriminate(dp, x):
      return apply({"params": {D: dp}, "batch_stats": {D: batch_stats[D]}}, x,
                   train=True, method="discriminate", mutable=["batch_stats"])[0]

    fake = generate(params[G])
    d_loss = jnp.mean(sp(-discriminate(params[D], REAL)) + sp(discriminate(params[D], fake)))
    # G's loss is under the updated discriminator, and its gradient is G's only.
    g_objective = lambda gp: jnp.mean(sp(-discriminate(new_d_params, generate(gp))))
    g_loss, g_grads = jax.value_and_grad(g_objective)(params[G])
    return d_loss, g_loss, optax.tree.norm(g_grads)

  d_loss, g_loss, g_grad_norm = by_hand(state.params, state.batch_stats, new.params[D],
                                        state.rng)
  assert float(metrics["d_loss"]) == pytest.approx(float(d_loss), rel=1e-5)
  assert float(metrics["g_loss"]) == pytest.approx(float(g_loss), rel=1e-5)
  assert float(metrics["g_grad_norm"]) == pytest.approx(float(g_grad_norm), rel=1e-4)
  assert float(metrics["loss"]) == pytest.approx(float(d_loss + g_loss), rel=1e-5)
  # Determinism given the state; the next step draws another z.
  again, metrics_again = gan_step(state, {"image": REAL})
  assert all(float(metrics_again[k]) == float(metrics[k]) for k in metrics)
  jax.tree.map(np.testing.assert_array_equal, again.params, new.params)
  _, metrics_next = gan_step(new, {"image": REAL})
  assert float(metrics_next["d_fake"]) != float(metrics["d_fake"])


def test_gan_step_rejects_bad_batches(gan):
  state, gan_step = gan
  with pytest.raises(ValueError, match=re.escape("batch['image'] must be float images")):
    gan_step(state, {"image": np.zeros((3, 8, 12), np.float32)})
  with pytest.raises(ValueError, match=re.escape("model must be a fdl.models.DCGAN; got VAE")):
    generative.create_gan_state(_TinyVAE(), optax.adam(1e-3), optax.adam(1e-3))


# --- the task ---------------------------------------------------------------------------


def _smoke_config(model):
  config = config_files.load_config(
      os.path.join(REPO_DIR, "experiments", "configs", "generative.py"), "smoke")
  config.model = model
  return config


@pytest.mark.parametrize("key, value, message", [
    ("model", "pixelcnn", "config.model must be one of ('autoencoder', 'vae', 'dcgan'); "
                          "got 'pixelcnn'"),
    ("num_epochs", 0, "config.num_epochs must be an int >= 1; got 0"),
])
def test_check_config_names_the_key(key, value, message):
  config = _smoke_config("vae")
  config[key] = value
  with pytest.raises(ValueError, match=re.escape(message)):
    generative.check_config(config)


def test_the_dcgan_has_its_own_number_of_epochs():
  config = _smoke_config("dcgan")
  config.gan.num_epochs = 0
  with pytest.raises(ValueError, match=re.escape("config.gan.num_epochs must be an int >= 1")):
    generative.check_config(config)
  defaults = config_files.load_config(
      os.path.join(REPO_DIR, "experiments", "configs", "generative.py"))
  assert (defaults.num_epochs, defaults.gan.num_epochs) == (30, 100)  # the README's runs


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vae", "dcgan"])
def test_smoke_run_end_to_end(model, tmp_path):
  """About 40 s each on a 2-core CPU: data, scorer, fit, sealed test, figures."""
  summary = generative.train_and_evaluate(_smoke_config(model), str(tmp_path))
  assert summary["model"] == model and summary["steps"] == 2 * (300 // 32)
  with open(tmp_path / "summary.json", encoding="utf-8") as f:
    assert json.load(f)["num_params"] == summary["num_params"]
  for path in summary["figures"].values():
    assert os.path.getsize(path) > 1000
  records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl", encoding="utf-8")]
  names = set().union(*records)
  assert set(generative.TRAIN_METRICS[model]) <= names
  assert set(generative.EVAL_METRICS[model]) <= names
  score = summary["sample_score"]
  assert 1.0 <= score["inception_score"] <= 10.0 and 0.1 <= score["mean_max_prob"] <= 1.0
  if model == "vae":
    assert set(summary["figures"]) == {"reconstructions", "learning_curves", "latent_map",
                                       "samples"}
    assert summary["test_neg_elbo"] > summary["test_kl"] >= 0
  else:
    assert set(summary["figures"]) == {"samples", "gan_losses"}
    assert summary["num_params"] == summary["num_params_generator"] + summary[
        "num_params_discriminator"]
