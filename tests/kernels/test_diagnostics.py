"""Regime diagnostics: zero on linear models, by-hand values, dense references.

The network checks share one small ReLU MLP, two parameter sets and their dense Jacobians
(:func:`net`); each diagnostic is compiled once, under ``jax.jit`` as the studies use it.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import kernels, models


def _linear(params, x):
    return x @ params["w"] + params["b"][None, :]


def test_linear_model_has_zero_jacobian_and_kernel_change_and_linearization_error(x64):
    x = jax.random.normal(jax.random.key(0), (6, 3))
    p0 = {"w": jnp.ones((3, 2)), "b": jnp.zeros((2,))}
    p1 = {"w": jnp.full((3, 2), -2.0), "b": jnp.ones((2,))}
    ntk = kernels.empirical_ntk_fn(_linear, algorithm="reference")

    @jax.jit
    def diagnostics(a, b):
        change = kernels.jacobian_change(_linear, a, b, x, key=jax.random.key(1), num_iters=5)
        return change, kernels.kernel_change(ntk(x, None, a), ntk(x, None, b))

    change, kc = diagnostics(p0, p1)
    assert float(change.spectral) == 0.0 and float(change.frobenius) == 0.0
    assert float(kc) == 0.0
    # f(θ) − f(θ₀) − J δ cancels exactly in exact arithmetic; float64 rounding of three
    # separately evaluated terms leaves ~1e-16.
    assert float(jax.jit(kernels.linearization_error, static_argnums=0)(_linear, p0, p1, x)) < 1e-14


def _two_params(p, x):
    """f(a, b; x) = a·b·x: J = [b x, a x]."""
    return (p[0] * p[1] * x)[:, None]


def test_two_parameter_model_matches_values_worked_by_hand(x64):
    x = jnp.array([1.0, 2.0])
    p0, p1 = jnp.array([1.0, 1.0]), jnp.array([2.0, 3.0])
    ntk = kernels.empirical_ntk_fn(_two_params, algorithm="reference")

    @jax.jit
    def diagnostics(a, b):
        change = kernels.jacobian_change(_two_params, a, b, x, key=jax.random.key(0), num_iters=20)
        kc = kernels.kernel_change(ntk(x, None, a), ntk(x, None, b))
        return change, kc, kernels.linearization_error(_two_params, a, b, x)

    change, kc, lin = diagnostics(p0, p1)
    # J0 = [[1, 1], [2, 2]], J1 = [[3, 2], [6, 4]]; D = [[2, 1], [4, 2]] (rank one).
    # ‖D‖₂ = ‖D‖_F = sqrt(4+1+16+4) = 5; ‖J0‖₂ = ‖J0‖_F = sqrt(10).
    np.testing.assert_allclose(change.spectral, 5.0, rtol=1e-10)  # rank one: exact in 1 step
    np.testing.assert_allclose(change.frobenius, 5.0, rtol=1e-12)
    np.testing.assert_allclose(change.spectral_relative, 5.0 / np.sqrt(10.0), rtol=1e-10)
    # K0 = J0 J0ᵀ = [[2, 4], [4, 8]], K1 = [[13, 26], [26, 52]]: ‖K1−K0‖/‖K0‖ = 5.5.
    np.testing.assert_allclose(kc, 5.5)
    # f(p1) = 6x, f(p0) = x, f_lin(p1) = x + J0·(1, 2) = 4x: error |6x−4x| / |6x−x| = 0.4.
    np.testing.assert_allclose(lin, 0.4)


@pytest.fixture(scope="module")
def net():
    """mlp(12, 2, 3) on 5 inputs, θ₀ and θ₁ = θ₀ + 0.3 sin θ₀, dense J(θ₀), J(θ₁) (float64)."""
    with jax.enable_x64(True):
        arch = models.mlp(12, 2, 3)
        x = jax.random.normal(jax.random.key(0), (5, 4))
        p0 = jax.jit(arch.init_fn, static_argnums=1)(jax.random.key(1), x.shape)[1]
        p1 = jax.tree_util.tree_map(lambda a: a + 0.3 * jnp.sin(a), p0)
        dense = jax.jit(lambda p: kernels.jacobian(arch.apply_fn, p, x))
        return arch, x, p0, p1, np.asarray(dense(p0)), np.asarray(dense(p1))


def test_jacobian_change_of_a_network_matches_dense_numpy_norms(x64, net):
    arch, x, p0, p1, j0, j1 = net
    d = (j1 - j0).reshape(-1, j0.shape[-1])  # (n·k, P)
    d0 = j0.reshape(d.shape)
    both = jax.jit(
        lambda a, b: {
            method: kernels.jacobian_change(
                arch.apply_fn, a, b, x, key=jax.random.key(2), num_iters=300, frobenius=method
            )
            for method in kernels.FROBENIUS_METHODS
        }
    )(p0, p1)
    for change in both.values():
        # Power iteration from below; 300 steps on a 15-row operator converge to ~1e-6
        # unless the top two singular values nearly coincide.
        np.testing.assert_allclose(change.spectral, np.linalg.norm(d, 2), rtol=1e-4)
        np.testing.assert_allclose(change.spectral_relative, np.linalg.norm(d, 2)
                                   / np.linalg.norm(d0, 2), rtol=1e-4)  # fmt: skip
        # Both Frobenius methods are exact sums: float64 round-off.
        np.testing.assert_allclose(change.frobenius, np.linalg.norm(d), rtol=1e-10)
        want = np.linalg.norm(d) / np.linalg.norm(d0)
        np.testing.assert_allclose(change.frobenius_relative, want, rtol=1e-10)


def test_jacobian_change_rejects_an_unknown_frobenius_method():
    with pytest.raises(ValueError, match="frobenius method 'dense'; allowed: structured, vjp"):
        kernels.jacobian_change(_linear, {}, {}, jnp.ones((1, 3)), key=None, frobenius="dense")


def test_jacobian_difference_fn_has_jacobian_delta_j(x64, net):
    arch, x, p0, p1, j0, j1 = net
    h = kernels.jacobian_difference_fn(arch.apply_fn, p0, p1)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, p0)
    got = jax.jit(lambda z: kernels.jacobian(h, z, x))(zeros)
    # Two dense Jacobians vs the Jacobian of the difference: float64 round-off.
    np.testing.assert_allclose(got, j1 - j0, rtol=1e-12, atol=1e-14)


def test_gram_spectrum_matches_numpy_and_effective_rank_closed_forms(x64):
    a = jax.random.normal(jax.random.key(0), (6, 6))
    k = a @ a.T + 0.1 * jnp.eye(6)
    spectrum = jax.jit(kernels.gram_spectrum)
    spec = spectrum(k)
    eig = np.linalg.eigvalsh(np.asarray(k))
    np.testing.assert_allclose(spec.eigenvalues, eig, rtol=1e-10)  # same LAPACK problem
    np.testing.assert_allclose(spec.condition_number, eig[-1] / eig[0], rtol=1e-10)
    # Effective rank is n for a multiple of the identity and 1 for a rank-one matrix.
    np.testing.assert_allclose(spectrum(3 * jnp.eye(6)).effective_rank, 6.0)
    v = jnp.arange(1.0, 7.0)
    rank_one = spectrum(jnp.outer(v, v))
    np.testing.assert_allclose(rank_one.effective_rank, 1.0, rtol=1e-6)
    assert np.isinf(rank_one.condition_number)


def test_kernel_alignment_is_one_for_proportional_kernels_and_symmetric():
    a = jax.random.normal(jax.random.key(0), (5, 5))
    k1, k2 = a @ a.T, jnp.eye(5)
    np.testing.assert_allclose(kernels.kernel_alignment(k1, 2.5 * k1), 1.0, rtol=1e-6)  # f32
    np.testing.assert_allclose(
        kernels.kernel_alignment(k1, k2), kernels.kernel_alignment(k2, k1), rtol=1e-6
    )
    assert float(kernels.kernel_alignment(k1, k2)) < 1.0


@pytest.mark.slow
def test_jacobian_change_runs_matrix_free_at_a_million_parameters():
    arch = models.mlp(1000, 1, 10)
    x = jax.random.normal(jax.random.key(0), (32, 1000))
    p0 = arch.init_fn(jax.random.key(1), x.shape)[1]
    p1 = jax.tree_util.tree_map(lambda a: a * 1.01, p0)
    assert models.num_params(p0) > 1_000_000
    change = jax.jit(
        lambda a, b: kernels.jacobian_change(
            arch.apply_fn, a, b, x, key=jax.random.key(2), num_iters=10
        )
    )(p0, p1)
    assert 0 < float(change.frobenius_relative) < 0.1
