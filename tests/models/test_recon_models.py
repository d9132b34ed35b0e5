"""Tests of the learned MRI reconstruction models (ReconUNet, MoDL, VarNet) and `reconstruct`.

Sizes are tiny (3 coils, 13 x 10 images, 2-4 channels, 1 pool, 1-2 iterations) and every
model is compiled once per input shape: the forward passes go through the jitted apply that
`reconstruct` caches (`fdl.models.reconstruct._jitted_apply`), so the model tests and the
`reconstruct` tests share compilations. Variables are drawn with NumPy into the structure
from `jax.eval_shape(model.init)`, which avoids compiling flax's random initializers.
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fdl.models import (MODELS, MoDL, NormUNet, ReconUNet, SensitivityModel, VarNet,
                        VarNetCascade, acs_mask, channels_to_complex, complex_to_channels,
                        create_model, reconstruct)
from fdl.models.reconstruct import _jitted_apply
from fdl.mri.masks import equispaced_mask, poisson_mask
from fdl.mri.recon import zero_filled
from mri_reference import crandn, np_fft2c, np_ifft2c

BATCH, COILS, HEIGHT, WIDTH = 2, 3, 13, 10  # odd, non-square
KSPACE_SHAPE = (BATCH, COILS, HEIGHT, WIDTH)

TINY_MODELS = {
    "recon_unet_complex": ReconUNet(base_channels=2, num_pools=1),
    "recon_unet_rss": ReconUNet(base_channels=2, num_pools=1, input_mode="rss"),
    "modl": MoDL(num_iters=2, cg_iters=2, depth=3, width=4),
    "varnet": VarNet(num_cascades=2, channels=2, pools=1, sens_channels=2, sens_pools=1),
}


# --------------------------------------------------------------------------- helpers


def normalized_maps(rng, shape):
  maps = crandn(rng, *shape)
  return (maps / np.sqrt(np.sum(np.abs(maps) ** 2, axis=1, keepdims=True))).astype(
      np.complex64)


def line_mask():
  """``[2, 1, 1, W]``: two equispaced masks; the second's centre run is 4 columns, not 3."""
  masks = [equispaced_mask(jax.random.key(seed), WIDTH, 2, 0.3) for seed in (0, 1)]
  return np.stack([np.asarray(m) for m in masks]).reshape(BATCH, 1, 1, WIDTH)


def grid_mask(seed=3):
  """``[2, 1, H, W]``: a fully sampled centre rectangle plus random points."""
  rng = np.random.default_rng(seed)
  mask = (rng.random((BATCH, 1, HEIGHT, WIDTH)) < 0.3).astype(np.float32)
  mask[:, :, 5:9, 3:7] = 1.0
  return mask


@pytest.fixture(scope="module")
def data():
  rng = np.random.default_rng(0)
  return dict(kspace=crandn(rng, *KSPACE_SHAPE), maps=normalized_maps(rng, KSPACE_SHAPE),
              line=line_mask(), grid=grid_mask())


def abstract_variables(model, kspace, mask, maps):
  init = functools.partial(model.init, train=False)
  spec = lambda x: None if x is None else jax.ShapeDtypeStruct(np.shape(x), x.dtype)
  return jax.eval_shape(init, jax.random.key(0), spec(kspace), spec(mask), spec(maps))


def numpy_variables(model, kspace, mask, maps, seed=0):
  """Variables shaped as ``model.init``'s, drawn with NumPy (He-scaled kernels)."""
  rng = np.random.default_rng(seed)

  def draw(path, leaf):
    name = path[-1].key
    if name == "kernel":
      value = rng.normal(0, math.sqrt(2 / math.prod(leaf.shape[:-1])), leaf.shape)
    elif name == "dc_weight":
      value = np.ones(leaf.shape)
    elif name == "log_lam":
      value = np.full(leaf.shape, math.log(model.lam_init))
    else:
      value = 0.1 * rng.normal(size=leaf.shape)
    return jnp.asarray(value, leaf.dtype)

  return jax.tree.map_with_path(draw, abstract_variables(model, kspace, mask, maps))


@pytest.fixture(scope="module")
def variables(data):
  return {name: numpy_variables(model, data["kspace"], data["line"], data["maps"])
          for name, model in TINY_MODELS.items()}


def run(model, variables, kspace, mask, maps):
  return np.asarray(_jitted_apply(model)(variables, kspace, mask, maps))


