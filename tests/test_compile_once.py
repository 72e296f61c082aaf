"""Compiled sweeps compile once per shape, and a vmapped ensemble equals sequential runs."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import kernels, models, parallel, training

_ARCH = models.mlp(16, 2, 2)
_X = jax.random.normal(jax.random.key(10), (12, 4))
_Y = jax.random.normal(jax.random.key(11), (12, 2))


def _init(key):
    return _ARCH.init_fn(key, (-1, 4))[1]


def test_make_train_compiles_once_across_seeds():
    train = training.make_train(_ARCH.apply_fn, optax.sgd(0.1), 8, batch_size=4)
    for seed in range(3):
        key = jax.random.key(seed)
        params, losses = train(_init(key), _X + seed, _Y, key)
        jax.block_until_ready(losses)
    assert train._cache_size() == 1


def test_vmapped_train_compiles_once_across_seeds_and_learning_rates():
    def train(params, key, lr):
        return training.make_train(_ARCH.apply_fn, optax.sgd(lr), 6)(params, _X, _Y, key)[1]

    ensemble = jax.jit(jax.vmap(train))
    for start in (0, 4):
        keys = jax.random.split(jax.random.key(start), 4)
        lrs = jnp.linspace(0.05, 0.2, 4) + start
        jax.block_until_ready(ensemble(jax.vmap(_init)(keys), keys, lrs))
    assert ensemble._cache_size() == 1


def test_empirical_ntk_compiles_once_across_params():
    for algorithm in ("structured", "reference"):
        ntk = jax.jit(kernels.empirical_ntk_fn(_ARCH.apply_fn, algorithm=algorithm))
        for seed in range(3):
            jax.block_until_ready(ntk(_X + seed, None, _init(jax.random.key(seed))))
        assert ntk._cache_size() == 1, algorithm


def test_shard_seeds_compiles_once():
    train = training.make_train(_ARCH.apply_fn, optax.sgd(0.1), 4)
    ensemble = parallel.shard_seeds(train, in_axes=(0, None, None, 0))
    for start in (0, 1):
        keys = jax.random.split(jax.random.key(start), 2)
        jax.block_until_ready(ensemble(jax.vmap(_init)(keys), _X, _Y, keys))
    assert ensemble._cache_size() == 1


def test_vmapped_ensemble_equals_sequential_runs():
    train = training.make_train(_ARCH.apply_fn, optax.sgd(0.2), 25, batch_size=4)
    keys = jax.random.split(jax.random.key(3), 4)
    stack = jax.vmap(_init)(keys)
    params_v, losses_v = jax.jit(jax.vmap(train, (0, None, None, 0)))(stack, _X, _Y, keys)
    for s in range(4):
        params_s, losses_s = train(_init(keys[s]), _X, _Y, keys[s])
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
