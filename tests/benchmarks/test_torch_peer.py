"""The PyTorch peer of the step benchmark: parameter counts, training, equivalence with fdl."""

import functools
import os
import sys

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from fdl.bench import fdl_workloads, specs  # noqa: E402
from conftest import REPO_DIR  # noqa: E402

sys.path.insert(0, os.path.join(REPO_DIR, "benchmarks"))
from peers import torch_peer as tp  # noqa: E402  pylint: disable=g-import-not-at-top

# fdl's full-size counts (`fdl_workloads.num_params`), written out as a cross-check.
FULL_COUNTS = {"mlp": 1_841_162, "cnn": 1_070_794, "resnet18": 11_173_962,
               "unet": 7_756_097, "modl": 64_131, "varnet": 20_119_610}
FASTMRI_WORKLOADS = ("unet", "varnet")


@functools.cache
def _fdl_count(name, tiny):
  return fdl_workloads.num_params(specs.get_spec(name, tiny=tiny))


@functools.cache
def _batch(name):
  return fdl_workloads.make_batch(specs.get_spec(name, tiny=True))


@pytest.fixture(params=[True, False], ids=["fastmri", "fallback"])
def use_fastmri(request, monkeypatch):
  """Runs a test with fastMRI's models (skipped if absent) and with our fallbacks."""
  if request.param and not tp.fastmri_available():
    pytest.skip("fastmri.models does not import")
  if not request.param:
    monkeypatch.setattr(tp, "fastmri_available", lambda: False)
  return request.param


def test_available():
  assert tp.available()


@pytest.mark.parametrize("name", specs.WORKLOADS)
def test_tiny_step_has_fdl_param_count(name):
  spec = specs.get_spec(name, tiny=True)
  assert tp.build_step(spec, _batch(name)).num_params == _fdl_count(name, True)


@pytest.mark.parametrize("name", specs.WORKLOADS)
def test_full_model_has_fdl_param_count(name):
  # Models only: no full-size batch, no step.
  spec = specs.get_spec(name)
  assert _fdl_count(name, False) == FULL_COUNTS[name]
  assert tp.count_params(tp.build_model(spec)) == FULL_COUNTS[name]


@pytest.mark.parametrize("tiny", [True, False], ids=["tiny", "full"])
@pytest.mark.parametrize("name", FASTMRI_WORKLOADS)
def test_fallback_and_fastmri_param_counts(name, tiny, use_fastmri):
  spec = specs.get_spec(name, tiny=tiny)
  model = tp.build_model(spec, use_fastmri=use_fastmri)
  assert tp.count_params(model) == _fdl_count(name, tiny)
  assert tp.model_source(model).startswith("fastmri." if use_fastmri else "peers.torch_peer.")


@pytest.mark.parametrize("name", FASTMRI_WORKLOADS)
def test_source_names_fastmri_when_available(name):
  source = tp.build_step(specs.get_spec(name, tiny=True), _batch(name)).source
  if tp.fastmri_available():
    assert source == {"unet": "fastmri.models.Unet", "varnet": "fastmri.models.VarNet"}[name]
  else:
    assert source.startswith("peers.torch_peer.")


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "modl"])
def test_own_sources(name):
  source = tp.build_step(specs.get_spec(name, tiny=True), _batch(name)).source
  assert source.startswith("peers.torch_peer.")


def _check_trains(name):
  spec = specs.get_spec(name, tiny=True)
  step = tp.build_step(spec, _batch(name), seed=1)
  before = {k: p.detach().clone() for k, p in step.model.named_parameters()}
  losses = [float(step.step()) for _ in range(3)]
  assert np.all(np.isfinite(losses)), losses
  assert losses[2] < losses[0], losses  # Adam on one fixed batch.
  unchanged = [k for k, p in step.model.named_parameters() if torch.equal(before[k], p)]
  # The first VarNet cascade starts at k = y, so its data-consistency term M (k - y) and
  # the gradient of its weight are exactly 0 (in fastMRI's VarNet and fdl's alike).
  assert unchanged == (["cascades.0.dc_weight"] if name == "varnet" else [])


@pytest.mark.parametrize("name", ["mlp", "cnn", "resnet18", "modl"])
def test_three_steps_train(name):
  _check_trains(name)


