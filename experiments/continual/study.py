"""Study 3 as the runner sees it: expand the config into runs, execute, summarise (C4).

Runs: one per (benchmark, width, network kind ∈ finite | linearized) with every seed and
parametrization vmapped in one compiled program and every epochs setting run through it,
plus one infinite-width kernel run per benchmark. See ``config.py`` for the commands.
"""

import functools
import math
from pathlib import Path

import jax
import numpy as np

from ntk_limits import continual, models
from ntk_limits_experiments import memory
from ntk_limits_experiments.continual import analysis, networks, plots
from ntk_limits_experiments.continual.config import (
    PROFILES,
    ContinualConfig,
    KernelRun,
    NetworkRun,
    Stream,
)
from ntk_limits_experiments.study import Diverged, Study, Summary

__all__ = ["STUDY", "execute", "expand", "memory_bytes", "summarize"]


def _stream(config: ContinualConfig, benchmark: str) -> Stream:
    return Stream(
        benchmark, config.stream_seed, config.n_train, config.n_test, config.class_incremental
    )


def _network(config: ContinualConfig, benchmark: str, width: int, parameterization: str):
    """The benchmark's network (MLP or WRN) at ``width``, sized for its stream's outputs."""
    _, out_dim = networks.stream_heads(_stream(config, benchmark), config.data_dir)
    if config.uses_wrn(benchmark):
        return models.Network("wrn", width, config.wrn_depth, out_dim, parameterization)
    return models.Network("mlp", width, config.depth, out_dim, parameterization)


def _network_run(config: ContinualConfig, benchmark: str, width: int, kind: str) -> NetworkRun:
    finite = kind == "finite"
    return NetworkRun(
        kind=kind,
        stream=_stream(config, benchmark),
        network=_network(config, benchmark, width, "standard"),
        parameterizations=(
            config.parameterizations if finite else config.linearized_parameterizations
        ),
        lr_standard=config.lr_standard,
        lr_ntk=config.lr_ntk,
        batch_size=config.batch_size,
        seeds=config.seeds,
        settings=config.settings,
        probe_size=config.probe_size if finite else 0,
        data_dir=config.data_dir,
    )


def _kernel_run(config: ContinualConfig, benchmark: str) -> KernelRun:
    return KernelRun(
        kind="infinite",
        stream=_stream(config, benchmark),
        network=_network(config, benchmark, 1, "ntk"),  # NTP: the kernel ignores the width
        times=config.kernel_times,
        converged=config.kernel_converged,
        lr=config.kernel_lr,
        diag_reg=config.kernel_diag_reg,
        max_train=config.kernel_max_train,
        block=config.kernel_block,
        data_dir=config.data_dir,
    )


def expand(config: ContinualConfig) -> list[NetworkRun | KernelRun]:
    """One run per benchmark × width × {finite, linearized}, plus one kernel run per benchmark.

    Loads each benchmark's stream once (cached) to size the networks' outputs.
    """
    specs = []
    for b in config.benchmarks:
        widths = config.wrn_multipliers if config.uses_wrn(b) else config.widths
        lin = [w for w in config.linearized_widths if w in widths]
        specs += [_network_run(config, b, w, "finite") for w in widths]
        specs += [_network_run(config, b, w, "linearized") for w in lin]
        if not config.uses_wrn(b) or config.kernel_wrn:
            specs.append(_kernel_run(config, b))
    return specs


def _check_finite(loss, what: str) -> None:
    bad = ~np.isfinite(np.asarray(loss))
    if bad.any():
        raise Diverged(f"{what}: non-finite training loss in {int(bad.sum())} of {bad.size} tasks")


_metrics = jax.jit(continual.continual_metrics)


def _summaries(res: continual.SequentialResult, kernel: bool) -> dict:
    m = _metrics(res.accuracy)
    out = {
        "accuracy": res.accuracy, "train_accuracy": res.train_accuracy, "epochs": res.epochs,
        "forgetting": m.forgetting, "average_accuracy": m.average_accuracy,
        "learning_accuracy": m.learning_accuracy,
    }  # fmt: skip
    if kernel:
        out["kernel_drift"] = res.kernel_drift
    return {k: np.asarray(v).tolist() for k, v in out.items()}


def _load(spec: NetworkRun | KernelRun) -> tuple[continual.TaskArrays, int]:
    """The spec's stream and head size; checks the network's outputs fit the stream."""
    flatten = spec.network.kind == "mlp"
    stream, head_size, out_dim = networks.load_stream(
        spec.stream, flatten=flatten, data_dir=spec.data_dir
    )
    if out_dim != spec.network.out_dim:
        raise ValueError(
            f"stream {spec.stream.benchmark} has {out_dim} outputs, the network "
            f"{spec.network.out_dim}; allowed: a spec from expand()"
        )
    return stream, head_size


