"""Architectures: one Network value, one builder; infinite-width kernels against closed forms."""

import dataclasses
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import models
from ntk_limits.kernels import empirical_ntk_fn


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
        np.fill_diagonal(theta, 0.0)  # x = x' exactly (arccos of a rounded 1 is not 0)
        np.fill_diagonal(cos, 1.0)
        e_phi = np.outer(d, d) / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * cos)
        e_dphi = (np.pi - theta) / (2 * np.pi)
        k = w_std**2 * e_phi + b_std**2
        ntk = k + w_std**2 * e_dphi * ntk
    return k, ntk


def _max_relative_error(kernel, ref) -> float:
    """Largest entry-wise error relative to the largest reference entry."""
    return float(np.max(np.abs(np.asarray(kernel, np.float64) - ref)) / np.max(np.abs(ref)))


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_relu_mlp_kernels_match_arccos_closed_form(x64, depth):
    x = jax.random.normal(jax.random.key(0), (7, 5))
    arch = models.mlp(8, depth, 1, W_std=1.3, b_std=0.2)
    nngp, ntk = arch.kernel_fn(x, None, ("nngp", "ntk"))
    ref_nngp, ref_ntk = _relu_arccos_kernels(x, depth, 1.3, 0.2)
    # Both sides exact closed forms in float64, diagonal included (measured 3e-15): 1e-12.
    assert _max_relative_error(nngp, ref_nngp) < 1e-12
    assert _max_relative_error(ntk, ref_ntk) < 1e-12


def _mnist_images(n: int) -> np.ndarray:
    from ntk_limits import data

    ds = data.load("mnist5k", split="train", n=n, seed=0)
    return np.asarray(ds.x, np.float32).reshape(n, -1)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("inputs", ["gaussian", "mnist"])
def test_relu_mlp_ntk_is_exact_in_float32_on_the_diagonal_too(depth, inputs):
    """float32 kernel_fn vs the float64 closed form on the same float32 inputs.

    Before the exact-diagonal layer the diagonal was off by 2e-4..6e-4 of the largest
    entry on these MNIST images (the cosine of x with itself rounded one ulp below 1).
    """
    if inputs == "gaussian":
        x = np.asarray(jax.random.normal(jax.random.key(0), (16, 20)), np.float32)
    else:
        x = _mnist_images(32)
    arch = models.mlp(8, depth, 1)
    nngp, ntk = jax.jit(lambda a: arch.kernel_fn(a, None, ("nngp", "ntk")))(x)
    assert nngp.dtype == jnp.float32
    ref_nngp, ref_ntk = _relu_arccos_kernels(x, depth, math.sqrt(2), 0.1)
    # float32 rounding of the 784-term input Gram (measured 6.6e-7 of the largest entry
    # on MNIST, 1.3e-7 on the Gaussian inputs) bounds the agreement: 1e-6.
    assert _max_relative_error(nngp, ref_nngp) < 1e-6
    assert _max_relative_error(ntk, ref_ntk) < 1e-6


def test_standard_parametrisation_float32_kernel_matches_its_float64_self():
    """No closed form is written here for SP; float64 neural-tangents is the reference."""
    x = _mnist_images(16)
    arch = models.mlp(64, 2, 1, parameterization="standard")
    ntk32 = arch.kernel_fn(x, None, "ntk")
    with jax.enable_x64(True):
        ntk64 = arch.kernel_fn(np.asarray(x, np.float64), None, "ntk")
    assert ntk64.dtype == jnp.float64
    # Same algorithm at two precisions: float32 input-Gram rounding as above, 1e-6.
    assert _max_relative_error(ntk32, np.asarray(ntk64)) < 1e-6


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


def test_wide_resnet_shapes_and_parameter_count_grow_with_k():
    x = jnp.zeros((2, 8, 8, 3))
    small, big = models.wide_resnet(10, 1, 10), models.wide_resnet(10, 2, 10)
    p1 = jax.eval_shape(lambda k: small.init_fn(k, x.shape)[1], jax.random.key(0))
    p2 = jax.eval_shape(lambda k: big.init_fn(k, x.shape)[1], jax.random.key(0))
    assert jax.eval_shape(small.apply_fn, p1, x).shape == (2, 10)
    # Conv weights dominate and scale with k²: between 3.5x and 4x more parameters.
    assert 3.5 < models.num_params(p2) / models.num_params(p1) <= 4.0


