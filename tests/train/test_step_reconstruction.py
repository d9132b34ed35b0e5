"""The reconstruction loss and multi-input (complex k-space) train steps, against
float64 NumPy references."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import structural_similarity

from fdl import train
from mri_reference import crandn, np_ifft2c


class _ScaledRss(nn.Module):
  """out = w * RSS(F^H (mask * kspace)) + 0 * maps: one parameter, three inputs."""

  @nn.compact
  def __call__(self, kspace, mask, maps, *, train):
    del train
    w = self.param("w", nn.initializers.constant(0.5), ())
    from fdl.mri import ifft2c  # pylint: disable=g-import-not-at-top
    coil_images = ifft2c(mask * kspace)
    rss = jnp.sqrt(jnp.sum(jnp.abs(coil_images) ** 2, axis=1))
    return w * rss + 0.0 * jnp.abs(maps[:, 0])


def _batch(rng, batch=3, coils=2, shape=(9, 8), crop=(7, 8)):
  kspace = crandn(rng, batch, coils, *shape)
  mask = (rng.random((batch, 1, 1, shape[1])) < 0.6).astype(np.float32)
  target = np.abs(rng.standard_normal((batch, *crop))).astype(np.float32)
  return {"kspace": kspace, "mask": mask,
          "maps": crandn(rng, batch, coils, *shape),
          "target": target, "data_range": target.reshape(batch, -1).max(1)}


def _np_rss(batch):
  images = np_ifft2c(batch["mask"].astype(np.float64) * batch["kspace"].astype(np.complex128))
  rss = np.sqrt((np.abs(images) ** 2).sum(1))
  top = (rss.shape[-2] - batch["target"].shape[-2]) // 2
  return rss[:, top:top + batch["target"].shape[-2]]


@pytest.mark.parametrize("name", ["l1", "ssim", "mixed"])
def test_reconstruction_loss_matches_numpy_and_skimage(name):
  rng = np.random.default_rng(0)
  batch = _batch(rng)
  out = _np_rss(batch)
  target = batch["target"].astype(np.float64)
  loss_fn = train.reconstruction_loss(name, ssim_weight=0.7)
  padded = np.zeros((3, 9, 8), np.float32)
  padded[:, 1:8] = out  # the loss crops the output to the target's size
  loss, metrics = loss_fn(jnp.asarray(padded), batch)
  l1 = np.abs(out - target).mean((1, 2))
  ssim = np.array([structural_similarity(
      target[i], out[i], data_range=float(batch["data_range"][i]), win_size=7,
      use_sample_covariance=True, gaussian_weights=False) for i in range(3)])
  expected = {"l1": l1, "ssim": 1 - ssim, "mixed": 0.7 * (1 - ssim) + 0.3 * l1}[name]
  np.testing.assert_allclose(loss, expected.mean(), rtol=2e-4)
  np.testing.assert_allclose(metrics["l1"], l1.mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics["ssim"], ssim.mean(), rtol=2e-4, atol=1e-5)
  mse = ((out - target) ** 2).mean((1, 2))
  psnr = 20 * np.log10(batch["data_range"].astype(np.float64)) - 10 * np.log10(mse)
  np.testing.assert_allclose(metrics["psnr"], psnr.mean(), rtol=1e-5)


def test_reconstruction_loss_rejects_unknown_name():
  with pytest.raises(ValueError, match="reconstruction loss must be one of"):
    train.reconstruction_loss("l2")
  with pytest.raises(ValueError, match="ssim_weight must be in"):
    train.reconstruction_loss("mixed", ssim_weight=1.5)


def test_multi_input_sgd_step_matches_numpy():
  rng = np.random.default_rng(1)
  batch = _batch(rng)
  model, lr = _ScaledRss(), 0.1
  specs = [jax.ShapeDtypeStruct(np.shape(batch[k]), batch[k].dtype)
           for k in ("kspace", "mask", "maps")]
  state = train.create_train_state(model, train.make_optimizer("sgd", lr),
                                   example_inputs=specs)
  step = train.make_train_step(train.reconstruction_loss("l1"), learning_rate=lr,
                               input_key=("kspace", "mask", "maps"), donate=False)
  new_state, metrics = step(state, batch)
  rss, target = _np_rss(batch), batch["target"].astype(np.float64)
  w = 0.5
  loss = np.abs(w * rss - target).mean()
  grad = (np.sign(w * rss - target) * rss).mean()  # d/dw of mean |w rss - t|
  np.testing.assert_allclose(metrics["loss"], loss, rtol=1e-5)
  np.testing.assert_allclose(new_state.params["w"], w - lr * grad, rtol=1e-5)
  eval_step = train.make_eval_step(train.reconstruction_loss("l1"),
                                   input_key=("kspace", "mask", "maps"))
  np.testing.assert_allclose(eval_step(state, batch)["loss"], loss, rtol=1e-5)


def test_multi_input_step_checks_keys_and_state_inputs():
  rng = np.random.default_rng(2)
  batch = _batch(rng)
  step = train.make_train_step(train.reconstruction_loss("l1"),
                               input_key=("kspace", "mask", "maps"), donate=False)
  specs = [jax.ShapeDtypeStruct(np.shape(batch[k]), batch[k].dtype)
           for k in ("kspace", "mask", "maps")]
  state = train.create_train_state(_ScaledRss(), train.make_optimizer("sgd", 0.1),
                                   example_inputs=specs)
  del batch["maps"]
  with pytest.raises(ValueError, match="batch must contain the key 'maps'"):
    step(state, batch)
  with pytest.raises(ValueError, match="exactly one of input_shape and example_inputs"):
    train.create_train_state(_ScaledRss(), train.make_optimizer("sgd", 0.1), (1, 2),
                             example_inputs=specs)
