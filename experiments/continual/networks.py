"""Networks of the continual study: streams, SP and NTP in one compiled program, kernels.

SGD on an NTK-parametrised network (layer ``h = a·W x + β·b`` with ``W, b ~ N(0, 1)``,
``a = W_std/sqrt(fan_in)``) is SGD on the standard network (``h = W' x + b'``,
``W' = a·W``, ``b' = β·b``: the same initial distribution) with per-layer learning rates
``η·a²`` on weights and ``η·β²`` on biases: ``∂L/∂W = a·∂L/∂W'``, so a step ``η`` on
``W`` moves ``W'`` by ``η·a²·∂L/∂W'``. So every member of one compiled program trains the
standard network; the parametrization is a per-layer learning-rate tree, vmapped with the
seeds. The NTP network's empirical NTK is that of its own apply function at ``W = W'/a``.
The per-layer ``(a, β)`` are :func:`ntk_limits.models.fan_in_scales` of the network.
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import continual, data, models
from ntk_limits.kernels import blocked_kernel_fn, empirical_ntk_fn
from ntk_limits_experiments import common
from ntk_limits_experiments.continual.config import NEVER, NetworkRun, Stream

__all__ = [
    "Members",
    "StreamSizes",
    "both_parameterizations",
    "init_members",
    "load_stream",
    "member_learning_rates",
    "per_leaf_sgd",
    "run_cost",
    "sequential_program",
    "stream_heads",
    "stream_kernel",
    "stream_sizes",
]


def load_stream(
    stream: Stream, *, flatten: bool, data_dir: str | None
) -> tuple[continual.TaskArrays, int, int]:
    """The tasks of ``stream``: ``(stacked tasks, head_size, out_dim)`` (numpy arrays).

    Args:
      stream: which stream, subsets and seed.
      flatten: inputs as ``(n, d)`` vectors (for MLPs) instead of images.
      data_dir: where the paper data sets are.
    """
    options = {"task_incremental": False} if stream.split and stream.class_incremental else {}
    tasks = data.make_stream(
        stream.benchmark, data_dir=data_dir, seed=stream.seed,
        n_train=stream.n_train, n_test=stream.n_test, **options,
    )  # fmt: skip
    arrays = continual.stack_tasks(tasks, multi_head=stream.multi_head, flatten=flatten)
    head = tasks[0].num_classes
    return arrays, head, head * len(tasks) if stream.multi_head else head


class StreamSizes(NamedTuple):
    """The shapes of a stream: ``tasks`` × ``train`` (and ``test``) inputs of ``input_shape``."""

    tasks: int
    train: int
    test: int
    input_shape: tuple[int, ...]
    head_size: int
    out_dim: int


@functools.cache
def stream_sizes(stream: Stream, data_dir: str | None) -> StreamSizes:
    """The sizes of ``stream`` (loads it once per process, keeps only the sizes)."""
    arrays, head, out_dim = load_stream(stream, flatten=False, data_dir=data_dir)
    t, n, *shape = arrays.x_train.shape
    return StreamSizes(t, n, arrays.x_test.shape[1], tuple(shape), head, out_dim)


def stream_heads(stream: Stream, data_dir: str | None) -> tuple[int, int]:
    """``(head_size, out_dim)`` of ``stream``, as :func:`load_stream` gives them.

    Reads no data (:func:`ntk_limits.data.stream_heads`), so expanding a config is cheap
    even for the paper's streams. ``data_dir`` is unused (kept for the call sites).
    """
    del data_dir
    options = {"task_incremental": False} if stream.split and stream.class_incremental else {}
    num_tasks, head = data.stream_heads(stream.benchmark, **options)
    return head, head * num_tasks if stream.multi_head else head


def both_parameterizations(network: models.Network) -> dict[str, models.Architecture]:
    """``{"standard": arch, "ntk": arch}``: ``network`` built in both parametrisations."""
    return {
        p: models.build(dataclasses.replace(network, parameterization=p))
        for p in ("standard", "ntk")
    }


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
      multipliers: per-leaf ``a`` of :func:`ntk_limits.models.fan_in_scales`.
      cost: :func:`run_cost`; decides how the run's programs are compiled
        (:func:`ntk_limits_experiments.common.compile_jit`).
    """

    params: Any
    keys: jax.Array
    lrs: Any
    is_ntk: np.ndarray
    multipliers: Any
    cost: float


