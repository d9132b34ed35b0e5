"""Generative models end to end: autoencoder, VAE and DCGAN on small grey images.

`train_and_evaluate(config, workdir)` is what ``experiments/generative.py`` calls;
``config.model`` picks ``'autoencoder'``, ``'vae'`` or ``'dcgan'``. The pieces are
importable on their own:

* `make_autoencoder_train_step` / `make_autoencoder_eval_step`: the steps of the
  autoencoders. They are `fdl.train.make_train_step`'s recipe (one `TrainState`, pure,
  jitted once, donated) with one difference: the VAE draws its ``eps`` from the Flax RNG
  stream ``'latent'``, which these steps fill with the step key
  ``fold_in(state.rng, state.step)``, as `make_train_step` fills ``'dropout'``.
* `GANState`, `create_gan_state` and `make_gan_step`: one state pytree with both
  networks' params, batch stats and optimizer states, and one pure jitted
  ``gan_step(state, batch) -> (state, metrics)``.
* `classifier_score`: the sample-quality score, computed with a small CNN
  (`train_scorer`) trained on the same images.

Data: scikit-learn's 8x8 digits (embedded, `fdl.data.load_source('digits')`), resized
bilinearly to ``config.image_size`` (16 by default), or any `fdl.data` source such as
CIFAR-10 ``.npz`` files (``dataset='npz'``), turned grey with ``config.grey``. Pixels are
scaled to ``[0, 1]`` for the autoencoders (Bernoulli likelihood) and to ``[-1, 1]`` for the
GAN (tanh output). Splits are `fdl.data.make_splits`' deterministic, disjoint ones; the
test split is opened once, after training.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh

from fdl import config_files, data, losses, models
from fdl.evaluate import figures
from fdl.models.autoencoder import LATENT_RNG, VAE, ConvAutoencoder
from fdl.models.conv import compiler_options
from fdl.models.gan import DCGAN
from fdl.train import mesh as mesh_lib
from fdl.train.loop import evaluate, fit
from fdl.train.metric_writer import is_writer, read_jsonl, write_json
from fdl.train.optim import make_optimizer, make_schedule
from fdl.train.state import TrainState, create_train_state, num_params
from fdl.train.step import make_eval_step, make_train_step

GENERATIVE_MODELS = ("autoencoder", "vae", "dcgan")
# Metric names a run writes, by model; tests check them.
TRAIN_METRICS = {
    "autoencoder": ("train/loss", "train/mse", "train/grad_norm"),
    "vae": ("train/loss", "train/neg_elbo", "train/kl", "train/reconstruction_nll",
            "train/mse"),
    "dcgan": ("train/d_loss", "train/g_loss", "train/d_real", "train/d_fake",
              "train/g_grad_norm", "train/d_grad_norm"),
}
EVAL_METRICS = {"autoencoder": ("val/loss", "val/mse"),
                "vae": ("val/loss", "val/neg_elbo", "val/kl", "val/mse"), "dcgan": ()}
# The eval steps' eps key: fixed, so that validation ELBOs of different epochs see the
# same noise (an estimate with less variance between epochs); never a training step's.
_EVAL_FOLD = 0x7FFFFFFF


# --- data ------------------------------------------------------------------------------


def to_unit_images(images: np.ndarray, image_size: int | None, *, grey: bool) -> np.ndarray:
  """uint8 NHWC images to float32 ``[N, S, S, C]`` in ``[0, 1]``.

  Args:
    images: uint8 ``[N, H, W, C]``.
    image_size: side ``S`` of the output, by bilinear resizing (``jax.image.resize``,
      antialiased when shrinking); None keeps ``H, W``.
    grey: average RGB to one channel with the ITU-R BT.601 luma weights
      (0.299, 0.587, 0.114); images with one channel stay as they are.

  Returns:
    float32 ``[N, S, S, C']``, clipped to ``[0, 1]`` (the resize can overshoot by
    rounding only; linear interpolation stays within the input range).
  """
  if images.ndim != 4 or images.dtype != np.uint8:
    raise ValueError(f"images must be uint8 [N, H, W, C]; got {images.dtype} "
                     f"{images.shape}")
  x = images.astype(np.float32) / 255.0
  if grey and x.shape[-1] == 3:
    x = x @ np.asarray([0.299, 0.587, 0.114], np.float32)[:, None]
  if image_size is not None and tuple(x.shape[1:3]) != (image_size, image_size):
    x = np.asarray(jax.image.resize(jnp.asarray(x), (x.shape[0], image_size, image_size,
                                                     x.shape[-1]), "linear"))
  return np.clip(x, 0.0, 1.0).astype(np.float32)


def load_splits(config: ml_collections.ConfigDict) -> tuple[dict, data.SealedTestSplit, dict]:
  """``(splits, sealed test split, provenance)`` of the config's images.

  ``splits`` maps ``train`` and ``val`` to ``{"image": float32 [N, S, S, C] in [0, 1],
  "label": int32 [N]}``; the sealed split hands out uint8 images (see `to_unit_images`).
  """
  source = data.load_source(config.dataset, data_dir=config.data_dir,
                            train_file=config.train_file, test_file=config.test_file,
                            seed=config.seed)
  splits = data.make_splits(source, val_size=config.val_size, val_fraction=config.val_fraction,
                            test_fraction=config.test_fraction, seed=config.seed)
  size = config.image_size or None
  prepared = {
      "train": {"image": to_unit_images(splits.train_images, size, grey=config.grey),
                "label": splits.train_labels},
      "val": {"image": to_unit_images(splits.val_images, size, grey=config.grey),
              "label": splits.val_labels},
  }
  if config.max_train_examples:
    prepared["train"] = {k: v[:config.max_train_examples]
                         for k, v in prepared["train"].items()}
  provenance = dict(splits.provenance)
  provenance["preprocessing"] = [
      "uint8 / 255", *(["RGB -> grey (BT.601 luma)"] if config.grey else []),
      *([f"bilinear resize to {size}x{size}"] if size else []), "clip to [0, 1]",
      *([f"first {config.max_train_examples} training examples"]
        if config.max_train_examples else [])]
  return prepared, splits.test, provenance


def to_gan_range(images: np.ndarray) -> np.ndarray:
  """Images in ``[0, 1]`` to the generator's tanh range ``[-1, 1]``."""
  return (2.0 * images - 1.0).astype(np.float32)


