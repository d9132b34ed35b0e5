"""Denoising diffusion: schedules, closed forms, the loss, DDPM / DDIM / DPS / DDS samplers.

Conventions (Ho et al., "Denoising diffusion probabilistic models", NeurIPS 2020):
timesteps are 0-based, ``t in {0, ..., T - 1}``; ``alpha_t = 1 - beta_t`` and
``alpha_bar_t = prod_{s <= t} alpha_s``, so

  q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I),

and, with ``alpha_bar_{-1} = 1``, the forward posterior is

  q(x_{t-1} | x_t, x_0) = N(mu_t, beta~_t I),
  mu_t = sqrt(alpha_bar_{t-1}) beta_t / (1 - alpha_bar_t) x_0
         + sqrt(alpha_t) (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) x_t,
  beta~_t = (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) beta_t.

A noise predictor ``eps_fn(x_t, t) -> eps`` (x_t float32 ``[B, H, W, C]``, t int32
``[B]``) is trained with the epsilon MSE ``|eps - eps_theta(x_t, t)|^2``, t uniform.
Samplers: ancestral DDPM (every step, variance ``beta~_t``), DDIM (Song et al.,
"Denoising diffusion implicit models", ICLR 2021; a subsequence of timesteps, ``eta``
0 for the deterministic sampler), and two posterior samplers with the SENSE operator of
`fdl.mri.sense` as the measurement: DPS (Chung et al., "Diffusion posterior sampling
for general noisy inverse problems", ICLR 2023) and DDS (Chung, Lee & Ye, "Decomposed
diffusion sampler for accelerating large-scale inverse problems", ICLR 2024).

Examples:
  >>> s = linear_schedule(1000)
  >>> s.num_steps, round(float(s.alpha_bars[-1]), 6)
  (1000, 4e-05)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from fdl.mri.recon import cg_sense
from fdl.mri.sense import sense_forward
from fdl.train import mesh as mesh_lib
from fdl.train.state import TrainState

EpsFn = Callable[[jax.Array, jax.Array], jax.Array]
SCHEDULES = ("linear", "cosine")


class Schedule(NamedTuple):
  """A variance schedule; every field float32 ``[T]`` (a pytree, fine under jit).

  Attributes:
    betas: ``beta_t``, the per-step noise variances, in (0, 1).
    alphas: ``1 - beta_t``.
    alpha_bars: ``prod_{s <= t} alpha_s``, decreasing from ``alpha_0``.
  """

  betas: jax.Array
  alphas: jax.Array
  alpha_bars: jax.Array

  @property
  def num_steps(self) -> int:
    return int(self.betas.shape[0])


def _check_num_steps(name: str, value) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
    raise ValueError(f"{name} must be a positive int; got {value!r}")
  return int(value)


def schedule_from_betas(betas) -> Schedule:
  """The `Schedule` of given betas (float ``[T]``, each in (0, 1)), computed in float64."""
  betas = np.asarray(betas, np.float64)
  if betas.ndim != 1 or betas.size < 1 or not np.all((betas > 0) & (betas < 1)):
    raise ValueError(f"betas must be a non-empty 1-D array with values in (0, 1); got "
                     f"shape {betas.shape}, range [{betas.min() if betas.size else None}, "
                     f"{betas.max() if betas.size else None}]")
  alphas = 1.0 - betas
  return Schedule(jnp.asarray(betas, jnp.float32), jnp.asarray(alphas, jnp.float32),
                  jnp.asarray(np.cumprod(alphas), jnp.float32))


def linear_schedule(num_steps: int = 1000, beta_start: float = 1e-4,
                    beta_end: float = 0.02) -> Schedule:
  """Ho et al.'s linear schedule: betas evenly spaced from `beta_start` to `beta_end`.

  With ``T = 1000`` and the defaults, ``alpha_bar_{T-1} = 4.0e-5``: x_{T-1} is
  pure noise to within ``sqrt(alpha_bar) = 0.6 %`` of the signal.
  """
  num_steps = _check_num_steps("num_steps", num_steps)
  if not 0 < beta_start <= beta_end < 1:
    raise ValueError(f"beta_start and beta_end must satisfy 0 < beta_start <= beta_end < 1; "
                     f"got beta_start={beta_start!r}, beta_end={beta_end!r}")
  return schedule_from_betas(np.linspace(beta_start, beta_end, num_steps))


def cosine_schedule(num_steps: int = 1000, offset: float = 0.008,
                    max_beta: float = 0.999) -> Schedule:
  """Nichol & Dhariwal's (ICML 2021) cosine schedule.

  ``alpha_bar(t) = f(t) / f(0)``, ``f(t) = cos^2(pi / 2 (t / T + s) / (1 + s))``, with
  ``s = offset``; ``beta_t = 1 - alpha_bar(t + 1) / alpha_bar(t)`` clipped to
  `max_beta`.
  """
  num_steps = _check_num_steps("num_steps", num_steps)
  if not 0 < max_beta < 1:
    raise ValueError(f"max_beta must be in (0, 1); got {max_beta!r}")
  grid = np.arange(num_steps + 1, dtype=np.float64) / num_steps
  f = np.cos((grid + offset) / (1 + offset) * math.pi / 2) ** 2
  betas = np.clip(1 - f[1:] / f[:-1], 1e-8, max_beta)
  return schedule_from_betas(betas)


def make_schedule(kind: str, num_steps: int, **kwargs) -> Schedule:
  """`linear_schedule` or `cosine_schedule` by name (``kind`` in `SCHEDULES`)."""
  if kind not in SCHEDULES:
    raise ValueError(f"schedule kind must be one of {SCHEDULES}; got {kind!r}")
  return (linear_schedule if kind == "linear" else cosine_schedule)(num_steps, **kwargs)


def _expand(values: jax.Array, t: jax.Array, like: jax.Array) -> jax.Array:
  """``values[t]`` shaped ``[B, 1, ..., 1]`` to broadcast against `like` ``[B, ...]``."""
  return values[t].reshape((-1,) + (1,) * (like.ndim - 1))


def _prev_alpha_bars(schedule: Schedule) -> jax.Array:
  return jnp.concatenate([jnp.ones((1,), jnp.float32), schedule.alpha_bars[:-1]])


def q_mean_variance(schedule: Schedule, x0: jax.Array, t: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
  """Mean ``sqrt(alpha_bar_t) x_0`` and variance ``1 - alpha_bar_t`` of q(x_t | x_0).

  Args:
    schedule: the variance schedule.
    x0: float ``[B, ...]`` clean data.
    t: int ``[B]`` timesteps in ``[0, T)``.

  Returns:
    ``(mean [B, ...], variance [B, 1, ..., 1])``, float32.
  """
  ab = _expand(schedule.alpha_bars, t, x0)
  return jnp.sqrt(ab) * x0, 1.0 - ab


def q_sample(schedule: Schedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) noise`` (shapes as `x0`)."""
  mean, var = q_mean_variance(schedule, x0, t)
  return mean + jnp.sqrt(var) * noise


