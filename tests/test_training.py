"""Training loops (ntk_limits.training): closed forms, compile once, vmap over seeds."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import models, training


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


# One small network and one compiled training program shared by the checks below.
_ARCH = models.mlp(16, 2, 2)
_X = jax.random.normal(jax.random.key(10), (12, 4))
_Y = jax.random.normal(jax.random.key(11), (12, 2))
_TRAIN = training.make_train(_ARCH.apply_fn, optax.sgd(0.2), 25, batch_size=4)


def _init(key):
    return _ARCH.init_fn(key, (-1, 4))[1]


def test_make_train_compiles_once_across_seeds():
    sizes = []
    for seed in range(3):  # new parameters, data and minibatch key, same shapes
        key = jax.random.key(seed)
        jax.block_until_ready(_TRAIN(_init(key), _X + seed, _Y, key))
        sizes.append(_TRAIN._cache_size())
    # _TRAIN is shared by this module: count only what these calls add (none after the first).
    assert sizes[1:] == sizes[:1] * 2


def test_vmapped_train_compiles_once_across_seeds_and_learning_rates():
    def train(params, key, lr):
        return training.make_train(_ARCH.apply_fn, optax.sgd(lr), 6)(params, _X, _Y, key)[1]

    ensemble = jax.jit(jax.vmap(train))
    for start in (0, 4):
        keys = jax.random.split(jax.random.key(start), 4)
        lrs = jnp.linspace(0.05, 0.2, 4) + start
        jax.block_until_ready(ensemble(jax.vmap(_init)(keys), keys, lrs))
    assert ensemble._cache_size() == 1


def test_vmapped_ensemble_equals_sequential_runs():
    keys = jax.random.split(jax.random.key(3), 4)
    stack = jax.vmap(_init)(keys)
    params_v, losses_v = jax.jit(jax.vmap(_TRAIN, (0, None, None, 0)))(stack, _X, _Y, keys)
    for s in range(4):
        params_s, losses_s = _TRAIN(_init(keys[s]), _X, _Y, keys[s])
        # float32: the vmapped program batches the same matmuls (different kernels, same
        # sums); 25 SGD steps keep rounding differences at the 1e-6 level, so rtol 1e-5.
        np.testing.assert_allclose(losses_v[s], losses_s, rtol=1e-5, atol=1e-6)
        leaves_v, leaves_s = (
            jax.tree_util.tree_leaves(params_v),
            jax.tree_util.tree_leaves(params_s),
        )
        for a, b in zip(leaves_v, leaves_s, strict=True):
            np.testing.assert_allclose(a[s], b, rtol=1e-5, atol=1e-6)
    assert not np.allclose(losses_v[0], losses_v[1])  # the seeds really differ