# --------------------------------------------------------------------------- all models


@pytest.mark.parametrize("mask_kind", ["line", "grid"])
@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_output_shape_dtype_and_only_sampled_entries_read(name, mask_kind, data, variables):
  model, mask = TINY_MODELS[name], data[mask_kind]
  out = run(model, variables[name], data["kspace"], mask, data["maps"])
  assert out.shape == (BATCH, HEIGHT, WIDTH) and out.dtype == np.float32
  assert np.all(np.isfinite(out)) and np.std(out) > 0
  # Unsampled entries may hold anything: the models multiply by the mask themselves.
  garbage = crandn(np.random.default_rng(5), *KSPACE_SHAPE) * (mask == 0)
  again = run(model, variables[name], data["kspace"] + garbage, mask, data["maps"])
  np.testing.assert_allclose(again, out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_registry_builds_the_model(name):
  registry_name = name.replace("_complex", "").replace("_rss", "")
  model = TINY_MODELS[name]
  fields = {f: getattr(model, f) for f in model.__dataclass_fields__
            if f not in ("parent", "name")}
  assert create_model(registry_name, **fields) == model
  assert MODELS[registry_name] is type(model)


def test_default_parameter_counts():
  spec = jax.ShapeDtypeStruct((1, 2, 16, 16), jnp.complex64)
  mask = jax.ShapeDtypeStruct((1, 1, 1, 16), jnp.float32)

  def count(model):
    params = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                            spec, mask, spec)["params"]
    return sum(math.prod(p.shape) for p in jax.tree.leaves(params))

  # MoDL: convs 2->64 (1,216), 3 x 64->64 (36,928 each), 64->2 (1,154), and log_lam.
  assert count(MoDL()) == 1216 + 3 * 36928 + 1154 + 1 == 113155
  assert count(ReconUNet()) == 7756418  # fastMRI U-Net (7,756,097 at 1->1) at 2->2
  assert count(ReconUNet(input_mode="rss")) == 7756097
  assert count(VarNet()) == 20119610


@pytest.mark.parametrize("build, message", [
    (lambda: ReconUNet(input_mode="magnitude"), "input_mode must be one of"),
    (lambda: ReconUNet(num_pools=0), "num_pools must be a positive int"),
    (lambda: MoDL(lam_init=0.0), "lam_init must be a finite number > 0"),
    (lambda: MoDL(cg_iters=0), "cg_iters must be a positive int"),
    (lambda: VarNet(num_cascades=0), "num_cascades must be a positive int"),
    (lambda: NormUNet(base_channels=2, num_pools=1, dropout=1.0), "dropout must be a float"),
])
def test_invalid_config_names_the_field(build, message):
  with pytest.raises(ValueError, match=message):
    build()


@pytest.mark.parametrize("model", [TINY_MODELS["modl"], TINY_MODELS["recon_unet_complex"]])
def test_models_that_need_maps_say_so(model, data):
  with pytest.raises(ValueError, match="maps are required by"):
    abstract_variables(model, data["kspace"], data["line"], None)


def test_models_reject_a_wrong_maps_shape_and_real_kspace(data):
  model = TINY_MODELS["varnet"]  # ignores maps, but checks them when given
  with pytest.raises(ValueError, match="maps must be complex64 with the k-space's shape"):
    abstract_variables(model, data["kspace"], data["line"], data["maps"][:, :2])
  with pytest.raises(ValueError, match="kspace must be complex64"):
    abstract_variables(model, data["kspace"].real, data["line"], None)


# --------------------------------------------------------------------------- NormUNet, ReconUNet


def test_complex_channels_round_trip():
  x = crandn(np.random.default_rng(1), 2, 3, 4)
  channels = complex_to_channels(x)
  assert channels.shape == (2, 3, 4, 2) and channels.dtype == jnp.float32
  np.testing.assert_array_equal(channels[..., 1], x.imag)
  np.testing.assert_array_equal(channels_to_complex(channels), x)
  with pytest.raises(ValueError, match="x must have 2 channels"):
    channels_to_complex(channels[..., :1])


@pytest.fixture(scope="module")
def norm_unet_setup():
  model = NormUNet(base_channels=2, num_pools=1)
  rng = np.random.default_rng(2)
  images = {"complex": 2.0 + crandn(rng, 2, HEIGHT, WIDTH),
            "real": 3.0 + rng.standard_normal((2, HEIGHT, WIDTH)).astype(np.float32)}
  apply = jax.jit(functools.partial(model.apply, train=False))
  params = {kind: numpy_variables_like(model, x) for kind, x in images.items()}
  return model, images, apply, params