def posterior_mean_variance(schedule: Schedule, x0: jax.Array, xt: jax.Array, t: jax.Array
                            ) -> tuple[jax.Array, jax.Array]:
  """Mean and variance of q(x_{t-1} | x_t, x_0) (module docstring; ``t = 0``: x_0, 0).

  Args:
    schedule: the variance schedule.
    x0, xt: float ``[B, ...]``.
    t: int ``[B]`` in ``[0, T)``.

  Returns:
    ``(mean [B, ...], variance [B, 1, ..., 1])``, float32.
  """
  beta = _expand(schedule.betas, t, xt)
  alpha = _expand(schedule.alphas, t, xt)
  ab = _expand(schedule.alpha_bars, t, xt)
  ab_prev = _expand(_prev_alpha_bars(schedule), t, xt)
  mean = (jnp.sqrt(ab_prev) * beta / (1 - ab)) * x0 + (
      jnp.sqrt(alpha) * (1 - ab_prev) / (1 - ab)) * xt
  return mean, (1 - ab_prev) / (1 - ab) * beta


def predict_x0(schedule: Schedule, xt: jax.Array, t: jax.Array, eps: jax.Array) -> jax.Array:
  """Tweedie's estimate ``x0_hat = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)``."""
  ab = _expand(schedule.alpha_bars, t, xt)
  return (xt - jnp.sqrt(1 - ab) * eps) / jnp.sqrt(ab)


