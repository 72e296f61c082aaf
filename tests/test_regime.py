"""regime.diagnose against closed forms, dense Jacobians and the two regimes of theory.

References: a linear model (its NTK is ``x xᵀ ⊗ I_k``, constant, so every change is 0
and trained outputs equal the kernel-regime closed forms), dense Jacobians
(``kernels.jacobian``) for ``C′``, the kernel change and the spectrum, and an explicit
iteration of the kernel-regime NGD recursion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models, regime


def toy_data(n, d, k=1, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, d))
    x_test = jax.random.normal(jax.random.key(seed + 1), (4, d))
    y = jnp.sin(x[:, :k])
    return x, y, x_test


def linear_model(d, k, seed=0):
    w = jax.random.normal(jax.random.key(seed), (d, k)) / jnp.sqrt(d)
    apply_fn = lambda p, x: x @ p["w"]
    kernel_fn = lambda a, b, _: a @ (a if b is None else b).T
    return apply_fn, {"w": w}, kernel_fn


def dense_gram(apply_fn, params, x):
    j = jax.jit(kernels.jacobian, static_argnums=0)(apply_fn, params, x)  # one program
    j = np.asarray(j, np.float64)
    j = j.reshape(-1, j.shape[-1])  # (n·k, P)
    return j @ j.T, j


# -------------------------------------------------------------------- the two regimes


def test_wide_ntk_mlp_with_a_small_step_is_in_the_kernel_regime():
    # Width 4096 in NTK parametrisation, 8 nearly orthogonal inputs (d = 64): λ_min(K₀) is
    # O(1) and ‖ΔJ‖₂ = O(‖Δθ‖/√width), so C′ stays below 1/2 (measured 0.35) while GD
    # fits the data (loss 0.84 → 1e-8). Thresholds: the defaults (C′ < 1/2 from theory,
    # kernel change and linearisation error < 10 %).
    x, y, x_test = toy_data(8, 64)
    arch = models.mlp(width=4096, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 64))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(1.0, 20), x_test=x_test)
    assert d.verdict == "kernel regime", d.summary
    assert all(d.checks.values())
    assert d.losses[-1] < 1e-3 * d.losses[0]  # it did train
    assert np.all(d.c_prime < 0.5) and np.all(d.inside_radius)
    assert d.summary.startswith("kernel regime: full rank")


def test_narrow_deep_mlp_with_a_large_step_is_outside_the_kernel_regime():
    # Width 16, depth 6, η = 0.5: the kernel moves by most of its norm (measured 93 %) and
    # C′ reaches ~50 inside the radius; the verdict must not call it kernel regime.
    x, y, x_test = toy_data(16, 8)
    arch = models.mlp(width=16, depth=6, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 8))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(0.5, 100), x_test=x_test)
    assert d.verdict == "outside the kernel regime", d.summary
    assert d.checks["stable_jacobian"] is False and d.checks["lazy_kernel"] is False
    assert d.kernel_change[-1] > 0.1 and np.max(d.c_prime[d.inside_radius]) >= 0.5


# ----------------------------------------------------------- a linear model: exact answers


@pytest.mark.parametrize(
    "train", [regime.gd(0.5, 30), regime.gd(None, 30), regime.ngd(0.5, 6, damping=1e-3)]
)
def test_linear_model_matches_every_closed_form(train):
    # f = x W is its own linearisation: J is constant, so C′, the kernel change and the
    # linearisation error are 0 up to float32 round-off of equal numbers (< 1e-5), and
    # training equals the kernel-regime closed form with Θ = x xᵀ (float32 training:
    # relative gap < 1e-4).
    x, y, x_test = toy_data(6, 12, k=2)
    apply_fn, params, kernel_fn = linear_model(12, 2)
    d = regime.diagnose(apply_fn, params, x, y, train=train, x_test=x_test, kernel_fn=kernel_fn)
    assert d.verdict == "kernel regime", d.summary
    np.testing.assert_allclose(d.c_prime, 0.0, atol=1e-5)
    np.testing.assert_allclose(d.kernel_change, 0.0, atol=1e-5)
    np.testing.assert_allclose(d.linearization_error, 0.0, atol=1e-4)
    assert d.infinite_kernel_distance < 1e-12  # both float64, the same matrix
    assert d.infinite_prediction_gap < 1e-4
    # Spectrum: x xᵀ's eigenvalues, each k times (float64 against numpy: 1e-10).
    lam = np.linalg.eigvalsh(np.asarray(x, np.float64) @ np.asarray(x, np.float64).T)
    np.testing.assert_allclose(d.eigenvalues, np.repeat(lam, 2), rtol=1e-10)


def test_rank_deficient_gram_is_zero_by_rank_and_fails():
    # P = d·k = 4 parameters for n·k = 6 outputs: λ_min(K₀) = 0 exactly, not round-off.
    x, y, _ = toy_data(6, 4)
    apply_fn, params, _ = linear_model(4, 1)
    d = regime.diagnose(apply_fn, params, x, y, train=regime.gd(0.5, 5))
    assert d.checks["full_rank"] is False and d.lambda_min_resolved
    assert d.verdict == "outside the kernel regime"
    assert "rank-deficient" in d.summary and d.evaluated_on == "training inputs"


def test_ngd_kernel_prediction_equals_the_explicit_recursion(x64):
    # Θ-regime NGD step by step in float64 numpy; the closed form sums the series (1e-10).
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    theta = a @ a.T + 1e-3 * np.eye(5)
    theta_te = rng.normal(size=(3, 5))
    y, f, f_te = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.normal(size=(3, 2))
    lr, eps, steps = 0.7, 0.05, 9
    predict = regime.ngd_kernel_prediction(jnp.asarray(theta), jnp.asarray(y), lr, eps)
    got_train, got_test = predict(steps, jnp.asarray(f), jnp.asarray(f_te), jnp.asarray(theta_te))
    solve = np.linalg.inv(theta + eps * np.eye(5))
    for _ in range(steps):
        step = lr * solve @ (f - y)
        f, f_te = f - theta @ step, f_te - theta_te @ step
    np.testing.assert_allclose(got_train, f, rtol=1e-10)
    np.testing.assert_allclose(got_test, f_te, rtol=1e-10)


# ------------------------------------------------------------ dense-Jacobian references


def test_c_prime_kernel_change_and_spectrum_match_dense_jacobians():
    # n·k = 12 rows ≤ 20 Lanczos steps: Lanczos is exact, so C′ matches the dense ‖ΔJ‖₂
    # to float32 round-off of the Jacobians (1e-4 relative); the float64 spectrum matches
    # numpy on the float64 dense Gram (1e-9: different summation orders).
    x, y, _ = toy_data(6, 5, k=2)
    arch = models.mlp(width=24, depth=2, out_dim=2)
    _, params = arch.init_fn(jax.random.key(3), (-1, 5))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(1.0, 40))
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        g0, _ = dense_gram(arch.apply_fn, p64, jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(d.eigenvalues, np.linalg.eigvalsh(g0), rtol=1e-9, atol=1e-12)
    g0_32, j0 = dense_gram(arch.apply_fn, params, x)
    gt, jt = dense_gram(arch.apply_fn, d.final_params, x)
    dj = np.linalg.norm(jt - j0, 2)
    np.testing.assert_allclose(d.c_prime[-1], 3 * dj / np.sqrt(d.lambda_min), rtol=1e-4)
    change = np.linalg.norm(gt - g0_32) / np.linalg.norm(g0_32)
    np.testing.assert_allclose(d.kernel_change[-1], change, rtol=1e-4)
    np.testing.assert_allclose(d.jacobian_change[-1], dj / np.sqrt(d.lambda_max), rtol=1e-4)


def test_optax_training_runs_and_has_no_closed_form_prediction():
    x, y, x_test = toy_data(6, 5)
    arch = models.mlp(width=32, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    train = regime.optax_training(optax.adam(1e-2), 10)
    d = regime.diagnose(arch.apply_fn, params, x, y, train=train, x_test=x_test,
                        kernel_fn=arch.kernel_fn)  # fmt: skip
    assert d.infinite_prediction_gap is None and d.infinite_kernel_distance > 0
    assert d.losses[-1] < d.losses[0]
    assert "not part of the verdict" in d.summary
