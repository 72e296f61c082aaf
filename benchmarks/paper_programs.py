"""The compiled programs of each study's ``paper`` profile, counted without running them.

For every study, ``<study>_work()`` lists the programs its paper-profile runs build (on
the stand-ins of absent data sets, ``runner.use_stand_ins``, which have the paper sets'
sizes), each as a :class:`Work`: one program's cost (:func:`benchmarks.flops.program_cost`,
lowered on abstract arguments) and how many times the whole profile executes it. Programs
are built by the studies' own code wherever it can be reached without executing anything:
a function a study compiles inline is captured at its ``compile_jit`` call (which then
raises instead of compiling); the rest are built from the same library calls with the
run's shapes. Runs whose programs have the same shapes are lowered once and counted
``count`` times. What each study leaves out or approximates is in its function's
docstring and in ``Work.note``.
"""

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flops import Cost, abstract, program_cost
from ntk_limits import kernels, models
from ntk_limits_experiments import memory, registry, runner
from ntk_limits_experiments.kernels import study as ks
from ntk_limits_experiments.optimization import measure
from ntk_limits_experiments.optimization.program import build_ngd_program, build_program
from ntk_limits_experiments.teaser import study as teaser

__all__ = [
    "H200_BYTES",
    "Work",
    "capture",
    "kernels_run",
    "kernels_work",
    "optimization_work",
    "paper_config",
    "sds",
    "teaser_run",
    "teaser_work",
]

H200_BYTES = 141 * 10**9  # device memory: decides the kernels study's seed chunks


class Work(NamedTuple):
    """One program and how often the paper profile runs it.

    Attributes:
      study: the study.
      label: which program, at which shapes.
      count: executions in the whole profile (runs × executions per run).
      cost: one execution (:class:`benchmarks.flops.Cost`).
      dtype: ``"float32"`` or ``"float64"``: the arithmetic the program mostly runs in.
      where: ``"device"`` (a jitted program) or ``"host"`` (NumPy/LAPACK on the CPU).
      note: how it was counted, where that is not plain.
      cost_high: one execution where a data-dependent part takes its largest value
        (``None``: ``cost`` is exact); e.g. training until a target accuracy, at most
        ``max_epochs`` epochs.
    """

    study: str
    label: str
    count: float
    cost: Cost
    dtype: str = "float32"
    where: str = "device"
    note: str = ""
    cost_high: Cost | None = None


class _Captured(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, fn, args):
        super().__init__("captured")
        self.fn, self.args = fn, args


def capture(module, call: Callable[[], object], name: str = "compile_jit"):
    """``(fn, args)`` of the first program ``call`` compiles through ``module.<name>``."""

    def fake(fn, args, *rest, **kwargs):
        raise _Captured(fn, args)

    with mock.patch.object(module, name, fake):
        try:
            call()
        except _Captured as c:
            return c.fn, c.args
    raise RuntimeError(f"{module.__name__}: nothing was compiled through {name}")


def sds(shape, dtype=jnp.float32) -> jax.ShapeDtypeStruct:
    """An abstract array (float32 unless ``dtype``)."""
    return jax.ShapeDtypeStruct(tuple(shape), dtype)


def paper_config(name: str):
    """``(study, paper config on stand-ins)`` of study ``name`` (absent sets: stand-ins)."""

    study = registry.load(name)
    config = runner.prepare_config(study, "paper")
    return study, runner.use_stand_ins(config)[0]


# --- teaser ---------------------------------------------------------------------------


def teaser_work() -> list[Work]:
    """The infinite-width reference (its NTK on ``[X; grid]``) and each width's program.

    The reference's closed-form predictive (one 64 × 64 ``eigh``, a GP solve; < 1e8 flops
    by its sizes) and its noise fit (NumPy, 64 × 64) are left out.
    """

    study, config = paper_config("teaser")
    specs = study.expand(config)
    n_all = config.n_train + config.num_grid
    kernel_fn = models.build(specs[0].network).kernel_fn
    cost = program_cost(lambda a: kernel_fn(a, None, get="ntk"), sds((n_all, 1))).cost
    return [Work("teaser", f"infinite NTK on {n_all} points", 1, cost)] + [
        teaser_run(spec) for spec in specs[1:]
    ]


