"""Function-space GP posterior in a fixed buffer: against numpy/scipy dense solves.

One buffer size (``T = 16``) serves the exact-algebra tests, so their eager programs
compile once.
"""

import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import bandits as B

T = 16


def _gram(rng, n, d=5):
    """A positive-definite Gram (RBF plus linear kernel) of ``n`` random points."""
    x = rng.normal(size=(n, d))
    return np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1)) + 0.1 * x @ x.T


@pytest.fixture(scope="module")
def gram():
    return _gram(np.random.default_rng(0), T)


def test_buffer_mask():
    np.testing.assert_array_equal(B.buffer_mask(5, 3, jnp.float32), [1, 1, 1, 0, 0])
    assert B.buffer_mask(4, 0, jnp.int32).sum() == 0


def test_dense_posterior_is_inverse_cholesky_padded(x64, jit, gram):
    n, ridge = 9, 0.3
    factor = jit(B.dense_posterior)(jnp.asarray(gram), jnp.int32(n), jnp.float64(ridge))
    ref = np.linalg.inv(np.linalg.cholesky(gram[:n, :n] + ridge * np.eye(n)))
    w = np.asarray(factor.winv)
    # float64 Cholesky + triangular inverse of a condition-~1e2 matrix: ~1e-13 error.
    np.testing.assert_allclose(w[:n, :n], ref, atol=1e-11)
    np.testing.assert_array_equal(w[n:, n:], np.eye(T - n))
    np.testing.assert_array_equal(w[:n, n:], 0.0)
    np.testing.assert_array_equal(w[n:, :n], 0.0)
    assert int(factor.count) == n and float(factor.ridge) == ridge
    log_det = np.linalg.slogdet(gram[:n, :n] + ridge * np.eye(n))[1]
    np.testing.assert_allclose(float(jit(B.posterior_log_det)(factor)), log_det, rtol=1e-12)


def test_empty_posterior_is_identity_with_no_points(x64):
    factor = B.empty_posterior(T, 0.5, jnp.float64)
    np.testing.assert_array_equal(factor.winv, np.eye(T))
    assert int(factor.count) == 0 and float(B.posterior_log_det(factor)) == 0.0


def test_incremental_posterior_equals_fresh_dense_solve_after_many_rounds(x64, jit):
    rng = np.random.default_rng(1)
    size, ridge = 200, 1e-2
    gram = _gram(rng, size)
    factor = B.empty_posterior(size, ridge, jnp.float64)
    step = jit(B.incremental_posterior_update)
    for i in range(size):
        factor = step(factor, gram[i], gram[i, i])
    dense = jit(B.dense_posterior)(gram, jnp.int32(size), jnp.float64(ridge))
    # 200 bordered updates of a matrix with condition ~1e4 in float64: errors grow like
    # n * cond * eps ~ 1e-10; 1e-8 leaves margin and still catches any algebra slip.
    np.testing.assert_allclose(np.asarray(factor.winv), np.asarray(dense.winv), atol=1e-8)
    queries = jnp.asarray(rng.normal(size=(4, size)))
    reduction = jit(B.posterior_reduction)
    np.testing.assert_allclose(reduction(factor, queries), reduction(dense, queries), rtol=1e-8)
    assert step._cache_size() == 1  # one compilation for every round
    assert int(factor.clamps) == 0  # condition ~1e4 in float64: nothing to repair


def test_a_clamped_schur_complement_is_counted_and_survives_a_fresh_factor():
    # The same point twice, k = 1, ρ = 1e-12: the exact Schur complement is ρ(2k + ρ)/(k + ρ)
    # ≈ 2ρ, but float32 rounds k + ρ − k²/(k + ρ) to 0 < ρ: clamped to ρ, counted once.
    factor = B.empty_posterior(4, 1e-12, jnp.float32)
    one = jnp.asarray([1.0, 1.0, 0.0, 0.0], jnp.float32)
    factor = B.incremental_posterior_update(factor, one, jnp.float32(1.0))
    assert int(factor.clamps) == 0  # the first point: Schur complement k + ρ
    factor = B.incremental_posterior_update(factor, one, jnp.float32(1.0))
    assert int(factor.clamps) == 1
    assert float(factor.winv[1, 1]) == pytest.approx(1e6, rel=1e-6)  # 1/√ρ after the clamp
    gram = jnp.ones((4, 4), jnp.float32)
    fresh = B.dense_posterior(gram, factor.count, jnp.float32(1.0), factor.clamps)
    assert int(fresh.clamps) == 1


def test_posterior_mean_and_variance_match_gp_closed_form(x64, jit, gram):
    rng = np.random.default_rng(2)
    n, ridge = 10, 0.05
    y = rng.normal(size=T)
    factor = jit(B.dense_posterior)(jnp.asarray(gram), jnp.int32(n), jnp.float64(ridge))
    k_cross = gram[10:13]  # three "query" rows against the buffer
    a = gram[:n, :n] + ridge * np.eye(n)
    mean_ref = k_cross[:, :n] @ np.linalg.solve(a, y[:n])
    red_ref = np.einsum("qi,qi->q", k_cross[:, :n], np.linalg.solve(a, k_cross[:, :n].T).T)
    # float64 solves of a condition-~1e3 system.
    mean = jit(B.posterior_mean)(factor, jnp.asarray(k_cross), jnp.asarray(y))
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-10)
    np.testing.assert_allclose(
        jit(B.posterior_reduction)(factor, jnp.asarray(k_cross)), red_ref, rtol=1e-10
    )
    both = jit(B.posterior_moments)(factor, jnp.asarray(k_cross), jnp.asarray(y))
    np.testing.assert_allclose(both[0], mean_ref, rtol=1e-10)
    np.testing.assert_allclose(both[1], red_ref, rtol=1e-10)
    sol = np.zeros(T)
    sol[:n] = np.linalg.solve(a, y[:n])
    np.testing.assert_allclose(jit(B.solve)(factor, jnp.asarray(y)), sol, atol=1e-10)
