"""Blocked kernels: tile by tile equals the kernel computed at once; the memory estimate."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import kernels, models


def test_blocked_kernel_equals_unblocked_for_empirical_and_infinite():
    arch = models.mlp(32, 1, 2)
    x = jax.random.normal(jax.random.key(0), (7, 4))  # 7 rows: tiles of 3 need padding
    params = arch.init_fn(jax.random.key(1), (-1, 4))[1]
    ntk = kernels.empirical_ntk_fn(arch.apply_fn)
    blocked = kernels.blocked_kernel_fn(ntk, block=3)
    # Identical float32 computations tile by tile: equal to rounding.
    np.testing.assert_allclose(blocked(x, None, params), jax.jit(ntk)(x, None, params), rtol=1e-5)
    inf = kernels.blocked_kernel_fn(arch.kernel_fn, block=2)
    want = jax.jit(lambda a, b: arch.kernel_fn(a, b, "ntk"))(x, x[:5])
    # arccos near cos = 1 amplifies float32 rounding on the diagonal (measured 3e-5).
    np.testing.assert_allclose(inf(x, x[:5], "ntk"), want, rtol=1e-4)


def test_blocked_kernel_refuses_before_compute_with_the_estimate():
    arch = models.mlp(32, 1, 2)
    blocked = kernels.blocked_kernel_fn(arch.kernel_fn, block=100, max_bytes=2**20)
    x = jnp.zeros((1000, 3))
    with pytest.raises(kernels.KernelTooLarge, match=r"1000x1000 inputs needs 0\.00 GiB.*budget"):
        blocked(x, None, "ntk")
    result, tile = kernels.kernel_memory_bytes(1000, 1000, outputs=1, num_params=10, block=100)
    assert result == 4_000_000 and tile == 200 * 10 * 4 + 100 * 100 * 4


def test_block_must_be_positive():
    with pytest.raises(ValueError, match="block must be a positive integer"):
        kernels.blocked_kernel_fn(lambda a, b: a @ b.T, block=0)
