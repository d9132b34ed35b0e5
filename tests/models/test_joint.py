"""Tests of fdl.models.joint: the chain equals its two networks applied in turn (with the
percentile normalization of the segmentation task), shapes on odd sizes, gradients reach
both networks, the registry builder and its errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import MoDL, ReconSegmenter, Segmenter, create_model
from fdl.models.joint import normalize_by_percentile
from fdl.tasks.segmentation import normalize_input

KEY = jax.random.key(0)
B, C, H, W = 2, 3, 11, 10  # odd, non-square


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  kspace = (rng.normal(size=(B, C, H, W)) + 1j * rng.normal(size=(B, C, H, W)))
  maps = rng.normal(size=(B, C, H, W)) + 1j * rng.normal(size=(B, C, H, W))
  maps /= np.sqrt((np.abs(maps) ** 2).sum(1, keepdims=True))
  mask = np.zeros((B, 1, 1, W), np.float32)
  mask[..., ::2] = 1
  return (jnp.asarray(kspace * mask, jnp.complex64), jnp.asarray(mask),
          jnp.asarray(maps, jnp.complex64))


def _parts():
  return (MoDL(num_iters=2, cg_iters=2, depth=2, width=4),
          Segmenter(num_classes=4, base_channels=4, num_pools=1))


@functools.lru_cache(maxsize=1)
def _model_and_variables():
  recon, seg = _parts()
  model = ReconSegmenter(recon=recon, segmenter=seg)
  variables = model.init(KEY, *_inputs(), train=False)
  return model, variables


def test_normalize_by_percentile_matches_the_task_normalization():
  image = np.abs(np.random.default_rng(1).normal(size=(3, 7, 9))).astype(np.float32)
  image[1] = 0.0  # an empty slice is divided by 1
  np.testing.assert_allclose(normalize_by_percentile(jnp.asarray(image)),
                             normalize_input(image), rtol=1e-5, atol=1e-7)


def test_the_chain_equals_its_networks_in_turn():
  model, variables = _model_and_variables()
  inputs = _inputs()
  image, logits = model.apply(variables, *inputs, train=False)
  assert image.shape == (B, H, W) and logits.shape == (B, H, W, 4)
  assert sorted(variables["params"]) == ["recon", "segmenter"]
  recon, seg = _parts()
  alone = recon.apply({"params": variables["params"]["recon"]}, *inputs, train=False)
  np.testing.assert_allclose(image, alone, rtol=1e-5, atol=1e-6)
  expected = seg.apply({"params": variables["params"]["segmenter"]},
                       jnp.asarray(normalize_input(np.asarray(alone))), train=False)
  np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)


def test_gradients_of_a_segmentation_loss_reach_both_networks():
  model, variables = _model_and_variables()
  inputs = _inputs()
  labels = jnp.asarray(np.random.default_rng(2).integers(0, 4, (B, H, W)))

  def loss(params):
    _, logits = model.apply({"params": params}, *inputs, train=False)
    return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[..., None], -1))

  grads = jax.grad(loss)(variables["params"])
  for part in ("recon", "segmenter"):
    norm = float(jnp.sqrt(sum(jnp.sum(g ** 2) for g in jax.tree.leaves(grads[part]))))
    assert np.isfinite(norm) and norm > 0, part


def test_registry_builder_and_errors():
  model = create_model("recon_segmenter", num_classes=3,
                       recon_kwargs=dict(num_iters=1, cg_iters=1, depth=2, width=4),
                       segmenter_kwargs=dict(base_channels=4, num_pools=1))
  assert isinstance(model, ReconSegmenter) and model.segmenter.num_classes == 3
  assert model.recon.num_iters == 1
  with pytest.raises(ValueError, match="recon must be one of"):
    create_model("recon_segmenter", num_classes=3, recon="cg")
