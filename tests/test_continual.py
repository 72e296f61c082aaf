"""Tests of ntk_limits.continual: metrics, sequential fine-tuning, kernel-regime regression."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import continual, kernels, models, training
from ntk_limits.continual import TaskArrays


@pytest.fixture(autouse=True)
def _strict_promotion():
    with jax.numpy_rank_promotion("raise"), jax.numpy_dtype_promotion("strict"):
        yield


def _linear_apply(params, x):
    w, b = params
    return x @ w + b[None]


def _random_stream(key, t=3, n=20, m=10, d=5, c=2, multi_head=True):
    kx, ky, kt, kl = jax.random.split(key, 4)
    offsets = jnp.arange(t, dtype=jnp.int32) * c if multi_head else jnp.zeros(t, jnp.int32)
    return TaskArrays(
        jax.random.normal(kx, (t, n, d)),
        jax.random.randint(ky, (t, n), 0, c),
        jax.random.normal(kt, (t, m, d)),
        jax.random.randint(kl, (t, m), 0, c),
        offsets,
    )


def _loop_forgetting(acc):
    """Average forgetting by explicit loops (reference for the vectorised metric)."""
    last = acc.shape[0] - 1
    drops = [max(acc[k, j] for k in range(last)) - acc[last, j] for j in range(last)]
    return float(np.mean(drops))


def test_metrics_on_hand_written_matrix():
    acc = jnp.array([[0.9, 0.1, 0.2], [0.6, 0.95, 0.3], [0.5, 0.7, 0.9]])
    m = continual.continual_metrics(acc)
    # exact by hand: A = (0.5+0.7+0.9)/3; F = ((0.9-0.5) + (0.95-0.7))/2; LA = (0.9+0.95+0.9)/3
    np.testing.assert_allclose(m.average_accuracy, 0.7, atol=1e-6)  # float32 rounding
    np.testing.assert_allclose(m.forgetting, 0.325, atol=1e-6)
    np.testing.assert_allclose(m.learning_accuracy, 2.75 / 3, atol=1e-6)


def test_forgetting_matches_loops_batched():
    acc = np.random.default_rng(0).uniform(size=(4, 5, 5)).astype(np.float32)
    got = continual.average_forgetting(jnp.asarray(acc))
    want = [_loop_forgetting(a) for a in acc]
    np.testing.assert_allclose(got, want, atol=1e-6)  # float32 sums of 4 terms


def test_stack_tasks_cuts_to_smallest_and_sets_heads():
    from ntk_limits import data

    tasks = data.make_stream("split_digits", seed=0)
    stream = continual.stack_tasks(tasks, multi_head=True, flatten=True)
    n = min(len(t.y_train) for t in tasks)
    assert stream.x_train.shape == (5, n, 64) and stream.y_train.shape == (5, n)
    np.testing.assert_array_equal(stream.head_offset, [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(stream.y_train[1], tasks[1].y_train[:n])
    single = continual.stack_tasks(tasks, multi_head=False)
    assert single.x_train.shape[2:] == (8, 8, 1) and not single.head_offset.any()


def test_streams_deterministic_by_seed():
    from ntk_limits import data

    a = continual.stack_tasks(data.make_stream("rotated_digits", seed=3), multi_head=False)
    b = continual.stack_tasks(data.make_stream("rotated_digits", seed=3), multi_head=False)
    c = continual.stack_tasks(data.make_stream("rotated_digits", seed=4), multi_head=False)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_train, c.y_train)


def _mlp_setup(key, width=16, out_dim=6, d=5):
    arch = models.mlp(width, depth=1, out_dim=out_dim)
    params = jax.jit(lambda k: arch.init_fn(k, (-1, d))[1])(key)
    return arch, params


_MLP, _ = _mlp_setup(jax.random.key(0))


@functools.cache
def _compiled_run(model, loss="xent", batch_size=None, linearized=False):
    """One jitted ``run(lr, params, stream, key, epochs, target)`` per setting, shared by tests."""
    apply_fn = _MLP.apply_fn if model == "mlp" else _linear_apply

    def run(lr, params, stream, key, max_epochs, target):
        train = continual.sequential_train(
            apply_fn, optax.sgd(lr), head_size=2, batch_size=batch_size, loss=loss,
            linearized=linearized,
        )  # fmt: skip
        return train(params, stream, key, max_epochs, target)

    return jax.jit(run)


def test_zero_learning_rate_gives_constant_matrix_and_no_forgetting():
    stream = _random_stream(jax.random.key(0))
    _, params = _mlp_setup(jax.random.key(1))
    final, res = _compiled_run("mlp", batch_size=10)(0.0, params, stream, jax.random.key(2), 3, 2.0)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(res.accuracy, jnp.broadcast_to(res.accuracy[0], (3, 3)))
    assert float(continual.average_forgetting(res.accuracy)) == 0.0
    np.testing.assert_array_equal(res.epochs, [3, 3, 3])


def test_accuracy_matrix_rows_are_test_accuracies_of_trained_params():
    stream = _random_stream(jax.random.key(10))
    _, params = _mlp_setup(jax.random.key(11))
    final, res = _compiled_run("mlp", batch_size=10)(
        0.5, params, stream, jax.random.key(12), 4, 2.0
    )
    f = _MLP.apply_fn(final, stream.x_test.reshape(-1, 5)).reshape(3, 10, 6)
    want = [training.accuracy(f[j, :, 2 * j : 2 * j + 2], stream.y_test[j]) for j in range(3)]
    np.testing.assert_allclose(res.accuracy[-1], want, atol=1e-7)
    assert float(continual.average_forgetting(res.accuracy)) != 0.0


def test_full_batch_fine_tuning_matches_make_train():
    stream = _random_stream(jax.random.key(3), t=1, c=6, multi_head=False)
    _, params = _mlp_setup(jax.random.key(4))
    learner = continual.fine_tuning(_MLP.apply_fn, optax.sgd(0.3), head_size=6)
    state, log = jax.jit(learner.update)(
        learner.init(params), stream.x_train[0], stream.y_train[0], 0, jax.random.key(5), 7, 2.0
    )
    ref, _ = training.make_train(_MLP.apply_fn, optax.sgd(0.3), 7, loss="xent")(
        params, stream.x_train[0], stream.y_train[0], jax.random.key(6)
    )
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # same float32 ops in the same order
    acc = training.accuracy(_MLP.apply_fn(state.params, stream.x_train[0]), stream.y_train[0])
    np.testing.assert_allclose(log.train_accuracy, acc, atol=1e-7)
    assert int(log.epochs) == 7 and int(state.tasks_seen) == 1


def test_training_stops_at_target_accuracy():
    stream = _random_stream(jax.random.key(7), t=1, c=6, multi_head=False)
    _, params = _mlp_setup(jax.random.key(8))
    learner = continual.fine_tuning(_MLP.apply_fn, optax.sgd(0.5), head_size=6, batch_size=5)
    update = jax.jit(learner.update)
    args = (learner.init(params), stream.x_train[0], stream.y_train[0], 0, jax.random.key(9))
    _, log0 = update(*args, 50, 0.0)  # target met at once: exactly one epoch
    _, log = update(*args, 200, 0.9)
    assert int(log0.epochs) == 1
    assert 1 < int(log.epochs) < 200 and float(log.train_accuracy) >= 0.9
    assert update._cache_size() == 1  # epochs and target are traced: no recompilation


def test_kernel_drift_matches_reference_ntk():
    stream = _random_stream(jax.random.key(13), t=2)
    _, params = _mlp_setup(jax.random.key(14))
    probe = stream.x_test[0, :6]
    ntk = kernels.empirical_ntk_fn(_MLP.apply_fn)  # structured derivatives, as in the study
    run = continual.sequential_train(
        _MLP.apply_fn, optax.sgd(1.0), head_size=2, kernel_fn=lambda p: ntk(probe, None, p)
    )
    one_task = stream._replace(**{k: v[:1] for k, v in stream._asdict().items()})
    final, res = jax.jit(run)(params, one_task, jax.random.key(15), 5, 2.0)
    ntk = jax.jit(kernels.empirical_ntk_fn(_MLP.apply_fn, algorithm="reference"))
    want = kernels.kernel_change(ntk(probe, None, params), ntk(probe, None, final))
    np.testing.assert_allclose(res.kernel_drift[0], want, rtol=1e-4)  # float32 kernels
    assert float(want) > 1e-3


def test_linearised_linear_model_equals_model():
    stream = _random_stream(jax.random.key(16))
    params = (0.3 * jax.random.normal(jax.random.key(17), (5, 6)), jnp.zeros(6))
    args = (0.2, params, stream, jax.random.key(18), 3, 2.0)
    _, a = _compiled_run("linear", batch_size=10)(*args)
    _, b = _compiled_run("linear", batch_size=10, linearized=True)(*args)
    np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1e-7)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)  # f0 + J·Δ vs x·W: float32 rounding


def _kernel_vs_explicit(multi_head, steps, lr, discrete, explicit_steps, explicit_lr):
    stream = _random_stream(jax.random.key(20), multi_head=multi_head)
    out_dim = 6  # single head: tasks use outputs 0-1, the others never move
    params = (0.5 * jax.random.normal(jax.random.key(21), (5, out_dim)), 0.1 * jnp.ones(out_dim))
    z = continual.stream_inputs(stream)
    k = z @ stream.x_train.reshape(-1, 5).T + 1.0  # NTK of x·W + b, the same for each output
    regression = functools.partial(
        continual.sequential_kernel_regression, head_size=2, out_dim=out_dim, learning_rate=lr,
        discrete=discrete,
    )  # fmt: skip
    f, res = jax.jit(regression)(k, stream, jnp.array([steps]), f0=_linear_apply(params, z))
    run = _compiled_run("linear", loss="mse")
    final, ref = run(explicit_lr, params, stream, jax.random.key(22), explicit_steps, 2.0)
    return f[0], _linear_apply(final, z), res, ref, params, z


@pytest.mark.parametrize("multi_head", [True, False])
def test_kernel_regression_equals_explicit_gd_for_linear_model(multi_head):
    f, f_ref, res, ref, params, z = _kernel_vs_explicit(multi_head, 40, 0.5, True, 40, 0.5)
    np.testing.assert_allclose(f, f_ref, atol=1e-4)  # exact in exact arithmetic; float32
    np.testing.assert_array_equal(res.accuracy[0], ref.accuracy)
    np.testing.assert_allclose(res.train_accuracy[0], ref.train_accuracy, atol=1e-7)
    if multi_head:  # outputs are independent: each head moves only while its task trains
        untouched = _linear_apply(params, z)[:, 4:]
        np.testing.assert_allclose(f[:, 4:], f_ref[:, 4:], atol=1e-4)
        assert float(jnp.max(jnp.abs(f[:, 4:] - untouched))) > 1e-2  # last head did move
        assert float(continual.average_forgetting(res.accuracy[0])) == 0.0


def test_kernel_gradient_flow_matches_many_small_gd_steps():
    # flow for time 8 at lr 0.5 vs 2000 GD steps at lr 0.5 * 8 / 2000: per-mode error is
    # about s·(cλ)²/2 with cλ = 0.002 here, i.e. < 1e-2 of the residual.
    f, f_ref, *_ = _kernel_vs_explicit(False, 8.0, 0.5, False, 2000, 0.5 * 8 / 2000)
    np.testing.assert_allclose(f, f_ref, atol=1e-2)


def test_kernel_regression_converged_interpolates_last_task():
    stream = _random_stream(jax.random.key(23), d=40)  # d > n: the linear kernel is invertible
    z = continual.stream_inputs(stream)
    k = z @ stream.x_train.reshape(-1, 40).T
    regression = functools.partial(continual.sequential_kernel_regression, head_size=2, out_dim=2)
    _, res = jax.jit(regression)(k, stream, jnp.array([jnp.inf]))
    np.testing.assert_array_equal(res.train_accuracy[0], [1.0, 1.0, 1.0])
    assert bool(jnp.isinf(res.epochs).all()) and float(res.loss[0, -1]) < 1e-6
