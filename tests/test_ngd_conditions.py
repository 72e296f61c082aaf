"""The NGD conditions and their kernel-regime predictions (ntk_limits.ngd_conditions).

References are independent: explicit dense Jacobians (``ntk_limits.kernels.jacobian``, the
session fixture ``tiny_net``), numpy linear algebra, closed forms for linear models, the
measured trajectories of ``ntk_limits.optimization`` on linear models (their own kernel
regime) and the matrix-free ``kernels.jacobian_change``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models
from ntk_limits.linearize import gradient_descent_mse
from ntk_limits.ngd_conditions import (
    c_prime,
    jacobian_change_norm,
    jacobian_difference_gram,
    jacobian_stability,
    ngd_mse_prediction,
    parameter_distance,
    predicted_loss_curve,
    stability_radius,
    steps_to_threshold,
    top_eigenvalue,
    top_eigenvalue_lanczos,
)
from ntk_limits.optimization import first_order, full_gram, make_trajectory_fn, ngd
from tests.helpers import linear, linear_problem


def test_linear_model_has_zero_jacobian_change_and_c_prime(x64):
    x, params, _ = linear_problem()
    other = {"w": params["w"] - 2.0}

    @jax.jit
    def stability(a, b):
        g0 = full_gram(linear, a, x)
        return g0, jacobian_stability(linear, a, b, x, g0)

    g0, stab = stability(params, other)
    lam_min = np.linalg.eigvalsh(np.asarray(g0))[0]
    assert lam_min > 0.1
    # The Jacobian of a linear model does not depend on θ: ΔJ = 0 exactly.
    assert float(stab.spectral) == 0.0 and float(stab.kernel_change) == 0.0
    assert float(c_prime(stab.spectral, lam_min)) == 0.0


def test_c_prime_closed_form_and_infinite_without_a_positive_lambda_min():
    np.testing.assert_allclose(c_prime(0.5, 4.0), 0.75, rtol=1e-6)  # 3 · 0.5 / 2, float32
    np.testing.assert_array_equal(c_prime(np.array([1.0, 1.0]), np.array([0.0, -1.0])), np.inf)


def test_jacobian_difference_gram_and_stability_match_dense(x64, tiny_net):
    apply_fn, x, params0, params = tiny_net.apply_fn, tiny_net.x, tiny_net.params0, tiny_net.params1
    j0, j1 = tiny_net.j0, tiny_net.j1
    dj = j1 - j0

    @jax.jit
    def measures(a, b):
        g0 = full_gram(apply_fn, a, x)
        mf = kernels.jacobian_change(apply_fn, a, b, x, key=jax.random.key(1), num_iters=300)
        return (
            jacobian_difference_gram(apply_fn, a, b, x),
            jacobian_stability(apply_fn, a, b, x, g0),
            jacobian_stability(apply_fn, a, b, x, g0, method="power"),
            mf,
        )

    got, stab, power, mf = measures(params0, params)
    np.testing.assert_allclose(got, dj @ dj.T, rtol=1e-11, atol=1e-12)  # float64 round-off
    # A dense eigensolver on a 10x10 PSD matrix: float64 round-off.
    np.testing.assert_allclose(float(stab.spectral), np.linalg.norm(dj, 2), rtol=1e-12)
    # 200 power iterations: a lower bound, converged to round-off on this matrix.
    assert float(power.spectral) <= float(stab.spectral) * (1 + 1e-14)
    np.testing.assert_allclose(float(power.spectral), np.linalg.norm(dj, 2), rtol=1e-10)
    np.testing.assert_allclose(float(stab.frobenius), np.linalg.norm(dj), rtol=1e-12)
    rel = np.linalg.norm(dj, 2) / np.linalg.norm(j0, 2)
    np.testing.assert_allclose(float(stab.spectral_relative), rel, rtol=1e-10)
    kc = np.linalg.norm(j1 @ j1.T - j0 @ j0.T) / np.linalg.norm(j0 @ j0.T)
    np.testing.assert_allclose(float(stab.kernel_change), kc, rtol=1e-11)
    np.testing.assert_allclose(stab.gram, j1 @ j1.T, rtol=1e-12, atol=1e-12)  # as full_gram
    # The matrix-free power iteration on DᵀD converges to the same norm.
    np.testing.assert_allclose(float(stab.spectral), float(mf.spectral), rtol=1e-8)


def test_stability_radius_and_parameter_distance_by_hand():
    residual = np.array([[[3.0, 0.0], [0.0, 4.0]], [[1.0, 0.0], [0.0, 0.0]]])  # (2, n=2, k=2)
    # R = 3‖y − u₀‖₂/√λ₀: 3·5/√4 = 7.5; 3·1/√9 = 1; λ₀ = 0 gives an unbounded ball.
    np.testing.assert_allclose(stability_radius(residual, np.array([4.0, 9.0])), [7.5, 1.0],
                               rtol=1e-6)  # float32  # fmt: skip
    assert float(stability_radius(residual[0], 0.0)) == np.inf
    p0 = {"a": jnp.zeros((2, 2)), "b": jnp.ones(3)}
    p1 = {"a": jnp.asarray([[1.0, 2.0], [0.0, 0.0]]), "b": jnp.asarray([1.0, 3.0, 1.0])}
    # ‖θ₁ − θ₀‖² = 1 + 4 + 4 = 9 over both leaves.
    np.testing.assert_allclose(float(parameter_distance(p0, p1)), 3.0, rtol=1e-7)


def test_jacobian_stability_rejects_an_unknown_method(tiny_net):
    with pytest.raises(ValueError, match="method"):
        jacobian_stability(tiny_net.apply_fn, tiny_net.params0, tiny_net.params1, tiny_net.x,
                           tiny_net.j0 @ tiny_net.j0.T, method="lanczos")  # fmt: skip


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
    x, params, y = linear_problem(n=5, d=9, k=2)
    theta = x @ x.T  # NTK of f = xθ: full Gram = Θ ⊗ I_k
    f0 = linear(params, x)
    curve = jax.jit(
        lambda lr, eps: predicted_loss_curve(ngd_mse_prediction(theta, y, lr, eps), f0, y, 6)
    )
    for lr, eps in ((0.5, 0.0), (0.3, 0.7)):
        run = make_trajectory_fn(linear, ngd(linear, lr, eps), num_steps=6, checkpoints=(6,))
        measured = run(params, x, y).losses
        # Same dynamics, two float64 computations (eigendecomposition vs Cholesky steps).
        np.testing.assert_allclose(curve(lr, eps), measured, rtol=1e-9)
    pred = curve(0.5, 0.0)
    np.testing.assert_allclose(pred, float(pred[0]) * 0.25 ** np.arange(7), rtol=1e-9)  # same


def test_gd_trajectory_matches_the_closed_form_kernel_regime_curve(x64):
    x, params, y = linear_problem(n=5, d=9, k=2)
    lr = 0.5 * 2 * y.size / np.linalg.eigvalsh(np.asarray(x @ x.T))[-1]
    gd = make_trajectory_fn(linear, first_order(linear, optax.sgd(lr)), 20, checkpoints=(20,))
    measured = gd(params, x, y).losses
    curve = lambda f: predicted_loss_curve(gradient_descent_mse(x @ x.T, y, lr, discrete=True),
                                           f, y, 20)  # fmt: skip
    pred = jax.jit(curve)(linear(params, x))
    # A linear model is its own kernel regime; L = ‖f − y‖²/(2nk) is the nt convention.
    np.testing.assert_allclose(np.asarray(pred), np.asarray(measured), rtol=1e-9)


def test_steps_to_threshold():
    losses = jnp.asarray([1.0, 0.5, 0.2, 0.05])
    assert int(steps_to_threshold(losses, 0.2)) == 2
    assert int(steps_to_threshold(losses, 0.01)) == -1


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


def test_lanczos_top_eigenvalue_is_exact_at_full_krylov_size_and_a_lower_bound_before(x64):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(40, 40))
    m = a @ a.T
    want = np.linalg.eigvalsh(m)[-1]
    top = jax.jit(top_eigenvalue_lanczos, static_argnames="num_iters", static_argnums=0)
    v0 = jnp.ones(40)
    # 40 steps span the whole space: exact up to float64 round-off (re-orthogonalised).
    np.testing.assert_allclose(float(top(lambda v: m @ v, v0, num_iters=40)), want, rtol=1e-12)
    # Fewer steps: a Ritz value, never above λ_max (Cauchy interlacing), rising with steps.
    few = [float(top(lambda v: m @ v, v0, num_iters=k)) for k in (2, 5, 10, 20)]
    assert all(f <= want * (1 + 1e-12) for f in few) and few == sorted(few)
    # A rank-3 operator: the Krylov space is exhausted after 3 steps, later steps add zeros.
    low = a[:, :3] @ a[:, :3].T
    np.testing.assert_allclose(
        float(top(lambda v: low @ v, v0, num_iters=10)), np.linalg.eigvalsh(low)[-1], rtol=1e-10
    )


def test_jacobian_change_norm_matches_the_dense_jacobian_difference(x64, tiny_net):
    dj = tiny_net.j1 - tiny_net.j0  # explicit Jacobians (jax.jacrev), n·k = 10 rows
    want = np.linalg.norm(np.asarray(dj), 2)
    norm = jax.jit(jacobian_change_norm, static_argnums=0, static_argnames="num_iters")
    args = (tiny_net.apply_fn, tiny_net.params0, tiny_net.params1, tiny_net.x)
    # 10 steps span the 10-dimensional output space: exact to float64 round-off.
    np.testing.assert_allclose(float(norm(*args, num_iters=10)), want, rtol=1e-10)
    assert float(norm(*args, num_iters=3)) <= want * (1 + 1e-12)  # a lower bound before
