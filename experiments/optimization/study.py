"""Study 1 — optimization: the conditions for fast NGD convergence, measured vs width.

One run = one :class:`ntk_limits.models.Network` (architecture × width ×
parametrization), with all seeds batched by ``vmap`` and all NGD step sizes (and GD step
sizes) batched likewise. See :mod:`ntk_limits_experiments.optimization.config` for the
command, runtime and expected result, and :mod:`ntk_limits.ngd_conditions` for the
definitions of ``K₀``, ``λ_min`` and ``C′``.
"""

import contextlib
import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import data, models
from ntk_limits.optimization import full_gram
from ntk_limits_experiments import common, memory
from ntk_limits_experiments.optimization import analysis, measure, plots, verdict
from ntk_limits_experiments.optimization.config import (
    NUM_CLASSES,
    PROFILES,
    OptimizationConfig,
    OptimizationRun,
)
from ntk_limits_experiments.optimization.program import build_ngd_program, build_program
from ntk_limits_experiments.study import Diverged, Study, Summary

__all__ = ["STUDY", "execute", "expand", "load_data", "memory_bytes", "summarize"]

# Every field of a run but its network, data and step counts (set per family) is copied
# from the config.
_SHARED = tuple(
    f.name
    for f in dataclasses.fields(OptimizationRun)
    if f.name not in ("network", "dataset", "n_train", "pool", "gd_steps", "adam_steps")
)


def expand(config: OptimizationConfig) -> list[OptimizationRun]:
    """One run per network: MLPs (depth × parametrization × width), CNNs, WRNs, BN WRNs."""
    shared = {name: getattr(config, name) for name in _SHARED}
    mlp_steps = (config.gd_steps, config.adam_steps)
    conv_steps = (config.conv_gd_steps, min(config.adam_steps, config.conv_gd_steps))
    mlp = (config.mlp_dataset, config.n_train, config.pool, *mlp_steps)
    conv = (config.conv_dataset, config.conv_n_train, config.conv_pool, *conv_steps)
    sp_widths = config.mlp_standard_widths or config.mlp_widths
    mlp_widths = {"ntk": config.mlp_widths, "standard": sp_widths}
    families = [
        ("mlp", d, *mlp, p, mlp_widths[p])
        for d in config.mlp_depths
        for p in config.mlp_parameterizations
    ]
    for p in config.conv_parameterizations:
        families += [("cnn", config.cnn_depth, *conv, p, config.cnn_widths)]
        families += [("wrn", config.wrn_depth, *conv, p, config.wrn_ks)]
    # The practical network is trained as people train it: standard parametrisation only.
    families += [("wrn_bn", config.wrn_depth, *conv, "standard", config.wrn_bn_ks)]
    return [
        OptimizationRun(
            network=models.Network(kind, w, depth, NUM_CLASSES[ds], parameterization=p),
            dataset=ds,
            n_train=n,
            pool=pool,
            gd_steps=gd_steps,
            adam_steps=adam_steps,
            **shared,
        )
        for kind, depth, ds, n, pool, gd_steps, adam_steps, p, widths in families
        for w in widths
    ]


@functools.lru_cache(maxsize=8)
def load_data(dataset: str, data_dir: str | None, n_train: int, pool: int):
    """Training images ``x: (n, H/pool, W/pool, C)``, one-hot ``y: (n, k)``, and a name."""
    ds = data.load(dataset, split="train", data_dir=data_dir, n=n_train, seed=0)
    x = data.pool_images(np.asarray(ds.x, np.float32), pool)
    y = np.eye(ds.num_classes, dtype=np.float32)[ds.y]
    pooled = f", {pool}x{pool}-average-pooled to {x.shape[1]}x{x.shape[2]}" if pool > 1 else ""
    return x, y, f"{ds.name}: {n_train} class-balanced training images{pooled}"


_OVERHEAD = 512 * 2**20  # XLA compilation and buffers independent of the sizes
_CONV_OVERHEAD = 896 * 2**20  # the same for the (larger) convolutional programs