def numpy_variables_like(model, x, seed=0):
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          jax.ShapeDtypeStruct(x.shape, x.dtype))
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.5, s.shape), s.dtype), shapes)


@pytest.mark.parametrize("kind", ["complex", "real"])
def test_norm_unet_is_scale_equivariant(kind, norm_unet_setup):
  _, images, apply, params = norm_unet_setup
  x = images[kind]
  out = np.asarray(apply(params[kind], x))
  assert out.dtype == (np.complex64 if kind == "complex" else np.float32)
  assert out.shape == x.shape
  for scale in (1e-3, 37.0):
    np.testing.assert_allclose(apply(params[kind], scale * x), scale * out, rtol=2e-4,
                               atol=2e-5 * scale * np.abs(out).max())


@pytest.mark.parametrize("kind", ["complex", "real"])
def test_norm_unet_with_zero_unet_output_returns_the_channel_means(kind, norm_unet_setup):
  """The U-Net output is multiplied by the std and shifted by the mean of each channel."""
  _, images, apply, params = norm_unet_setup
  zeroed = jax.tree.map_with_path(
      lambda path, p: jnp.zeros_like(p) if "out_conv" in jax.tree_util.keystr(path) else p,
      params[kind])
  x = images[kind]
  expected = (x.real.mean(axis=(1, 2), keepdims=True)
              + 1j * x.imag.mean(axis=(1, 2), keepdims=True))
  expected = np.broadcast_to(expected if kind == "complex" else expected.real, x.shape)
  np.testing.assert_allclose(apply(zeroed, x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["recon_unet_complex", "recon_unet_rss"])
def test_recon_unet_is_scale_equivariant(name, data, variables):
  model, mask = TINY_MODELS[name], data["line"]
  out = run(model, variables[name], data["kspace"], mask, data["maps"])
  for scale in (1e-2, 50.0):
    scaled = run(model, variables[name], scale * data["kspace"], mask, data["maps"])
    np.testing.assert_allclose(scaled, scale * out, rtol=2e-4, atol=2e-5 * scale * out.max())


def test_recon_unet_dropout_uses_the_dropout_rng(data):
  model = ReconUNet(base_channels=4, num_pools=1, dropout=0.2, input_mode="rss")
  params = numpy_variables(model, data["kspace"], data["line"], None)
  apply = jax.jit(lambda key, k, m: model.apply(params, k, m, train=True,
                                                rngs={"dropout": key}))
  args = (data["kspace"], data["line"])
  first, same, other = (apply(jax.random.key(s), *args) for s in (0, 0, 1))
  np.testing.assert_array_equal(first, same)
  assert not np.allclose(first, other)


# --------------------------------------------------------------------------- MoDL


def np_sense_matrix(maps, mask):
  """Dense float64 A = M F S of one slice, ``[C*H*W, H*W]``."""
  coils, height, width = maps.shape
  basis = np.eye(height * width).reshape(height * width, height, width)
  columns = mask * np_fft2c(maps[None].astype(np.complex128) * basis[:, None])
  return columns.reshape(height * width, coils * height * width).T


def np_modl_without_denoiser(kspace, maps, mask, lam, num_iters):
  """The MoDL iteration with D = 0 (z = x), with exact solves, in float64: ``[B, H, W]``."""
  images = []
  for k, s, m in zip(kspace, maps, mask):
    a = np_sense_matrix(s, m)
    aty = a.conj().T @ (m * k.astype(np.complex128)).ravel()
    normal = a.conj().T @ a + lam * np.eye(a.shape[1])
    x = aty
    for _ in range(num_iters):
      z = x
      x = np.linalg.solve(normal, aty + lam * z)
    images.append(x.reshape(s.shape[1:]))
  return np.stack(images)


@pytest.mark.parametrize("mask_kind", ["line", "grid"])
def test_modl_with_zero_denoiser_matches_numpy_proximal_iteration(mask_kind, data):
  # Enough CG iterations for an exact solve in float32 (13 * 10 unknowns, lam = 0.2).
  model = MoDL(num_iters=2, cg_iters=40, depth=2, width=3, lam_init=0.2)
  mask = data[mask_kind]
  params = numpy_variables(model, data["kspace"], mask, data["maps"])
  params = {"params": {"log_lam": params["params"]["log_lam"],
                       "denoiser": jax.tree.map(jnp.zeros_like,
                                                params["params"]["denoiser"])}}
  image = jax.jit(functools.partial(model.apply, method=MoDL.complex_image, train=False))(
      params, data["kspace"], mask, data["maps"])
  expected = np_modl_without_denoiser(data["kspace"], data["maps"], mask, 0.2, 2)
  assert image.dtype == jnp.complex64
  scale = np.abs(expected).max()
  np.testing.assert_allclose(image, expected, rtol=0, atol=2e-5 * scale)
  magnitude = run(model, params, data["kspace"], mask, data["maps"])
  np.testing.assert_allclose(magnitude, np.abs(expected), rtol=0, atol=2e-5 * scale)


def test_modl_gradients_are_finite_and_nonzero_for_every_param(data, variables):
  model, params = TINY_MODELS["modl"], variables["modl"]
  target = np.abs(np.asarray(zero_filled(data["kspace"], data["line"], data["maps"])))

  def loss(params, kspace, mask, maps):
    out = model.apply(params, kspace, mask, maps, train=True)
    return jnp.mean(jnp.abs(out - target))

  grads = jax.jit(jax.grad(loss))(params, data["kspace"], data["line"], data["maps"])
  flat = jax.tree_util.tree_flatten_with_path(grads)[0]
  assert {jax.tree_util.keystr(path) for path, _ in flat} >= {"['params']['log_lam']"}
  assert len(flat) == 2 * 3 + 1  # 3 convs (kernel, bias) and log_lam
  for path, grad in flat:
    assert np.all(np.isfinite(grad)), jax.tree_util.keystr(path)
    assert np.linalg.norm(grad) > 0, jax.tree_util.keystr(path)
  assert "batch_stats" not in params


# --------------------------------------------------------------------------- VarNet


def np_acs_mask(mask):
  """Brute force: p is in the ACS region iff the centre-to-p rectangle is all sampled."""
  mask = np.asarray(mask) > 0
  height, width = mask.shape[-2:]
  centre = (height // 2, width // 2)
  out = np.zeros(mask.shape, np.float32)
  for index in np.ndindex(mask.shape[:-2]):
    for i in range(height):
      for j in range(width):
        rows = slice(min(i, centre[0]), max(i, centre[0]) + 1)
        cols = slice(min(j, centre[1]), max(j, centre[1]) + 1)
        out[index + (i, j)] = mask[index + (rows, cols)].all()
  return out


def test_acs_mask_of_line_masks():
  masks = np.stack([np.asarray(equispaced_mask(jax.random.key(seed), 31, 3, 0.2))
                    for seed in range(4)] + [np.ones(31, np.float32)])
  masks = masks.reshape(-1, 1, 1, 31)
  acs = np.asarray(jax.jit(acs_mask)(masks))
  np.testing.assert_array_equal(acs, np_acs_mask(masks))
  assert acs.dtype == np.float32 and acs.shape == masks.shape
  start = (31 - 6 + 1) // 2  # round(31 * 0.2) = 6 centre columns, as fastMRI places them
  assert np.all(acs[:4, ..., start:start + 6] == 1)
  assert np.all(acs[4] == 1)  # fully sampled: all of it
  assert np.all(np.asarray(acs_mask(masks * (np.arange(31) != 15))) == 0)  # centre missing


def test_acs_mask_of_2d_masks():
  hand = np.zeros((9, 8), np.float32)
  hand[2:7, 3:6] = 1  # the centre (4, 4) block
  hand[4, :] = 1  # a full centre row: only the rectangle's cells are ACS
  hand[0, 0] = hand[8, 7] = 1
  poisson = np.asarray(poisson_mask(jax.random.key(0), (13, 10), 2, calib=(4, 4)))
  for mask in (hand, poisson, grid_mask()[0, 0]):
    acs = np.asarray(acs_mask(mask[None, None]))[0, 0]
    np.testing.assert_array_equal(acs, np_acs_mask(mask))
    assert np.all(acs <= mask)
  expected = np.zeros_like(hand)
  expected[2:7, 3:6] = 1
  expected[4, :] = 1  # the centre row's run is a (1-row) rectangle with the centre too
  np.testing.assert_array_equal(np.asarray(acs_mask(hand)), expected)


@pytest.mark.parametrize("mask_kind", ["line", "grid"])
def test_sensitivity_model_maps_have_unit_norm_and_read_only_the_acs(mask_kind, data):
  model = SensitivityModel(channels=2, pools=1)
  mask = data[mask_kind]
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          data["kspace"], mask)
  rng = np.random.default_rng(4)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.5, s.shape), s.dtype), shapes)
  apply = jax.jit(functools.partial(model.apply, train=False))
  maps = np.asarray(apply(params, data["kspace"], mask))
  assert maps.shape == KSPACE_SHAPE and maps.dtype == np.complex64
  np.testing.assert_allclose(np.sum(np.abs(maps) ** 2, axis=1), 1.0, rtol=1e-5)
  outside = crandn(rng, *KSPACE_SHAPE) * (np.asarray(acs_mask(mask)) == 0)
  np.testing.assert_allclose(apply(params, data["kspace"] + outside, mask), maps, atol=1e-5)


