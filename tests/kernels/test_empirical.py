"""Empirical NTK: every algorithm against an explicit dense Jacobian, and width limits.

The dense-Jacobian reference of each architecture is computed once (module fixture) and
each algorithm is compiled once per architecture, both output conventions in one program.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import flax_models, kernels, models

NT_ALGORITHMS = ("structured", "jacobian", "ntvp")  # "auto": tests/kernels/test_nt_adapter.py


def _setup(arch, shape, n=4, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, *shape))
    return x, arch.init_fn(jax.random.key(seed + 1), (-1, *shape))[1]


def _both_traces(apply_fn, algorithm):
    """One jitted ``(x1, x2, params) -> (traced (n1, n2), full (n1, n2, k, k))``."""
    traced = kernels.empirical_ntk_fn(apply_fn, algorithm=algorithm, trace=True)
    full = kernels.empirical_ntk_fn(apply_fn, algorithm=algorithm, trace=False)
    return jax.jit(lambda x1, x2, p: (traced(x1, x2, p), full(x1, x2, p)))


# Three code paths of neural-tangents' rules: dense layers in standard parametrisation,
# a smooth activation (erf) in one hidden layer, and convolutions (NTK parametrisation).
ARCHS = {
    "mlp-standard": (lambda: models.mlp(16, 2, 3, parameterization="standard"), (5,)),
    "mlp-erf": (lambda: models.mlp(16, 1, 2, activation="erf"), (5,)),
    "cnn": (lambda: models.cnn(4, 2, 2), (5, 5, 2)),
}


@pytest.fixture(scope="module", params=list(ARCHS))
def dense(request):
    """An architecture, inputs ``x (4, ...)``, ``x2 (3, ...)``, params and its dense-Jacobian
    kernels ``(traced, full)`` in float64."""
    make, shape = ARCHS[request.param]
    with jax.enable_x64(True):
        arch = make()
        x, params = _setup(arch, shape)
        x2 = jax.random.normal(jax.random.key(7), (3, *shape))
        traced, full = _both_traces(arch.apply_fn, "reference")(x, x2, params)
        return arch, x, x2, params, np.asarray(traced), np.asarray(full)


def test_reference_trace_averages_the_diagonal_of_the_output_block(dense):
    *_, traced, full = dense
    k = full.shape[-1]
    # The same sums, once inside the contraction and once in numpy: float64 round-off.
    np.testing.assert_allclose(traced, np.einsum("ijaa->ij", full) / k, rtol=1e-12)


@pytest.mark.parametrize("algorithm", NT_ALGORITHMS)
def test_neural_tangents_algorithms_equal_dense_jacobian_reference_x64(x64, dense, algorithm):
    arch, x, x2, params, ref_traced, ref_full = dense
    traced, full = _both_traces(arch.apply_fn, algorithm)(x, x2, params)
    # Same bilinear form, different contraction order, float64: 1e-10 relative.
    np.testing.assert_allclose(traced, ref_traced, rtol=1e-10)
    np.testing.assert_allclose(full, ref_full, rtol=1e-10)


def test_algorithms_agree_in_float32_under_jit_and_compile_once():
    arch = models.mlp(64, 2, 3)
    x, params = _setup(arch, (8,), n=6)
    fns = {a: kernels.empirical_ntk_fn(arch.apply_fn, algorithm=a) for a in kernels.ALGORITHMS}
    fns.pop("auto")  # picks one of the three; checked against the reference in test_nt_adapter
    every = jax.jit(lambda x, p: {a: f(x, None, p) for a, f in fns.items()})
    got = every(x, params)
    for algorithm in NT_ALGORITHMS:
        # float32 sums of ~8k products of O(1) terms: ~1e-6 relative; 1e-4 leaves room
        # for the different contraction orders.
        np.testing.assert_allclose(got[algorithm], got["reference"], rtol=1e-4)
    for seed in (1, 2):  # new inputs and parameters, same shapes: no new compilation
        jax.block_until_ready(every(x + seed, _setup(arch, (8,), n=6, seed=seed)[1]))
    assert every._cache_size() == 1


def test_flax_apply_function_works_with_every_algorithm():
    net = flax_models.flax_mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (3, 4))
    variables = net.init(jax.random.key(1), x)
    fns = {a: kernels.empirical_ntk_fn(net.apply, algorithm=a) for a in NT_ALGORITHMS}
    fns["reference"] = kernels.empirical_ntk_fn(net.apply, algorithm="reference")
    got = jax.jit(lambda v: {a: f(x, None, v) for a, f in fns.items()})(variables)
    for algorithm in NT_ALGORITHMS:
        np.testing.assert_allclose(got[algorithm], got["reference"], rtol=1e-4)  # f32, as above


def test_ntk_vector_product_equals_dense_kernel_times_vector(x64):
    arch = models.mlp(16, 2, 3)
    x, params = _setup(arch, (5,))
    x2 = jax.random.normal(jax.random.key(9), (6, 5))
    v = jax.random.normal(jax.random.key(3), (6, 3))
    full = kernels.empirical_ntk_fn(arch.apply_fn, algorithm="reference", trace=False)
    dense = jnp.einsum("ijab,jb->ia", jax.jit(full)(x, x2, params), v)
    # One JVP after one VJP vs an explicit contraction, float64.
    vp = jax.jit(lambda v: kernels.ntk_vp_fn(arch.apply_fn, params, x, x2)(v))
    np.testing.assert_allclose(vp(v), dense, rtol=1e-10)


def test_unknown_algorithm_is_a_clear_error():
    with pytest.raises(ValueError, match="allowed: structured, jacobian, ntvp, auto, reference"):
        kernels.empirical_ntk_fn(lambda p, x: x, algorithm="fast")


def _relative_errors(widths, seeds, parameterization="ntk"):
    """Mean over seeds 0..seeds-1 of ‖Θ_emp − Θ_∞‖_F / ‖Θ_∞‖_F, one program per width."""
    x = jax.random.normal(jax.random.key(0), (8, 6))
    out = []
    for w in widths:
        arch = models.mlp(w, 2, 1, parameterization=parameterization)
        k_inf = arch.kernel_fn(x, None, "ntk")
        ntk = kernels.empirical_ntk_fn(arch.apply_fn)
        error = jax.jit(
            lambda key, arch=arch, ntk=ntk, k_inf=k_inf: (
                jnp.linalg.norm(ntk(x, None, arch.init_fn(key, x.shape)[1]) - k_inf)
                / jnp.linalg.norm(k_inf)
            )
        )
        out.append(np.mean([float(error(jax.random.key(s))) for s in range(seeds)]))
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
