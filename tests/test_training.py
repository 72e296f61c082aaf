"""Training loops: converge to closed forms, compile once, vmap over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import training


def test_full_batch_gd_on_least_squares_reaches_the_normal_equations_solution(x64):
    x = jax.random.normal(jax.random.key(0), (20, 3))
    y = x @ jnp.array([[1.0], [-2.0], [0.5]]) + 0.1 * jax.random.normal(jax.random.key(1), (20, 1))
    train = training.make_train(lambda w, x: x @ w, optax.sgd(0.5), 500)
    w, losses = train(jnp.zeros((3, 1)), x, y, jax.random.key(2))
    w_star = np.linalg.lstsq(np.asarray(x), np.asarray(y), rcond=None)[0]
    # Hessian xᵀx/n has eigenvalues in ~[0.3, 2]: lr 0.5 contracts by < 0.9 per step, so
    # 500 steps reach ~1e-23 of the start; 1e-8 is float64 rounding of the solve.
    np.testing.assert_allclose(w, w_star, rtol=1e-8)
    assert losses.shape == (500,) and losses[-1] < losses[0]


def test_minibatches_are_drawn_without_replacement_each_epoch():
    x = jnp.arange(12.0)[:, None]
    train = training.make_train(lambda w, x: x * w, optax.sgd(0.0), 6, batch_size=4)
    _, losses = train(jnp.zeros(()), x, x, jax.random.key(0))
    # With w = 0 the batch loss is mean(x²)/2 of its batch; two epochs of 3 batches each
    # cover all 12 points once per epoch, so each epoch's losses sum to the full mean.
    full = float(jnp.mean(x**2) / 2)
    np.testing.assert_allclose(losses[:3].mean(), full, rtol=1e-6)  # float32 sums
    np.testing.assert_allclose(losses[3:].mean(), full, rtol=1e-6)


def test_cross_entropy_and_accuracy_match_numpy():
    logits = jnp.array([[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]])
    labels = jnp.array([0, 1])
    ref = -np.mean(
        [np.log(np.exp(2) / np.exp([2, 0, -1]).sum()), np.log(np.e / np.exp([0, 1, 3]).sum())]
    )
    np.testing.assert_allclose(training.cross_entropy_loss(logits, labels), ref, rtol=1e-6)
    assert float(training.accuracy(logits, labels)) == 0.5
