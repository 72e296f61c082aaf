"""Empirical NTK: every algorithm against an explicit dense Jacobian, and width limits."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import kernels, models


def _setup(arch, shape, n=4, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, *shape))
    return x, arch.init_fn(jax.random.key(seed + 1), (-1, *shape))[1]


ARCHS = [
    (lambda: models.mlp(16, 2, 3, parameterization="standard"), (5,)),
    (lambda: models.mlp(16, 1, 2, activation="erf"), (5,)),
    (lambda: models.cnn(4, 2, 2), (5, 5, 2)),
]


@pytest.mark.parametrize("algorithm", ["structured", "jacobian", "ntvp"])
@pytest.mark.parametrize("make, shape", ARCHS)
def test_neural_tangents_algorithms_equal_dense_jacobian_reference_x64(x64, algorithm, make, shape):
    arch = make()
    x, params = _setup(arch, shape)
    x2 = jax.random.normal(jax.random.key(7), (3, *shape))
    for trace in (True, False):
        ref = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference", trace=trace))
        ntk = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm=algorithm, trace=trace))
        # Same bilinear form, different contraction order, float64: 1e-10 relative.
        np.testing.assert_allclose(ntk(x, x2, params), ref(x, x2, params), rtol=1e-10)


def test_algorithms_agree_in_float32_under_jit():
    arch = models.mlp(64, 2, 3)
    x, params = _setup(arch, (8,), n=6)
    ref = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference"))(x, None, params)
    for algorithm in ("structured", "jacobian", "ntvp", "auto"):
        ntk = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn, algorithm=algorithm))
        # float32 sums of ~8k products of O(1) terms: ~1e-6 relative; 1e-4 leaves room
        # for the different contraction orders.
        np.testing.assert_allclose(ntk(x, None, params), ref, rtol=1e-4)


def test_flax_apply_function_works_with_every_algorithm():
    from ntk_limits import flax_models

    net = flax_models.flax_mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    variables = net.init(jax.random.key(1), x)
    ref = jax.jit(kernels.empirical_ntk_fn(net.apply, algorithm="reference"))(x, None, variables)
    for algorithm in ("structured", "jacobian", "ntvp"):
        ntk = jax.jit(kernels.empirical_ntk_fn(net.apply, algorithm=algorithm))(x, None, variables)
        np.testing.assert_allclose(ntk, ref, rtol=1e-4)  # float32, as above


def test_ntk_vector_product_equals_dense_kernel_times_vector(x64):
    arch = models.mlp(16, 2, 3)
    x, params = _setup(arch, (5,))
    x2 = jax.random.normal(jax.random.key(9), (6, 5))
    v = jax.random.normal(jax.random.key(3), (6, 3))
    full = kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference", trace=False)
    dense = jnp.einsum("ijab,jb->ia", full(x, x2, params), v)
    # One JVP after one VJP vs an explicit contraction, float64.
    vp = jax.jit(lambda v: kernels.ntk_vp_fn(arch.apply_fn, params, x, x2)(v))
    np.testing.assert_allclose(vp(v), dense, rtol=1e-10)


def test_blocked_kernel_equals_unblocked_for_empirical_and_infinite():
    arch = models.mlp(32, 1, 2)
    x, params = _setup(arch, (4,), n=7)
    ntk = kernels.empirical_ntk_fn(arch.apply_fn)
    blocked = kernels.blocked_kernel_fn(ntk, block=3)
    # Identical float32 computations tile by tile: equal to rounding.
    np.testing.assert_allclose(blocked(x, None, params), ntk(x, None, params), rtol=1e-5)
    inf = kernels.blocked_kernel_fn(arch.kernel_fn, block=2)
    # arccos near cos = 1 amplifies float32 rounding on the diagonal (measured 3e-5).
    np.testing.assert_allclose(inf(x, x[:5], "ntk"), arch.kernel_fn(x, x[:5], "ntk"), rtol=1e-4)


def test_blocked_kernel_refuses_before_compute_with_the_estimate():
    arch = models.mlp(32, 1, 2)
    blocked = kernels.blocked_kernel_fn(arch.kernel_fn, block=100, max_bytes=2**20)
    x = jnp.zeros((1000, 3))
    with pytest.raises(kernels.KernelTooLarge, match=r"1000x1000 inputs needs 0\.00 GiB.*budget"):
        blocked(x, None, "ntk")
    result, tile = kernels.kernel_memory_bytes(1000, 1000, outputs=1, num_params=10, block=100)
    assert result == 4_000_000 and tile == 200 * 10 * 4 + 100 * 100 * 4


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: structured, jacobian, ntvp, auto, reference"):
        kernels.empirical_ntk_fn(lambda p, x: x, algorithm="fast")


def _relative_errors(widths, seeds, parameterization="ntk"):
    x = jax.random.normal(jax.random.key(0), (8, 6))
    out = []
    for w in widths:
        arch = models.mlp(w, 2, 1, parameterization=parameterization)
        k_inf = arch.kernel_fn(x, None, "ntk")
        ntk = jax.jit(kernels.empirical_ntk_fn(arch.apply_fn))
        errs = [
            float(
                jnp.linalg.norm(ntk(x, None, arch.init_fn(jax.random.key(s), x.shape)[1]) - k_inf)
                / jnp.linalg.norm(k_inf)
            )
            for s in range(seeds)
        ]
        out.append(np.mean(errs))
    return np.array(out)


def test_empirical_ntk_approaches_infinite_ntk_like_width_to_minus_half():
    widths = np.array([64, 256, 1024])
    errs = _relative_errors(widths, seeds=4)
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    # Fluctuations of a sum of `width` i.i.d. terms: slope -1/2. With 4 seeds per width the
    # mean error has ~±15% spread, which moves a slope fitted over a 16x range by < ±0.15;
    # [-0.8, -0.3] is that band with margin for the O(1/width) bias.
    assert -0.8 < slope < -0.3, (slope, errs)
    assert errs[-1] < errs[0]