def diffusion_loss(eps_fn: EpsFn, schedule: Schedule, x0: jax.Array, key: jax.Array
                   ) -> jax.Array:
  """The epsilon-prediction MSE, ``mean |eps - eps_fn(x_t, t)|^2``, t uniform in [0, T).

  Args:
    eps_fn: the noise predictor.
    schedule: the variance schedule.
    x0: float32 ``[B, H, W, C]`` clean images.
    key: draws ``t`` (one per example) and the noise.

  Returns:
    float32 scalar, the mean over every element.
  """
  t_key, noise_key = jax.random.split(key)
  t = jax.random.randint(t_key, (x0.shape[0],), 0, schedule.num_steps)
  noise = jax.random.normal(noise_key, x0.shape, x0.dtype)
  eps = eps_fn(q_sample(schedule, x0, t, noise), t)
  return jnp.mean(jnp.square(eps - noise))


def make_diffusion_train_step(schedule: Schedule, *, input_key: str = "image",
                              mesh=None, learning_rate: float | optax.Schedule | None = None,
                              donate: bool = True
                              ) -> Callable[[TrainState, Any], tuple[TrainState, dict]]:
  """``train_step(state, batch) -> (state, metrics)`` for a noise predictor.

  The model is called as ``state.apply_fn(variables, x_t, t, train=True)``. The key
  of a step is ``state.step_key()`` (``fold_in(state.rng, step)``): it draws t, the
  noise and the dropout, so a resumed run draws what an uninterrupted one would.
  Compiled once for `mesh` (state replicated and donated, batch split along axis 0).

  Args:
    schedule: the variance schedule.
    input_key: the batch key of the clean images, float32 ``[B, H, W, C]``.
    mesh: the data-parallel mesh; None: all devices.
    learning_rate: the optimizer's schedule (or float), only reported in the metrics.
    donate: donate the state's buffers.

  Returns:
    ``train_step``; metrics (float32 scalars): ``loss`` (= ``total_loss``: no
    penalties), ``grad_norm``,
    ``param_norm``, ``update_norm`` and ``learning_rate`` when given.
  """
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  lr = None if learning_rate is None else (
      learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate))

  def step(state: TrainState, batch):
    key, dropout_key = jax.random.split(state.step_key())

    def objective(params):
      def eps_fn(x, t):
        return state.apply_fn({"params": params}, x, t, train=True,
                              rngs={"dropout": dropout_key})
      return diffusion_loss(eps_fn, schedule, batch[input_key], key)

    loss, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {"loss": loss, "total_loss": loss, "grad_norm": optax.tree.norm(grads),
               "param_norm": optax.tree.norm(params),
               "update_norm": optax.tree.norm(updates)}
    if lr is not None:
      metrics["learning_rate"] = jnp.asarray(lr(state.step), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                     out_shardings=(replicated, replicated),
                     donate_argnums=(0,) if donate else ())

  def train_step(state: TrainState, batch):
    if input_key not in batch:
      raise ValueError(f"batch must hold {input_key!r} (clean images [B, H, W, C]); got "
                       f"keys {sorted(batch)}")
    x = batch[input_key]
    if np.ndim(x) != 4 or not jnp.issubdtype(np.result_type(x), jnp.floating):
      raise ValueError(f"batch[{input_key!r}] must be a float array [B, H, W, C]; got "
                       f"{getattr(x, 'dtype', type(x).__name__)} {np.shape(x)}")
    return compiled(state, mesh_lib.shard_batch(batch, mesh))

  train_step.jitted = compiled
  return train_step


# --- samplers ---------------------------------------------------------------------------


def _check_shape(shape) -> tuple[int, ...]:
  shape = tuple(shape)
  if len(shape) != 4 or not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape):
    raise ValueError(f"shape must be 4 positive ints [B, H, W, C]; got {shape!r}")
  return tuple(int(d) for d in shape)


def _check_eta(eta) -> float:
  if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not eta >= 0:
    raise ValueError(f"eta must be a float >= 0 (0: deterministic DDIM); got {eta!r}")
  return float(eta)