def teaser_run(spec) -> Work:
    """One finite-width run: all seeds vmapped in one program (training scan, empirical
    NTK, GP predictive), captured at its ``compile_jit``."""

    n_all = spec.problem.n_train + spec.problem.num_grid
    theta = np.zeros((n_all, n_all), np.float32)
    fn, args = capture(teaser, lambda: teaser._finite(spec, theta, 1.0, 0.1))
    label = f"{spec.network.name}: {len(spec.seeds)} seeds train + NTK + GP"
    return Work("teaser", label, 1, program_cost(fn, *abstract(args)).cost)


# --- kernels --------------------------------------------------------------------------


def kernels_work() -> list[Work]:
    """Per run: the seeds' empirical NTKs (one program) and the infinite NTK's tiles.

    See :func:`kernels_run`; the NTK-parametrisation infinite kernel is width-free and
    cached, so computed once per architecture in one process (in standard
    parametrisation once per run).
    """
    study, config = paper_config("kernels")
    out, seen = [], set()
    for spec in study.expand(config):
        out += kernels_run(spec, seen)
    return out


def kernels_run(spec, seen: set) -> list[Work]:
    """One kernels run: empirical NTKs, infinite NTK (unless its key is in ``seen``), metrics.

    The empirical-NTK program is captured at its ``compile_jit`` with the seed chunk the
    run would use on an H200 (``seed_chunk`` at 141 GB). The infinite NTK is
    ``blocked_kernel_fn``'s tile program on ``kernel_block``-square tiles, times the number
    of tiles. The float64 metrics (``eigvalsh`` of every seed's Gram) are one program.
    """

    inputs, net, out = spec.inputs, spec.network, []
    shape = memory.image_shape(inputs.dataset, inputs.pool, flatten=inputs.flatten)
    x = np.zeros((inputs.n, *shape), np.float32)
    arch, chunk = models.build(net), ks.seed_chunk(spec, H200_BYTES)
    fn, args = capture(ks, lambda: ks.empirical_ntks(arch, x, spec.seeds, chunk))
    note = f"seeds in chunks of {chunk}" if chunk else ""
    cost = program_cost(fn, *abstract(args)).cost
    out.append(Work("kernels", f"{net.name}: empirical NTK, {len(spec.seeds)} seeds", 1, cost,
                    note=note))  # fmt: skip
    inf_net = dataclasses.replace(net, width=1) if net.parameterization == "ntk" else net
    if (inf_net, inputs) not in seen:
        seen.add((inf_net, inputs))
        block = min(spec.kernel_block, inputs.n)
        tiles = math.ceil(inputs.n / block) ** 2
        kernel_fn = models.build(inf_net).kernel_fn
        tile = lambda a, b: kernel_fn(a, b, "ntk")
        cost = program_cost(tile, sds((block, *shape)), sds((block, *shape))).cost
        label = f"{inf_net.name}: infinite NTK, {tiles} tiles of {block}x{block}"
        out.append(Work("kernels", label, tiles, cost))
    with jax.enable_x64(True):
        k_emp = sds((len(spec.seeds), inputs.n, inputs.n), jnp.float64)
        k_inf = sds((inputs.n, inputs.n), jnp.float64)
        spectra = lambda e, i: (jax.vmap(kernels.gram_spectrum)(e), kernels.gram_spectrum(i))
        cost = program_cost(spectra, k_emp, k_inf).cost
    out.append(Work("kernels", f"{net.name}: float64 metrics", 1, cost, "float64"))
    return out


# --- optimization ---------------------------------------------------------------------


def _host_eigvalsh(n: int) -> Cost:
    """NumPy ``eigvalsh`` (no eigenvectors): ``4n³/3`` for the tridiagonal reduction."""
    return Cost(flops=4.0 * n**3 / 3, bytes=8.0 * n * n)


