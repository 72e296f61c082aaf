"""Networks of the continual study: streams, SP and NTP in one compiled program, kernels.

SGD on an NTK-parametrised network (layer ``h = a·W x + β·b`` with ``W, b ~ N(0, 1)``,
``a = W_std/sqrt(fan_in)``) is SGD on the standard network (``h = W' x + b'``,
``W' = a·W``, ``b' = β·b``: the same initial distribution) with per-layer learning rates
``η·a²`` on weights and ``η·β²`` on biases: ``∂L/∂W = a·∂L/∂W'``, so a step ``η`` on
``W`` moves ``W'`` by ``η·a²·∂L/∂W'``. So every member of one compiled program trains the
standard network; the parametrization is a per-layer learning-rate tree, vmapped with the
seeds. The NTP network's empirical NTK is that of its own apply function at ``W = W'/a``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import continual, data, models
from ntk_limits.kernels import blocked_kernel_fn, empirical_ntk_fn

__all__ = [
    "STDS",
    "Members",
    "architectures",
    "init_members",
    "layer_multipliers",
    "load_stream",
    "member_learning_rates",
    "per_leaf_sgd",
    "sequential_program",
    "stream_kernel",
]

STDS = {"mlp": (math.sqrt(2.0), 0.1), "wrn": (1.0, 0.0)}  # (W_std, b_std) of models.*


def load_stream(spec: dict) -> tuple[continual.TaskArrays, int, int]:
    """The spec's task stream: ``(stacked tasks, head_size, out_dim)`` (numpy arrays)."""
    split = spec["benchmark"].startswith("split")
    options = {"task_incremental": False} if split and spec["class_incremental"] else {}
    tasks = data.make_stream(
        spec["benchmark"], data_dir=spec["data_dir"], seed=spec["stream_seed"],
        n_train=spec["n_train"], n_test=spec["n_test"], **options,
    )  # fmt: skip
    multi_head = split and not spec["class_incremental"]
    stream = continual.stack_tasks(tasks, multi_head=multi_head, flatten=spec["arch"] == "mlp")
    head = tasks[0].num_classes
    return stream, head, head * len(tasks) if multi_head else head


def architectures(spec: dict, out_dim: int) -> dict[str, models.Architecture]:
    """``{"standard": arch, "ntk": arch}`` of the spec's network (``arch`` mlp or wrn)."""
    if spec["arch"] == "mlp":
        make = lambda p: models.mlp(spec["width"], spec["depth"], out_dim, parameterization=p)
    else:
        make = lambda p: models.wide_resnet(
            spec["depth"], spec["width"], out_dim, parameterization=p
        )
    return {p: make(p) for p in ("standard", "ntk")}


def _is_layer(node) -> bool:
    return (
        isinstance(node, tuple | list) and len(node) == 2 and all(hasattr(a, "shape") for a in node)
    )


def layer_multipliers(params, w_std: float, b_std: float):
    """Per-leaf ``a`` with ``standard params = a · NTK params`` for stax Dense/Conv layers.

    Args:
      params: stax parameters (or their shapes): nested tuples/lists with ``(W, b)`` per
        layer, ``W`` of shape ``(..., fan_in_channels, out)`` (Dense or HWIO Conv).
      w_std: the layers' ``W_std``.
      b_std: the layers' ``b_std``.

    Returns:
      The same tree structure with floats ``W_std/sqrt(prod(W.shape[:-1]))`` and ``b_std``.
    """
    if _is_layer(params):
        fan_in = int(np.prod(params[0].shape[:-1]))
        return type(params)((w_std / math.sqrt(fan_in), b_std))
    if isinstance(params, tuple | list):
        return type(params)(layer_multipliers(p, w_std, b_std) for p in params)
    raise TypeError(f"unexpected stax parameter node {type(params).__name__}")


def member_learning_rates(multipliers, parameterization: str, lr: float):
    """Per-leaf SGD learning rates on the standard network: ``lr`` (SP) or ``lr·a²`` (NTP)."""
    scale = (lambda a: lr * a * a) if parameterization == "ntk" else (lambda a: lr)
    return jax.tree.map(lambda a: np.float32(scale(a)), multipliers)