@pytest.mark.parametrize("name", FASTMRI_WORKLOADS)
def test_three_steps_train_fastmri_or_fallback(name, use_fastmri):
  _check_trains(name)


def test_build_step_is_deterministic_and_keeps_global_rng():
  spec = specs.get_spec("cnn", tiny=True)
  state = torch.random.get_rng_state()
  first = [float(tp.build_step(spec, _batch("cnn"), seed=3).step()) for _ in range(2)]
  assert torch.equal(torch.random.get_rng_state(), state)
  assert first[0] == first[1]


# Forward equivalence with fdl: the Flax parameters copied into the torch model.


def _fdl_forward(name, inputs, *, random_params=True):
  """fdl's tiny model: its params and its output on `inputs`.

  `random_params` fills the parameter shapes with NumPy draws (fan-in scaled kernels,
  nonzero biases): as strong a check as flax's init and much faster, since an un-jitted
  `init` compiles one random op per shape (18 s for the tiny U-Net on 2 cores).
  """
  spec = specs.get_spec(name, tiny=True)
  model = fdl_workloads.create_model(spec)
  key = jax.random.key(0)
  if random_params:
    rng = np.random.default_rng(0)
    shapes = jax.eval_shape(functools.partial(model.init, train=False), key, *inputs)
    scale = lambda shape: 0.1 if len(shape) < 2 else 1 / np.sqrt(np.prod(shape[:-1]))
    variables = jax.tree.map(
        lambda s: (scale(s.shape) * rng.standard_normal(s.shape)).astype(np.float32),
        shapes)
  else:
    variables = model.init(key, *inputs, train=False)
  return variables["params"], np.asarray(model.apply(variables, *inputs, train=False))


def _assert_close(actual, expected):
  # rtol 1e-4, with an absolute floor of 1e-5 of the output's scale for entries near 0.
  np.testing.assert_allclose(actual, expected, rtol=1e-4,
                             atol=1e-5 * float(np.abs(expected).max()))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_classifier_forward_matches_fdl(name):
  spec = specs.get_spec(name, tiny=True)
  image = _batch(name)["image"]
  params, expected = _fdl_forward(name, [image])
  model = tp.build_model(spec)
  tp.load_flax_params(model, params, image=tuple(spec["image"]))
  with torch.no_grad():
    actual = model(torch.from_numpy(image.transpose(0, 3, 1, 2).copy())).numpy()
  _assert_close(actual, expected)


def test_resnet_forward_matches_fdl_in_train_mode():
  # Train mode: batch norm uses the batch statistics, so copying the params suffices.
  spec = specs.get_spec("resnet18", tiny=True)
  image = _batch("resnet18")["image"]
  model = fdl_workloads.create_model(spec)
  rng = np.random.default_rng(0)
  shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0),
                          image)
  variables = jax.tree.map(
      lambda s: (0.5 * rng.standard_normal(s.shape) + (len(s.shape) == 1)).astype(
          np.float32), shapes)
  expected, _ = model.apply(variables, image, train=True, mutable=["batch_stats"])
  ours = tp.build_model(spec).train()
  tp.load_flax_params(ours, variables["params"])
  with torch.no_grad():
    actual = ours(torch.from_numpy(image.transpose(0, 3, 1, 2).copy())).numpy()
  _assert_close(actual, np.asarray(expected))


def _kspace_inputs(name, *, maps):
  batch = _batch(name)
  keys = ("kspace", "mask", "maps") if maps else ("kspace", "mask")
  return [batch[k] for k in keys]


def test_modl_forward_matches_fdl():
  spec = specs.get_spec("modl", tiny=True)
  inputs = _kspace_inputs("modl", maps=True)
  params, expected = _fdl_forward("modl", inputs, random_params=False)
  paths = {jax.tree_util.keystr(p) for p, _ in jax.tree_util.tree_flatten_with_path(params)[0]}
  assert "['log_lam']" in paths and "['denoiser']['conv_0']['kernel']" in paths
  model = tp.build_model(spec)
  tp.load_flax_params(model, params)
  with torch.no_grad():
    actual = model(*[torch.from_numpy(np.asarray(x)) for x in inputs]).numpy()
  assert actual.shape == expected.shape == _batch("modl")["target"].shape
  _assert_close(actual, expected)


