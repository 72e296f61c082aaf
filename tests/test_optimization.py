"""NGD and first-order trajectories (ntk_limits.optimization).

References are independent: explicit dense Jacobians (``ntk_limits.kernels.jacobian``, the
session fixture ``tiny_net``), numpy linear algebra, closed forms for linear models and
optax applied step by step. The NGD conditions are in ``tests/test_ngd_conditions.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from ntk_limits import kernels
from ntk_limits.optimization import (
    first_order,
    full_gram,
    make_trajectory_fn,
    ngd,
    ngd_direction,
)
from ntk_limits.training import mse_loss
from tests.helpers import linear, linear_problem


def test_ngd_on_linear_model_reaches_zero_loss_in_one_step(x64):
    x, params, y = linear_problem()
    run = make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), num_steps=2, checkpoints=(1, 2))
    traj = run(params, x, y)
    # ε = 0, η = 1 on a linear model: f₁ = y up to float64 round-off of a 12x12 solve.
    assert float(traj.losses[0]) > 0.1
    np.testing.assert_allclose(np.asarray(traj.losses[1:]), 0.0, atol=1e-24)
    p1 = jax.tree_util.tree_map(lambda a: a[0], traj.snapshots)
    np.testing.assert_allclose(linear(p1, x), y, rtol=1e-10, atol=1e-12)  # same round-off


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_ngd_direction_equals_dense_gauss_newton(x64, tiny_net, solver):
    apply_fn, x, y, params = tiny_net.apply_fn, tiny_net.x, tiny_net.y, tiny_net.params0
    damping = 1e-3
    direction = jax.jit(lambda p: ngd_direction(apply_fn, p, x, y, damping, solver=solver,
                                                cg_maxiter=60))  # fmt: skip
    got, loss = direction(params)
    j = tiny_net.j0
    r = np.asarray(apply_fn(params, x) - y).reshape(-1)
    want = j.T @ np.linalg.solve(j @ j.T + damping * np.eye(j.shape[0]), r)
    # Cholesky: float64 round-off times κ(K + εI) ≲ 1e4. CG: 60 iterations on a 10x10 SPD
    # system are exact up to the same round-off.
    np.testing.assert_allclose(np.asarray(ravel_pytree(got)[0]), want, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(float(loss), 0.5 * np.mean(r**2), rtol=1e-14)


def test_full_gram_is_dense_jjt_in_output_order(x64, tiny_net):
    apply_fn, x, j = tiny_net.apply_fn, tiny_net.x, tiny_net.j0
    ntk = kernels.empirical_ntk_fn(apply_fn)
    got, theta = jax.jit(lambda p: (full_gram(apply_fn, p, x), ntk(x, None, p)))(tiny_net.params0)
    # neural-tangents' structured derivatives vs an explicit Jacobian: float64 round-off.
    np.testing.assert_allclose(got, j @ j.T, rtol=1e-12, atol=1e-12)
    n, k = x.shape[0], 2
    avg = np.einsum("iaja->ij", np.asarray(got).reshape(n, k, n, k)) / k
    np.testing.assert_allclose(avg, theta, rtol=1e-12, atol=1e-12)


def _float32(*trees):
    """The shared (float64) net's values in float32, for tests of the float32 path."""
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), trees)


def test_trajectory_snapshots_and_single_compilation(tiny_net):
    params, x, y = _float32(tiny_net.params0, tiny_net.x, tiny_net.y)
    apply_fn = tiny_net.apply_fn
    momentum = first_order(apply_fn, optax.sgd(1e-2, momentum=0.9))
    run = make_trajectory_fn(apply_fn, momentum, 5, (2, 5))
    traj = run(params, x, y)
    early = make_trajectory_fn(apply_fn, momentum, 2, (2,))(params, x, y)
    for a, b in zip(jax.tree_util.tree_leaves(traj.snapshots),
                    jax.tree_util.tree_leaves(early.params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a[0]), np.asarray(b))  # same ops, same order
    for a, b in zip(jax.tree_util.tree_leaves(traj.snapshots),
                    jax.tree_util.tree_leaves(traj.params), strict=True):  # fmt: skip
        np.testing.assert_array_equal(np.asarray(a[1]), np.asarray(b))
    # float32: the loss inside the compiled scan and an eager evaluation may sum the
    # 10 squared residuals in a different order (measured 1.7e-7 relative).
    want = float(mse_loss(apply_fn(params, x), y))
    np.testing.assert_allclose(float(traj.losses[0]), want, rtol=1e-6)
    run(params, x + 1.0, y)  # new values, same shapes
    assert run._cache_size() == 1


def test_adam_runs_under_strict_promotion_and_matches_optax_by_hand(tiny_net):
    params, x, y = _float32(tiny_net.params0, tiny_net.x, tiny_net.y)
    apply_fn = tiny_net.apply_fn
    run = make_trajectory_fn(apply_fn, first_order(apply_fn, optax.adam(1e-2)), 3, (3,))
    traj = run(params, x, y)  # conftest sets strict dtype promotion for every test
    tx = optax.adam(1e-2)

    @jax.jit
    def step(p, state):  # optax's own update, one step at a time (standard promotion)
        with jax.numpy_dtype_promotion("standard"):
            grads = jax.grad(lambda q: mse_loss(apply_fn(q, x), y))(p)
            updates, state = tx.update(grads, state, p)
            return optax.apply_updates(p, updates), state

    p, state = params, tx.init(params)
    for _ in range(3):
        p, state = step(p, state)
    for a, b in zip(jax.tree_util.tree_leaves(traj.params), jax.tree_util.tree_leaves(p),
                    strict=True):  # fmt: skip
        # Same float32 operations, scan vs Python loop (fusion may reorder sums).
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="solver"):
        ngd(linear, 1.0, 0.0, solver="lu")
    with pytest.raises(ValueError, match="checkpoints"):
        make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), 3, (0, 3))
    with pytest.raises(ValueError, match="checkpoints"):
        make_trajectory_fn(linear, ngd(linear, 1.0, 0.0), 3, (4,))
