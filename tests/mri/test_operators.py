"""MRI operators against float64 NumPy references: FFT, SENSE adjointness, CG."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mri_reference import crandn, np_fft2c, np_ifft2c

from fdl.mri import cg, fft2c, ifft2c, sense_adjoint, sense_forward, sense_normal

jax.config.update("jax_enable_x64", False)







@pytest.mark.parametrize("shape", [(7, 10), (2, 3, 9, 8), (1, 16, 15)])
def test_fft2c_matches_numpy_fftshift_formulation(shape):
  rng = np.random.default_rng(0)
  x = crandn(rng, *shape)
  np.testing.assert_allclose(np.asarray(fft2c(x)), np_fft2c(x.astype(np.complex128)),
                             rtol=1e-5, atol=1e-5)
  # explicit DFT matrix for one axis pair, centred indices
  h, w = shape[-2:]
  def centred_dft(n):
    k = np.arange(n) - n // 2
    return np.exp(-2j * np.pi * np.outer(k, k) / n) / np.sqrt(n)
  ref = centred_dft(h) @ x.astype(np.complex128) @ centred_dft(w).T
  np.testing.assert_allclose(np.asarray(fft2c(x)), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(9, 12), (2, 4, 11, 7)])
def test_fft_inverse_and_parseval(shape):
  rng = np.random.default_rng(1)
  x = crandn(rng, *shape)
  np.testing.assert_allclose(np.asarray(ifft2c(fft2c(x))), x, atol=1e-5)
  np.testing.assert_allclose(np.asarray(fft2c(ifft2c(x))), x, atol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(np.asarray(fft2c(x))),
                             np.linalg.norm(x), rtol=1e-5)


def test_fft_dc_is_at_the_centre():
  x = np.ones((6, 5), np.complex64)
  k = np.asarray(fft2c(x))
  assert np.unravel_index(np.abs(k).argmax(), k.shape) == (3, 2)
  assert abs(k[3, 2]) == pytest.approx(np.sqrt(30), rel=1e-5)


@pytest.fixture(scope="module")
def sense_problem():
  rng = np.random.default_rng(2)
  b, c, h, w = 2, 3, 10, 9
  maps = crandn(rng, b, c, h, w)
  mask = (rng.random((b, 1, 1, w)) < 0.5).astype(np.float32)
  return rng, maps, mask, (b, c, h, w)


def test_sense_forward_matches_numpy(sense_problem):
  rng, maps, mask, (b, c, h, w) = sense_problem
  x = crandn(rng, b, h, w)
  ref = mask * np_fft2c(maps.astype(np.complex128) * x[:, None])
  np.testing.assert_allclose(np.asarray(sense_forward(x, maps, mask)), ref,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("mask_kind", ["lines", "2d", "weights"])
def test_sense_adjointness(sense_problem, mask_kind):
  rng, maps, _, (b, c, h, w) = sense_problem
  mask = {"lines": (rng.random((b, 1, 1, w)) < 0.4).astype(np.float32),
          "2d": (rng.random((b, 1, h, w)) < 0.4).astype(np.float32),
          "weights": rng.random((b, 1, h, w)).astype(np.float32)}[mask_kind]
  x = crandn(rng, b, h, w)
  y = crandn(rng, b, c, h, w)
  lhs = np.vdot(np.asarray(sense_forward(x, maps, mask), np.complex128), y)
  rhs = np.vdot(x.astype(np.complex128), np.asarray(sense_adjoint(y, maps, mask)))
  assert abs(lhs - rhs) / abs(lhs) < 1e-5
  normal = np.asarray(sense_normal(x, maps, mask))
  via = np.asarray(sense_adjoint(sense_forward(x, maps, mask), maps, mask))
  np.testing.assert_allclose(normal, via, rtol=1e-5, atol=1e-4)


def test_sense_norm_by_power_method():
  # With maps normalized so sum_c |S_c|^2 = 1 and a full mask, A is an isometry:
  # the largest eigenvalue of A^H A is 1.
  rng = np.random.default_rng(3)
  maps = crandn(rng, 1, 4, 8, 8)
  maps /= np.sqrt((np.abs(maps) ** 2).sum(1, keepdims=True))
  mask = np.ones((1, 1, 1, 8), np.float32)
  x = crandn(rng, 1, 8, 8)
  for _ in range(20):
    x = np.asarray(sense_normal(x, maps, mask))
    norm = np.linalg.norm(x)
    x = x / norm
  assert norm == pytest.approx(1.0, rel=1e-4)


def _dense_hpd(rng, n):
  a = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
  return a @ a.conj().T + n * np.eye(n)


def test_cg_matches_dense_solve_batched_complex():
  rng = np.random.default_rng(4)
  mats = np.stack([_dense_hpd(rng, 6) for _ in range(3)]).astype(np.complex64)
  rhs = crandn(rng, 3, 6)
  op = lambda v: jnp.einsum("bij,bj->bi", mats, v)
  x = jax.jit(lambda r: cg(op, r, num_iters=30))(rhs)
  ref = np.linalg.solve(mats.astype(np.complex128), rhs.astype(np.complex128)[..., None])[..., 0]
  np.testing.assert_allclose(np.asarray(x), ref, rtol=1e-4, atol=1e-5)


def test_cg_relative_tolerance_and_stability_after_convergence():
  rng = np.random.default_rng(5)
  mat = np.diag(np.arange(1.0, 5.0)).astype(np.float32)[None]
  rhs = rng.standard_normal((1, 4)).astype(np.float32)
  op = lambda v: jnp.einsum("bij,bj->bi", mat, v)
  # 4 distinct eigenvalues: exact after 4 iterations; 50 more must not NaN.
  x = cg(op, rhs, num_iters=54)
  assert np.isfinite(np.asarray(x)).all()
  np.testing.assert_allclose(np.asarray(x), rhs / np.arange(1.0, 5.0), rtol=1e-5)
  # a loose relative tolerance stops early: residual above exact, below tol
  loose = np.asarray(cg(op, rhs, num_iters=50, tol=0.3))
  res = np.linalg.norm(rhs[0] - mat[0] @ loose[0]) / np.linalg.norm(rhs)
  assert 0 < res <= 0.3
  # zero right-hand side: zero solution, no NaN
  np.testing.assert_array_equal(np.asarray(cg(op, np.zeros((1, 4), np.float32))), 0)


def test_cg_is_differentiable():
  mat = jnp.asarray([[[3.0, 1.0], [1.0, 2.0]]])
  def solve_sum(scale):
    op = lambda v: scale * jnp.einsum("bij,bj->bi", mat, v)
    return cg(op, jnp.ones((1, 2)), num_iters=10).sum()
  g = jax.grad(solve_sum)(2.0)
  # x(s) = A^-1 1 / s, so d/ds sum x = -sum(A^-1 1) / s^2
  ref = -np.linalg.solve(np.asarray(mat[0]), np.ones(2)).sum() / 4.0
  assert float(g) == pytest.approx(ref, rel=1e-4)
  assert np.isfinite(float(jax.grad(solve_sum)(1.0)))


@pytest.mark.parametrize("call, match", [
    (lambda m, x, k: sense_forward(x.real, m, np.ones((1, 1, 1, 5))), r"image must be complex64 \[batch, H, W\]; got float32"),
    (lambda m, x, k: sense_forward(x, m, np.ones((1, 1, 1, 4))), r"mask of shape \(1, 1, 1, 4\) does not broadcast to k-space \(1, 2, 6, 5\)"),
    (lambda m, x, k: sense_adjoint(k[:, :1], m, np.ones((1, 1, 1, 5))), r"kspace has 1 coils but maps have 2"),
    (lambda m, x, k: sense_adjoint(k.at[0, 0, 0, 0].set(jnp.nan), m, np.ones((1, 1, 1, 5))), r"kspace contains NaN or Inf"),
    (lambda m, x, k: sense_adjoint(k, m[0], np.ones((1, 1, 1, 5))), r"maps must be complex64 \[batch, coils, H, W\]; got complex64 \(2, 6, 5\)"),
    (lambda m, x, k: cg(lambda v: v, np.ones((1, 2)), num_iters=-1), r"num_iters must be >= 0"),
])
def test_bad_input_is_named(call, match):
  rng = np.random.default_rng(6)
  maps = crandn(rng, 1, 2, 6, 5)
  x = crandn(rng, 1, 6, 5)
  k = jnp.asarray(crandn(rng, 1, 2, 6, 5))
  with pytest.raises(ValueError, match=match):
    call(maps, x, k)