def test_cg_matches_a_direct_solve():
  rng = np.random.default_rng(0)
  a = rng.standard_normal((2, 5, 5)) + 1j * rng.standard_normal((2, 5, 5))
  a = torch.from_numpy(a @ np.conj(np.swapaxes(a, 1, 2)) + 5 * np.eye(5))
  rhs = torch.from_numpy(rng.standard_normal((2, 5)) + 1j * rng.standard_normal((2, 5)))
  x = tp.cg(lambda v: torch.einsum("bij,bj->bi", a, v), rhs, torch.zeros_like(rhs), 5)
  np.testing.assert_allclose(x.numpy(), torch.linalg.solve(a, rhs).numpy(), rtol=1e-6)
  # A converged (zero-residual) system stays put, without NaNs.
  exact = tp.cg(lambda v: torch.einsum("bij,bj->bi", a, v), rhs, x, 3)
  assert torch.all(torch.isfinite(exact.real)) and torch.allclose(exact, x, rtol=1e-6)


def test_fallback_unet_forward_matches_fdl():
  spec = specs.get_spec("unet", tiny=True)
  image = _batch("unet")["image"][:, :13, :11]  # Odd sizes: padded and cropped, as fdl.
  params, expected = _fdl_forward("unet", [image])
  model = tp.build_model(spec, use_fastmri=False)
  tp.load_flax_params(model, params)
  with torch.no_grad():
    actual = model(torch.from_numpy(image.transpose(0, 3, 1, 2).copy())).numpy()
  _assert_close(actual, expected.transpose(0, 3, 1, 2))


def test_fallback_varnet_forward_matches_fdl():
  spec = specs.get_spec("varnet", tiny=True)
  inputs = _kspace_inputs("varnet", maps=False)
  params, expected = _fdl_forward("varnet", inputs)
  model = tp.build_model(spec, use_fastmri=False)
  tp.load_flax_params(model, params)
  with torch.no_grad():
    actual = model(*[torch.from_numpy(np.asarray(x)) for x in inputs]).numpy()
  _assert_close(actual, expected)


def _fastmri_unet_key(key, pools):
  # Our UNet's state-dict key -> fastmri.models.Unet's.
  part, index, *rest = key.split(".")
  if part == "out_conv":
    return f"up_conv.{pools - 1}.1.{index}"
  if part == "bottleneck":
    return f"conv.layers.{index}.{rest[0]}"
  if part == "up" and int(index) == pools - 1:
    return f"up_conv.{index}.0.layers.{'.'.join(rest)}"
  name = {"down": "down_sample_layers", "up": "up_conv",
          "up_transpose": "up_transpose_conv"}[part]
  return f"{name}.{index}.layers.{'.'.join(rest)}"


def test_fallback_unet_is_fastmri_unet_on_multiples_of_two_to_the_pools():
  if not tp.fastmri_available():
    pytest.skip("fastmri.models does not import")
  spec = specs.get_spec("unet", tiny=True)
  ours = tp.build_model(spec, use_fastmri=False)
  theirs = tp.build_model(spec, use_fastmri=True)
  state = {_fastmri_unet_key(k, spec["pools"]): v for k, v in ours.state_dict().items()}
  theirs.load_state_dict(state)  # strict: every key and shape must match.
  image = torch.from_numpy(_batch("unet")["image"].transpose(0, 3, 1, 2).copy())
  with torch.no_grad():
    np.testing.assert_allclose(ours(image).numpy(), theirs(image).numpy(), rtol=1e-5,
                               atol=1e-6)


_COMPILE_MISCOMPUTES = pytest.mark.xfail(
    strict=False, reason="torch.compile (Inductor, CPU, torch 2.13) miscomputes MoDL in grad "
    "mode: maps * image[:, None] (broadcast complex product) comes out wrong")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", pytest.param("modl", marks=_COMPILE_MISCOMPUTES)])
def test_compiled_step_matches_eager(name):
  spec = specs.get_spec(name, tiny=True)
  compiled = tp.build_step(spec, _batch(name), compile=True)
  eager = tp.build_step(spec, _batch(name))
  for _ in range(2):
    np.testing.assert_allclose(float(compiled.step()), float(eager.step()), rtol=1e-5)
