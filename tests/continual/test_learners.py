"""Tests of ntk_limits.continual._learners: fine-tuning and sequential training.

References: ``training.make_train`` (full-batch SGD), the accuracy of the returned
parameters recomputed outside the scan, the reference empirical-NTK algorithm, and a
linear model (equal to its own linearisation).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import continual, kernels, training
from tests.continual.helpers import (
    MLP,
    compiled_run,
    compiled_update,
    jit,
    mlp_params,
    normal,
    random_stream,
)


def test_zero_learning_rate_gives_constant_matrix_and_no_forgetting():
    stream = random_stream(0)
    params = mlp_params(jax.random.key(1))
    final, res = compiled_run("mlp", batch_size=10)(0.0, params, stream, jax.random.key(2), 3, 2.0)
    for a, b in zip(jax.tree.leaves(final), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(res.accuracy, jnp.broadcast_to(res.accuracy[0], (3, 3)))
    assert float(continual.average_forgetting(res.accuracy)) == 0.0
    np.testing.assert_array_equal(res.epochs, [3, 3, 3])
    assert bool(jnp.isnan(res.kernel_drift).all())  # no kernel_fn: drift not measured


def test_accuracy_matrix_rows_are_test_accuracies_of_trained_params():
    stream = random_stream(10)
    params = mlp_params(jax.random.key(11))
    run = compiled_run("mlp", batch_size=10)
    final, res = run(0.5, params, stream, jax.random.key(12), 4, 2.0)
    f = MLP.apply_fn(final, stream.x_test.reshape(-1, 5)).reshape(3, 10, 6)
    want = [training.accuracy(f[j, :, 2 * j : 2 * j + 2], stream.y_test[j]) for j in range(3)]
    np.testing.assert_allclose(res.accuracy[-1], want, atol=1e-7)
    assert float(continual.average_forgetting(res.accuracy)) != 0.0
    assert run._cache_size() == 1  # lr, epochs and target are traced: one program for both


def test_full_batch_fine_tuning_matches_make_train():
    stream = random_stream(3, t=1, c=6, multi_head=False)
    params = mlp_params(jax.random.key(4))
    learner = continual.fine_tuning(MLP.apply_fn, optax.sgd(0.3), head_size=6)
    args = (stream.x_train[0], stream.y_train[0], 0, jax.random.key(5), 7, 2.0)
    state, log = compiled_update()(0.3, learner.init(params), *args)
    train = jit(training.make_train(MLP.apply_fn, optax.sgd(0.3), 7, loss="xent"))
    ref, _ = train(params, stream.x_train[0], stream.y_train[0], jax.random.key(6))
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)  # same float32 ops in the same order
    acc = training.accuracy(MLP.apply_fn(state.params, stream.x_train[0]), stream.y_train[0])
    np.testing.assert_allclose(log.train_accuracy, acc, atol=1e-7)
    assert int(log.epochs) == 7 and int(state.tasks_seen) == 1


def test_training_stops_at_target_accuracy():
    stream = random_stream(7, t=1, c=6, multi_head=False)
    params = mlp_params(jax.random.key(8))
    update = compiled_update()  # full batch: the program of the test above
    init = continual.fine_tuning(MLP.apply_fn, optax.sgd(0.5), head_size=6).init(params)
    args = (init, stream.x_train[0], stream.y_train[0], 0, jax.random.key(9))
    _, log0 = update(0.5, *args, 50, 0.0)  # target met at once: exactly one epoch
    _, log = update(0.5, *args, 200, 0.9)
    assert int(log0.epochs) == 1
    assert 1 < int(log.epochs) < 200 and float(log.train_accuracy) >= 0.9
    assert update._cache_size() == 1  # lr, epochs and target are traced: no recompilation


def test_kernel_drift_matches_reference_ntk():
    stream = random_stream(13, t=2)
    params = mlp_params(jax.random.key(14))
    probe = stream.x_test[0, :6]
    ntk = kernels.empirical_ntk_fn(MLP.apply_fn)  # structured derivatives, as in the study
    run = continual.sequential_train(
        MLP.apply_fn, optax.sgd(1.0), head_size=2, kernel_fn=lambda p: ntk(probe, None, p)
    )
    one_task = stream._replace(**{k: v[:1] for k, v in stream._asdict().items()})
    final, res = jit(run)(params, one_task, jax.random.key(15), 5, 2.0)
    ntk = jit(kernels.empirical_ntk_fn(MLP.apply_fn, algorithm="reference"))
    want = kernels.kernel_change(ntk(probe, None, params), ntk(probe, None, final))
    np.testing.assert_allclose(res.kernel_drift[0], want, rtol=1e-4)  # float32 kernels
    assert float(want) > 1e-3


def test_linearised_linear_model_equals_model():
    stream = random_stream(16)
    params = (normal(17, (5, 6), 0.3), jnp.zeros(6))
    args = (0.2, params, stream, jax.random.key(18), 3, 2.0)
    _, a = compiled_run("linear", batch_size=10)(*args)
    _, b = compiled_run("linear", batch_size=10, linearized=True)(*args)
    np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1e-7)
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-5)  # f0 + J·Δ vs x·W: float32 rounding
