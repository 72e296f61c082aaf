"""NGD, first-order trajectories, the NGD conditions and their kernel-regime predictions.

References are independent: explicit dense Jacobians (``ntk_limits.kernels.jacobian``),
numpy linear algebra, closed forms for linear models, and the foundation's matrix-free
``jacobian_change``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from ntk_limits import kernels, models
from ntk_limits.linearize import gradient_descent_mse
from ntk_limits.ngd_conditions import (
    c_prime,
    jacobian_difference_gram,
    jacobian_stability,
    ngd_mse_prediction,
    predicted_loss_curve,
    steps_to_threshold,
    top_eigenvalue,
)
from ntk_limits.optimization import (
    first_order,
    full_gram,
    make_trajectory_fn,
    ngd,
    ngd_direction,
)
from ntk_limits.training import mse_loss


def linear(params, x):
    return x @ params["w"]


def _linear_problem(n=4, d=7, k=3, seed=0):
    kx, kw, ky = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, d))
    return x, {"w": jax.random.normal(kw, (d, k))}, jax.random.normal(ky, (n, k))


def _tiny_net(width=6, n=5, d=3, k=2, seed=0):
    arch = models.mlp(width, depth=1, out_dim=k, activation="tanh")
    kx, ki, ky = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, d))
    _, params = arch.init_fn(ki, (-1, d))
    return arch.apply_fn, params, x, jax.random.normal(ky, (n, k))


def _dense_j(apply_fn, params, x):
    j = kernels.jacobian(apply_fn, params, x)
    return np.asarray(j).reshape(-1, j.shape[-1])


def _perturbed(params, scale=0.3):
    return jax.tree_util.tree_map(lambda a: a + scale * jnp.sin(3.0 * a + 1.0), params)


def test_ngd_on_linear_model_reaches_zero_loss_in_one_step_and_c_prime_is_zero(x64):
    x, params, y = _linear_problem()
    run = make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), num_steps=2, checkpoints=(1, 2))
    traj = run(params, x, y)
    # ε = 0, η = 1 on a linear model: f₁ = y up to float64 round-off of a 12x12 solve.
    assert float(traj.losses[0]) > 0.1
    np.testing.assert_allclose(np.asarray(traj.losses[1:]), 0.0, atol=1e-24)
    p1 = jax.tree_util.tree_map(lambda a: a[0], traj.snapshots)
    g0 = jax.jit(lambda p: full_gram(linear, p, x))(params)
    stab = jax.jit(lambda a, b: jacobian_stability(linear, a, b, x, g0))(params, p1)
    lam_min = np.linalg.eigvalsh(np.asarray(g0))[0]
    assert lam_min > 0.1
    # The Jacobian of a linear model does not depend on θ: ΔJ = 0 exactly.
    assert float(stab.spectral) == 0.0 and float(stab.kernel_change) == 0.0
    assert float(c_prime(stab.spectral, lam_min)) == 0.0


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_ngd_direction_equals_dense_gauss_newton(x64, solver):
    apply_fn, params, x, y = _tiny_net()
    damping = 1e-3
    direction = jax.jit(lambda p: ngd_direction(apply_fn, p, x, y, damping, solver=solver,
                                                cg_maxiter=60))  # fmt: skip
    got, loss = direction(params)
    j = _dense_j(apply_fn, params, x)
    r = np.asarray(apply_fn(params, x) - y).reshape(-1)
    want = j.T @ np.linalg.solve(j @ j.T + damping * np.eye(j.shape[0]), r)
    # Cholesky: float64 round-off times κ(K + εI) ≲ 1e4. CG: 60 iterations on a 10x10 SPD
    # system are exact up to the same round-off.
    np.testing.assert_allclose(np.asarray(ravel_pytree(got)[0]), want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(float(loss), 0.5 * np.mean(r**2), rtol=1e-14)


def test_full_gram_is_dense_jjt_in_output_order(x64):
    apply_fn, params, x, _ = _tiny_net()
    j = _dense_j(apply_fn, params, x)
    got = np.asarray(jax.jit(lambda p: full_gram(apply_fn, p, x))(params))
    # neural-tangents' structured derivatives vs an explicit Jacobian: float64 round-off.
    np.testing.assert_allclose(got, j @ j.T, rtol=1e-12, atol=1e-12)
    n, k = x.shape[0], 2
    avg = np.einsum("iaja->ij", got.reshape(n, k, n, k)) / k
    theta = np.asarray(kernels.empirical_ntk_fn(apply_fn)(x, None, params))
    np.testing.assert_allclose(avg, theta, rtol=1e-12, atol=1e-12)


def test_jacobian_difference_gram_and_stability_match_dense(x64):
    apply_fn, params0, x, _ = _tiny_net()
    params = _perturbed(params0)
    dj = _dense_j(apply_fn, params, x) - _dense_j(apply_fn, params0, x)
    got = np.asarray(jax.jit(lambda a, b: jacobian_difference_gram(apply_fn, a, b, x))(
        params0, params))  # fmt: skip
    np.testing.assert_allclose(got, dj @ dj.T, rtol=1e-11, atol=1e-12)  # float64 round-off
    g0 = jax.jit(lambda p: full_gram(apply_fn, p, x))(params0)
    stab = jax.jit(lambda a, b: jacobian_stability(apply_fn, a, b, x, g0))(params0, params)
    j0 = _dense_j(apply_fn, params0, x)
    k_t = _dense_j(apply_fn, params, x) @ _dense_j(apply_fn, params, x).T
    # 200 power iterations on a 10x10 PSD matrix: converged to round-off.
    np.testing.assert_allclose(float(stab.spectral), np.linalg.norm(dj, 2), rtol=1e-10)
    np.testing.assert_allclose(float(stab.frobenius), np.linalg.norm(dj), rtol=1e-12)
    rel = np.linalg.norm(dj, 2) / np.linalg.norm(j0, 2)
    np.testing.assert_allclose(float(stab.spectral_relative), rel, rtol=1e-10)
    kc = np.linalg.norm(k_t - j0 @ j0.T) / np.linalg.norm(j0 @ j0.T)
    np.testing.assert_allclose(float(stab.kernel_change), kc, rtol=1e-11)
    mf = kernels.jacobian_change(apply_fn, params0, params, x, key=jax.random.key(1), num_iters=300)
    # The foundation's matrix-free power iteration on DᵀD converges to the same norm.
    np.testing.assert_allclose(float(stab.spectral), float(mf.spectral), rtol=1e-8)


def test_top_eigenvalue_matches_eigvalsh(x64):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(30, 12))
    separated = a @ a.T
    q, _ = np.linalg.qr(rng.normal(size=(30, 30)))
    close = q @ np.diag(np.r_[1.0, 0.999, np.linspace(0.5, 0.0, 28)]) @ q.T
    top = jax.jit(top_eigenvalue)
    want = np.linalg.eigvalsh(separated)[-1]
    # λ₂/λ₁ ≈ 0.8: (0.8)^400 is far below float64 round-off.
    np.testing.assert_allclose(float(top(jnp.asarray(separated))), want, rtol=1e-12)
    got, eig = float(top(jnp.asarray(close))), np.linalg.eigvalsh(close)
    # Nearly equal top eigenvalues: from below, within their gap λ₁ − λ₂ = 1e-3.
    assert eig[-2] - 1e-12 <= got <= eig[-1] + 1e-12


def test_ngd_prediction_is_the_linear_model_trajectory_and_contracts_as_one_minus_eta(x64):
    x, params, y = _linear_problem(n=5, d=9, k=2)
    theta = x @ x.T  # NTK of f = xθ: full Gram = Θ ⊗ I_k
    f0 = linear(params, x)
    for lr, eps in ((0.5, 0.0), (0.3, 0.7)):
        run = make_trajectory_fn(linear, ngd(linear, lr, eps), num_steps=6, checkpoints=(6,))
        measured = run(params, x, y).losses
        curve = lambda f, lr=lr, eps=eps: predicted_loss_curve(
            ngd_mse_prediction(theta, y, lr, eps), f, y, 6)  # fmt: skip
        pred = jax.jit(curve)(f0)
        # Same dynamics, two float64 computations (eigendecomposition vs Cholesky steps).
        np.testing.assert_allclose(np.asarray(pred), np.asarray(measured), rtol=1e-9)
    pred = jax.jit(lambda f: predicted_loss_curve(ngd_mse_prediction(theta, y, 0.5, 0.0), f, y, 6))(
        f0)  # fmt: skip
    np.testing.assert_allclose(np.asarray(pred), float(pred[0]) * 0.25 ** np.arange(7), rtol=1e-9)


def test_gd_trajectory_matches_the_closed_form_kernel_regime_curve(x64):
    x, params, y = _linear_problem(n=5, d=9, k=2)
    lr = 0.5 * 2 * y.size / np.linalg.eigvalsh(np.asarray(x @ x.T))[-1]
    gd = make_trajectory_fn(linear, first_order(linear, optax.sgd(lr)), 20, checkpoints=(20,))
    measured = gd(params, x, y).losses
    curve = lambda f: predicted_loss_curve(gradient_descent_mse(x @ x.T, y, lr, discrete=True),
                                           f, y, 20)  # fmt: skip
    pred = jax.jit(curve)(linear(params, x))
    # A linear model is its own kernel regime; L = ‖f − y‖²/(2nk) is the nt convention.
    np.testing.assert_allclose(np.asarray(pred), np.asarray(measured), rtol=1e-9)


def test_trajectory_snapshots_and_single_compilation():
    apply_fn, params, x, y = _tiny_net()
    run = make_trajectory_fn(
        apply_fn, first_order(apply_fn, optax.sgd(1e-2, momentum=0.9)), 5, (2, 5)
    )
    traj = run(params, x, y)
    short = make_trajectory_fn(
        apply_fn, first_order(apply_fn, optax.sgd(1e-2, momentum=0.9)), 2, (2,)
    )
    early = short(params, x, y)
    for a, b in zip(jax.tree_util.tree_leaves(traj.snapshots),
                    jax.tree_util.tree_leaves(early.params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b))  # same ops, same order
    for a, b in zip(jax.tree_util.tree_leaves(traj.snapshots),
                    jax.tree_util.tree_leaves(traj.params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b))
    np.testing.assert_allclose(float(traj.losses[0]), float(mse_loss(apply_fn(params, x), y)))
    run(params, x, y)
    assert run._cache_size() == 1


def test_adam_runs_under_strict_promotion_and_matches_optax_by_hand():
    apply_fn, params, x, y = _tiny_net()
    run = make_trajectory_fn(apply_fn, first_order(apply_fn, optax.adam(1e-2)), 3, (3,))
    traj = run(params, x, y)  # conftest sets strict dtype promotion for every test
    tx, p = optax.adam(1e-2), params
    with jax.numpy_dtype_promotion("standard"):
        state = tx.init(p)
        for _ in range(3):
            grads = jax.grad(lambda q: mse_loss(apply_fn(q, x), y))(p)
            updates, state = tx.update(grads, state, p)
            p = optax.apply_updates(p, updates)
    for a, b in zip(jax.tree_util.tree_leaves(traj.params), jax.tree_util.tree_leaves(p),
                    strict=True):  # fmt: skip
        # Same float32 operations, scan vs Python loop (fusion may reorder sums).
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_steps_to_threshold():
    losses = jnp.asarray([1.0, 0.5, 0.2, 0.05])
    assert int(steps_to_threshold(losses, 0.2)) == 2
    assert int(steps_to_threshold(losses, 0.01)) == -1


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="solver"):
        ngd(linear, 1.0, 0.0, solver="lu")
    with pytest.raises(ValueError, match="checkpoints"):
        make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), 3, (0, 3))
    with pytest.raises(ValueError, match="checkpoints"):
        make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), 3, (4,))


def _max_c_prime(width: int, seed: int) -> float:
    """Max C′ over 3 NGD (η = 1) steps of a 1-hidden-layer erf net in NTK parametrization."""
    arch = models.mlp(width, depth=1, out_dim=1, activation="erf", parameterization="ntk")
    kx, ki = jax.random.split(jax.random.key(100 + seed))
    x = jax.random.normal(kx, (8, 4)) / 2.0
    y = jnp.sign(x[:, :1])
    _, params0 = arch.init_fn(ki, (-1, 4))
    g0 = jax.jit(lambda p: full_gram(arch.apply_fn, p, x))(params0)
    lam_min = float(np.linalg.eigvalsh(np.asarray(g0, np.float64))[0])
    traj = make_trajectory_fn(arch.apply_fn, ngd(arch.apply_fn, 1.0, 1e-6), 3, (1, 2, 3))(
        params0, x, y
    )
    stab = jax.jit(lambda p: jacobian_stability(arch.apply_fn, params0, p, x, g0).spectral)
    snaps = (jax.tree_util.tree_map(lambda a, i=i: a[i], traj.snapshots) for i in range(3))
    spectral = [float(stab(p)) for p in snaps]
    return float(c_prime(max(spectral), lam_min))


@pytest.mark.slow
def test_c_prime_falls_with_width_in_ntk_parametrization():
    widths = (64, 512, 4096)
    c = [np.mean([_max_c_prime(w, s) for s in range(3)]) for w in widths]
    # Theory: ‖ΔJ‖₂ = O(width^{-1/2}) with λ_min(K₀) → λ_min(Θ∞) > 0, so C′ should drop by
    # ~8^{-1/2} ≈ 0.35 per step of 8x in width; we ask for a monotone fall and < 0.6 per step
    # (slack for the 3-seed average).
    assert c[0] > c[1] > c[2]
    assert c[1] / c[0] < 0.6 and c[2] / c[1] < 0.6