# --- autoencoder steps -----------------------------------------------------------------


def _check_image_batch(batch) -> None:
  """Checks a batch before it reaches jit: a mapping with float NHWC ``image``."""
  if not isinstance(batch, Mapping) or "image" not in batch:
    got = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
    raise ValueError(f"batch must be a mapping with the key 'image'; got {got}")
  x = batch["image"]
  if not jnp.issubdtype(x.dtype, jnp.floating) or x.ndim != 4:
    raise ValueError(f"batch['image'] must be float images [batch, H, W, C]; got "
                     f"{x.dtype} {tuple(x.shape)}")


def _on_mesh(batch, mesh):
  if all(isinstance(x, jax.Array) for x in jax.tree.leaves(batch)):
    return batch
  return mesh_lib.shard_batch(batch, mesh)


def make_autoencoder_train_step(loss_fn: losses.StepLoss, *, mesh: Mesh | None = None,
                                learning_rate: float | optax.Schedule | None = None,
                                donate: bool = True) -> Callable:
  """``train_step(state, batch) -> (state, metrics)`` of an autoencoder or VAE.

  The model is called as ``apply_fn(variables, batch["image"], train=True,
  rngs={"latent": key})`` with ``key = fold_in(state.rng, state.step)``, so a VAE's
  sample is a pure function of the state; the gradient of ``loss_fn`` updates
  ``state.params`` through ``state.tx``.

  Args:
    loss_fn: `fdl.losses.autoencoder_loss` or `fdl.losses.vae_loss`.
    mesh: the data-parallel mesh; None means all devices.
    learning_rate: reported as ``learning_rate`` in the metrics when given.
    donate: donate the input state's buffers.

  Returns:
    ``train_step``; metrics are float32 scalars: ``loss``, ``total_loss`` (the same:
    no penalties), the loss function's metrics, ``grad_norm``, ``param_norm``,
    ``update_norm`` and ``learning_rate`` if given.
  """
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  schedule = None if learning_rate is None else (
      learning_rate if callable(learning_rate) else optax.constant_schedule(learning_rate))

  def step(state: TrainState, batch):
    key = state.step_key()

    def objective(params):
      outputs = state.apply_fn({"params": params}, batch["image"], train=True,
                               rngs={LATENT_RNG: key})
      return loss_fn(outputs, batch)

    (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = dict(metrics, loss=loss, total_loss=loss,
                   grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params),
                   update_norm=optax.tree.norm(updates))
    if schedule is not None:
      metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new_state, jax.tree.map(lambda m: m.astype(jnp.float32), metrics)

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                     out_shardings=(replicated, replicated),
                     donate_argnums=(0,) if donate else (),
                     compiler_options=compiler_options())

  def train_step(state, batch):
    _check_image_batch(batch)
    return compiled(state, _on_mesh(batch, mesh))

  train_step.jitted = compiled
  return train_step


