"""Architectures: infinite-width kernels against closed forms, flax twins against stax."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import flax_models, models


def _relu_arccos_kernels(x, depth, w_std, b_std):
    """Arc-cosine NNGP/NTK of a ReLU MLP (Cho & Saul 2009; Jacot et al. 2018), in numpy.

    Written independently of neural-tangents: the NTK-parametrised recursion
    K⁰ = σw² x·x'/d + σb², K^{l+1} = σw² E[φ(u)φ(v)] + σb²,
    Θ^{l+1} = K^{l+1} + σw² E[φ'(u)φ'(v)] Θ^l, for `depth` hidden layers + readout.
    """
    x = np.asarray(x, np.float64)
    k = w_std**2 * x @ x.T / x.shape[1] + b_std**2
    ntk = k.copy()
    for _ in range(depth):
        d = np.sqrt(np.diag(k))
        cos = np.clip(k / np.outer(d, d), -1.0, 1.0)
        theta = np.arccos(cos)
        e_phi = np.outer(d, d) / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)
        e_dphi = (np.pi - theta) / (2 * np.pi)
        k = w_std**2 * e_phi + b_std**2
        ntk = k + w_std**2 * e_dphi * ntk
    return k, ntk


@pytest.mark.parametrize("depth", [1, 3])
def test_relu_mlp_kernels_match_arccos_closed_form(x64, depth):
    x = jax.random.normal(jax.random.key(0), (7, 5))
    arch = models.mlp(8, depth, 1, W_std=1.3, b_std=0.2)
    nngp, ntk = arch.kernel_fn(x, None, ("nngp", "ntk"))
    ref_nngp, ref_ntk = _relu_arccos_kernels(x, depth, 1.3, 0.2)
    # Exact closed forms in float64; neural-tangents guards arccos/sqrt with tiny
    # epsilons that compound over layers (measured 6e-9 relative at depth 3): 1e-7.
    np.testing.assert_allclose(nngp, ref_nngp, rtol=1e-7)
    np.testing.assert_allclose(ntk, ref_ntk, rtol=1e-7)


def test_erf_nngp_matches_williams_closed_form(x64):
    x = jax.random.normal(jax.random.key(1), (6, 4))
    arch = models.mlp(8, 1, 1, activation="erf", W_std=1.0, b_std=0.0)
    nngp = arch.kernel_fn(x, None, "nngp")
    k0 = np.asarray(x @ x.T / 4)
    d = 1 + 2 * np.diag(k0)
    ref = 2 / np.pi * np.arcsin(2 * k0 / np.sqrt(np.outer(d, d)))  # Williams (1997)
    # Exact closed form in float64 on both sides: rounding-level agreement.
    np.testing.assert_allclose(nngp, ref, rtol=1e-10)


def test_tanh_kernel_matches_monte_carlo_of_finite_networks():
    """Quadrature tanh NNGP vs the sample covariance of 2000 random finite-width nets."""
    x = jax.random.normal(jax.random.key(2), (4, 3))
    arch = models.mlp(512, 1, 1, activation="tanh", W_std=1.5, b_std=0.1)
    nngp = arch.kernel_fn(x, None, "nngp")
    keys = jax.random.split(jax.random.key(3), 2000)
    outs = jax.vmap(lambda k: arch.apply_fn(arch.init_fn(k, x.shape)[1], x)[:, 0])(keys)
    mc = outs.T @ outs / outs.shape[0]
    # MC standard error of a covariance entry ~ K/sqrt(2000) ≈ 0.02K, width-512 bias
    # O(1/512); 0.1 absolute on entries of size ~1 is > 4 standard errors.
    np.testing.assert_allclose(mc, nngp, atol=0.1)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_flax_mlp_twin_gives_identical_outputs(parameterization, activation):
    x = jax.random.normal(jax.random.key(0), (5, 6))
    arch = models.mlp(32, 2, 3, activation=activation, parameterization=parameterization)
    _, params = arch.init_fn(jax.random.key(1), x.shape)
    twin = flax_models.flax_mlp(32, 2, 3, activation=activation, parameterization=parameterization)
    ours = twin.apply(flax_models.params_from_stax(params), x)
    # Same float32 operations in a different order: a few ulps of outputs of size ~1.
    np.testing.assert_allclose(ours, arch.apply_fn(params, x), atol=1e-5)


def test_flax_cnn_twin_gives_identical_outputs():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 2))
    arch = models.cnn(16, 2, 4, parameterization="standard")
    _, params = arch.init_fn(jax.random.key(1), x.shape)
    twin = flax_models.flax_cnn(16, 2, 4, parameterization="standard")
    # float32 convolutions summed in a different order: a few ulps.
    np.testing.assert_allclose(
        twin.apply(flax_models.params_from_stax(params), x), arch.apply_fn(params, x), atol=1e-5
    )


def test_flax_twin_initialisation_has_the_stax_distribution():
    twin = flax_models.flax_mlp(256, 1, 1, parameterization="standard", W_std=2.0, b_std=0.5)
    v = twin.init(jax.random.key(0), jnp.zeros((1, 100)))["params"]
    # 25600 N(0, 4/100) samples: std estimate within 1% (≈ 4.5 standard errors).
    assert abs(float(jnp.std(v["_Linear_0"]["W"])) - 0.2) < 0.002
    assert abs(float(jnp.std(v["_Linear_0"]["b"])) - 0.5) < 0.1  # 256 samples: ±4.5 s.e.


def test_practical_wide_resnet_trains_mode_and_eval_mode():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    net = flax_models.flax_wide_resnet(10, 1, 5)
    variables = net.init(jax.random.key(1), x, train=True)
    out, state = net.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (2, 5) and "batch_stats" in state
    assert net.apply(variables, x).shape == (2, 5)


def test_wide_resnet_shapes_and_parameter_count_grow_with_k():
    x = jnp.zeros((2, 8, 8, 3))
    small, big = models.wide_resnet(10, 1, 10), models.wide_resnet(10, 2, 10)
    p1 = jax.eval_shape(lambda k: small.init_fn(k, x.shape)[1], jax.random.key(0))
    p2 = jax.eval_shape(lambda k: big.init_fn(k, x.shape)[1], jax.random.key(0))
    assert jax.eval_shape(small.apply_fn, p1, x).shape == (2, 10)
    # Conv weights dominate and scale with k²: between 3.5x and 4x more parameters.
    assert 3.5 < models.num_params(p2) / models.num_params(p1) <= 4.0


@pytest.mark.slow
def test_wide_resnet_ntk_matches_monte_carlo_of_finite_networks():
    """The residual FanInSum independence assumption holds: MC NNGP ≈ kernel_fn."""
    from ntk_limits.kernels import _nt

    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 3))
    arch = models.wide_resnet(10, 4, 1)
    mc_fn = _nt.monte_carlo_kernel_fn(arch.init_fn, arch.apply_fn, jax.random.key(1), 256)
    mc = mc_fn(x, None, "nngp")
    exact = arch.kernel_fn(x, None, "nngp")
    # 256 samples of width-64 nets: s.e. ~ K/sqrt(256) = 6%, finite-width bias ~ 1/64.
    np.testing.assert_allclose(mc, exact, rtol=0.25)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: models.mlp(0), "width must be a positive integer"),
        (lambda: models.mlp(8, activation="gelu"), "allowed: relu, erf, tanh"),
        (lambda: models.cnn(8, parameterization="mup"), "allowed: ntk, standard"),
        (lambda: models.wide_resnet(12), r"6n\+4"),
    ],
)
def test_bad_architecture_arguments_raise_one_clear_error(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_num_params_counts_scalars():
    arch = models.mlp(10, 1, 2)
    params = arch.init_fn(jax.random.key(0), (-1, 3))[1]
    assert models.num_params(params) == 3 * 10 + 10 + 10 * 2 + 2
    assert math.isclose(models.num_params({"a": jnp.zeros((2, 3))}), 6)