class Members(NamedTuple):
    """The vmapped members of one run, parametrization-major (all seeds of the first, ...).

    Attributes:
      params: standard-network parameters with a leading member axis ``M = P·S``.
      keys: ``(M,)`` training keys (the same seed gives the same init and key in every
        parametrization).
      lrs: per-leaf learning-rate tree, leaves ``(M,)`` float32.
      is_ntk: ``(M,)`` bool.
      multipliers: per-leaf ``a`` of :func:`layer_multipliers`.
    """

    params: Any
    keys: jax.Array
    lrs: Any
    is_ntk: np.ndarray
    multipliers: Any


def init_members(arch, spec: dict, input_shape: tuple) -> Members:
    """Initialises every (parametrization, seed) member of a spec in one compiled call."""
    pars, seeds = spec["parameterizations"], np.asarray(spec["seeds"])

    @jax.jit
    def setup(seeds):
        keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(seeds)
        params = jax.vmap(lambda k: arch.init_fn(k, (-1, *input_shape))[1])(keys[:, 0])
        tile = lambda a: jnp.concatenate([a] * len(pars))
        return jax.tree.map(tile, params), tile(keys[:, 1])

    params, keys = setup(seeds)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, *input_shape))[1], jax.random.key(0))
    mult = layer_multipliers(shapes, *STDS[spec["arch"]])
    trees = [member_learning_rates(mult, p, spec[f"lr_{p}"]) for p in pars]
    lrs = jax.tree.map(lambda *v: np.repeat(np.asarray(v, np.float32), len(seeds)), *trees)
    is_ntk = np.repeat(np.asarray([p == "ntk" for p in pars]), len(seeds))
    return Members(params, keys, lrs, is_ntk, mult)


def per_leaf_sgd(learning_rates) -> optax.GradientTransformation:
    """SGD with one learning rate per parameter leaf (a tree of scalars, may be traced)."""

    def update(grads, state, params=None):
        return jax.tree.map(lambda g, lr: -lr * g, grads, learning_rates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def _member_kernel(archs, multipliers, is_ntk, probe):
    """Empirical NTK on ``probe`` of the member's parametrization, at standard params ``p``.

    Both kernels are computed (each by structured derivatives, which is fast only on the
    plain stax apply functions) and one is selected: the NTP kernel is that of the NTP
    network at ``W = W'/a`` (biases with ``b_std = 0`` do not enter it).
    """
    ntk_sp = empirical_ntk_fn(archs["standard"].apply_fn)
    ntk_ntp = empirical_ntk_fn(archs["ntk"].apply_fn)
    to_ntp = lambda p: jax.tree.map(lambda w, a: w / a if a > 0 else 0.0 * w, p, multipliers)
    return lambda p: jnp.where(is_ntk, ntk_ntp(probe, None, to_ntp(p)), ntk_sp(probe, None, p))


def sequential_program(archs, multipliers, *, head_size, batch_size, linearized):
    """One jitted program running every (parametrization, seed) member on a stream.

    Returns:
      ``program(params, keys, lrs, is_ntk, stream, probe, max_epochs, target)``, vmapped
      over the leading axis of ``params``, ``keys``, ``lrs`` (per-leaf learning-rate trees)
      and ``is_ntk`` (bool); returns ``(params, SequentialResult)`` with a member axis.
      Kernel drift is the empirical NTK of the member's own parametrization on ``probe``
      (not for linearised networks, whose kernel is fixed).
    """
    apply_fn = archs["standard"].apply_fn

    def member(params, key, lrs, is_ntk, stream, probe, max_epochs, target):
        kernel = None if linearized else _member_kernel(archs, multipliers, is_ntk, probe)
        run = continual.sequential_train(
            apply_fn, per_leaf_sgd(lrs), head_size=head_size, batch_size=batch_size,
            linearized=linearized, kernel_fn=kernel,
        )  # fmt: skip
        return run(params, stream, key, max_epochs, target)

    return jax.jit(jax.vmap(member, in_axes=(0, 0, 0, 0, None, None, None, None)))


def stream_kernel(arch: models.Architecture, stream: continual.TaskArrays, block: int):
    """Infinite-width NTK ``(N, T·n)`` between all stream inputs and all training inputs."""
    t, n = stream.y_train.shape
    x_train = np.asarray(stream.x_train).reshape(t * n, *stream.x_train.shape[2:])
    kernel = blocked_kernel_fn(arch.kernel_fn, block=block)
    return kernel(np.asarray(continual.stream_inputs(stream)), x_train, "ntk")