def memory_bytes(spec: OptimizationRun) -> int:
    """An upper bound on the memory one run adds to the process, from the spec alone.

    With ``S`` seeds, ``P`` parameters, ``n`` images and ``k`` classes: ``4 S`` float64
    Grams of ``(n k)²`` (the initial Grams kept per seed, NGD's Cholesky and its copies),
    ``48 S P`` float32 numbers (measured: 25 copies per seed of an MLP's parameters:
    trajectories, checkpoints, gradients), for a convolutional network also ``4 S n P``
    (its structured NTK keeps per-image parameter-sized tensors: 3.8 measured in the
    kernels study), plus 512 MiB (896 MiB for convolutional programs). Measured
    peak-RSS growth against the bound (NTK MLP depth 1, n = 256, 3 seeds unless said):
    width 64 0.83 / 1.20 GB; width 1024 1.02 / 1.63 GB; width 1024, n = 128 0.78 /
    1.16 GB; width 1024, 1 seed 0.64 / 0.91 GB; width 4096, 1 seed 1.04 / 1.37 GB;
    WRN-10-1 on 16 images 7×7 0.74 GB and the BatchNorm WRN-10-1 0.91 GB (the
    convolutional overhead rests on these two; see ``tests/experiments/test_memory.py``).
    """
    net = spec.network
    shape = memory.image_shape(spec.dataset, spec.pool, flatten=net.kind == "mlp")
    p, s, n = memory.num_params(net, shape), len(spec.seeds), spec.n_train
    grams = 4 * s * 8 * (n * net.out_dim) ** 2
    if net.kind == "mlp":
        return grams + 4 * 48 * s * p + _OVERHEAD
    return grams + 4 * (48 * s * p + 4 * s * n * p) + _CONV_OVERHEAD


def _timed(fn, options, *args):
    """Compiles ``fn`` ahead of time, runs it; returns (result, compile_s, run_s)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(options)
    mid = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, mid - start, time.perf_counter() - mid


def _tree_index(tree, *idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _init(arch: models.Architecture, x, seeds):
    """Parameters for every seed (leading axis) from one compiled call.

    Eager stax init compiles a threefry sampler per parameter shape (~1 s each on this
    CPU); one program at -O0 takes ~2 s for a whole network.
    """
    init = jax.vmap(lambda seed: arch.init_fn(jax.random.key(seed), (-1, *x.shape[1:]))[1])
    seeds = jnp.asarray(seeds)
    return jax.jit(init).lower(seeds).compile(common.cpu_compile_options(0))(seeds)


def _one_blas_thread():
    """Limits OpenBLAS (behind JAX's CPU LAPACK calls) to one thread while a run executes.

    On a busy CPU, two spinning OpenBLAS threads make each Cholesky inside ``jit`` up to
    50x slower than one thread does (measured: 320x320, 0.28 s vs 0.005 s).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it, run as is
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _run(arch: models.Architecture, spec: OptimizationRun, x, y):
    """The compiled program's output for every seed, and its compile and run seconds.

    XLA:CPU compiles small MLPs with LLVM at -O0, large MLPs and convolutional networks at
    -O1. Compilation dominates small runs on CPU: -O0 compiles ~3x faster than the
    default -O2 and costs small MLPs little, but makes convolutions ~7x slower and the
    element-wise work of multi-million-parameter MLPs ~2x slower (measured: 4096 hidden
    units on 256 images); -O1 compiles ~2x faster than -O2 and runs them about as fast.
    """
    params0 = _init(arch, x, spec.seeds)
    # An MLP's multiply-adds per forward pass: parameters × inputs; below ~2e8 compiling
    # dominates and -O0 wins.
    cost = models.num_params(_tree_index(params0, 0)) * x.shape[0]
    options = common.cpu_compile_options(0 if x.ndim == 2 and cost < 2e8 else 1)
    with _one_blas_thread():
        start = time.perf_counter()
        with jax.enable_x64(spec.ngd_float64):
            dtype = jnp.float64 if spec.ngd_float64 else jnp.float32
            cast = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), dtype), t)
            ngd_program = build_ngd_program(arch.apply_fn, spec)
            ngd_out, ngd_compile_s, _ = _timed(ngd_program, options, *map(cast, (params0, x, y)))
            ngd_out = jax.tree_util.tree_map(np.asarray, ngd_out)
        ngd_s = time.perf_counter() - start
        to32 = lambda t: jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float32), t)
        ngd_results = to32((ngd_out["grams0"], ngd_out["ngd_snapshots"]))
        program = build_program(arch.apply_fn, x, y, spec)
        out, compile_s, run_s = _timed(program, options, params0, x, y, *ngd_results)
        start = time.perf_counter()
        grams_f64 = ngd_out["grams0"] if spec.ngd_float64 else _grams_f64(arch, x, params0, options)
    out = jax.tree_util.tree_map(np.asarray, out)
    out |= {k: ngd_out[k] for k in ("damping", "ngd_losses")}
    out["grams0_f64"] = np.asarray(grams_f64, np.float64)
    out["num_params"] = models.num_params(_tree_index(params0, 0))
    times = {"compile": compile_s + ngd_compile_s, "ngd": ngd_s, "run": run_s,
             "gram_f64": time.perf_counter() - start}  # fmt: skip
    return out, times