def optimization_work() -> list[Work]:
    """Per run: parameter draw, ``Θ∞`` (float64), the NGD program (float64), the main program.

    The two programs are the study's own (``build_ngd_program``, ``build_program``)
    lowered on the run's shapes; ``Θ∞`` is ``arch.kernel_fn`` on the ``n`` training
    inputs in float64 (none for the BatchNorm WRN); the kernel-regime predictions
    (``measure._predicted_losses``) are lowered as jitted. Host work: ``measure.assemble``'s
    NumPy ``eigvalsh`` of every seed's float64 ``(n·k)²`` Gram and output-averaged Gram and
    of ``Θ∞`` (counted at ``4n³/3`` each: eigenvalues only).
    """

    study, config = paper_config("optimization")
    out = []
    for spec in study.expand(config):
        net, s = spec.network, len(spec.seeds)
        arch = models.build(net)
        shape = memory.image_shape(spec.dataset, spec.pool, flatten=net.kind == "mlp")
        n, k = spec.n_train, net.out_dim
        init = lambda seeds, arch=arch, shape=shape: jax.vmap(
            lambda seed: arch.init_fn(jax.random.key(seed), (-1, *shape))[1]
        )(seeds)
        seeds = sds((s,), jnp.int32)
        params32 = jax.eval_shape(init, seeds)
        out.append(Work("optimization", f"{net.name}: init", 1, program_cost(init, seeds).cost))
        with jax.enable_x64(True):
            x64, y64 = sds((n, *shape), jnp.float64), sds((n, k), jnp.float64)
            if arch.kernel_fn is not None:
                theta = lambda a, arch=arch: arch.kernel_fn(a, None, "ntk")
                out.append(Work("optimization", f"{net.name}: infinite NTK (n={n})", 1,
                                program_cost(theta, x64).cost, "float64"))  # fmt: skip
            params64 = jax.tree_util.tree_map(lambda a: sds(a.shape, jnp.float64), params32)
            ngd = build_ngd_program(arch.apply_fn, spec)
            ngd_shapes = jax.eval_shape(ngd, params64, x64, y64)
            cost = program_cost(ngd, params64, x64, y64).cost
        out.append(Work("optimization", f"{net.name}: Grams + NGD x{len(spec.ngd_lrs)} lrs, "
                        f"{spec.ngd_steps} steps", 1, cost, "float64"))  # fmt: skip
        x32, y32 = sds((n, *shape)), sds((n, k))
        to32 = lambda t: jax.tree_util.tree_map(lambda a: sds(a.shape), t)
        grams0, snaps = to32(ngd_shapes["grams0"]), to32(ngd_shapes["ngd_snapshots"])
        program = build_program(arch.apply_fn, x32, y32, spec)
        cost = program_cost(program, params32, x32, y32, grams0, snaps).cost
        label = (f"{net.name}: GD x{len(spec.gd_lr_fractions)} ({spec.gd_steps} steps), Adam "
                 f"({spec.adam_steps}), diagnostics")  # fmt: skip
        out.append(Work("optimization", label, 1, cost))
        longest = max(spec.ngd_steps, spec.gd_steps)
        ts = np.unique(np.r_[measure._PREDICTION_GRID, np.arange(longest + 1)])
        pred_args = (sds(ts.shape), sds((n, n)), y32, sds((s, n, k)), sds((s,)), sds((s,)),
                     sds((len(spec.ngd_lrs),)))  # fmt: skip
        out.append(Work("optimization", f"{net.name}: kernel-regime predictions", 1,
                        program_cost(measure._predicted_losses, *pred_args).cost))  # fmt: skip
        host = _host_eigvalsh(n * k).scale(s) + _host_eigvalsh(n).scale(s + 1)
        out.append(Work("optimization", f"{net.name}: NumPy eigvalsh of Grams", 1, host,
                        "float64", "host", "4n^3/3 per eigvalsh"))  # fmt: skip
    return out