def sample_timesteps(num_steps: int, num_sample_steps: int) -> np.ndarray:
  """An evenly spaced, decreasing subsequence of ``[0, T)`` from ``T - 1`` down to 0.

  Args:
    num_steps: T, the schedule's length.
    num_sample_steps: its length, in ``[1, T]`` (T: every step).

  Returns:
    int32 ``[num_sample_steps]``, strictly decreasing, first ``T - 1``, last 0 (for
    more than one step).
  """
  num_steps = _check_num_steps("num_steps", num_steps)
  n = _check_num_steps("num_sample_steps", num_sample_steps)
  if n > num_steps:
    raise ValueError(f"num_sample_steps must be in [1, num_steps={num_steps}]; got {n}")
  steps = np.round(np.linspace(num_steps - 1, 0, n)).astype(np.int32)
  return steps if n > 1 else np.array([num_steps - 1], np.int32)


def ddpm_step(schedule: Schedule, xt: jax.Array, t: jax.Array, eps: jax.Array,
              noise: jax.Array) -> jax.Array:
  """One ancestral step: the posterior mean at ``x0_hat(x_t)`` plus ``sqrt(beta~_t) noise``.

  Args:
    schedule: the variance schedule.
    xt, eps, noise: float32 ``[B, ...]``.
    t: int ``[B]``; at ``t = 0`` the step returns ``x0_hat`` (no noise).

  Returns:
    ``x_{t-1}``, float32 ``[B, ...]``.
  """
  x0 = predict_x0(schedule, xt, t, eps)
  mean, var = posterior_mean_variance(schedule, x0, xt, t)
  return mean + jnp.sqrt(var) * noise


def ddim_step(schedule: Schedule, xt: jax.Array, t: jax.Array, t_prev: jax.Array,
              eps: jax.Array, noise: jax.Array, eta: float = 0.0) -> jax.Array:
  """One DDIM step from ``t`` to ``t_prev < t`` (``t_prev = -1``: to the data, x0_hat).

  ``x_prev = sqrt(ab_prev) x0_hat + sqrt(1 - ab_prev - sigma^2) eps + sigma noise``
  with ``sigma = eta sqrt((1 - ab_prev) / (1 - ab_t)) sqrt(1 - ab_t / ab_prev)``
  (Song et al. 2021, eq. 12 and 16): ``eta = 0`` is deterministic, ``eta = 1`` on
  every step is DDPM's ancestral sampler.

  Args:
    schedule: the variance schedule.
    xt, eps, noise: float32 ``[B, ...]``.
    t, t_prev: int ``[B]``.
    eta: >= 0.

  Returns:
    float32 ``[B, ...]``.
  """
  return renoise(schedule, predict_x0(schedule, xt, t, eps), t, t_prev, eps, noise, eta)


def renoise(schedule: Schedule, x0: jax.Array, t: jax.Array, t_prev: jax.Array,
            eps: jax.Array, noise: jax.Array, eta: float = 0.0) -> jax.Array:
  """The second half of a DDIM step: from an estimate ``x0`` (and ``eps``) to ``x_prev``.

  `ddim_step` with ``x0_hat`` given, so that a sampler may change it first (data
  consistency in `dds_step`); shapes as there.
  """
  ab = _expand(schedule.alpha_bars, t, x0)
  ab_prev = jnp.where(t_prev.reshape((-1,) + (1,) * (x0.ndim - 1)) >= 0,
                      _expand(schedule.alpha_bars, jnp.maximum(t_prev, 0), x0), 1.0)
  sigma = eta * jnp.sqrt((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev))
  direction = jnp.sqrt(jnp.maximum(1 - ab_prev - sigma**2, 0.0))
  return jnp.sqrt(ab_prev) * x0 + direction * eps + sigma * noise


def ddpm_sample(eps_fn: EpsFn, schedule: Schedule, key: jax.Array,
                shape: Sequence[int]) -> jax.Array:
  """Ancestral DDPM sampling: x_{T-1} ~ N(0, I), T steps of `ddpm_step` (jitted loop).

  Args:
    eps_fn: the noise predictor ``(x [B, H, W, C], t int32 [B]) -> eps``.
    schedule: the variance schedule.
    key: the sampler's key (initial noise and each step's noise).
    shape: ``(B, H, W, C)``.

  Returns:
    float32 ``[B, H, W, C]`` samples x_0; the same key gives the same samples.
  """
  shape = _check_shape(shape)
  init_key, loop_key = jax.random.split(key)

  def body(i, x):
    t = jnp.full((shape[0],), schedule.num_steps - 1 - i, jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(loop_key, i), shape)
    return ddpm_step(schedule, x, t, eps_fn(x, t), noise)

  x = jax.random.normal(init_key, shape)
  return jax.lax.fori_loop(0, schedule.num_steps, body, x)


