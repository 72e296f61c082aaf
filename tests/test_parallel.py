"""ntk_limits.parallel: sharded ensembles and kernel blocks equal single-device results.

The multi-device checks run in one subprocess with four forced CPU devices
(``XLA_FLAGS=--xla_force_host_platform_device_count=4`` must be set before JAX starts).
Each single-device reference is compiled once and sliced: the 6-seed ensemble is the
first 6 seeds of the 8-seed one, and every kernel block is a block of one 24x24 kernel.
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
    import jax, jax.numpy as jnp, optax
    from jax.sharding import PartitionSpec
    from ntk_limits import kernels, models, parallel, training

    def sharding(a):
        return {"devices": len({s.device for s in a.addressable_shards}),
                "by_rows": a.sharding.spec == PartitionSpec("devices")}

    out = {"devices": jax.device_count()}
    arch = models.mlp(16, 2, 3)
    x = jax.random.normal(jax.random.key(1), (24, 5))
    y = jax.random.normal(jax.random.key(2), (24, 3))
    train = training.make_train(arch.apply_fn, optax.sgd(0.1), 10, batch_size=8)
    keys = jax.random.split(jax.random.key(8), 8)
    stack = jax.vmap(lambda k: arch.init_fn(k, (-1, 5))[1])(keys)
    p_ref, losses_ref = jax.jit(jax.vmap(train, (0, None, None, 0)))(stack, x, y, keys)
    for seeds in (8, 6):  # 8 divides by 4 devices; 6 needs padding
        sub = jax.tree_util.tree_map(lambda a: a[:seeds], stack)
        p, losses = parallel.sharded_ensemble(train, sub, x, y, keys[:seeds])
        err = jax.tree_util.tree_map(lambda a, b: float(jnp.max(jnp.abs(a - b[:seeds]))), p, p_ref)
        out[f"ensemble{seeds}"] = {
            "loss_err": float(jnp.max(jnp.abs(losses - losses_ref[:seeds]))),
            "param_err": max(jax.tree_util.tree_leaves(err)),
            "shape": list(losses.shape),
            **sharding(losses),
        }
    p0, p1 = (jax.tree_util.tree_map(lambda a, i=i: a[i], stack) for i in (0, 1))
    for algo in ("structured", "reference"):
        ntk = kernels.empirical_ntk_fn(arch.apply_fn, algorithm=algo)
        full = jax.jit(ntk)(x, x, p0)  # (24, 24) single-device reference
        fn = parallel.sharded_kernel_fn(ntk)
        blocks = {(10, 24): fn(x[:10], x, p0)}  # 10 rows: padded to 12
        fn(x[:10] + 1.0, x, p1)  # new values, same shapes
        out[f"kernel_cache-{algo}"] = fn._cache_size()
        if algo == "structured":  # 8 rows, no padding, x2 = None; the cached one-call form
            blocks[(8, 8)] = parallel.sharded_kernel(ntk, x[:8], None, p0)
        for (n1, n2), k in blocks.items():
            want = full[:n1, :n2]
            out[f"kernel-{algo}-{n1}"] = {
                "err": float(jnp.max(jnp.abs(k - want)) / jnp.max(jnp.abs(want))),
                "shape": list(k.shape),
                **sharding(k),
            }
    print("RESULT" + json.dumps(out))
    """
)


@pytest.fixture(scope="module")
def four_devices():
    """Runs the child once; every multi-device test reads its measurements."""
    flags = os.environ.get("XLA_FLAGS", "")  # keeps the suite's compile options (conftest)
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count=4".strip()
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    return json.loads(line[len("RESULT") :])


def test_four_devices_are_used(four_devices):
    assert four_devices["devices"] == 4
    # 8 seeds over 4 devices stay sharded: one shard per device.
    assert four_devices["ensemble8"]["devices"] == 4
    assert four_devices["ensemble8"]["by_rows"]
    # 8 kernel rows over 4 devices: the result comes back row-sharded.
    assert four_devices["kernel-structured-8"]["devices"] == 4
    assert four_devices["kernel-structured-8"]["by_rows"]


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


@pytest.mark.parametrize("algo", ["structured", "reference"])
def test_sharded_kernel_compiles_once(four_devices, algo):
    assert four_devices[f"kernel_cache-{algo}"] == 1


_ARCH = models.mlp(8, 1, 2)
_X = jax.random.normal(jax.random.key(0), (6, 3))
_Y = jax.random.normal(jax.random.key(1), (6, 2))
_TRAIN = training.make_train(_ARCH.apply_fn, optax.sgd(0.1), 5)


def _stack(key, seeds=3):
    keys = jax.random.split(key, seeds)
    return jax.vmap(lambda k: _ARCH.init_fn(k, (-1, 3))[1])(keys), keys


def test_one_device_matches_vmap():
    stack, keys = _stack(jax.random.key(2))
    params, losses = parallel.sharded_ensemble(_TRAIN, stack, _X, _Y, keys)
    ref_params, ref_losses = jax.vmap(_TRAIN, (0, None, None, 0))(stack, _X, _Y, keys)
    # Exact up to float32 rounding: the same program on one device.
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6, atol=1e-7)
    ntk = kernels.empirical_ntk_fn(_ARCH.apply_fn)
    p0 = jax.tree_util.tree_map(lambda a: a[0], params)
    np.testing.assert_allclose(
        parallel.sharded_kernel(ntk, _X, None, p0), jax.jit(ntk)(_X, None, p0), rtol=1e-6
    )


def test_shard_seeds_compiles_once():
    ensemble = parallel.shard_seeds(_TRAIN, in_axes=(0, None, None, 0))
    for start in (3, 4):  # new seeds and data, same shapes
        stack, keys = _stack(jax.random.key(start))
        jax.block_until_ready(ensemble(stack, _X + start, _Y, keys))
    assert ensemble._cache_size() == 1


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