def make_autoencoder_eval_step(loss_fn: losses.StepLoss, *, mesh: Mesh | None = None,
                               sample: bool = False) -> Callable:
  """``eval_step(state, batch) -> metrics`` (means over the batch, plus ``count``).

  Args:
    loss_fn: as in `make_autoencoder_train_step`.
    mesh: the data-parallel mesh; None means all devices.
    sample: call the model with ``sample=True`` (a VAE: the ELBO needs a sampled z) and
      eps from the fixed key ``fold_in(state.rng, 2**31 - 1)``.
  """
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  kwargs = {"sample": True} if sample else {}

  def step(state: TrainState, batch):
    key = jax.random.fold_in(state.rng, _EVAL_FOLD)
    outputs = state.apply_fn(state.variables, batch["image"], train=False,
                             rngs={LATENT_RNG: key}, **kwargs)
    loss, metrics = loss_fn(outputs, batch)
    metrics = jax.tree.map(lambda m: m.astype(jnp.float32), dict(metrics, loss=loss))
    metrics["count"] = jnp.asarray(batch["image"].shape[0], jnp.float32)
    return metrics

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                     out_shardings=replicated, compiler_options=compiler_options())

  def eval_step(state, batch):
    _check_image_batch(batch)
    return compiled(state, _on_mesh(batch, mesh))

  eval_step.jitted = compiled
  return eval_step


# --- the GAN's state and step ----------------------------------------------------------

GENERATOR, DISCRIMINATOR = "generator", "discriminator"