def _execute_network(spec: NetworkRun, progress) -> dict:
    stream, head_size = _load(spec)
    archs = networks.both_parameterizations(spec.network)
    m = networks.init_members(archs["standard"], spec, stream)
    probe = stream.x_test[0, : max(spec.probe_size, 1)]
    program = networks.sequential_program(
        archs, m, stream, probe, head_size=head_size, batch_size=spec.batch_size,
        linearized=spec.kind == "linearized",
    )  # fmt: skip
    per_setting = []
    for i, setting in enumerate(spec.settings):
        res = jax.tree.map(np.asarray, program(setting.max_epochs, setting.target_accuracy)[1])
        _check_finite(res.loss, f"{spec.kind} width {spec.network.width} setting {i}")
        per_setting.append(res)
        progress(i + 1, len(spec.settings))
    return _network_metrics(spec, per_setting, stream)


def _network_metrics(spec: NetworkRun, per_setting, stream) -> dict:
    s = len(spec.seeds)
    by_par = {}
    for j, p in enumerate(spec.parameterizations):
        part = slice(j * s, (j + 1) * s)
        rows = [jax.tree.map(lambda a, part=part: a[part], r) for r in per_setting]
        summaries = [_summaries(r, spec.kind == "finite") for r in rows]
        by_par[p] = {k: [d[k] for d in summaries] for k in summaries[0]}
    return {
        "settings": [
            analysis.setting_label(e.max_epochs, e.target_accuracy) for e in spec.settings
        ],
        "parameterizations": by_par,
        "n_train_per_task": int(stream.y_train.shape[1]),
        "n_test_per_task": int(stream.y_test.shape[1]),
    }


def _kernel_regression(spec: KernelRun, k_all, stream, head_size: int, dtype):
    """Sequential kernel regression with the kernel and the solve in ``dtype``."""
    regression = functools.partial(
        continual.sequential_kernel_regression, head_size=head_size,
        out_dim=spec.network.out_dim, learning_rate=spec.lr, diag_reg=spec.diag_reg,
    )  # fmt: skip
    cast = lambda a: np.asarray(a, dtype) if np.issubdtype(np.asarray(a).dtype, np.floating) else a
    args = (cast(k_all), jax.tree.map(cast, stream), np.asarray(spec.all_times, dtype))
    return jax.tree.map(np.asarray, jax.jit(regression)(*args)[1])


def _execute_infinite(spec: KernelRun, progress) -> dict:
    """The infinite-width NTK run; its kernel regression is solved in float64.

    At t = ∞ (and ``diag_reg = 0``) the solve divides by the kernel's smallest eigenvalues,
    below float32's resolution of the largest. The float32 solve is kept only to record
    how much the accuracies would have changed (``float32_accuracy_change``, per time).
    """
    stream, head_size = _load(spec)
    if spec.max_train is not None:
        k = spec.max_train
        stream = stream._replace(x_train=stream.x_train[:, :k], y_train=stream.y_train[:, :k])
    k_all = networks.stream_kernel(models.build(spec.network), stream, block=spec.block)
    progress(1, 2)
    with jax.enable_x64(True):
        res = _kernel_regression(spec, k_all, stream, head_size, np.float64)
    res32 = _kernel_regression(spec, k_all, stream, head_size, np.float32)
    _check_finite(res.loss, "infinite-width kernel regression")
    progress(2, 2)
    out = _summaries(res._replace(epochs=np.zeros_like(res.epochs)), kernel=False)
    out.pop("epochs")
    change = np.abs(np.nan_to_num(res32.accuracy, nan=-1.0) - res.accuracy).max(axis=(1, 2))
    labels = [analysis.time_label(t) for t in spec.all_times]
    return {"times": list(spec.times), "labels": labels, **out,
            "n_train_per_task": int(stream.y_train.shape[1]), "solve_dtype": "float64",
            "float32_accuracy_change": change.tolist()}  # fmt: skip


_OVERHEAD = 384 * 2**20  # XLA compiling a network run's two programs, and the runtime
_KERNEL_OVERHEAD = 192 * 2**20  # XLA compiling a kernel run's tile and regressions


