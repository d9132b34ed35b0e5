"""Tests of fdl.generative.diffusion: closed forms vs NumPy, samplers with an oracle, DPS, DDS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.generative import diffusion as dif
from fdl.mri.sense import sense_adjoint, sense_forward

KEY = jax.random.key(0)


def numpy_linear(num_steps, beta_start=1e-4, beta_end=0.02):
  betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
  return betas, 1 - betas, np.cumprod(1 - betas)


def test_linear_schedule_matches_numpy_products():
  s = dif.linear_schedule(1000)
  betas, alphas, alpha_bars = numpy_linear(1000)
  np.testing.assert_allclose(s.betas, betas, rtol=1e-6)
  np.testing.assert_allclose(s.alpha_bars, alpha_bars, rtol=1e-5)
  # Known value of Ho et al.'s schedule: alpha_bar_999 = 4.04e-5.
  np.testing.assert_allclose(float(s.alpha_bars[-1]), 4.0358e-5, rtol=1e-3)
  assert s.num_steps == 1000


def test_cosine_schedule_follows_the_squared_cosine():
  s = dif.cosine_schedule(100)
  grid = np.arange(101) / 100
  f = np.cos((grid + 0.008) / 1.008 * np.pi / 2) ** 2
  np.testing.assert_allclose(s.alpha_bars[:90], (f[1:] / f[0])[:90], rtol=1e-4)
  assert np.all(np.diff(np.asarray(s.alpha_bars)) < 0)


def test_q_sample_moments_by_monte_carlo():
  s = dif.linear_schedule(50, 1e-3, 0.1)
  x0 = jnp.full((20000, 1, 1, 1), 0.7, jnp.float32)
  t = jnp.full((20000,), 30, jnp.int32)
  xt = dif.q_sample(s, x0, t, jax.random.normal(KEY, x0.shape))
  _, _, ab = numpy_linear(50, 1e-3, 0.1)
  mean, var = dif.q_mean_variance(s, x0, t)
  np.testing.assert_allclose(mean[0, 0, 0, 0], np.sqrt(ab[30]) * 0.7, rtol=1e-5)
  np.testing.assert_allclose(var[0, 0, 0, 0], 1 - ab[30], rtol=1e-5)
  # Standard errors: 0.0071 on the mean, ~1 % on the variance.
  np.testing.assert_allclose(float(xt.mean()), np.sqrt(ab[30]) * 0.7, atol=0.03)
  np.testing.assert_allclose(float(xt.var()), 1 - ab[30], rtol=0.04)


def test_posterior_mean_and_variance_match_the_gaussian_conditional():
  # q(x_{t-1} | x_t, x_0) from Bayes in float64: x_{t-1} ~ N(sqrt(ab') x0, 1 - ab'),
  # x_t | x_{t-1} ~ N(sqrt(a) x_{t-1}, beta); a product of Gaussians.
  s = dif.linear_schedule(40, 1e-3, 0.2)
  betas, alphas, ab = numpy_linear(40, 1e-3, 0.2)
  rng = np.random.default_rng(1)
  x0 = rng.normal(size=(3, 2, 5, 1))
  xt = rng.normal(size=(3, 2, 5, 1))
  t = np.array([1, 17, 39])
  mean, var = dif.posterior_mean_variance(s, jnp.asarray(x0, jnp.float32),
                                          jnp.asarray(xt, jnp.float32), jnp.asarray(t))
  for b, tb in enumerate(t):
    prior_var = 1 - ab[tb - 1]
    lik_var = betas[tb] / alphas[tb]  # of x_{t-1} given x_t, in x_{t-1} units
    post_var = 1 / (1 / prior_var + 1 / lik_var)
    post_mean = post_var * (np.sqrt(ab[tb - 1]) * x0[b] / prior_var
                            + xt[b] / np.sqrt(alphas[tb]) / lik_var)
    np.testing.assert_allclose(var[b].ravel(), post_var, rtol=1e-4)
    np.testing.assert_allclose(mean[b], post_mean, rtol=1e-4, atol=1e-5)
  # t = 0: the posterior is x_0 itself.
  mean0, var0 = dif.posterior_mean_variance(s, jnp.asarray(x0[:1], jnp.float32),
                                            jnp.asarray(xt[:1], jnp.float32),
                                            jnp.zeros((1,), jnp.int32))
  np.testing.assert_allclose(mean0, x0[:1], rtol=1e-4)  # float32: 1 - alpha_bar_0 = beta_0
  assert float(var0.max()) == 0.0


def oracle(schedule, x0):
  """The perfect noise predictor for a known x_0: eps = (x_t - sqrt(ab) x_0) / sqrt(1 - ab)."""
  def eps_fn(x, t):
    ab = schedule.alpha_bars[t].reshape(-1, 1, 1, 1)
    return (x - jnp.sqrt(ab) * x0) / jnp.sqrt(1 - ab)
  return eps_fn


@pytest.mark.parametrize("num_sample_steps", [1, 7, 100])
def test_ddim_with_an_oracle_recovers_x0_on_odd_sizes(num_sample_steps):
  s = dif.linear_schedule(100, 1e-3, 0.05)
  x0 = jax.random.normal(jax.random.key(3), (2, 5, 7, 2))
  x_init = jax.random.normal(jax.random.key(4), x0.shape)
  steps = dif.sample_timesteps(100, num_sample_steps)
  out = dif.ddim_sample(oracle(s, x0), s, x_init, steps)
  assert out.shape == (2, 5, 7, 2) and out.dtype == jnp.float32
  np.testing.assert_allclose(out, x0, rtol=1e-4, atol=1e-4)


def test_ddpm_with_an_oracle_lands_on_x0_and_is_deterministic_given_the_key():
  s = dif.linear_schedule(30, 1e-3, 0.2)
  x0 = jax.random.normal(jax.random.key(5), (1, 3, 5, 1))
  a = dif.ddpm_sample(oracle(s, x0), s, KEY, (1, 3, 5, 1))
  b = dif.ddpm_sample(oracle(s, x0), s, KEY, (1, 3, 5, 1))
  c = dif.ddpm_sample(oracle(s, x0), s, jax.random.key(1), (1, 3, 5, 1))
  np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(a, x0, atol=1e-4)  # the last step has zero variance
  np.testing.assert_allclose(c, x0, atol=1e-4)


def test_ddim_eta_one_on_every_step_is_the_ddpm_step():
  s = dif.linear_schedule(20, 1e-3, 0.2)
  rng = np.random.default_rng(0)
  xt, eps, noise = (jnp.asarray(rng.normal(size=(3, 4, 3, 2)), jnp.float32)
                    for _ in range(3))
  t = jnp.array([1, 10, 19])
  a = dif.ddpm_step(s, xt, t, eps, noise)
  b = dif.ddim_step(s, xt, t, t - 1, eps, noise, eta=1.0)
  np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_sample_timesteps_are_a_decreasing_subsequence():
  np.testing.assert_array_equal(dif.sample_timesteps(10, 4), [9, 6, 3, 0])
  np.testing.assert_array_equal(dif.sample_timesteps(5, 5), [4, 3, 2, 1, 0])
  np.testing.assert_array_equal(dif.sample_timesteps(5, 1), [4])


def test_diffusion_loss_is_zero_for_the_oracle_and_the_mse_otherwise():
  s = dif.linear_schedule(10, 1e-3, 0.2)
  x0 = jax.random.normal(jax.random.key(2), (4, 3, 5, 2))
  np.testing.assert_allclose(float(dif.diffusion_loss(oracle(s, x0), s, x0, KEY)), 0.0,
                             atol=1e-9)
  # eps_fn = 0: the loss is the noise's mean square, ~1 (120 draws: 1 +- 0.13).
  zero = float(dif.diffusion_loss(lambda x, t: jnp.zeros_like(x), s, x0, KEY))
  t_key, n_key = jax.random.split(KEY)
  np.testing.assert_allclose(zero, float(jnp.mean(jax.random.normal(n_key, x0.shape)**2)),
                             rtol=1e-6)


def mri_problem(height=6, width=9, coils=3, batch=2, seed=0):
  rng = np.random.default_rng(seed)
  maps = rng.normal(size=(batch, coils, height, width)) + 1j * rng.normal(
      size=(batch, coils, height, width))
  maps /= np.sqrt(np.sum(np.abs(maps) ** 2, axis=1, keepdims=True))
  x = rng.normal(size=(batch, height, width)) + 1j * rng.normal(size=(batch, height, width))
  mask = np.zeros((batch, 1, 1, width), np.float32)
  mask[..., ::2] = 1
  maps, x = jnp.asarray(maps, jnp.complex64), jnp.asarray(x, jnp.complex64)
  mask = jnp.asarray(mask)
  return x, maps, mask, sense_forward(x, maps, mask)


def test_a_dps_step_reduces_the_data_residual():
  s = dif.linear_schedule(100, 1e-3, 0.05)
  x, maps, mask, kspace = mri_problem()
  eps_fn = lambda z, t: jnp.zeros_like(z)  # a prior that knows nothing: x0_hat = x_t / sqrt(ab)
  t = jnp.full((2,), 5, jnp.int32)
  xt = jax.random.normal(KEY, (2, 6, 9, 2))
  noise = jnp.zeros_like(xt)
  prior_only = dif.ddim_step(s, xt, t, t - 1, eps_fn(xt, t), noise, eta=1.0)
  stepped, res = dif.dps_step(eps_fn, s, xt, t, t - 1, noise, kspace, maps, mask,
                              zeta=2.0, eta=1.0)
  before = dif.sense_residual(dif.predict_x0(s, prior_only, t - 1, noise), kspace, maps,
                              mask)
  after = dif.sense_residual(dif.predict_x0(s, stepped, t - 1, noise), kspace, maps, mask)
  assert res.shape == (2,) and stepped.shape == xt.shape
  assert np.all(np.asarray(after) < 0.9 * np.asarray(before)), (before, after)
  # The step is -2 zeta grad ||r||: its norm is 2 zeta |grad| (hand formula: x0_hat =
  # x_t / sqrt(ab), so grad ||r|| = A^H(A x0 - y) / (||r|| sqrt(ab))).
  ab = float(s.alpha_bars[5])
  x0 = dif.channels_to_image(xt / np.sqrt(ab))
  r = sense_forward(x0, maps, mask) - kspace
  g = sense_adjoint(r, maps, mask) / (np.sqrt(ab) * jnp.sqrt(
      jnp.sum(jnp.abs(r) ** 2, axis=(1, 2, 3))))[:, None, None]
  expected = prior_only - 4.0 * dif.image_to_channels(g)
  np.testing.assert_allclose(stepped, expected, rtol=1e-4, atol=1e-5)


def test_dps_sample_is_deterministic_given_the_key_and_shapes_are_kept():
  s = dif.linear_schedule(20, 1e-3, 0.2)
  _, maps, mask, kspace = mri_problem(height=5, width=7, batch=1)
  eps_fn = lambda z, t: 0.1 * z
  steps = dif.sample_timesteps(20, 4)
  a, res = dif.dps_sample(eps_fn, s, KEY, kspace, maps, mask, timesteps=steps, zeta=0.5)
  b, _ = dif.dps_sample(eps_fn, s, KEY, kspace, maps, mask, timesteps=steps, zeta=0.5)
  c, _ = dif.dps_sample(eps_fn, s, jax.random.key(9), kspace, maps, mask, timesteps=steps,
                        zeta=0.5)
  assert a.shape == (1, 5, 7) and a.dtype == jnp.complex64 and res.shape == (4, 1)
  np.testing.assert_array_equal(a, b)
  assert float(jnp.abs(a - c).max()) > 1e-3


def test_a_dds_step_with_a_full_mask_lands_on_the_truth_and_renoises_by_hand():
  s = dif.linear_schedule(100, 1e-3, 0.05)
  x, maps, mask, _ = mri_problem(height=5, width=7)
  full = jnp.ones_like(mask)
  kspace = sense_forward(x, maps, full)
  eps_fn = lambda z, t: jnp.zeros_like(z)
  xt = jax.random.normal(KEY, (2, 5, 7, 2))
  t, noise = jnp.full((2,), 5, jnp.int32), jnp.zeros_like(xt)
  # Normalized maps and a full mask: A^H A = I, one CG iteration solves A x = y.
  last, res = dif.dds_step(eps_fn, s, xt, t, jnp.full((2,), -1, jnp.int32), noise, kspace,
                           maps, full, cg_iters=1, scale=2.0)
  np.testing.assert_allclose(dif.channels_to_image(last, 2.0), x, atol=1e-5)
  assert res.shape == (2,) and float(jnp.max(res)) < 1e-4
  # An inner step: sqrt(ab_{t-1}) x0 + 0 * eps (eps = 0, noise = 0).
  inner, _ = dif.dds_step(eps_fn, s, xt, t, t - 1, noise, kspace, maps, full, cg_iters=1,
                          eta=0.5)
  np.testing.assert_allclose(inner, np.sqrt(float(s.alpha_bars[4])) *
                             np.asarray(dif.image_to_channels(x)), rtol=1e-5, atol=1e-5)


def test_dds_with_a_partial_mask_fits_the_data_and_differs_between_keys():
  s = dif.linear_schedule(20, 1e-3, 0.2)
  # One coil and half the columns: A has a null space (3 of 7 columns unmeasured).
  x, maps, mask, kspace = mri_problem(height=5, width=7, coils=1, batch=1)
  eps_fn = lambda z, t: 0.1 * z
  steps = dif.sample_timesteps(20, 4)
  a, res = dif.dds_sample(eps_fn, s, KEY, kspace, maps, mask, timesteps=steps, cg_iters=30)
  b, _ = dif.dds_sample(eps_fn, s, KEY, kspace, maps, mask, timesteps=steps, cg_iters=30)
  c, _ = dif.dds_sample(eps_fn, s, jax.random.key(9), kspace, maps, mask, timesteps=steps,
                        cg_iters=30)
  assert a.shape == (1, 5, 7) and a.dtype == jnp.complex64 and res.shape == (4, 1)
  np.testing.assert_array_equal(a, b)
  # Every step ends data-consistent; what the data leave open, the keys fill in.
  norm_y = float(jnp.sqrt(jnp.sum(jnp.abs(kspace) ** 2)))
  assert float(jnp.max(res)) < 1e-3 * norm_y
  r = sense_forward(c, maps, mask) - kspace
  assert float(jnp.sqrt(jnp.sum(jnp.abs(r) ** 2))) < 1e-3 * norm_y
  assert float(jnp.abs(a - c).max()) > 1e-2


@pytest.mark.parametrize("call, message", [
    (lambda: dif.linear_schedule(0), "num_steps must be a positive int; got 0"),
    (lambda: dif.linear_schedule(10, 0.1, 0.01), "beta_start and beta_end"),
    (lambda: dif.make_schedule("sigmoid", 10), "schedule kind must be one of"),
    (lambda: dif.sample_timesteps(10, 11), "num_sample_steps must be in"),
    (lambda: dif.schedule_from_betas([0.1, 1.0]), "betas must be"),
    (lambda: dif.ddim_sample(lambda x, t: x, dif.linear_schedule(10),
                             jnp.zeros((1, 2, 2, 1)), [3, 5]), "timesteps must be strictly"),
    (lambda: dif.ddim_sample(lambda x, t: x, dif.linear_schedule(10),
                             jnp.zeros((1, 2, 2, 1)), [5, 3], eta=-1.0), "eta must be"),
    (lambda: dif.ddpm_sample(lambda x, t: x, dif.linear_schedule(10), KEY, (2, 3)),
     "shape must be 4 positive ints"),
    (lambda: dif.dps_sample(lambda x, t: x, dif.linear_schedule(10), KEY,
                            jnp.zeros((1, 2, 3, 3), jnp.complex64),
                            jnp.zeros((1, 2, 3, 3), jnp.complex64),
                            jnp.ones((1, 1, 1, 3)), timesteps=[5, 0], zeta=0.0),
     "zeta must be a float > 0"),
    (lambda: dif.dps_sample(lambda x, t: x, dif.linear_schedule(10), KEY,
                            jnp.zeros((2, 3, 3), jnp.complex64),
                            jnp.zeros((1, 2, 3, 3), jnp.complex64),
                            jnp.ones((1, 1, 1, 3)), timesteps=[5, 0], zeta=1.0),
     "kspace must be complex64"),
    (lambda: dif.dds_sample(lambda x, t: x, dif.linear_schedule(10), KEY,
                            jnp.zeros((1, 2, 3, 3), jnp.complex64),
                            jnp.zeros((1, 2, 3, 3), jnp.complex64),
                            jnp.ones((1, 1, 1, 3)), timesteps=[5, 0], cg_iters=0),
     "cg_iters must be an int >= 1"),
])
def test_bad_arguments_raise_value_errors_that_name_them(call, message):
  with pytest.raises(ValueError, match=message):
    call()


def test_the_train_step_uses_the_state_key_and_the_epsilon_loss():
  import optax
  from fdl.models.diffusion_unet import _TinyDiffusionUNet
  from fdl.train.state import create_train_state
  model = _TinyDiffusionUNet()
  s = dif.linear_schedule(50, 1e-3, 0.2)
  specs = (jax.ShapeDtypeStruct((1, 6, 5, 2), jnp.float32),
           jax.ShapeDtypeStruct((1,), jnp.int32))
  state = create_train_state(model, optax.sgd(0.1), example_inputs=specs, seed=3)
  x0 = np.random.default_rng(0).normal(size=(2, 6, 5, 2)).astype(np.float32)
  # The loss of step 0, by hand: key fold_in(rng, 0), split into (loss key, dropout key).
  loss_key = jax.random.split(state.step_key())[0]
  expected = dif.diffusion_loss(lambda x, t: model.apply(state.variables, x, t, train=False),
                                s, jnp.asarray(x0), loss_key)
  step = dif.make_diffusion_train_step(s, donate=False)
  new_state, metrics = step(state, {"image": x0})
  np.testing.assert_allclose(metrics["loss"], expected, rtol=1e-5)
  assert int(new_state.step) == 1 and float(metrics["grad_norm"]) > 0
  again, metrics_again = step(state, {"image": x0})
  assert float(metrics_again["loss"]) == float(metrics["loss"])  # deterministic
  with pytest.raises(ValueError, match=r"batch must hold 'image'"):
    step(state, {"x": x0})
  with pytest.raises(ValueError, match=r"batch\['image'\] must be a float array"):
    step(state, {"image": x0[0]})