class GANState(struct.PyTreeNode):
  """Both networks of a GAN and both optimizers, as one pytree.

  Attributes:
    step: int32 scalar, the number of `make_gan_step` steps taken (each updates D once,
      then G once).
    params: ``{"generator": ..., "discriminator": ...}`` (the `fdl.models.DCGAN` tree).
    batch_stats: the same two entries for the batch-norm statistics.
    opt_state: ``{"generator": g_tx state, "discriminator": d_tx state}``.
    rng: raw ``uint32[2]`` key fixed for the run; a step's ``z`` comes from
      ``fold_in(rng, step)``.
    apply_fn: the `DCGAN`'s ``apply`` (static).
    g_tx, d_tx: the two optimizers (static).
    latent_dim: size of ``z`` (static).
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: Any
  rng: jax.Array
  apply_fn: Callable = struct.field(pytree_node=False)
  g_tx: optax.GradientTransformation = struct.field(pytree_node=False)
  d_tx: optax.GradientTransformation = struct.field(pytree_node=False)
  latent_dim: int = struct.field(pytree_node=False, default=100)

  def step_key(self) -> jax.Array:
    """The PRNG key of the current step: ``fold_in(rng, step)``."""
    return jax.random.fold_in(self.rng, self.step)


def create_gan_state(model: DCGAN, g_tx: optax.GradientTransformation,
                     d_tx: optax.GradientTransformation, *, seed: int = 0,
                     mesh: Mesh | None = None) -> GANState:
  """Initializes both networks and both optimizers into a replicated `GANState`."""
  if not isinstance(model, DCGAN):
    raise ValueError(f"model must be a fdl.models.DCGAN; got {type(model).__name__}")
  if mesh is None:
    mesh = mesh_lib.make_mesh()
  z = jnp.zeros((1, model.latent_dim), jnp.float32)
  x = jnp.zeros((1, *model.image_shape), jnp.float32)

  def init(key):
    params_key, state_key = jax.random.split(key)
    variables = model.init(params_key, z, x, train=False)
    params = variables["params"]
    stats = variables["batch_stats"]
    return GANState(
        step=jnp.zeros((), jnp.int32), params=params,
        # A one-layer discriminator has no batch norm: keep both entries anyway.
        batch_stats={GENERATOR: stats.get(GENERATOR, {}),
                     DISCRIMINATOR: stats.get(DISCRIMINATOR, {})},
        opt_state={GENERATOR: g_tx.init(params[GENERATOR]),
                   DISCRIMINATOR: d_tx.init(params[DISCRIMINATOR])},
        rng=state_key, apply_fn=model.apply, g_tx=g_tx, d_tx=d_tx,
        latent_dim=model.latent_dim)

  return jax.jit(init, out_shardings=mesh_lib.replicated(mesh))(jax.random.PRNGKey(seed))


def _one(tree, name):
  return {name: tree[name]}


def make_gan_step(*, mesh: Mesh | None = None, donate: bool = True) -> Callable:
  """``gan_step(state, batch) -> (state, metrics)``: one D update, then one G update.

  With ``z ~ N(0, I)`` drawn from ``fold_in(state.rng, state.step)`` and real images
  ``x = batch["image"]`` in ``[-1, 1]``:

  1. ``G(z)`` is computed once (train mode; G's batch statistics are updated), keeping
     its VJP with respect to the generator's params only.
  2. The discriminator minimizes ``-log D(x) - log(1 - D(G(z)))``
     (`fdl.losses.gan_discriminator_loss`), differentiated with respect to the
     discriminator's params only (``G(z)`` is a constant there), and is updated by
     ``state.d_tx``. D sees the real and the generated batch as two batches (its batch
     norm normalizes each by its own statistics, as in Radford et al.'s code).
  3. The generator minimizes the non-saturating ``-log D(G(z))``
     (`fdl.losses.gan_generator_loss`) under the *updated* discriminator: the gradient
     with respect to the images ``G(z)`` is pulled back through step 1's VJP to the
     generator's params only, and applied by ``state.g_tx``. The discriminator's batch
     statistics of this pass are not kept.

  So each network changes only through its own loss and its own optimizer (with a zero
  learning rate for ``g_tx`` the generator's params stay exactly as they were).

  Args:
    mesh: the data-parallel mesh; None means all devices.
    donate: donate the input state's buffers.

  Returns:
    ``gan_step``; metrics are float32 scalars: ``d_loss`` and ``g_loss`` (nats, means
    over the batch), ``d_real`` and ``d_fake`` (mean ``D(x)`` and ``D(G(z))`` before the
    D update), ``loss`` = ``total_loss`` = ``d_loss + g_loss`` (what the training loop
    checks for finiteness), and the global L2 norms ``g_grad_norm``, ``d_grad_norm``,
    ``g_param_norm``, ``d_param_norm``.
  """
  if mesh is None:
    mesh = mesh_lib.make_mesh()

  def step(state: GANState, batch):
    real = batch["image"]
    z = jax.random.normal(state.step_key(), (real.shape[0], state.latent_dim), jnp.float32)
    g_params, d_params = state.params[GENERATOR], state.params[DISCRIMINATOR]
    g_stats = state.batch_stats[GENERATOR]

    def generate(gp):
      images, updates = state.apply_fn(
          {"params": {GENERATOR: gp}, "batch_stats": {GENERATOR: g_stats}}, z,
          train=True, method="generate", mutable=["batch_stats"])
      return images, updates.get("batch_stats", {}).get(GENERATOR, {})

    fake, g_vjp, new_g_stats = jax.vjp(generate, g_params, has_aux=True)

    def discriminate(dp, stats, images):
      logits, updates = state.apply_fn(
          {"params": {DISCRIMINATOR: dp}, "batch_stats": {DISCRIMINATOR: stats}},
          images, train=True, method="discriminate", mutable=["batch_stats"])
      return logits, updates.get("batch_stats", {}).get(DISCRIMINATOR, {})

    def d_objective(dp):
      real_logits, stats = discriminate(dp, state.batch_stats[DISCRIMINATOR], real)
      fake_logits, stats = discriminate(dp, stats, fake)
      loss = losses.weighted_mean(
          losses.gan_discriminator_loss(real_logits, fake_logits), batch)
      return loss, (stats, real_logits, fake_logits)

    (d_loss, (new_d_stats, real_logits, fake_logits)), d_grads = jax.value_and_grad(
        d_objective, has_aux=True)(d_params)
    d_updates, d_opt = state.d_tx.update(d_grads, state.opt_state[DISCRIMINATOR], d_params)
    d_params = optax.apply_updates(d_params, d_updates)

    def g_objective(images):
      logits, _ = discriminate(d_params, new_d_stats, images)
      return losses.weighted_mean(losses.gan_generator_loss(logits), batch)

    g_loss, image_grads = jax.value_and_grad(g_objective)(fake)
    (g_grads,) = g_vjp(image_grads)
    g_updates, g_opt = state.g_tx.update(g_grads, state.opt_state[GENERATOR], g_params)
    g_params = optax.apply_updates(g_params, g_updates)

    new_state = state.replace(
        step=state.step + 1,
        params={GENERATOR: g_params, DISCRIMINATOR: d_params},
        batch_stats={GENERATOR: new_g_stats, DISCRIMINATOR: new_d_stats},
        opt_state={GENERATOR: g_opt, DISCRIMINATOR: d_opt})
    metrics = {
        "d_loss": d_loss, "g_loss": g_loss, "loss": d_loss + g_loss,
        "total_loss": d_loss + g_loss,
        "d_real": jax.nn.sigmoid(real_logits).mean(),
        "d_fake": jax.nn.sigmoid(fake_logits).mean(),
        "g_grad_norm": optax.tree.norm(g_grads), "d_grad_norm": optax.tree.norm(d_grads),
        "g_param_norm": optax.tree.norm(g_params),
        "d_param_norm": optax.tree.norm(d_params),
    }
    return new_state, jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics)

  replicated = mesh_lib.replicated(mesh)
  compiled = jax.jit(step, in_shardings=(replicated, mesh_lib.batch_sharded(mesh)),
                     out_shardings=(replicated, replicated),
                     donate_argnums=(0,) if donate else (),
                     compiler_options=compiler_options())

  def gan_step(state: GANState, batch):
    _check_image_batch(batch)
    return compiled(state, _on_mesh(batch, mesh))

  gan_step.jitted = compiled
  return gan_step


def gan_samples(state: GANState, num: int, *, seed: int) -> np.ndarray:
  """``num`` generated images, float32 ``[num, H, W, C]`` in ``[-1, 1]`` (G in eval mode).

  ``z`` comes from ``fold_in(state.rng, 2**31 - 1 - seed)``, never a training step's key.
  """
  key = jax.random.fold_in(state.rng, _EVAL_FOLD - seed)
  z = jax.random.normal(key, (num, state.latent_dim), jnp.float32)
  variables = {"params": _one(state.params, GENERATOR),
               "batch_stats": _one(state.batch_stats, GENERATOR)}
  return np.asarray(jax.jit(lambda v, z: state.apply_fn(v, z, train=False,
                                                        method="generate"))(variables, z))


def vae_samples(state: TrainState, num: int, latent_dim: int, *, seed: int) -> np.ndarray:
  """``num`` images ``sigmoid(decode(z))``, ``z ~ N(0, I)``; float32 ``[num, H, W, C]``."""
  key = jax.random.fold_in(state.rng, _EVAL_FOLD - seed)
  z = jax.random.normal(key, (num, latent_dim), jnp.float32)
  return decode(state, z)


def decode(state: TrainState, z) -> np.ndarray:
  """Mean images ``sigmoid(decode(z))`` of latents ``z [n, latent_dim]`` (Bernoulli)."""
  logits = jax.jit(lambda v, z: state.apply_fn(v, z, method="decode"))(
      state.variables, jnp.asarray(z, jnp.float32))
  return np.asarray(jax.nn.sigmoid(logits))


def reconstruct(state: TrainState, images: np.ndarray, *, vae: bool) -> np.ndarray:
  """Mean reconstructions in ``[0, 1]`` (a VAE decodes its posterior mean)."""
  def apply(v, x):
    out = state.apply_fn(v, x, train=False, **({"sample": False} if vae else {}))
    return jax.nn.sigmoid(out[0] if vae else out)
  return np.asarray(jax.jit(apply)(state.variables, jnp.asarray(images)))


# --- sample quality --------------------------------------------------------------------


def classifier_score(probs: np.ndarray) -> dict:
  r"""Classifier-based quality of a set of images from their class probabilities.

  With :math:`p(y \mid x_i)` a classifier's softmax for image :math:`x_i` and
  :math:`p(y) = \frac1N \sum_i p(y \mid x_i)` the marginal:

  * ``mean_max_prob``: :math:`\frac1N \sum_i \max_y p(y \mid x_i)`, in ``[1/K, 1]``: how
    confidently each image is read as some class;
  * ``inception_score``: :math:`\exp\big(\frac1N \sum_i \mathrm{KL}(p(y \mid x_i) \,\|\,
    p(y))\big)`, in ``[1, K]`` (Salimans et al. 2016, with a small classifier of the same
    data instead of Inception-v3, so the numbers are comparable only within one
    setting): high when each image is confidently one class *and* the classes are
    diverse. Real test images give the reference value.
  * ``class_entropy``: the entropy of :math:`p(y)` in nats (``log K`` for balanced
    classes): low when the generator covers few classes (mode collapse).

  Args:
    probs: ``[N, K]`` rows summing to 1.

  Returns:
    ``{"mean_max_prob", "inception_score", "class_entropy"}`` as floats (float64 math).
  """
  p = np.asarray(probs, np.float64)
  if p.ndim != 2 or p.shape[0] < 1:
    raise ValueError(f"probs must be [N, K] class probabilities; got shape {p.shape}")
  marginal = p.mean(0)
  with np.errstate(divide="ignore", invalid="ignore"):
    kl = np.where(p > 0, p * (np.log(p) - np.log(marginal)), 0.0).sum(1)
    entropy = -np.where(marginal > 0, marginal * np.log(marginal), 0.0).sum()
  return {"mean_max_prob": float(p.max(1).mean()),
          "inception_score": float(np.exp(kl.mean())),
          "class_entropy": float(entropy)}


def train_scorer(splits: dict, config: ml_collections.ConfigDict, mesh: Mesh) -> tuple:
  """Trains the scoring CNN on the training images in ``[0, 1]``; ``(state, val accuracy)``."""
  c = config.scorer
  model = models.CNN(features=tuple(c.features), dense=tuple(c.dense), num_classes=10)
  steps = c.num_epochs * (len(splits["train"]["label"]) // config.batch_size)
  tx = make_optimizer("adam", make_schedule("cosine", learning_rate=c.learning_rate,
                                            total_steps=steps, warmup_steps=0))
  shape = (1,) + splits["train"]["image"].shape[1:]
  state = create_train_state(model, tx, shape, seed=config.seed + 1, mesh=mesh)
  loss = losses.classification_loss()
  result = fit(state, make_train_step(loss, mesh=mesh),
               lambda epoch: data.epoch_batches(splits["train"], config.batch_size,
                                                seed=config.seed + 1, epoch=epoch),
               num_epochs=c.num_epochs, workdir=None, progress=False, log_every=10**6,
               handle_signals=False)
  val = evaluate(result.state, make_eval_step(loss, mesh=mesh), [splits["val"]])
  return result.state, val["val/accuracy"]


def class_probs(state: TrainState, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
  """The scorer's softmax ``[N, 10]`` of images in ``[0, 1]``."""
  apply = jax.jit(lambda v, x: jax.nn.softmax(state.apply_fn(v, x, train=False)))
  return np.concatenate([np.asarray(apply(state.variables, jnp.asarray(images[i:i + batch_size])))
                         for i in range(0, len(images), batch_size)])


# --- figures ---------------------------------------------------------------------------


def plot_image_grid(path: str, images: np.ndarray, title: str, *, cols: int = 10,
                    row_labels: tuple[str, ...] = ()) -> None:
  """Grey images ``[N, H, W, 1]`` in ``[0, 1]`` as a grid with ``cols`` columns."""
  plt = figures.pyplot()
  rows = -(-len(images) // cols)
  fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9 + 0.4),
                           squeeze=False)
  for i, ax in enumerate(axes.ravel()):
    if i < len(images):
      ax.imshow(images[i][..., 0], cmap="gray", vmin=0, vmax=1)
    else:
      ax.axis("off")
  for r, label in enumerate(row_labels):
    axes[r][0].set_ylabel(label, fontsize=7)
  figures.save_image_grid(fig, axes, path, title)


def plot_latent_map(path: str, state: TrainState, *, grid: int = 15) -> None:
  """Decoded images over a 2-D latent grid at the N(0, 1) quantiles 0.05 ... 0.95."""
  from scipy import stats  # pylint: disable=g-import-not-at-top
  q = stats.norm.ppf(np.linspace(0.05, 0.95, grid))
  z = np.stack(np.meshgrid(q, q[::-1]), -1).reshape(-1, 2)
  images = decode(state, z)
  h, w = images.shape[1:3]
  canvas = images[..., 0].reshape(grid, grid, h, w).transpose(0, 2, 1, 3).reshape(
      grid * h, grid * w)
  plt = figures.pyplot()
  fig, ax = plt.subplots(figsize=(6, 6))
  ax.imshow(canvas, cmap="gray", vmin=0, vmax=1,
            extent=(q[0], q[-1], q[0], q[-1]))
  ax.set_xlabel("z1")
  ax.set_ylabel("z2")
  ax.set_title("VAE: decoded latent grid (N(0,1) quantiles 0.05-0.95)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


def plot_gan_losses(path: str, records: list[dict]) -> None:
  """D and G losses (and mean D outputs) against the step, from ``metrics.jsonl``."""
  rows = [r for r in records if "train/d_loss" in r and "epoch" not in r]
  steps = [r["step"] for r in rows]
  plt = figures.pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  axes[0].plot(steps, [r["train/d_loss"] for r in rows], label="D: -log D(x) - log(1-D(G(z)))")
  axes[0].plot(steps, [r["train/g_loss"] for r in rows], label="G: -log D(G(z))")
  axes[0].axhline(2 * np.log(2), color="k", lw=0.6, ls="--", label="D at D = 1/2 (2 log 2)")
  axes[0].set_ylabel("loss (nats)")
  axes[1].plot(steps, [r["train/d_real"] for r in rows], label="mean D(x)")
  axes[1].plot(steps, [r["train/d_fake"] for r in rows], label="mean D(G(z))")
  axes[1].set_ylabel("discriminator output")
  for ax in axes:
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
  fig.suptitle("DCGAN training (values at the logged steps)", fontsize=9)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)


# --- the task --------------------------------------------------------------------------


def check_config(config: ml_collections.ConfigDict) -> None:
  """Fails fast, before any training, on values that would fail later."""
  if config.model not in GENERATIVE_MODELS:
    raise ValueError(f"config.model must be one of {GENERATIVE_MODELS}; "
                     f"got {config.model!r}")
  for key in ("num_epochs", "gan.num_epochs", "batch_size", "num_score_samples"):
    value = config.gan.num_epochs if key == "gan.num_epochs" else config[key]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
      raise ValueError(f"config.{key} must be an int >= 1; got {value!r}")
  create_model(config)  # validates sizes


def image_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """``(H, W, C)`` of the prepared images (digits: 1 channel; others: 1 if grey)."""
  size = config.image_size or (8 if config.dataset == "digits" else 32)
  channels = 1 if (config.grey or config.dataset == "digits") else 3
  return (size, size, channels)


def create_model(config: ml_collections.ConfigDict):
  """The module named by ``config.model`` with the config's sizes."""
  shape = image_shape(config)
  if config.model == "autoencoder":
    return ConvAutoencoder(config.latent_dim, image_shape=shape,
                           features=tuple(config.features))
  if config.model == "vae":
    return VAE(config.latent_dim, image_shape=shape, features=tuple(config.features))
  if config.model == "dcgan":
    g = config.gan
    return DCGAN(latent_dim=g.latent_dim, image_shape=shape, features=g.features,
                 num_layers=g.num_layers)
  raise ValueError(f"config.model must be one of {GENERATIVE_MODELS}; got {config.model!r}")


def _ae_loss(config):
  if config.model == "vae":
    return losses.vae_loss(likelihood=config.likelihood, beta=config.beta)
  return losses.autoencoder_loss(likelihood=config.likelihood)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains ``config.model``, scores it once on the sealed test split, writes figures.

  Writes into `workdir`: ``config.json``, ``metrics.jsonl``, ``checkpoints/``,
  ``summary.json`` and figures: ``reconstructions.png`` (autoencoders),
  ``samples.png`` (VAE, DCGAN), ``latent_map.png`` (VAE with ``latent_dim == 2``),
  ``learning_curves.png`` (autoencoders) or ``gan_losses.png``. Running again with the
  same `workdir` resumes from the checkpoints.

  Returns:
    The summary (see `report`), or ``{"interrupted": True, "signal": n}``.
  """
  config = config_files.resolve_smoke(config, "generative")
  check_config(config)
  os.makedirs(workdir, exist_ok=True)
  write_json(os.path.join(workdir, "config.json"), config.to_dict())
  mesh = mesh_lib.make_mesh()
  splits, test_split, provenance = load_splits(config)
  n_train = len(splits["train"]["label"])
  if not 1 <= config.batch_size <= n_train:
    raise ValueError(f"config.batch_size must be in [1, {n_train}] (the training "
                     f"split); got {config.batch_size}")
  steps_per_epoch = n_train // config.batch_size
  model = create_model(config)
  gan = config.model == "dcgan"
  num_epochs = config.gan.num_epochs if gan else config.num_epochs

  start = time.perf_counter()
  scorer, scorer_val_accuracy = train_scorer(splits, config, mesh)
  scorer_seconds = time.perf_counter() - start

  if gan:
    train_arrays = {"image": to_gan_range(splits["train"]["image"])}
    g = config.gan
    state = create_gan_state(
        model, optax.adam(g.g_learning_rate, b1=g.b1, b2=0.999),
        optax.adam(g.d_learning_rate, b1=g.b1, b2=0.999), seed=config.seed, mesh=mesh)
    train_step, eval_step, val_data = make_gan_step(mesh=mesh), None, None
  else:
    train_arrays = {"image": splits["train"]["image"]}
    schedule = make_schedule(config.schedule, learning_rate=config.learning_rate,
                             total_steps=num_epochs * steps_per_epoch,
                             warmup_steps=0)
    state = create_train_state(model, make_optimizer("adam", schedule),
                               (1, *image_shape(config)), seed=config.seed, mesh=mesh)
    loss = _ae_loss(config)
    train_step = make_autoencoder_train_step(loss, mesh=mesh, learning_rate=schedule)
    eval_step = make_autoencoder_eval_step(loss, mesh=mesh, sample=config.model == "vae")
    val_images = splits["val"]["image"]
    val_data = data.epoch_batches({"image": val_images},
                                  min(config.eval_batch_size, len(val_images)), seed=None,
                                  drop_remainder=False)

  start = time.perf_counter()
  result = fit(state, train_step,
               lambda epoch: data.epoch_batches(train_arrays, config.batch_size,
                                                seed=config.seed, epoch=epoch),
               num_epochs=num_epochs, eval_step=eval_step, val_data=val_data,
               workdir=workdir, log_every=config.log_every, progress=config.progress)
  train_seconds = time.perf_counter() - start
  if result.interrupted:
    return {"interrupted": True, "signal": result.signal}
  state = result.state

  # The one look at the test split: reconstructions / the real-image reference score.
  test_images_u8, test_labels = test_split.open()
  test_images = to_unit_images(test_images_u8, config.image_size or None, grey=config.grey)
  real_score = classifier_score(class_probs(scorer, test_images))
  summary: dict[str, Any] = {
      "model": config.model, "image_shape": list(image_shape(config)),
      "num_params": num_params(state.params),
      "epochs_run": result.epochs_run, "steps": int(state.step),
      "train_seconds_this_run": train_seconds, "scorer_seconds": scorer_seconds,
      "scorer_val_accuracy": scorer_val_accuracy,
      "real_test_score": real_score, "num_test": int(len(test_labels)),
      "num_devices": jax.device_count(), "data": provenance,
  }
  last = result.history[-1]
  figure_paths = {}
  if gan:
    summary["num_params_generator"] = num_params(state.params[GENERATOR])
    summary["num_params_discriminator"] = num_params(state.params[DISCRIMINATOR])
    summary["train_d_loss"] = last["train/d_loss"]
    summary["train_g_loss"] = last["train/g_loss"]
    samples = (gan_samples(state, config.num_score_samples, seed=0) + 1.0) / 2.0
  else:
    loss = _ae_loss(config)
    test_eval = evaluate(state, make_autoencoder_eval_step(
        loss, mesh=mesh, sample=config.model == "vae"),
        data.epoch_batches({"image": test_images}, min(config.eval_batch_size,
                                                       len(test_images)),
                           seed=None, drop_remainder=False), prefix="test/")
    summary.update({k.replace("/", "_"): v for k, v in test_eval.items()})
    summary["val_loss"] = last["val/loss"]
    summary["train_loss"] = last["train/loss"]
    recon = reconstruct(state, test_images, vae=config.model == "vae")
    summary["test_recon_mse_mean_image"] = float(np.mean((recon - test_images) ** 2))
    acc = lambda images: float(np.mean(np.argmax(class_probs(scorer, images), 1) ==
                                       test_labels))
    summary["scorer_test_accuracy_originals"] = acc(test_images)
    summary["scorer_test_accuracy_reconstructions"] = acc(recon)
    samples = (vae_samples(state, config.num_score_samples, config.latent_dim, seed=0)
               if config.model == "vae" else None)
    if is_writer():
      figure_paths["reconstructions"] = os.path.join(workdir, "reconstructions.png")
      pairs = np.concatenate([test_images[:10], recon[:10], test_images[10:20],
                              recon[10:20]])
      plot_image_grid(figure_paths["reconstructions"], pairs,
                      f"{config.model}: test images (rows 1, 3) and their reconstructions "
                      f"(rows 2, 4); test MSE {summary['test_recon_mse_mean_image']:.4f}",
                      row_labels=("test", "recon", "test", "recon"))
      figure_paths["learning_curves"] = os.path.join(workdir, "learning_curves.png")
      figures.plot_learning_curves(result.history, figure_paths["learning_curves"],
                                   metrics=("loss", "mse"))
      if config.model == "vae" and config.latent_dim == 2:
        figure_paths["latent_map"] = os.path.join(workdir, "latent_map.png")
        plot_latent_map(figure_paths["latent_map"], state)
  if samples is not None:
    summary["sample_score"] = classifier_score(class_probs(scorer, samples))
    if is_writer():
      figure_paths["samples"] = os.path.join(workdir, "samples.png")
      score = summary["sample_score"]
      plot_image_grid(figure_paths["samples"], samples[:50],
                      f"{config.model} samples; classifier score "
                      f"{score['inception_score']:.2f} (real test images "
                      f"{real_score['inception_score']:.2f}), mean max-prob "
                      f"{score['mean_max_prob']:.2f}")
  if gan and is_writer():
    figure_paths["gan_losses"] = os.path.join(workdir, "gan_losses.png")
    plot_gan_losses(figure_paths["gan_losses"],
                    read_jsonl(os.path.join(workdir, "metrics.jsonl")))
  summary["figures"] = figure_paths
  write_json(os.path.join(workdir, "summary.json"), summary)
  return summary


def report(summary: dict) -> str:
  """What ``experiments/generative.py`` prints: the measured numbers and figures."""
  keys = ("model", "num_params", "test_loss", "test_neg_elbo", "test_kl", "test_mse",
          "test_recon_mse_mean_image", "scorer_test_accuracy_originals",
          "scorer_test_accuracy_reconstructions", "sample_score", "real_test_score",
          "train_d_loss", "train_g_loss", "scorer_val_accuracy", "train_seconds_this_run",
          "figures")
  return json.dumps({k: summary[k] for k in keys if k in summary}, indent=2)