@pytest.mark.slow
def test_wide_resnet_nngp_matches_monte_carlo_of_finite_networks():
    """The residual FanInSum independence assumption holds: MC NNGP ≈ kernel_fn."""
    from ntk_limits.kernels import _nt

    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 3))
    arch = models.wide_resnet(10, 4, 1)
    mc_fn = _nt.monte_carlo_kernel_fn(arch.init_fn, arch.apply_fn, jax.random.key(1), 256)
    mc = mc_fn(x, None, "nngp")
    exact = arch.kernel_fn(x, None, "nngp")
    # 256 samples of width-64 nets: s.e. ~ K/sqrt(256) = 6%, finite-width bias ~ 1/64.
    np.testing.assert_allclose(mc, exact, rtol=0.25)


def test_wide_resnet_ntk_matches_the_mean_empirical_ntk_of_finite_networks():
    """stax's WRN NTK against the empirical NTK (our own code) averaged over 32 draws."""
    x = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))  # 4x4 -> 2x2 -> 1x1 in the groups
    k = 2
    arch = models.wide_resnet(10, k, 1)
    exact = np.asarray(jax.jit(lambda x: arch.kernel_fn(x, None, "ntk"))(x), np.float64)
    draw, ntk = models.init_sampler(arch, (-1, 4, 4, 1)), empirical_ntk_fn(arch.apply_fn)
    keys = jax.random.split(jax.random.key(1), 32)
    one = lambda key: ntk(x, None, draw(key))
    draws = np.asarray(jax.jit(lambda ks: jax.lax.map(one, ks, batch_size=16))(keys), np.float64)
    mean, se = draws.mean(0), draws.std(0, ddof=1) / np.sqrt(len(keys))
    # 4 Monte-Carlo standard errors per entry (a false alarm on any of the 6 distinct entries
    # has probability ~4e-4 under normality), plus the O(1/channels) finite-width bias of
    # E[K_emp] at the narrowest group's 16k channels; measured |z| <= 1.6. About 11 s.
    tol = 4 * se + np.abs(exact) / (16 * k)
    np.testing.assert_array_less(np.abs(mean - exact), tol)
    assert np.all(tol < 0.15 * np.sqrt(np.outer(np.diag(exact), np.diag(exact))))  # can fail


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


# --- one description, one builder -------------------------------------------------------

_TINY = [
    (models.Network("mlp", 8, 2, 1, W_std=1.3, b_std=0.2), (-1, 5)),
    (models.Network("cnn", 4, 2, 1, W_std=1.3, b_std=0.2), (-1, 6, 6, 2)),
    pytest.param(
        models.Network("wrn", 1, 10, 1), (-1, 8, 8, 1), marks=pytest.mark.slow
    ),  # ~10 s of init compiles
]