@pytest.mark.parametrize("mask_kind", ["line", "grid"])
def test_varnet_with_zero_cascade_refinement_is_the_zero_filled_rss(mask_kind, data, variables):
  """With eta = 1 and every cascade's NormUNet output 0, k stays M y at every cascade."""
  model, mask = TINY_MODELS["varnet"], data[mask_kind]
  params = variables["varnet"]
  assert all(params["params"][f"cascade_{t}"]["dc_weight"] == 1 for t in range(2))

  def zero_cascade_unets(next_fun, args, kwargs, context):
    outputs = next_fun(*args, **kwargs)
    path = context.module.path
    if isinstance(context.module, NormUNet) and path[0].startswith("cascade_"):
      return jnp.zeros_like(outputs)
    return outputs

  def apply(params, kspace, mask):
    with nn.intercept_methods(zero_cascade_unets):
      return model.apply(params, kspace, mask, train=False)

  out = np.asarray(jax.jit(apply)(params, data["kspace"], mask))
  expected = np.asarray(zero_filled(data["kspace"], mask))
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)
  # ... and the cascades do change it when their U-Nets are not silenced.
  assert not np.allclose(run(model, params, data["kspace"], mask, None), expected, atol=1e-3)


def test_varnet_cascade_matches_numpy_formula(data):
  """k - eta M (k - y) - F(S N(sum_c conj(S_c) F^H k)), with N replaced by x -> x |x|."""
  cascade = VarNetCascade(channels=2, pools=1)
  rng = np.random.default_rng(7)
  mask, maps = data["grid"], data["maps"]
  measured = data["kspace"] * mask
  estimate = crandn(rng, *KSPACE_SHAPE)
  shapes = jax.eval_shape(functools.partial(cascade.init, train=False), jax.random.key(0),
                          estimate, measured, mask, maps)
  params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  params["params"]["dc_weight"] = jnp.float32(0.3)

  def replace_norm_unet(next_fun, args, kwargs, context):
    if isinstance(context.module, NormUNet):
      return args[0] * jnp.abs(args[0])
    return next_fun(*args, **kwargs)

  def apply(params, *inputs):
    with nn.intercept_methods(replace_norm_unet):
      return cascade.apply(params, *inputs, train=False)

  out = jax.jit(apply)(params, estimate, measured, mask, maps)
  image = np.sum(np.conj(maps) * np_ifft2c(estimate.astype(np.complex128)), axis=1)
  expected = (estimate - 0.3 * mask * (estimate - measured)
              - np_fft2c(maps * (image * np.abs(image))[:, None]))
  assert out.shape == KSPACE_SHAPE and out.dtype == jnp.complex64
  np.testing.assert_allclose(out, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


@pytest.mark.parametrize("name", ["recon_unet_complex", "recon_unet_rss", "varnet"])
def test_gradients_are_finite_and_reach_every_param(name, data, variables):
  model, params = TINY_MODELS[name], variables[name]
  target = np.asarray(zero_filled(data["kspace"]))  # fully sampled RSS

  def loss(params, kspace, mask, maps):
    return jnp.mean(jnp.abs(model.apply(params, kspace, mask, maps, train=True) - target))

  grads = jax.jit(jax.grad(loss))(params, data["kspace"], data["line"], data["maps"])
  for path, grad in jax.tree_util.tree_flatten_with_path(grads)[0]:
    path = jax.tree_util.keystr(path)
    assert np.all(np.isfinite(grad)), path
    # The first cascade starts at k = M y, where M (k - y) = 0: its eta gets no gradient.
    if path != "['params']['cascade_0']['dc_weight']":
      assert np.linalg.norm(grad) > 0, path


# --------------------------------------------------------------------------- reconstruct


@pytest.mark.parametrize("name", ["modl", "varnet"])
def test_reconstruct_single_slice_matches_the_batch(name, data, variables):
  model = TINY_MODELS[name]
  batched = reconstruct(model, variables[name], data["kspace"], data["line"], data["maps"])
  assert batched.shape == (BATCH, HEIGHT, WIDTH) and batched.dtype == np.float32
  np.testing.assert_allclose(
      batched, run(model, variables[name], data["kspace"], data["line"], data["maps"]),
      rtol=1e-6, atol=1e-6)
  single = reconstruct(model, variables[name], data["kspace"][1], data["line"][1],
                       data["maps"][1])
  assert single.shape == (HEIGHT, WIDTH) and single.dtype == np.float32
  np.testing.assert_allclose(single, batched[1], rtol=1e-4, atol=1e-5)


def test_reconstruct_chunks_with_a_padded_last_chunk_compile_once(data, variables):
  model, params = TINY_MODELS["recon_unet_complex"], variables["recon_unet_complex"]
  rng = np.random.default_rng(6)
  kspace = crandn(rng, 5, COILS, HEIGHT, WIDTH)
  maps = normalized_maps(rng, kspace.shape)
  mask = data["grid"][:1]  # one mask for every slice
  whole = reconstruct(model, params, kspace, mask, maps, batch_size=8)  # one chunk of 5
  before = _jitted_apply(model)._cache_size()
  chunked = reconstruct(model, params, kspace, mask, maps, batch_size=2)  # 2 + 2 + 1 (padded)
  assert _jitted_apply(model)._cache_size() == before + 1  # the partial chunk reused it
  np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
  with jax.transfer_guard("disallow"):  # its host <-> device copies are explicit
    again = reconstruct(model, params, kspace[:3], mask, maps[:3], batch_size=2)  # 2 + 1
  assert _jitted_apply(model)._cache_size() == before + 1  # cached across calls
  np.testing.assert_allclose(again, whole[:3], rtol=1e-5, atol=1e-6)


def with_value(x, value):
  """A copy of ``x`` with one entry set to ``value`` (NaN or Inf)."""
  x = np.array(x)
  x.flat[7] = value
  return x


@pytest.mark.parametrize("argument, build, message", [
    ("kspace", lambda d: d["kspace"].real, "kspace must be complex"),
    ("kspace", lambda d: d["kspace"][0, 0], "kspace must be complex"),
    ("kspace", lambda d: with_value(d["kspace"], np.nan), "kspace contains NaN or Inf"),
    ("maps", lambda d: with_value(d["maps"], np.inf), "maps contain NaN or Inf"),
    ("mask", lambda d: np.ones((BATCH, 1, 1, WIDTH + 1), np.float32),
     r"mask of shape \(2, 1, 1, 11\) does not broadcast to kspace"),
    ("mask", lambda d: d["line"] + 0j, "mask must be real"),
    ("mask", lambda d: with_value(d["line"], np.nan), "mask contains NaN or Inf"),
    ("maps", lambda d: d["maps"][:, :2], "maps must be complex with kspace's shape"),
    ("maps", lambda d: np.abs(d["maps"]), "maps must be complex with kspace's shape"),
    ("maps", lambda d: None, "maps are required by MoDL"),
    ("batch_size", lambda d: 0, "batch_size must be a positive int"),
])
def test_reconstruct_rejects_bad_input_naming_the_argument(argument, build, message, data,
                                                           variables):
  args = dict(kspace=data["kspace"], mask=data["line"], maps=data["maps"], batch_size=8)
  args[argument] = build(data)
  with pytest.raises(ValueError, match=message):
    reconstruct(TINY_MODELS["modl"], variables["modl"], **args)


def test_reconstruct_needs_maps_only_for_models_that_read_them(data, variables):
  with pytest.raises(ValueError, match="maps are required by ReconUNet"):
    reconstruct(TINY_MODELS["recon_unet_complex"], variables["recon_unet_complex"],
                data["kspace"], data["line"])
  out = reconstruct(TINY_MODELS["recon_unet_rss"], variables["recon_unet_rss"],
                    data["kspace"], data["line"])
  assert out.shape == (BATCH, HEIGHT, WIDTH)
