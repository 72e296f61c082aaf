"""Kernel-regime predictions against neural-tangents, explicit iteration and wide nets."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import linearize, models, training
from ntk_limits.kernels import _nt


def _problem(n=8, m=5, d=3, k=2):
    keys = jax.random.split(jax.random.key(0), 5)
    x, xt = jax.random.normal(keys[0], (n, d)), jax.random.normal(keys[1], (m, d))
    y = jax.random.normal(keys[2], (n, k))
    f0, ft0 = 0.3 * jax.random.normal(keys[3], (n, k)), 0.3 * jax.random.normal(keys[4], (m, k))
    return x, xt, y, f0, ft0


@pytest.fixture(scope="module")
def problem():
    """``_problem()``, ``mlp(8, 2, 2)`` and its infinite-width kernels, computed once (float64).

    Returns ``(x, xt, y, f0, ft0, arch, k)`` with ``k["dd"]``, ``k["td"]`` the (NTK, NNGP)
    pairs on train×train and test×train, and ``k["tt"]`` the test NNGP.
    """
    with jax.enable_x64(True):
        x, xt, y, f0, ft0 = _problem()
        arch = models.mlp(8, 2, 2)
        k = jax.jit(
            lambda x, xt: {
                "dd": arch.kernel_fn(x, None, ("ntk", "nngp")),
                "td": arch.kernel_fn(xt, x, ("ntk", "nngp")),
                "tt": arch.kernel_fn(xt, None, "nngp"),
            }
        )(x, xt)
        return x, xt, y, f0, ft0, arch, k


@pytest.mark.parametrize("t", [0.5, 10.0, np.inf])
def test_gradient_flow_prediction_equals_neural_tangents_predict(x64, problem, t):
    _, _, y, f0, ft0, _, k = problem
    k_dd, k_td = k["dd"][0], k["td"][0]
    ours = linearize.gradient_descent_mse(k_dd, y, 0.7)(t, f0, ft0, k_td)
    ref = _nt.predict.gradient_descent_mse(k_dd, y, 0.7)(t, f0, ft0, k_td)
    for a, b in zip(ours, ref, strict=True):
        # Eigenbasis (ours) vs neural-tangents' own solver, float64: 1e-10.
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("t", [3.0, np.inf])
def test_ntk_gp_ensemble_equals_neural_tangents_ensemble(x64, problem, t):
    x, xt, y, _, _, arch, k = problem
    (nd, kd), (nt_, kt) = k["dd"], k["td"]
    mean, cov = linearize.ntk_gp_ensemble(nd, nt_, kd, kt, k["tt"], y, t=t, learning_rate=0.5)
    # Eager on purpose: under jit neural-tangents' t = inf mean is 2e-8 off numpy's
    # k_td K_dd⁻¹ y (eager: 1e-14), too coarse a reference for 1e-8.
    ref = _nt.predict.gradient_descent_mse_ensemble(arch.kernel_fn, x, y, learning_rate=0.5)(
        t=t, x_test=xt, get="ntk", compute_cov=True
    )
    # Lee et al. eq. (16) written out vs neural-tangents' implementation, float64.
    np.testing.assert_allclose(mean, ref.mean, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(cov, ref.covariance, rtol=1e-8, atol=1e-12)


def test_discrete_prediction_equals_explicit_gradient_descent_on_a_linear_model(x64):
    x, xt, y, _, _ = _problem(n=10, d=4)
    apply_fn = lambda w, x: x @ w  # linear: the kernel regime is exact, Θ = x xᵀ
    w0 = 0.1 * jax.random.normal(jax.random.key(5), (4, 2))
    steps, lr = 25, 0.9
    train = training.make_train(apply_fn, optax.sgd(lr), steps)
    w, _ = train(w0, x, y, jax.random.key(0))
    pred = linearize.gradient_descent_mse(x @ x.T, y, lr, discrete=True)
    train_out, test_out = pred(steps, x @ w0, xt @ w0, xt @ x.T)
    # Exactly the same linear recursion in float64: rounding only.
    np.testing.assert_allclose(train_out, x @ w, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(test_out, xt @ w, rtol=1e-9, atol=1e-12)


def test_linearize_equals_neural_tangents_linearize(x64):
    arch = models.mlp(16, 2, 3)
    x = jax.random.normal(jax.random.key(0), (4, 5))
    p0 = arch.init_fn(jax.random.key(1), x.shape)[1]
    p1 = jax.tree_util.tree_map(lambda a: a + 0.1, p0)
    ours, ref = jax.jit(
        lambda p: (
            linearize.linearize(arch.apply_fn, p0)(p, x),
            _nt.linearize(arch.apply_fn, p0)(p, x),
        )
    )(p1)
    np.testing.assert_allclose(ours, ref, rtol=1e-12)  # the same JVP, float64
    assert not np.allclose(ours, arch.apply_fn(p1, x), rtol=1e-3)  # nonlinear net differs


def test_gp_regression_equals_explicit_solve(x64):
    a = jax.random.normal(jax.random.key(0), (9, 9))
    k = a @ a.T
    y = jax.random.normal(jax.random.key(1), (6, 2))
    mean, cov = linearize.gp_regression(k[:6, :6], k[6:, :6], k[6:, 6:], y, 0.1)
    inv = np.linalg.inv(np.asarray(k[:6, :6]) + 0.1 * np.eye(6))
    # Cholesky vs explicit inverse of a well-conditioned (noise 0.1) matrix, float64.
    np.testing.assert_allclose(mean, k[6:, :6] @ inv @ y, rtol=1e-8)
    np.testing.assert_allclose(cov, k[6:, 6:] - k[6:, :6] @ inv @ k[:6, 6:], rtol=1e-8, atol=1e-10)


def _trained_vs_kernel_gaps(width, x, xt, y, seeds=3, steps=200, lr=1.0):
    """Test-output RMS gap between GD-trained nets (seeds 0..seeds-1) and the kernel regime.

    One compiled program per width (init, training, kernels, prediction), run per seed.
    """
    arch = models.mlp(width, 1, 1)
    train = training.make_train(arch.apply_fn, optax.sgd(lr), steps)

    @jax.jit
    def gap(key):
        p0 = arch.init_fn(key, x.shape)[1]
        params, _ = train(p0, x, y, jax.random.key(0))
        k_dd, k_td = arch.kernel_fn(x, None, "ntk"), arch.kernel_fn(xt, x, "ntk")
        predict = linearize.gradient_descent_mse(k_dd, y, lr, discrete=True)
        _, test_pred = predict(steps, arch.apply_fn(p0, x), arch.apply_fn(p0, xt), k_td)
        return jnp.sqrt(jnp.mean((arch.apply_fn(params, xt) - test_pred) ** 2))

    return [float(gap(jax.random.key(s))) for s in range(seeds)]


def test_gd_trained_wide_networks_approach_the_infinite_width_prediction():
    x = jax.random.normal(jax.random.key(0), (16, 3))
    xt = jax.random.normal(jax.random.key(1), (8, 3))
    y = jnp.sin(x[:, :1] * 2.0)
    widths = np.array([128, 1024, 8192])
    errs = np.array([np.mean(_trained_vs_kernel_gaps(w, x, xt, y)) for w in widths])
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    # The trained net differs from the kernel prediction through O(width^-1/2) kernel
    # fluctuations; 3 seeds over a 64x range pin the slope to about ±0.15, so < -0.3 is
    # a clear trend and monotone decrease must hold.
    assert slope < -0.3 and np.all(np.diff(errs) < 0), (slope, errs)