def ddim_sample(eps_fn: EpsFn, schedule: Schedule, x_init: jax.Array,
                timesteps: Sequence[int], *, eta: float = 0.0,
                key: jax.Array | None = None) -> jax.Array:
  """DDIM sampling from `x_init` along the decreasing `timesteps` down to the data.

  Args:
    eps_fn: the noise predictor.
    schedule: the variance schedule.
    x_init: float32 ``[B, H, W, C]``, x at ``timesteps[0]`` (pure noise when that is
      ``T - 1``).
    timesteps: strictly decreasing ints in ``[0, T)`` (e.g. `sample_timesteps`).
    eta: 0 (default): deterministic; > 0 needs `key`.
    key: the per-step noise's key when ``eta > 0``.

  Returns:
    float32 ``[B, H, W, C]``: x_0.
  """
  eta = _check_eta(eta)
  steps = _check_timesteps(timesteps, schedule)
  if eta > 0 and key is None:
    raise ValueError("key must be given when eta > 0 (stochastic DDIM)")
  key = jax.random.key(0) if key is None else key
  batch = x_init.shape[0]
  prevs = jnp.asarray(np.append(steps[1:], -1), jnp.int32)
  steps = jnp.asarray(steps, jnp.int32)

  def body(i, x):
    t = jnp.full((batch,), steps[i], jnp.int32)
    t_prev = jnp.full((batch,), prevs[i], jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(key, i), x.shape) if eta > 0 else 0.0
    return ddim_step(schedule, x, t, t_prev, eps_fn(x, t), noise, eta)

  return jax.lax.fori_loop(0, int(steps.shape[0]), body, jnp.asarray(x_init, jnp.float32))


def _check_timesteps(timesteps, schedule: Schedule) -> np.ndarray:
  steps = np.asarray(timesteps)
  if (steps.ndim != 1 or steps.size < 1 or not np.issubdtype(steps.dtype, np.integer)
      or steps.min() < 0 or steps.max() >= schedule.num_steps
      or np.any(np.diff(steps) >= 0)):
    raise ValueError(f"timesteps must be strictly decreasing ints in [0, "
                     f"{schedule.num_steps}); got {np.asarray(timesteps).tolist()}")
  return steps.astype(np.int32)


# --- posterior sampling for MRI (DPS) -----------------------------------------------------


def channels_to_image(x: jax.Array, scale: float | jax.Array = 1.0) -> jax.Array:
  """``[B, H, W, 2]`` (real, imaginary) float -> complex64 ``[B, H, W]`` times `scale`."""
  return (scale * (x[..., 0] + 1j * x[..., 1])).astype(jnp.complex64)


def image_to_channels(image: jax.Array, scale: float | jax.Array = 1.0) -> jax.Array:
  """complex ``[B, H, W]`` -> float32 ``[B, H, W, 2]`` (real, imaginary) divided by `scale`."""
  image = image / scale
  return jnp.stack([image.real, image.imag], axis=-1).astype(jnp.float32)


def sense_residual(x: jax.Array, kspace: jax.Array, maps: jax.Array, mask: jax.Array,
                   scale: float | jax.Array = 1.0) -> jax.Array:
  """``||y - A(scale * x)||_2`` per example: float32 ``[B]``.

  Args:
    x: float32 ``[B, H, W, 2]`` network-scaled images (real, imaginary).
    kspace: complex64 ``[B, C, H, W]``, the measured (masked) k-space y.
    maps: complex64 ``[B, C, H, W]`` coil sensitivities.
    mask: real, broadcastable to k-space.
    scale: image units per network unit.
  """
  r = kspace - sense_forward(channels_to_image(x, scale), maps, mask)
  return jnp.sqrt(jnp.sum(jnp.abs(r) ** 2, axis=(1, 2, 3)))


