"""Study 0 — kernels: the empirical NTK against the infinite-width NTK, as width grows.

One run = one network (a :class:`ntk_limits.models.Network`) on one input set, with all
seeds batched by ``vmap`` inside one compiled program (draw the parameters, take the
empirical NTK). See :mod:`ntk_limits_experiments.kernels.config` for the command, runtime
and expected result. Parameters are drawn by :func:`ntk_limits.models.init_sampler` (the
distribution of stax's ``init_fn`` from one random op, which compiles in a fraction of
the time).
"""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import data, kernels, models
from ntk_limits_experiments import memory
from ntk_limits_experiments.common import compile_jit
from ntk_limits_experiments.config import Config, field
from ntk_limits_experiments.kernels import analysis, plots
from ntk_limits_experiments.kernels import verdict as c5
from ntk_limits_experiments.kernels.config import PROFILES, KernelsConfig
from ntk_limits_experiments.study import Study, Summary

__all__ = [
    "STUDY",
    "Inputs",
    "KernelsSpec",
    "empirical_ntks",
    "execute",
    "expand",
    "infinite_ntk",
    "kernel_metrics",
    "load_inputs",
    "memory_bytes",
    "memory_check",
    "seed_chunk",
    "summarize",
    "verdict_choices",
]


@dataclasses.dataclass(frozen=True)
class Inputs(Config):
    """A fixed input set: ``n`` class-balanced training images, pooled, maybe flattened."""

    dataset: str
    n: int = field(1, ge=1)
    pool: int = field(1, ge=1)
    flatten: bool = False


@dataclasses.dataclass(frozen=True)
class KernelsSpec(Config):
    """One run: a scalar-output network on one input set, every seed in one program."""

    network: models.Network
    inputs: Inputs
    seeds: tuple[int, ...] = field((0,), ge=0, nonempty=True)
    kernel_block: int = field(64, ge=1)
    data_dir: str | None = None


def expand(config: KernelsConfig) -> list[KernelsSpec]:
    """One spec per architecture × parametrization × width (seeds batched inside)."""
    c = config
    mlp = Inputs(c.mlp_dataset, c.mlp_n, c.mlp_pool, flatten=True)
    conv = Inputs(c.conv_dataset, c.conv_n, c.conv_pool)
    stds = dict(activation=c.activation, W_std=c.W_std, b_std=c.b_std)
    families = [
        (mlp, c.mlp_widths, lambda w, p: models.Network("mlp", w, c.mlp_depth, 1, p, **stds)),
        (conv, c.cnn_widths, lambda w, p: models.Network("cnn", w, c.cnn_depth, 1, p, **stds)),
        (conv, c.wrn_ks, lambda k, p: models.Network("wrn", k, c.wrn_depth, 1, p)),
    ]
    return [
        KernelsSpec(network(w, p), inputs, c.seeds, c.kernel_block, c.data_dir)
        for inputs, widths, network in families
        for p in c.parameterizations
        for w in widths
    ]


@functools.lru_cache(maxsize=4)
def load_inputs(inputs: Inputs, data_dir: str | None) -> tuple[np.ndarray, str]:
    """Inputs ``(n, H/pool, W/pool, C)`` (or flattened ``(n, d)``) and their description."""
    ds = data.load(inputs.dataset, split="train", data_dir=data_dir, n=inputs.n, seed=0)
    x = data.pool_images(np.asarray(ds.x, np.float32), inputs.pool)
    shape = "x".join(map(str, x.shape[1:]))
    desc = f"{ds.name}: {inputs.n} class-balanced training images"
    desc += (
        f", {inputs.pool}x{inputs.pool}-average-pooled to {shape}"
        if inputs.pool > 1
        else f" of {shape}"
    )
    if inputs.flatten:
        x = x.reshape(inputs.n, -1)
        desc += ", flattened"
    return x, desc