def test_network_fills_the_kind_defaults_and_is_a_cache_key():
    mlp, wrn = models.Network("mlp", 64, 2), models.Network("wrn", 2, 16)
    assert (mlp.W_std, mlp.b_std) == (math.sqrt(2.0), 0.1) and (wrn.W_std, wrn.b_std) == (1.0, 0.0)
    assert wrn.hidden_width == 32 and mlp.hidden_width == 64 and wrn.name == "wrn-16-2-ntk"
    assert hash(mlp) == hash(models.Network("mlp", 64, 2, 1, "ntk", "relu", math.sqrt(2.0), 0.1))
    arch = models.build(mlp)
    assert arch.network is mlp and arch.name == "mlp-d2-w64-relu-ntk" == mlp.name
    assert models.mlp(64, 2, 1).network == mlp  # the shortcut builds the same description


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(kind="rnn", width=4, depth=1), "unknown network kind 'rnn'; allowed: mlp, cnn, wrn"),
        (dict(kind="wrn_bn", width=1, depth=10), "allowed: standard"),
        (dict(kind="mlp", width=0, depth=1), "width must be a positive integer"),
        (dict(kind="mlp", width=4, depth=1, activation="gelu"), "allowed: relu, erf, tanh"),
        (dict(kind="wrn", width=1, depth=12), "WRN depth must be 6n+4"),
        (dict(kind="wrn", width=1, depth=10, activation="erf"), "allowed: relu"),
        (dict(kind="mlp", width=4, depth=1, parameterization="mup"), "allowed: ntk, standard"),
        (dict(kind="mlp", width=4, depth=1, W_std=0.0), "W_std must be > 0"),
        (dict(kind="mlp", width=4, depth=1, b_std=float("nan")), "b_std >= 0"),
    ],
)
def test_network_rejects_bad_descriptions_in_one_line(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        models.Network(**kwargs)
    assert "\n" not in str(info.value)


def test_fan_in_scales_of_dense_and_conv_layers():
    shapes = (
        (jax.ShapeDtypeStruct((3, 3, 2, 4), jnp.float32), jax.ShapeDtypeStruct((4,), jnp.float32)),
        (),
        [(jax.ShapeDtypeStruct((4, 1), jnp.float32), None)],
    )
    scales = models.fan_in_scales(shapes, 1.5, 0.2)
    # conv fan-in = filter size x input channels = 3*3*2; dense fan-in = 4; no bias stays None
    assert scales == ((1.5 / math.sqrt(18), 0.2), (), [(1.5 / 2.0, None)])


@pytest.mark.parametrize(("network", "shape"), _TINY, ids=["mlp", "cnn", "wrn"])
def test_fan_in_scales_turn_ntk_init_into_standard_init_exactly(network, shape):
    key = jax.random.key(3, impl="unsafe_rbg")  # compiles fastest; both inits share the key
    ntk = models.build(network)
    sp = models.build(dataclasses.replace(network, parameterization="standard"))
    ntk_leaves = jax.tree_util.tree_leaves(ntk.init_fn(key, shape)[1])
    sp_params = sp.init_fn(key, shape)[1]
    scales = jax.tree_util.tree_leaves(
        models.fan_in_scales(sp_params, network.W_std, network.b_std)
    )
    for c, a, b in zip(scales, ntk_leaves, jax.tree_util.tree_leaves(sp_params), strict=True):
        # stax draws the same normals for both parametrizations and multiplies by one float
        np.testing.assert_allclose(c * np.asarray(a), np.asarray(b), rtol=1e-6, atol=0)


@pytest.mark.parametrize("parameterization", ["standard", "ntk"])
def test_init_sampler_matches_the_init_distribution(parameterization):
    arch = models.mlp(64, 1, 1, parameterization=parameterization, W_std=1.5, b_std=0.3)
    params = jax.jit(models.init_sampler(arch, (-1, 200)))(jax.random.key(0))
    ref = jax.eval_shape(lambda k: arch.init_fn(k, (-1, 200))[1], jax.random.key(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref)
    expected = [1.5 / np.sqrt(200), 0.3, 1.5 / np.sqrt(64), 0.3]
    if parameterization == "ntk":
        expected = [1.0] * 4  # NTK parametrization: standard normal parameters
    for leaf, sd in zip(jax.tree_util.tree_leaves(params), expected, strict=True):
        n = leaf.size
        # sample sd of n normals has standard error sd/sqrt(2n); allow 5 of them (+ n=1 bias)
        tol = 5 / np.sqrt(2 * n) if n > 1 else 4.0
        assert abs(np.sqrt(np.mean(np.square(leaf))) / sd - 1) < tol


def test_batchnorm_wrn_is_the_flax_network_in_training_mode_and_its_gram_is_the_batch_jacobians():
    from ntk_limits import flax_models
    from ntk_limits.optimization import full_gram

    arch = models.build(models.Network("wrn_bn", 1, 10, 3, parameterization="standard"))
    assert arch.kernel_fn is None and arch.name == "wrn-bn-10-1"
    x = jax.random.normal(jax.random.key(0), (4, 8, 8, 2))
    _, params = arch.init_fn(jax.random.key(1), (-1, 8, 8, 2))
    module = flax_models.flax_wide_resnet(10, 1, 3)
    variables = module.init(jax.random.key(1), x)
    f, _ = module.apply(variables, x, train=True, mutable=["batch_stats"])
    np.testing.assert_array_equal(arch.apply_fn(params, x), f)  # same parameters, same map
    # Batch statistics couple the examples: one example alone gives another output.
    assert not np.allclose(arch.apply_fn(params, x[:1]), f[:1], atol=1e-3)
    # The Gram is J Jᵀ of the whole batch's outputs; reference: an explicit jax.jacrev
    # Jacobian of the flattened batch function (independent of neural-tangents).
    jac = jax.jacrev(lambda p: arch.apply_fn(p, x).reshape(-1))(params)
    j = jnp.concatenate([a.reshape(12, -1) for a in jax.tree_util.tree_leaves(jac)], axis=1)
    for algorithm in ("structured", "jacobian", "ntvp"):
        gram = full_gram(arch.apply_fn, params, x, algorithm=algorithm)
        # float32 sums over ~1e5 parameters: a few 1e-7 of the largest entry.
        np.testing.assert_allclose(gram, j @ j.T, atol=2e-6 * float(jnp.abs(j @ j.T).max()))