def dps_step(eps_fn: EpsFn, schedule: Schedule, xt: jax.Array, t: jax.Array,
             t_prev: jax.Array, noise: jax.Array, kspace: jax.Array, maps: jax.Array,
             mask: jax.Array, *, zeta: float, eta: float = 1.0,
             scale: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
  """One DPS step (Chung et al. 2023, Algorithm 1, on a DDIM subsequence).

  The prior's step ``x'`` (`ddim_step`, ``eta = 1`` and every step: DDPM's) minus
  ``zeta_t grad_{x_t} ||y - A x0_hat(x_t)||_2^2`` with the paper's normalized step
  ``zeta_t = zeta / ||y - A x0_hat(x_t)||_2`` (per example), i.e.
  ``x_{t-1} = x' - 2 zeta grad_{x_t} ||y - A x0_hat(x_t)||_2``. The gradient runs
  through the noise predictor (``x0_hat`` depends on ``x_t`` through eps).

  Args:
    eps_fn: the noise predictor.
    schedule: the variance schedule.
    xt, noise: float32 ``[B, H, W, 2]``.
    t, t_prev: int32 ``[B]``, ``t_prev < t`` (-1: the last step).
    kspace, maps, mask: the measurement y = M F S x (as `sense_residual`).
    zeta: the step size (> 0), in network units per unit of the residual's norm.
    eta: the prior step's noise (`ddim_step`).
    scale: image units per network unit.

  Returns:
    ``(x_{t_prev} [B, H, W, 2], residual [B])``, the residual of ``x0_hat(x_t)``.
  """
  def residual_sum(x):
    eps = eps_fn(x, t)
    res = sense_residual(predict_x0(schedule, x, t, eps), kspace, maps, mask, scale)
    return jnp.sum(res), (eps, res)

  # d/dx sum_b ||r_b|| = per-example gradients of ||r_b||, examples are independent.
  grad, (eps, res) = jax.grad(residual_sum, has_aux=True)(xt)
  prior = ddim_step(schedule, xt, t, t_prev, jax.lax.stop_gradient(eps), noise, eta)
  return prior - 2.0 * zeta * grad, res


def dps_sample(eps_fn: EpsFn, schedule: Schedule, key: jax.Array, kspace: jax.Array,
               maps: jax.Array, mask: jax.Array, *, timesteps: Sequence[int],
               zeta: float, eta: float = 1.0, scale: float = 1.0
               ) -> tuple[jax.Array, jax.Array]:
  """Posterior samples of complex images given under-sampled multi-coil k-space (DPS).

  Chung, Kim, McCann, Klasky & Ye, "Diffusion posterior sampling for general noisy
  inverse problems", ICLR 2023: reverse diffusion under the prior, each step pulled
  towards the data by the gradient of ``||y - A x0_hat(x_t)||`` (`dps_step`), with
  ``A = M F S`` the SENSE operator (`fdl.mri.sense.sense_forward`). One call draws one
  sample per example; different keys give the posterior's spread.

  Args:
    eps_fn: the noise predictor on network-scaled ``[B, H, W, 2]`` images.
    schedule: the prior's variance schedule.
    key: initial noise and per-step noise.
    kspace: complex64 ``[B, C, H, W]`` measured k-space (zeros where not sampled).
    maps: complex64 ``[B, C, H, W]``.
    mask: float, broadcastable to `kspace`.
    timesteps: strictly decreasing ints in ``[0, T)`` (`sample_timesteps`).
    zeta: DPS step size, > 0.
    eta: noise of the prior steps (1: DDPM-like, 0: deterministic).
    scale: image units per network unit (the prior was trained on images / scale).

  Returns:
    ``(images complex64 [B, H, W], residual float32 [num_steps, B])``: the final
    ``x0_hat`` in image units and ``||y - A x0_hat||`` along the way.
  """
  if isinstance(zeta, bool) or not isinstance(zeta, (int, float)) or not zeta > 0:
    raise ValueError(f"zeta must be a float > 0 (the DPS step size); got {zeta!r}")
  eta = _check_eta(eta)
  step = lambda x, t, t_prev, noise: dps_step(
      eps_fn, schedule, x, t, t_prev, noise, kspace, maps, mask, zeta=float(zeta),
      eta=eta, scale=scale)
  return _posterior_sample(step, schedule, key, kspace, timesteps, scale)


def dds_step(eps_fn: EpsFn, schedule: Schedule, xt: jax.Array, t: jax.Array,
             t_prev: jax.Array, noise: jax.Array, kspace: jax.Array, maps: jax.Array,
             mask: jax.Array, *, cg_iters: int, eta: float = 0.85,
             scale: float | jax.Array = 1.0) -> tuple[jax.Array, jax.Array]:
  """One step of the decomposed diffusion sampler (DDS; Chung, Lee & Ye, ICLR 2024).

  Tweedie's ``x0_hat(x_t)`` (`predict_x0`), then data consistency on it alone:
  `cg_iters` conjugate-gradient iterations on ``A^H A x = A^H y`` started from
  ``x0_hat`` (`fdl.mri.recon.cg_sense`; few iterations stay in the Krylov subspace
  around the prior's estimate), then the DDIM re-noising of the corrected estimate
  (`renoise`, with the network's eps). No gradient runs through the network, so a
  step costs one forward pass plus `cg_iters` SENSE normal operators.

  Args:
    eps_fn, schedule, xt, t, t_prev, noise, kspace, maps, mask, scale: as `dps_step`.
    cg_iters: CG iterations per step (>= 1, static).
    eta: the re-noising's noise (`ddim_step`).

  Returns:
    ``(x_{t_prev} [B, H, W, 2], residual [B])``, the residual of the corrected
    estimate; at ``t_prev = -1`` the output is that estimate itself.
  """
  eps = eps_fn(xt, t)
  x0 = predict_x0(schedule, xt, t, eps)
  image = cg_sense(kspace, maps, mask, num_iters=int(cg_iters),
                   x0=channels_to_image(x0, scale))
  x0 = image_to_channels(image, scale)
  return (renoise(schedule, x0, t, t_prev, eps, noise, eta),
          sense_residual(x0, kspace, maps, mask, scale))


def dds_sample(eps_fn: EpsFn, schedule: Schedule, key: jax.Array, kspace: jax.Array,
               maps: jax.Array, mask: jax.Array, *, timesteps: Sequence[int],
               cg_iters: int = 5, eta: float = 0.85, scale: float = 1.0
               ) -> tuple[jax.Array, jax.Array]:
  """Posterior samples by DDS (`dds_step` on every timestep); arguments as `dps_sample`.

  Chung, Lee & Ye, "Decomposed diffusion sampler for accelerating large-scale
  inverse problems", ICLR 2024 (their MRI setting: ``eta = 0.85``, 5 CG iterations,
  tens of steps). Different keys give the posterior's spread.

  Returns:
    ``(images complex64 [B, H, W], residual float32 [num_steps, B])``: the last
    data-consistent estimate in image units and its residual along the way.
  """
  if isinstance(cg_iters, bool) or not isinstance(cg_iters, (int, np.integer)) \
      or cg_iters < 1:
    raise ValueError(f"cg_iters must be an int >= 1; got {cg_iters!r}")
  eta = _check_eta(eta)
  step = lambda x, t, t_prev, noise: dds_step(
      eps_fn, schedule, x, t, t_prev, noise, kspace, maps, mask, cg_iters=int(cg_iters),
      eta=eta, scale=scale)
  return _posterior_sample(step, schedule, key, kspace, timesteps, scale)


def _posterior_sample(step, schedule: Schedule, key: jax.Array, kspace: jax.Array,
                      timesteps: Sequence[int], scale) -> tuple[jax.Array, jax.Array]:
  """The reverse loop the posterior samplers share: ``step(x, t, t_prev, noise)``."""
  steps = _check_timesteps(timesteps, schedule)
  kspace = jnp.asarray(kspace)
  if kspace.ndim != 4 or kspace.dtype != jnp.complex64:
    raise ValueError(f"kspace must be complex64 [B, C, H, W]; got {kspace.dtype} "
                     f"{tuple(kspace.shape)}")
  batch, _, height, width = kspace.shape
  shape = (batch, height, width, 2)
  prevs = jnp.asarray(np.append(steps[1:], -1), jnp.int32)
  steps_j = jnp.asarray(steps, jnp.int32)
  init_key, loop_key = jax.random.split(key)

  def body(x, i):
    t = jnp.full((batch,), steps_j[i], jnp.int32)
    t_prev = jnp.full((batch,), prevs[i], jnp.int32)
    noise = jax.random.normal(jax.random.fold_in(loop_key, i), shape)
    return step(x, t, t_prev, noise)

  x, residuals = jax.lax.scan(body, jax.random.normal(init_key, shape),
                              jnp.arange(int(steps.shape[0])))
  return channels_to_image(x, scale), residuals
