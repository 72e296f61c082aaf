"""Kernels computed in blocks over inputs, for kernels too large to compute at once.

:func:`blocked_kernel_fn` wraps any ``kernel(x1, x2, *args)`` (an empirical NTK from
:func:`ntk_limits.kernels.empirical_ntk_fn` with ``args = (params,)``, or an
infinite-width ``Architecture.kernel_fn`` with ``args = ("ntk",)``) and evaluates it on
``block × block`` tiles, each tile by the same compiled function (the last tile is
padded), assembling the result on the host. It refuses, before any compute, a kernel
whose result or smallest tile cannot fit the stated memory budget.
"""

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["KernelTooLarge", "blocked_kernel_fn", "kernel_memory_bytes"]


class KernelTooLarge(MemoryError):
    """The requested kernel cannot be computed within the memory budget."""


def kernel_memory_bytes(
    n1: int,
    n2: int,
    *,
    outputs: int = 1,
    num_params: int = 0,
    block: int | None = None,
    itemsize: int = 4,
) -> tuple[int, int]:
    """Estimates memory of a kernel: the result, and the working set of one tile.

    The tile estimate is that of Jacobian contraction, the most memory-hungry
    algorithm: two Jacobian blocks ``(block, outputs, num_params)`` plus the tile.

    Args:
      n1: rows.
      n2: columns.
      outputs: output dimensions kept in the result (1 when traced).
      num_params: parameters (0 for an infinite-width kernel).
      block: tile size (defaults to the whole kernel).
      itemsize: bytes per number.

    Returns:
      ``(result_bytes, tile_bytes)``.
    """
    b1, b2 = (n1, n2) if block is None else (min(block, n1), min(block, n2))
    result = n1 * n2 * outputs**2 * itemsize
    tile = (b1 + b2) * outputs * num_params * itemsize + b1 * b2 * outputs**2 * itemsize
    return result, tile


def blocked_kernel_fn(
    kernel_fn: Callable,
    *,
    block: int,
    max_bytes: int | None = None,
    outputs: int = 1,
    num_params: int = 0,
) -> Callable[..., np.ndarray]:
    """Returns ``kernel(x1, x2, *args) -> np.ndarray`` computed tile by tile.

    Args:
      kernel_fn: ``(x1, x2, *args) -> (n1, n2, ...)``; ``x2=None`` means ``x1``.
      block: tile size along each input axis (positive).
      max_bytes: memory budget; ``None`` skips the check.
      outputs: output dimensions in the result (for the estimate; 1 when traced).
      num_params: parameters of the network (for the estimate; 0 if infinite-width).

    Returns:
      The blocked kernel function; its result is a host ``numpy`` array
      ``(n1, n2, ...)``.

    Raises:
      KernelTooLarge: when called, if the result or one tile exceeds ``max_bytes``.
    """
    if block < 1:
        raise ValueError(f"block must be a positive integer, got {block}")
    jitted = jax.jit(kernel_fn)

    @functools.lru_cache(maxsize=8)
    def static_tile_fn(args):  # string arguments ("ntk", "nngp") cannot be traced
        return jax.jit(lambda a, b: kernel_fn(a, b, *args))

    def kernel(x1, x2=None, *args):
        x2 = x1 if x2 is None else x2
        n1, n2 = x1.shape[0], x2.shape[0]
        if max_bytes is not None:
            need, tile = kernel_memory_bytes(
                n1, n2, outputs=outputs, num_params=num_params, block=block
            )
            if max(need, tile) > max_bytes:
                raise KernelTooLarge(
                    f"kernel of {n1}x{n2} inputs needs {need / 2**30:.2f} GiB for the result "
                    f"and {tile / 2**30:.2f} GiB per {block}-tile; budget "
                    f"{max_bytes / 2**30:.2f} GiB: use a smaller block or fewer inputs"
                )
        if all(isinstance(a, str) for a in args):
            tile_fn = lambda a, b: static_tile_fn(tuple(args))(a, b)
        else:
            tile_fn = lambda a, b: jitted(a, b, *args)
        rows, cols = _pad(x1, block), _pad(x2, block)
        out = None
        for i in range(math.ceil(n1 / block)):
            for j in range(math.ceil(n2 / block)):
                t = np.asarray(tile_fn(rows[i], cols[j]))
                if out is None:
                    out = np.empty((n1, n2, *t.shape[2:]), t.dtype)
                r, c = min(block, n1 - i * block), min(block, n2 - j * block)
                out[i * block : i * block + r, j * block : j * block + c] = t[:r, :c]
        return out

    return kernel


def _pad(x, block: int) -> list[jax.Array]:
    n = x.shape[0]
    pad = (-n) % block
    if pad:
        x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
    return [x[i : i + block] for i in range(0, n + pad, block)]
