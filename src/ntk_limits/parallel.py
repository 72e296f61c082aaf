"""Sharding seed ensembles and kernel blocks across devices (``jax.sharding``).

Two patterns cover the project's parallel work, both over a 1-D :class:`jax.sharding.Mesh`
of all visible devices (axis ``"devices"``):

* :func:`shard_seeds` / :func:`sharded_ensemble`: a function written for one network
  (one seed, one learning rate) is ``vmap``-ed, and the batch axis is split across
  devices with ``jax.shard_map``; each device trains its share of the seeds in one
  compiled program.
* :func:`sharded_kernel_fn` / :func:`sharded_kernel`: a kernel ``k(x1, x2, *args)`` is
  computed in row blocks: the rows of ``x1`` are split across devices, ``x2`` and the
  remaining arguments (parameters) are replicated, each device computes its
  ``(n1 / d, n2, ...)`` block, and the result comes back row-sharded.

A batch that does not divide by the device count is padded with copies of its last
entry and the padding is dropped from the result (wasted work, never wrong results).
On one device everything reduces to ``jit(vmap(fn))`` / ``jit(kernel_fn)``.

Example::

    from ntk_limits import parallel, training
    train = training.make_train(arch.apply_fn, optax.sgd(0.1), 500)
    params, losses = parallel.sharded_ensemble(train, params_stack, x, y, keys)
    # params: leaves (S, ...); losses: (S, 500); seed axis split across devices

    ntk = parallel.sharded_kernel_fn(kernels.empirical_ntk_fn(arch.apply_fn))
    k = ntk(x_test, x_train, params)  # (n_test, n_train), rows split across devices

Testing on one CPU: ``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (set before JAX
initialises) exposes four CPU devices; ``tests/test_parallel.py`` checks the sharded
results against single-device runs that way.

Multi-host: the same code runs unchanged across hosts. Every process calls
``jax.distributed.initialize()`` (coordinator address, process count and id from its
arguments or the cluster environment) before any other JAX call; ``jax.devices()`` then
lists the devices of all hosts, :func:`device_mesh` spans them, and every process calls
the same functions with the same inputs (seeds, parameters, data: small arrays that each
process can build identically from the same keys; data loaded per host is assembled with
``jax.make_array_from_process_local_data``). Results are global arrays; read a host's
share with ``addressable_shards`` or gather with
``jax.experimental.multihost_utils.process_allgather``.
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = [
    "AXIS",
    "device_mesh",
    "seed_sharding",
    "shard_seeds",
    "sharded_ensemble",
    "sharded_kernel",
    "sharded_kernel_fn",
]

AXIS = "devices"


def device_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named :data:`AXIS` over ``devices`` (default: all, ``jax.devices()``)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def seed_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Sharding of an array whose leading (seed or row) axis is split across ``mesh``."""
    return NamedSharding(device_mesh() if mesh is None else mesh, PartitionSpec(AXIS))


def _pad_leading(a: jax.Array, pad: int) -> jax.Array:
    """Appends ``pad`` copies of the last entry along axis 0."""
    if pad == 0:
        return a
    return jnp.concatenate([a, jnp.repeat(a[-1:], pad, axis=0)], axis=0)


def _axes(in_axes: int | None | Sequence[int | None], num_args: int) -> tuple:
    axes = (in_axes,) * num_args if in_axes is None or isinstance(in_axes, int) else in_axes
    axes = tuple(axes)
    if len(axes) != num_args or any(a not in (0, None) for a in axes):
        raise ValueError(
            f"in_axes must be 0, None, or one 0/None per argument ({num_args}); got {in_axes!r}"
        )
    if all(a is None for a in axes):
        raise ValueError("in_axes: at least one argument must be batched (0)")
    return axes


def _batch_size(args: tuple, axes: tuple) -> int:
    sizes = {
        int(leaf.shape[0])
        for arg, ax in zip(args, axes, strict=True)
        if ax == 0
        for leaf in jax.tree_util.tree_leaves(arg)
    }
    if len(sizes) != 1:
        raise ValueError(f"batched arguments disagree on the leading (seed) axis: {sorted(sizes)}")
    return sizes.pop()


def shard_seeds(
    fn: Callable,
    *,
    in_axes: int | None | Sequence[int | None] = 0,
    mesh: Mesh | None = None,
    donate: bool = False,
) -> Callable:
    """``vmap(fn)`` with the batch (seed) axis split across the devices of ``mesh``.

    Args:
      fn: a function of positional arguments written for one seed; it returns a pytree.
      in_axes: per positional argument, ``0`` (batched along its leading axis, every leaf)
        or ``None`` (shared, replicated on every device); one value applies to all.
      mesh: a 1-D mesh with axis :data:`AXIS` (default :func:`device_mesh`).
      donate: donate the batched arguments' buffers (e.g. a parameter stack that is
        replaced by the trained one).

    Returns:
      A jitted ``batched(*args)`` whose outputs have a leading axis of the batch size
      ``S``, sharded over the mesh when ``S`` divides by the device count (otherwise the
      padded batch is computed sharded and the result, padding dropped, is gathered).
      It compiles once per argument shape.
    """
    mesh = device_mesh() if mesh is None else mesh
    num_devices = mesh.devices.size

    def batched(*args):
        axes = _axes(in_axes, len(args))
        size = _batch_size(args, axes)
        pad = -size % num_devices
        args = tuple(
            jax.tree_util.tree_map(lambda a: _pad_leading(a, pad), arg) if ax == 0 else arg
            for arg, ax in zip(args, axes, strict=True)
        )
        specs = tuple(PartitionSpec(AXIS) if ax == 0 else PartitionSpec() for ax in axes)
        local = jax.shard_map(
            jax.vmap(fn, in_axes=axes),
            mesh=mesh,
            in_specs=specs,
            out_specs=PartitionSpec(AXIS),
            check_vma=False,  # see sharded_kernel_fn
        )
        return jax.tree_util.tree_map(lambda o: o[:size], local(*args))

    if not donate:
        return jax.jit(batched)
    # Donation needs the argument positions; they are known once in_axes is a tuple.
    if isinstance(in_axes, int):
        return jax.jit(batched, donate_argnums=0)
    return jax.jit(batched, donate_argnums=tuple(i for i, a in enumerate(in_axes) if a == 0))


