"""ntk_limits.parallel: sharded ensembles and kernel blocks equal single-device results.

The multi-device checks run in a subprocess with four forced CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before JAX starts).
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models, parallel, training

_CHILD = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np, optax
    from ntk_limits import kernels, models, parallel, training

    out = {"devices": jax.device_count()}
    arch = models.mlp(16, 2, 3)
    x = jax.random.normal(jax.random.key(1), (24, 5))
    y = jax.random.normal(jax.random.key(2), (24, 3))
    train = training.make_train(arch.apply_fn, optax.sgd(0.1), 10, batch_size=8)
    single = jax.jit(jax.vmap(train, (0, None, None, 0)))
    for seeds in (8, 6):  # 8 divides by 4 devices; 6 needs padding
        keys = jax.random.split(jax.random.key(seeds), seeds)
        stack = jax.vmap(lambda k: arch.init_fn(k, (-1, 5))[1])(keys)
        p, losses = parallel.sharded_ensemble(train, stack, x, y, keys)
        p_ref, losses_ref = single(stack, x, y, keys)
        diff = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b))), p, p_ref)
        out[f"ensemble{seeds}"] = {
            "loss_err": float(jnp.max(jnp.abs(losses - losses_ref))),
            "param_err": max(jax.tree_util.tree_leaves(diff)),
            "shape": list(losses.shape),
            "shards": len({s.device for s in losses.addressable_shards}),
            "sharded": losses.sharding.spec == jax.sharding.PartitionSpec("devices"),
        }
    p0 = jax.tree_util.tree_map(lambda a: a[0], stack)
    for algo, n1, x2 in (("structured", 8, None), ("structured", 10, x), ("reference", 10, x)):
        ntk = kernels.empirical_ntk_fn(arch.apply_fn, algorithm=algo)
        k = parallel.sharded_kernel(ntk, x[:n1], x2, p0)
        k_ref = jax.jit(ntk)(x[:n1], x2, p0)
        out[f"kernel-{algo}-{n1}"] = {
            "err": float(jnp.max(jnp.abs(k - k_ref)) / jnp.max(jnp.abs(k_ref))),
            "shape": list(k.shape),
        }
    fn = parallel.sharded_kernel_fn(kernels.empirical_ntk_fn(arch.apply_fn))
    for s in (0, 1):
        fn(x[:8] + s, x, jax.tree_util.tree_map(lambda a: a[s], stack))
    out["kernel_cache"] = fn._cache_size()
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_four_devices_are_used(four_devices):
    assert four_devices["devices"] == 4
    # 8 seeds over 4 devices stay sharded: one shard per device.
    assert four_devices["ensemble8"]["shards"] == 4
    assert four_devices["ensemble8"]["sharded"]


@pytest.mark.parametrize("seeds", [8, 6])
def test_sharded_ensemble_equals_single_device(four_devices, seeds):
    r = four_devices[f"ensemble{seeds}"]
    assert r["shape"] == [seeds, 10]
    # 1e-5: the same float32 program per seed; only the vmap batch size per device
    # differs (2 instead of 8), which may reorder float32 sums over 10 SGD steps.
    assert r["loss_err"] < 1e-5
    assert r["param_err"] < 1e-5


@pytest.mark.parametrize(("algo", "n1"), [("structured", 8), ("structured", 10), ("reference", 10)])
def test_sharded_kernel_equals_single_device(four_devices, algo, n1):
    r = four_devices[f"kernel-{algo}-{n1}"]
    assert r["shape"] == [n1, n1 if n1 == 8 else 24]
    # 1e-5 relative: the same float32 contraction on a block of rows (row blocking
    # changes the matmul shapes, hence the summation order, nothing else).
    assert r["err"] < 1e-5


def test_sharded_kernel_compiles_once(four_devices):
    assert four_devices["kernel_cache"] == 1


def test_one_device_matches_vmap():
    arch = models.mlp(8, 1, 2)
    x = jax.random.normal(jax.random.key(0), (6, 3))
    y = jax.random.normal(jax.random.key(1), (6, 2))
    keys = jax.random.split(jax.random.key(2), 3)
    stack = jax.vmap(lambda k: arch.init_fn(k, (-1, 3))[1])(keys)
    train = training.make_train(arch.apply_fn, optax.sgd(0.1), 5)
    params, losses = parallel.sharded_ensemble(train, stack, x, y, keys)
    ref_params, ref_losses = jax.vmap(train, (0, None, None, 0))(stack, x, y, keys)
    # Exact up to float32 rounding: the same program on one device.
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    ntk = kernels.empirical_ntk_fn(arch.apply_fn)
    p0 = jax.tree_util.tree_map(lambda a: a[0], params)
    np.testing.assert_allclose(
        parallel.sharded_kernel(ntk, x, None, p0), jax.jit(ntk)(x, None, p0), rtol=1e-6
    )


def test_shard_seeds_shared_arguments_and_donation():
    fn = parallel.shard_seeds(lambda a, b: a * b, in_axes=(0, None), donate=True)
    a = jnp.arange(6.0).reshape(3, 2)
    b = jnp.array([1.0, 2.0])
    np.testing.assert_array_equal(fn(a, b), np.arange(6.0).reshape(3, 2) * np.array([1, 2]))


def test_shard_seeds_rejects_bad_axes():
    with pytest.raises(ValueError, match="in_axes"):
        parallel.shard_seeds(lambda a: a, in_axes=(1,))(jnp.ones((2, 2)))
    with pytest.raises(ValueError, match="leading"):
        parallel.shard_seeds(lambda a, b: a + b)(jnp.ones((2,)), jnp.ones((3,)))