def empirical_ntks(arch: models.Architecture, x, seeds, chunk: int | None = None) -> np.ndarray:
    """Empirical NTKs at initialisation, one per seed: ``(S, n, n)`` float32.

    Args:
      arch: the network (scalar output).
      x: inputs ``(n, ...)``.
      seeds: ``S`` ints; seed ``s`` draws its parameters from ``jax.random.key(s)``.
      chunk: seeds per ``vmap`` batch; ``None`` (or ``>= S``) batches all seeds at once,
        fewer run ``chunk`` at a time in a ``lax.map`` (memory grows with ``chunk``,
        see :func:`memory_bytes`).

    Returns:
      ``(S, n, n)`` numpy array, computed by one compiled program.
    """
    draw = models.init_sampler(arch, (-1, *x.shape[1:]))
    ntk = kernels.empirical_ntk_fn(arch.apply_fn, algorithm="structured")
    one = lambda k, x: ntk(x, None, draw(k))
    if chunk is None or chunk >= len(seeds):
        batched = lambda keys, x: jax.vmap(one, (0, None))(keys, x)
    else:
        batched = lambda keys, x: jax.lax.map(lambda k: one(k, x), keys, batch_size=chunk)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    x = jnp.asarray(x)
    cost = x.shape[0] * models.num_params(jax.eval_shape(draw, keys[0])) * math.prod(x.shape[1:-1])
    return np.asarray(compile_jit(batched, (keys, x), cost)(keys, x))


@functools.lru_cache(maxsize=16)
def _infinite_ntk(network: models.Network, inputs: Inputs, data_dir, block: int) -> np.ndarray:
    x, _ = load_inputs(inputs, data_dir)
    kernel = kernels.blocked_kernel_fn(models.build(network).kernel_fn, block=min(block, inputs.n))
    return np.asarray(kernel(jnp.asarray(x), None, "ntk"), np.float64)


def infinite_ntk(spec: KernelsSpec) -> np.ndarray:
    """``K_inf (n, n)`` float64: width-free in NTK parametrization, per width in standard."""
    network = spec.network
    if network.parameterization == "ntk":  # the NTK-parametrization limit is width-free
        network = dataclasses.replace(network, width=1)
    return _infinite_ntk(network, spec.inputs, spec.data_dir, spec.kernel_block)


def kernel_metrics(k_emp: np.ndarray, k_inf: np.ndarray) -> dict:
    """Relative Frobenius error, alignment and λ_min ratio of each ``k_emp (S, n, n)``.

    Computed in float64 by the library's :func:`ntk_limits.kernels.kernel_change`,
    :func:`~ntk_limits.kernels.kernel_alignment` and :func:`~ntk_limits.kernels.gram_spectrum`
    (the float32 kernels are symmetrised first).

    Returns:
      ``rel_error``, ``alignment``, ``lambda_min_ratio`` (lists of ``S`` floats), and the
      scalars ``lambda_min_inf``, ``lambda_max_inf``, ``norm_inf`` of ``k_inf (n, n)``.
    """
    with jax.enable_x64(True):
        k_emp = jnp.asarray(k_emp, jnp.float64)
        k_emp = (k_emp + jnp.swapaxes(k_emp, 1, 2)) / 2
        k_inf = jnp.asarray(k_inf, jnp.float64)
        k_inf = (k_inf + k_inf.T) / 2
        spec_inf = kernels.gram_spectrum(k_inf)
        lam_emp = jax.vmap(kernels.gram_spectrum)(k_emp).lambda_min
        return {
            "rel_error": jax.vmap(kernels.kernel_change, (None, 0))(k_inf, k_emp).tolist(),
            "alignment": jax.vmap(kernels.kernel_alignment, (0, None))(k_emp, k_inf).tolist(),
            "lambda_min_ratio": (lam_emp / spec_inf.lambda_min).tolist(),
            "lambda_min_inf": float(spec_inf.lambda_min),
            "lambda_max_inf": float(spec_inf.lambda_max),
            "norm_inf": float(jnp.linalg.norm(k_inf)),
        }


_OVERHEAD = 512 * 2**20  # XLA compilation and buffers independent of the sizes