def _grams_f64(arch: models.Architecture, x, params0, options) -> np.ndarray:
    """``K₀`` per seed, ``(S, nk, nk)``, computed in float64 from the same parameters.

    The float32 Gram resolves eigenvalues down to ``n·k·eps₃₂·λ_max`` only (~4e-5·λ_max
    here), above ``λ_min(K₀)`` of the narrow networks; float64 (``eps₆₄ = 2e-16``) resolves
    them. x64 is enabled for this one program only (the parameters, drawn in float32, are
    cast exactly).
    """
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(np.asarray(a), jnp.float64), params0)
        x64 = jnp.asarray(np.asarray(x), jnp.float64)
        grams = jax.vmap(lambda p, x: full_gram(arch.apply_fn, p, x), in_axes=(0, None))
        return np.asarray(jax.jit(grams).lower(p64, x64).compile(options)(p64, x64), np.float64)


def _infinite_ntk(arch: models.Architecture, x) -> np.ndarray:
    """``Θ∞`` on the training inputs, ``(n, n)``, computed in float64.

    Its ``λ_min`` is compared with ``λ_min(K₀)`` and sets the kernel-regime predictions;
    float32 rounding of the input Gram alone is ~1e-6 of the largest entry (jitted:
    eager stax is slow).
    """
    with jax.enable_x64(True):
        kernel_fn = jax.jit(lambda a: arch.kernel_fn(a, None, "ntk"))  # x an argument: see program
        return np.asarray(kernel_fn(jnp.asarray(x, jnp.float64)), np.float64)


def execute(spec: OptimizationRun, progress) -> dict:
    """Runs one network for all seeds (see the module doc); returns its metrics."""
    x, y, data_name = load_data(spec.dataset, spec.data_dir, spec.n_train, spec.pool)
    if y.shape[1] != spec.network.out_dim:
        raise ValueError(
            f"{spec.dataset} has {y.shape[1]} classes but the network {spec.network.out_dim} "
            "outputs; allowed: as many outputs as classes (config.NUM_CLASSES)"
        )
    x = x.reshape(x.shape[0], -1) if spec.network.kind == "mlp" else x
    arch = models.build(spec.network)
    start = time.perf_counter()
    theta_inf = None if arch.kernel_fn is None else _infinite_ntk(arch, x)
    inf_s = time.perf_counter() - start
    progress(1, 3)
    out, times = _run(arch, spec, jnp.asarray(x), jnp.asarray(y))
    progress(2, 3)
    reference = "infinite-width NTK Θ∞"
    if theta_inf is None:  # no infinite-width limit: the kernel regime of its linearisation
        theta_inf = measure.output_averaged(out["grams0_f64"], *y.shape).mean(axis=0)
        reference = "empirical NTK at initialisation (output-averaged, mean over seeds)"
    if not measure.any_finite_run(out):
        raise Diverged(f"{arch.name}: every NGD, GD and Adam run has a non-finite loss")
    with _one_blas_thread():
        metrics = measure.assemble(spec, out, theta_inf, y)
    progress(3, 3)
    time_s = {"infinite_kernel": inf_s, **times}
    return {
        "name": arch.name,
        "data": data_name,
        "kernel_reference": reference,
        **metrics,
        "time_s": time_s,
    }


def summarize(config: OptimizationConfig, records: list[dict], outdir) -> Summary:
    """Figures, tables, the C1 and C2 verdicts and a paragraph for the report."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rows = analysis.rows_from_records(records)
    figures = plots.all_figures(rows, outdir, config.loss_threshold) if rows else []
    tables = {
        "NGD conditions vs width": analysis.conditions_table(rows),
        "Steps to reach the loss threshold: measured (kernel-regime prediction)": (
            analysis.speed_table(rows)
        ),
    }
    verdicts = [verdict.verdict_c1(rows), verdict.verdict_c2(rows)]
    return Summary(figures, tables, verdicts, analysis.text(config, rows, records))


STUDY = Study(
    name="optimization",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
    memory=memory_bytes,
)
