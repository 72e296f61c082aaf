"""Tests of ntk_limits.continual._kernel_regression against explicit gradient descent.

A linear model ``x·W + b`` has the fixed NTK ``x·x' + 1`` for every output, so kernel
regression on it must equal training the model itself, task by task.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import continual
from tests.continual.helpers import compiled_run, jit, linear_apply, normal, random_stream


@functools.cache
def _regression(discrete):
    """``(lr, k, stream, times, f0) -> (f, result)``, compiled once per ``discrete``."""

    def regression(lr, k, stream, times, f0):
        return continual.sequential_kernel_regression(
            k, stream, times, head_size=2, out_dim=6, learning_rate=lr, discrete=discrete, f0=f0
        )

    return jit(regression)


def _kernel_vs_explicit(multi_head, steps, lr, discrete, explicit_steps, explicit_lr):
    stream = random_stream(20, multi_head=multi_head)
    out_dim = 6  # single head: tasks use outputs 0-1, the others never move
    params = (normal(21, (5, out_dim), 0.5), 0.1 * jnp.ones(out_dim))
    z = continual.stream_inputs(stream)
    k = z @ stream.x_train.reshape(-1, 5).T + 1.0  # NTK of x·W + b, the same for each output
    times = jnp.array([steps], jnp.float32)
    f, res = _regression(discrete)(lr, k, stream, times, linear_apply(params, z))
    run = compiled_run("linear", loss="mse")
    final, ref = run(explicit_lr, params, stream, jax.random.key(22), explicit_steps, 2.0)
    return f[0], linear_apply(final, z), res, ref, params, z


@pytest.mark.parametrize("multi_head", [True, False])
def test_kernel_regression_equals_explicit_gd_for_linear_model(multi_head):
    f, f_ref, res, ref, params, z = _kernel_vs_explicit(multi_head, 40, 0.5, True, 40, 0.5)
    np.testing.assert_allclose(f, f_ref, atol=1e-4)  # exact in exact arithmetic; float32
    np.testing.assert_array_equal(res.accuracy[0], ref.accuracy)
    np.testing.assert_allclose(res.train_accuracy[0], ref.train_accuracy, atol=1e-7)
    np.testing.assert_array_equal(res.epochs[0], [40, 40, 40])  # epochs hold the time t
    np.testing.assert_array_equal(res.kernel_drift, 0.0)  # the kernel is fixed
    if multi_head:  # outputs are independent: each head moves only while its task trains
        untouched = linear_apply(params, z)[:, 4:]
        np.testing.assert_allclose(f[:, 4:], f_ref[:, 4:], atol=1e-4)
        assert float(jnp.max(jnp.abs(f[:, 4:] - untouched))) > 1e-2  # last head did move
        assert float(continual.average_forgetting(res.accuracy[0])) == 0.0


def test_kernel_gradient_flow_matches_many_small_gd_steps():
    # flow for time 8 at lr 0.5 vs 2000 GD steps at lr 0.5 * 8 / 2000: per-mode error is
    # about s·(cλ)²/2 with cλ = 0.002 here, i.e. < 1e-2 of the residual.
    f, f_ref, *_ = _kernel_vs_explicit(False, 8.0, 0.5, False, 2000, 0.5 * 8 / 2000)
    np.testing.assert_allclose(f, f_ref, atol=1e-2)


def test_kernel_regression_converged_interpolates_last_task():
    stream = random_stream(23, d=40)  # d > n: the linear kernel is invertible
    z = continual.stream_inputs(stream)
    k = z @ stream.x_train.reshape(-1, 40).T
    regression = functools.partial(continual.sequential_kernel_regression, head_size=2, out_dim=2)
    _, res = jit(regression)(k, stream, jnp.array([jnp.inf]))
    np.testing.assert_array_equal(res.train_accuracy[0], [1.0, 1.0, 1.0])
    assert bool(jnp.isinf(res.epochs).all()) and float(res.loss[0, -1]) < 1e-6
