"""MLP NTK factors: the kernel from cached per-layer factors against an explicit Jacobian."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import kernels, models


def _float64(tree):
    return jax.tree.map(lambda a: a.astype(jnp.float64), tree)


# Both parametrisations, depths 1-3, one and three outputs, each activation, no bias.
NETWORKS = [
    models.Network("mlp", 16, 1, parameterization="standard"),
    models.Network("mlp", 16, 2, out_dim=3, activation="erf"),
    models.Network("mlp", 8, 3, out_dim=3, parameterization="standard", activation="tanh"),
    models.Network("mlp", 12, 2, b_std=None),
]


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: f"{n.parameterization}-d{n.depth}")
def test_factor_kernel_equals_dense_jacobian_reference_x64(x64, network):
    arch = models.build(network)
    x1 = jax.random.normal(jax.random.key(1), (6, 5), jnp.float64)
    x2 = jax.random.normal(jax.random.key(2), (4, 5), jnp.float64)
    params = _float64(arch.init_fn(jax.random.key(0), (-1, 5))[1])
    reference = kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference")
    f1, f2 = (kernels.mlp_factors(network, params, x) for x in (x1, x2))
    want = reference(x1, x2, params)
    # float64 sums of a few hundred terms: the two orders agree to ~1e-15 relative.
    np.testing.assert_allclose(kernels.factor_kernel(f1, f2), want, rtol=1e-12, atol=1e-14)
    diagonal = np.diag(reference(x1, None, params))
    np.testing.assert_allclose(kernels.factor_kernel_diagonal(f1), diagonal, rtol=1e-12)


def test_factor_kernel_of_trained_parameters_equals_neural_tangents_structured():
    """Away from initialisation (perturbed parameters), against neural-tangents (float32)."""
    network = models.Network("mlp", 64, 1)
    arch = models.build(network)
    x = jax.random.normal(jax.random.key(3), (10, 7))
    params = arch.init_fn(jax.random.key(0), (-1, 7))[1]
    noise = jax.random.normal(jax.random.key(4), (len(jax.tree.leaves(params)),))
    params = jax.tree.map(
        lambda a, e: a + 0.3 * e * jnp.ones_like(a), params,
        jax.tree.unflatten(jax.tree.structure(params), list(noise)),
    )  # fmt: skip
    want = kernels.empirical_ntk_fn(arch.apply_fn)(x, None, params)
    f = kernels.mlp_factors(network, params, x)
    # float32 sums over 64 units in two different orders: ~1e-6 relative.
    np.testing.assert_allclose(kernels.factor_kernel(f, f), want, rtol=1e-5, atol=1e-5)


def test_factors_of_a_non_mlp_are_a_clear_error():
    network = models.Network("cnn", 4, 1)
    with pytest.raises(ValueError, match="need an mlp network"):
        kernels.mlp_factors(network, [], jnp.zeros((1, 4, 4, 1)))