def memory_bytes(spec: NetworkRun | KernelRun) -> int:
    """An upper bound on the memory one run adds to the process, from the spec alone.

    ``T`` tasks of ``n`` training and ``m`` test inputs of ``d`` numbers (the stream's
    sizes: loaded once per process, as :func:`expand` already does), float32. A network
    run holds ``M`` members (parametrisations × seeds) of ``P`` parameters, vmapped; ``H``
    is the floats its forward pass writes per example
    (:func:`ntk_limits_experiments.memory.network_sizes`; about ``9·Σ widths`` for these
    MLPs). Its programs' buffers (XLA's ``memory_analysis``, rotated MNIST, depth 2,
    widths 64-2048) hold about ``1.75 P`` per member in parameter-sized buffers beyond the
    parameters themselves, ``0.09 H`` per member and evaluated example (the test sets of
    every task and the task's training set, after each task) and, for the kernel-drift
    probe of ``p`` inputs (both parametrisations' empirical NTKs), ``4.3 H`` per member and
    probe input; a linearised network (primal and tangent) ``0.45 H`` per example and
    ``2.7 P``. The bound is ``4M (5P + 0.15 (Tm + n) H + 5 p H)`` (linearised:
    ``4M (6P + 0.6 (Tm + n) H)``), three copies of the stream and 384 MiB. WideResNets
    (paper profile only) get the same coefficients, unmeasured. No cheaper path: running
    the members in smaller batches would change the vmapped training loop's rounding, so
    a run whose bound does not fit is refused.

    A kernel run holds the infinite-width kernel between all ``N = T(n + m)`` inputs and
    the ``Tn`` training inputs (``n`` capped at ``max_train``) as float32, then in float64
    inside both regressions (measured: 29 bytes per entry for the float64 solve, 542 MiB
    at 7500 × 2500), and one ``block × block`` tile of it at a time (the inputs are padded
    to whole tiles); the bound is 40 bytes per entry, 2.5 float32 tiles (a convolutional
    network's tile holds ``depth + 4`` spatial covariances ``block² (HW)²`` in float64, as
    in the kernels study), three copies of the stream and 192 MiB.

    Measured peak-RSS growth of :func:`execute` on this machine (a fresh process that has
    expanded its config first, as the runner does), against the bound; rotated MNIST-5k
    has ``T = 5``, ``n = 500``, ``m = 1000``, ``d = 784`` (split: ``n = 100``, ``m = 200``),
    the MLPs depth 2 (smoke: split digits, depth 1), ``M`` = 2 parametrisations × seeds:

    ===============================================  ========  =======  =====
    run                                              measured  bound    ratio
    ===============================================  ========  =======  =====
    smoke: finite, width 16, M=4                     0.29 GB   0.40 GB  1.4
    smoke: kernel, 20 training inputs per task       0.28 GB   0.37 GB  1.3
    embedded: finite, width 64, M=6                  0.39 GB   0.51 GB  1.3
    embedded: finite, width 1024, M=6                0.86 GB   1.13 GB  1.3
    embedded: finite, width 1024, M=6, split         0.64 GB   0.78 GB  1.2
    embedded: kernel, 7500 × 2500 entries            0.81 GB   1.19 GB  1.5
    embedded: kernel, 1500 × 500 entries, split      0.18 GB   0.41 GB  2.4
    kernel, 10000 × 5000 entries (n = 1000)          1.89 GB   2.46 GB  1.3
    finite, width 2048, M=8 (one setting)            1.97 GB   2.57 GB  1.3
    linearised, width 1024, M=6 (one setting)        1.67 GB   2.20 GB  1.3
    ===============================================  ========  =======  =====

    Tested above the measured peak and within 3× of it
    (``tests/experiments/test_memory_continual_bandits.py``).
    """
    sizes = networks.stream_sizes(spec.stream, spec.data_dir)
    t, n, m = sizes.tasks, sizes.train, sizes.test
    d = math.prod(sizes.input_shape)
    data = 3 * 4 * t * (n + m) * d
    network = spec.network
    if isinstance(spec, KernelRun):
        n = min(n, spec.max_train or n)
        entries = t * (n + m) * t * n
        tile = 2.5 * 4 * spec.block**2
        if network.kind != "mlp":
            pixels = math.prod(sizes.input_shape[:-1])
            tile += 8 * spec.block**2 * pixels**2 * (network.depth + 4)
        return int(_KERNEL_OVERHEAD + data + 40 * entries + tile)
    shape = (d,) if network.kind == "mlp" else sizes.input_shape
    p, h = memory.network_sizes(network, shape)
    members = len(spec.parameterizations) * len(spec.seeds)
    examples = t * m + n
    if spec.kind == "linearized":
        per_member = 6 * p + 0.6 * examples * h
    else:
        per_member = 5 * p + 0.15 * examples * h + 5 * spec.probe_size * h
    return int(_OVERHEAD + data + 4 * members * per_member)


def execute(spec: NetworkRun | KernelRun, progress) -> dict:
    """Runs one spec (see :func:`expand`); returns JSON-serialisable metrics."""
    if isinstance(spec, KernelRun):
        return _execute_infinite(spec, progress)
    return _execute_network(spec, progress)


def summarize(config: ContinualConfig, records: list[dict], outdir) -> Summary:
    """Figures, tables, the C4 verdict and a paragraph, from every finished run."""
    outdir = Path(outdir)
    frame = analysis.frame(records)
    figures = plots.all_figures(frame, outdir)
    slopes = analysis.slopes(frame)
    verdict = analysis.verdict(frame, config)
    tables = {
        "continual: forgetting vs width": analysis.width_table(frame, "forgetting"),
        "continual: average accuracy vs width": analysis.width_table(frame, "average_accuracy"),
        "continual: finite vs linearised vs infinite": analysis.regime_table(frame),
        "continual: forgetting slope vs log2 width": analysis.slope_table(slopes),
    }
    return Summary(figures, tables, [verdict], analysis.text(frame, slopes, verdict, config))


STUDY = Study(
    name="continual",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
    memory=memory_bytes,
)