def run_cost(spec: NetworkRun, stream: continual.TaskArrays, num_params: int) -> float:
    """Rough multiply-adds of the run's longest pass: ``3·P·M·(T·n)·max_epochs``.

    ``P = num_params`` of one network, ``M`` members, ``T·n`` training examples; a forward
    and backward pass costs about three multiply-adds per parameter and example (kernels
    and evaluation are left out).
    """
    members = len(spec.parameterizations) * len(spec.seeds)
    epochs = max(s.max_epochs for s in spec.settings)
    return 3.0 * num_params * members * stream.y_train.size * epochs


def init_members(
    arch: models.Architecture, spec: NetworkRun, stream: continual.TaskArrays
) -> Members:
    """Initialises every (parametrization, seed) member of a spec in one compiled call.

    Args:
      arch: the standard-parametrisation network every member trains.
      spec: the run (parametrisations, seeds, learning rates, settings).
      stream: the tasks (their input shape and size).
    """
    pars, seeds = spec.parameterizations, np.asarray(spec.seeds)
    input_shape = (-1, *stream.x_train.shape[2:])
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, input_shape)[1], jax.random.key(0))
    cost = run_cost(spec, stream, sum(math.prod(s.shape) for s in jax.tree.leaves(shapes)))

    def setup(seeds):
        keys = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(seeds)
        params = jax.vmap(lambda k: arch.init_fn(k, input_shape)[1])(keys[:, 0])
        tile = lambda a: jnp.concatenate([a] * len(pars))
        return jax.tree.map(tile, params), tile(keys[:, 1])

    params, keys = common.compile_jit(setup, (seeds,), cost)(seeds)
    mult = models.fan_in_scales(shapes, arch.network.W_std, arch.network.b_std)
    trees = [member_learning_rates(mult, p, spec.learning_rate(p)) for p in pars]
    lrs = jax.tree.map(lambda *v: np.repeat(np.asarray(v, np.float32), len(seeds)), *trees)
    is_ntk = np.repeat(np.asarray([p == "ntk" for p in pars]), len(seeds))
    return Members(params, keys, lrs, is_ntk, mult, cost)


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


def sequential_program(
    archs: dict[str, models.Architecture],
    members: Members,
    stream: continual.TaskArrays,
    probe,
    *,
    head_size: int,
    batch_size: int,
    linearized: bool,
):
    """One compiled program running every (parametrization, seed) member on ``stream``.

    The members (:func:`init_members`) are vmapped; the program is compiled once by
    :func:`ntk_limits_experiments.common.compile_jit` (without LLVM's optimisation on a
    CPU when the run's cost ``members.cost`` is small) and serves every setting.

    Args:
      archs: ``{"standard": arch, "ntk": arch}`` (:func:`both_parameterizations`).
      members: parameters, keys, learning-rate trees and parametrisations of the members.
      stream: the tasks.
      probe: ``(p, ...)`` inputs on which the empirical NTK's drift is measured: that of
        the member's own parametrization (not for linearised networks, whose kernel is
        fixed).
      head_size: outputs per head.
      batch_size: minibatch size.
      linearized: train the networks linearised at their initialisation.

    Returns:
      ``program(max_epochs, target) -> (params, SequentialResult)``, both with a leading
      member axis.
    """
    apply_fn = archs["standard"].apply_fn

    def member(params, key, lrs, is_ntk, stream, probe, max_epochs, target):
        kernel = None if linearized else _member_kernel(archs, members.multipliers, is_ntk, probe)
        run = continual.sequential_train(
            apply_fn, per_leaf_sgd(lrs), head_size=head_size, batch_size=batch_size,
            linearized=linearized, kernel_fn=kernel,
        )  # fmt: skip
        return run(params, stream, key, max_epochs, target)

    vmapped = jax.vmap(member, in_axes=(0, 0, 0, 0, None, None, None, None))
    args = (members.params, members.keys, members.lrs, members.is_ntk, stream, probe)
    compiled = common.compile_jit(vmapped, (*args, 1, NEVER), members.cost)
    return lambda max_epochs, target: compiled(*args, max_epochs, target)


def stream_kernel(arch: models.Architecture, stream: continual.TaskArrays, block: int):
    """Infinite-width NTK ``(N, T·n)`` between all stream inputs and all training inputs."""
    t, n = stream.y_train.shape
    x_train = np.asarray(stream.x_train).reshape(t * n, *stream.x_train.shape[2:])
    kernel = blocked_kernel_fn(arch.kernel_fn, block=block)
    return kernel(np.asarray(continual.stream_inputs(stream)), x_train, "ntk")
