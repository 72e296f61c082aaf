"""Memory checked before a run starts: each study bounds a run's peak memory from its spec.

A study may give ``Study.memory(spec) -> bytes``: an upper bound on how much the process
grows while it executes that run (parameters, activations, kernels, Jacobians, posterior
factors, and XLA's compilation), stated from the spec alone and tested against measured
peak RSS. :func:`check` compares every run's bound with the memory available before
anything is written, and refuses with one line giving the estimate and the largest width
that fits. The available memory is ``NTK_LIMITS_MEMORY`` (bytes, e.g. ``8e9``) when set,
else the accelerator's memory limit when JAX runs on one, else ``MemAvailable`` of
``/proc/meminfo`` (Linux; else the physical memory). The bounds are measured on a CPU.
"""

import dataclasses
import functools
import math
import os
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "IMAGE_SHAPES",
    "available_bytes",
    "check",
    "format_bytes",
    "image_shape",
    "largest_width",
    "network_sizes",
    "num_params",
]

ENV = "NTK_LIMITS_MEMORY"


def _accelerator_bytes() -> int | None:
    """The smallest memory limit of JAX's local accelerators (None on a CPU backend)."""
    try:
        import jax

        if jax.default_backend() == "cpu":
            return None
        limits = [(d.memory_stats() or {}).get("bytes_limit") for d in jax.local_devices()]
    except Exception:  # noqa: BLE001 - no usable accelerator: fall back to host memory
        return None
    limits = [int(v) for v in limits if v]
    return min(limits) if limits else None


def available_bytes() -> int:
    """Memory a new run may use, in bytes.

    ``$NTK_LIMITS_MEMORY``, else the accelerator's memory limit when JAX runs on one (the
    runs' arrays live there; untested here, no GPU), else ``MemAvailable``.
    """
    if os.environ.get(ENV):
        try:
            value = float(os.environ[ENV])
        except ValueError:
            raise ValueError(
                f"{ENV}={os.environ[ENV]!r} is not a number; allowed: bytes, e.g. 8e9"
            ) from None
        if not value > 0:
            raise ValueError(f"{ENV}={os.environ[ENV]!r}; allowed: a positive number of bytes")
        return int(value)
    device = _accelerator_bytes()
    if device is not None:
        return device
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def format_bytes(n: float) -> str:
    """``1.5 GiB``-style text."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover - unreachable


# (H, W, C) of each image set before pooling: bounds are computed from a spec alone.
IMAGE_SHAPES = {"mnist5k": (28, 28, 1), "digits": (8, 8, 1), "mnist": (28, 28, 1),
                "mnist_standin": (28, 28, 1), "cifar10": (32, 32, 3)}  # fmt: skip


def image_shape(dataset: str, pool: int, *, flatten: bool) -> tuple[int, ...]:
    """One input of ``dataset`` pooled by ``pool``: ``(H, W, C)``, or ``(H·W·C,)`` flattened.

    Sets not in :data:`IMAGE_SHAPES` count as 32 × 32 × 3 (the largest the studies use).
    """
    h, w, c = IMAGE_SHAPES.get(dataset, (32, 32, 3))
    h, w = max(h // pool, 1), max(w // pool, 1)
    return (h * w * c,) if flatten else (h, w, c)


def _abstract_params(network: Any, input_shape: tuple[int, ...]):
    """``(architecture, parameter shapes)`` of ``network`` on one input, traced abstractly."""
    import jax

    from ntk_limits import models

    arch = models.build(network)
    shape = (1, *input_shape)
    return arch, jax.eval_shape(lambda k: arch.init_fn(k, shape)[1], jax.random.key(0))


def num_params(network: Any, input_shape: tuple[int, ...]) -> int:
    """Parameters of ``models.build(network)`` on inputs of ``input_shape`` (nothing allocated)."""
    from ntk_limits import models

    return models.num_params(_abstract_params(network, input_shape)[1])


@functools.lru_cache(maxsize=256)
def network_sizes(network: Any, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """``(parameters, floats per example)`` of ``models.build(network)`` on one input.

    The floats per example are every intermediate its forward pass writes on one input of
    ``input_shape`` (the outputs of all equations of its jaxpr, nested ones included): an
    over-count of the activations (bias adds, scalings and nonlinearities each count), the
    same for every kind of network, whose coefficient each study calibrates. Traced
    abstractly: nothing is computed or allocated.
    """
    import jax

    from ntk_limits import models

    arch, params = _abstract_params(network, input_shape)
    x = jax.ShapeDtypeStruct((1, *input_shape), "float32")
    jaxpr = jax.make_jaxpr(arch.apply_fn)(params, x).jaxpr
    return models.num_params(params), _written(jaxpr)


def _written(jaxpr) -> int:
    """Floats written by the equations of ``jaxpr`` and of the jaxprs nested in them."""
    total = 0
    for eqn in jaxpr.eqns:
        total += sum(math.prod(getattr(v.aval, "shape", ())) for v in eqn.outvars)
        for value in eqn.params.values():
            for sub in value if isinstance(value, list | tuple) else (value,):
                sub = getattr(sub, "jaxpr", sub)  # a ClosedJaxpr holds its Jaxpr
                if hasattr(sub, "eqns"):
                    total += _written(sub)
    return total


def largest_width(spec: Any, bound: Callable[[Any], int], budget: int) -> int | None:
    """The largest ``spec.network.width`` whose bound fits ``budget`` (None: none fits).

    Bisection: the bounds grow with the width.
    """
    network = getattr(spec, "network", None)
    if network is None or not hasattr(network, "width"):
        return None
    at = lambda w: bound(dataclasses.replace(spec, network=dataclasses.replace(network, width=w)))
    if at(1) > budget:
        return None
    low, high = 1, max(int(network.width), 2)
    while low + 1 < high:
        mid = (low + high) // 2
        low, high = (mid, high) if at(mid) <= budget else (low, mid)
    return low


def check(name: str, specs: Sequence[Any], bound: Callable[[Any], int] | None,
          names: Sequence[str]) -> None:  # fmt: skip
    """Refuses (``ValueError``, one line) the first run whose bound exceeds the memory.

    Args:
      name: the study.
      specs: its runs.
      bound: ``Study.memory`` (None: the study states no bound; nothing is checked).
      names: how the line names each run.
    """
    if bound is None:
        return
    budget = available_bytes()
    for spec, label in zip(specs, names, strict=True):
        need = bound(spec)
        if need <= budget:
            continue
        fits = largest_width(spec, bound, budget)
        hint = f"width <= {fits} for this network" if fits else "a smaller network or input set"
        raise ValueError(
            f"{name}: the run {label or '(the only one)'} needs at least {format_bytes(need)} "
            f"(estimate) but {format_bytes(budget)} are available; allowed: {hint}"
        )