def memory_bytes(spec: KernelsSpec, chunk: int | None = None) -> int:
    """An upper bound on the memory one run adds to the process, from the spec alone.

    With ``S`` seeds, ``P`` parameters, ``n`` inputs (float32), measured peak-RSS growth
    on this machine: the MLP's structured NTK, seeds ``vmap``-ed, holds about five copies
    of all seeds' parameters (``5.0-5.7 · 4SP`` bytes at widths 2048 and 8192, 2 and 16
    seeds: 2.1 GB at width 2048, 23.7 GB at 8192); a convolutional network's holds
    per-example parameter-sized tensors (``3.8 · 4SnP`` at CNN width 128); the exact
    kernel of a convolutional network holds 4.7-5.5 spatial covariance tiles of
    ``block² (HW)²`` float64 at depths 2-3 (1.5 GB at ``block = 32``, 6.9 GB at 64, on
    14 × 14 inputs). The bound is ``6 · 4SP`` (MLP) or ``4 · 4SnP`` (convolutional),
    plus the activations, the Grams, ``depth + 4`` such tiles and 512 MiB; tested above
    the measured peak and within 3× of it
    (``tests/experiments/test_memory.py``). ``chunk`` seeds at a time (the blocked path
    of :func:`empirical_ntks`) count as ``S = chunk``.
    """
    net, inputs = spec.network, spec.inputs
    h, w, _ = memory.image_shape(inputs.dataset, inputs.pool, flatten=False)
    shape = memory.image_shape(inputs.dataset, inputs.pool, flatten=inputs.flatten)
    p = memory.num_params(net, shape)
    s, n = min(len(spec.seeds), chunk or len(spec.seeds)), inputs.n
    layers = net.depth + 2
    activations = 4 * s * n * layers * net.hidden_width * (1 if inputs.flatten else h * w)
    grams = 8 * (s + 1) * n * n * layers
    if net.kind == "mlp":
        return 6 * 4 * s * p + 4 * activations + grams + _OVERHEAD
    block = min(spec.kernel_block, n)
    spatial = 8 * block * block * (h * w) ** 2 * (net.depth + 4)
    return 4 * 4 * s * n * p + 4 * activations + grams + spatial + _OVERHEAD


def seed_chunk(spec: KernelsSpec, budget: int) -> int | None:
    """Seeds per batch that fit ``budget`` bytes: ``None`` (all at once) when they all fit.

    Else the largest smaller batch that fits (at least 1: :func:`memory_check` has refused
    runs for which even one seed does not fit).
    """
    if memory_bytes(spec) <= budget:
        return None
    fits = [c for c in range(1, len(spec.seeds)) if memory_bytes(spec, c) <= budget]
    return max(fits, default=1)


def memory_check(spec: KernelsSpec) -> int:
    """What a run needs at least (``Study.memory``): its bound with one seed at a time."""
    return memory_bytes(spec, chunk=1)


def execute(spec: KernelsSpec, progress) -> dict:
    """Empirical NTKs of every seed against ``K_inf``; see :func:`kernel_metrics`.

    The seeds are batched all at once when :func:`memory_bytes` fits the available
    memory, else in the largest batches that fit (:func:`seed_chunk`).
    """
    x, desc = load_inputs(spec.inputs, spec.data_dir)
    arch = models.build(spec.network)
    k_inf = infinite_ntk(spec)
    progress(1, 2)
    chunk = seed_chunk(spec, memory.available_bytes())
    k_emp = empirical_ntks(arch, x, spec.seeds, chunk)
    progress(2, 2)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, *x.shape[1:]))[1], jax.random.key(0))
    return {
        **kernel_metrics(k_emp, k_inf),
        "hidden_width": spec.network.hidden_width,
        "num_params": models.num_params(shapes),
        "data": desc,
    }


def verdict_choices(config: KernelsConfig) -> dict:
    """The C5 rule's choices (keywords of ``verdict.decide_c5``) as the config states them."""
    return {"seeds": tuple(config.seeds), "keep_seeds": None,
            "parameterizations": tuple(config.parameterizations), "margin": config.c5_margin,
            "min_widths": 3, "drop_widest": False}  # fmt: skip


def summarize(config: KernelsConfig, records: list[dict], outdir) -> Summary:
    """Error-vs-width and spectrum figures, per-width and slope tables, the C5 verdict."""
    groups = analysis.group_records(records)
    verdict = c5.verdict_c5(groups, verdict_choices(config))
    figures = plots.figures(groups, outdir) if groups else []
    tables = {
        "kernel error by width": analysis.width_table(groups),
        "fitted slopes": analysis.slope_table(verdict.evidence),
    }
    return Summary(figures, tables, [verdict], analysis.text(config, groups, verdict))


STUDY = Study(
    name="kernels",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
    memory=memory_check,
)