@functools.lru_cache(maxsize=32)
def _ensemble_program(train_fn: Callable, mesh: Mesh) -> Callable:
    return shard_seeds(train_fn, in_axes=(0, None, None, 0), mesh=mesh)


def sharded_ensemble(
    train_fn: Callable, params_stack, x: jax.Array, y: jax.Array, keys: jax.Array, *, mesh=None
):
    """Trains ``S`` networks at once, seeds split across devices.

    Args:
      train_fn: ``train(params, x, y, key) -> outputs`` for one network, e.g. from
        :func:`ntk_limits.training.make_train`.
      params_stack: parameter pytree whose leaves have a leading seed axis ``S``
        (e.g. ``jax.vmap(init)(keys)``).
      x: ``(n, ...)`` training inputs, shared by all seeds.
      y: ``(n, ...)`` training targets, shared.
      keys: ``(S,)`` PRNG keys, one per seed.
      mesh: a 1-D mesh (default all devices).

    Returns:
      ``train_fn``'s outputs with a leading seed axis ``S`` (e.g. ``(params, losses)``
      with leaves ``(S, ...)`` and ``losses: (S, num_steps)``). The compiled program is
      cached per ``(train_fn, mesh)``: repeated calls with the same shapes compile once.
    """
    mesh = device_mesh() if mesh is None else mesh
    return _ensemble_program(train_fn, mesh)(params_stack, x, y, keys)


def sharded_kernel_fn(kernel_fn: Callable, *, mesh: Mesh | None = None) -> Callable:
    """Row-blocked kernel: rows of ``x1`` split across devices, the rest replicated.

    Args:
      kernel_fn: ``k(x1, x2, *args) -> (n1, n2, ...)``, e.g. an empirical NTK
        ``ntk(x1, x2, params)`` or an infinite-width ``kernel_fn`` wrapped to fix
        ``get``; must accept an explicit ``x2`` (``None`` is resolved here).
      mesh: a 1-D mesh with axis :data:`AXIS` (default all devices).

    Returns:
      Jitted ``k(x1, x2, *args)`` with ``x1: (n1, ...)``, ``x2: (n2, ...)`` or ``None``
      (meaning ``x1``); the result ``(n1, n2, ...)`` is sharded by rows. Each device
      evaluates ``kernel_fn`` on its block of rows against all of ``x2``.
    """
    mesh = device_mesh() if mesh is None else mesh
    num_devices = mesh.devices.size

    def blocked(x1, x2, *args):
        x2 = x1 if x2 is None else x2
        n1 = x1.shape[0]
        rows = _pad_leading(x1, -n1 % num_devices)
        specs = (PartitionSpec(AXIS), PartitionSpec(), *(PartitionSpec() for _ in args))
        # check_vma=False: with it, differentiating through replicated parameters inserts
        # variance casts whose transpose (a psum) neural-tangents' structured-derivative
        # transposer cannot handle; the per-device programs use no collectives anyway.
        local = jax.shard_map(
            kernel_fn, mesh=mesh, in_specs=specs, out_specs=PartitionSpec(AXIS), check_vma=False
        )
        return local(rows, x2, *args)[:n1]

    return jax.jit(blocked)


@functools.lru_cache(maxsize=32)
def _kernel_program(kernel_fn: Callable, mesh: Mesh) -> Callable:
    return sharded_kernel_fn(kernel_fn, mesh=mesh)


def sharded_kernel(kernel_fn: Callable, x1: jax.Array, x2: jax.Array | None, *args, mesh=None):
    """One evaluation of :func:`sharded_kernel_fn` (compiled program cached per function).

    Args:
      kernel_fn: ``k(x1, x2, *args) -> (n1, n2, ...)``.
      x1: ``(n1, ...)``, split by rows across devices.
      x2: ``(n2, ...)`` or ``None`` (meaning ``x1``), replicated.
      *args: further arguments (parameters), replicated.
      mesh: a 1-D mesh (default all devices).

    Returns:
      ``(n1, n2, ...)``, sharded by rows.
    """
    mesh = device_mesh() if mesh is None else mesh
    return _kernel_program(kernel_fn, mesh)(x1, x2, *args)
