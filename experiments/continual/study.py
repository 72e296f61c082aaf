"""Study 3 as the runner sees it: expand the config into runs, execute, summarise (C4).

Runs: one per (benchmark, width, network kind ∈ finite | linearized) with every seed and
parametrization vmapped in one compiled program and every epochs setting run through it,
plus one infinite-width kernel run per benchmark. See ``config.py`` for the commands.
"""

import functools
from pathlib import Path

import jax
import numpy as np

from ntk_limits import continual
from ntk_limits_experiments.continual import analysis, networks, plots
from ntk_limits_experiments.continual.config import get_config, validate
from ntk_limits_experiments.study import Diverged, Study, Summary

__all__ = ["STUDY", "expand", "execute", "summarize"]

_STREAM_KEYS = ("stream_seed", "n_train", "n_test", "class_incremental", "data_dir")
_NEVER = 2.0  # a target accuracy above 1: train for exactly max_epochs


def _stream_fields(config: dict, benchmark: str) -> dict:
    wrn = benchmark in config["wrn_benchmarks"]
    return {
        "benchmark": benchmark,
        "arch": "wrn" if wrn else "mlp",
        "depth": config["wrn_depth"] if wrn else config["depth"],
        **{k: config[k] for k in _STREAM_KEYS},
    }


def _network_spec(config: dict, benchmark: str, width: int, kind: str) -> dict:
    return {
        "kind": kind,
        **_stream_fields(config, benchmark),
        "width": width,
        "parameterizations": list(
            config["parameterizations" if kind == "finite" else "linearized_parameterizations"]
        ),
        "lr_standard": config["lr_standard"],
        "lr_ntk": config["lr_ntk"],
        "batch_size": config["batch_size"],
        "seeds": list(config["seeds"]),
        "settings": _settings(config),
        "probe_size": config["probe_size"] if kind == "finite" else 0,
    }


def _settings(config: dict) -> list[list]:
    """``[[max_epochs, target_accuracy], ...]``: fixed epochs, then train-until if asked."""
    fixed = [[e, _NEVER] for e in sorted(set(config["epochs"]))]
    return fixed + (
        [[config["max_epochs"], config["target_accuracy"]]] if config["train_until"] else []
    )


def _kernel_spec(config: dict, benchmark: str) -> dict:
    return {
        "kind": "infinite", **_stream_fields(config, benchmark),
        "times": list(config["kernel_times"]), "converged": config["kernel_converged"],
        "lr": config["kernel_lr"], "diag_reg": config["kernel_diag_reg"],
        "max_train": config["kernel_max_train"], "block": config["kernel_block"],
    }  # fmt: skip


def expand(config: dict) -> list[dict]:
    """One spec per benchmark × width × {finite, linearized}, plus one kernel spec per benchmark."""
    specs = []
    for b in config["benchmarks"]:
        widths = config["wrn_multipliers"] if b in config["wrn_benchmarks"] else config["widths"]
        lin = [w for w in config["linearized_widths"] if w in widths]
        specs += [_network_spec(config, b, w, "finite") for w in widths]
        specs += [_network_spec(config, b, w, "linearized") for w in lin]
        if b not in config["wrn_benchmarks"] or config["kernel_wrn"]:
            specs.append(_kernel_spec(config, b))
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


def _execute_network(spec: dict, progress) -> dict:
    stream, head_size, out_dim = networks.load_stream(spec)
    archs = networks.architectures(spec, out_dim)
    m = networks.init_members(archs["standard"], spec, stream.x_train.shape[2:])
    program = networks.sequential_program(
        archs, m.multipliers, head_size=head_size, batch_size=spec["batch_size"],
        linearized=spec["kind"] == "linearized",
    )  # fmt: skip
    probe = stream.x_test[0, : max(spec["probe_size"], 1)]
    per_setting = []
    for i, (max_epochs, target) in enumerate(spec["settings"]):
        args = (m.params, m.keys, m.lrs, m.is_ntk, stream, probe, max_epochs, target)
        res = jax.tree.map(np.asarray, program(*args)[1])
        _check_finite(res.loss, f"{spec['kind']} width {spec['width']} setting {i}")
        per_setting.append(res)
        progress(i + 1, len(spec["settings"]))
    return _network_metrics(spec, per_setting, stream)


def _network_metrics(spec, per_setting, stream) -> dict:
    s = len(spec["seeds"])
    by_par = {}
    for j, p in enumerate(spec["parameterizations"]):
        part = slice(j * s, (j + 1) * s)
        rows = [jax.tree.map(lambda a, part=part: a[part], r) for r in per_setting]
        summaries = [_summaries(r, spec["kind"] == "finite") for r in rows]
        by_par[p] = {k: [d[k] for d in summaries] for k in summaries[0]}
    return {
        "settings": [analysis.setting_label(e, t) for e, t in spec["settings"]],
        "parameterizations": by_par,
        "n_train_per_task": int(stream.y_train.shape[1]),
        "n_test_per_task": int(stream.y_test.shape[1]),
    }


def _execute_infinite(spec: dict, progress) -> dict:
    stream, head_size, out_dim = networks.load_stream(spec)
    if spec["max_train"] is not None:
        k = spec["max_train"]
        stream = stream._replace(x_train=stream.x_train[:, :k], y_train=stream.y_train[:, :k])
    width = 1  # the NTP infinite-width kernel does not depend on the width
    arch = networks.architectures({**spec, "width": width}, out_dim)["ntk"]
    k_all = networks.stream_kernel(arch, stream, block=spec["block"])
    progress(1, 2)
    times = [*spec["times"], *([np.inf] if spec["converged"] else [])]
    regression = functools.partial(
        continual.sequential_kernel_regression, head_size=head_size, out_dim=out_dim,
        learning_rate=spec["lr"], diag_reg=spec["diag_reg"],
    )  # fmt: skip
    _, res = jax.jit(regression)(k_all, stream, np.asarray(times, np.float32))
    res = jax.tree.map(np.asarray, res)
    _check_finite(res.loss, "infinite-width kernel regression")
    progress(2, 2)
    out = _summaries(res._replace(epochs=np.zeros_like(res.epochs)), kernel=False)
    out.pop("epochs")
    labels = [analysis.time_label(t) for t in times]
    return {"times": spec["times"], "labels": labels, **out,
            "n_train_per_task": int(stream.y_train.shape[1])}  # fmt: skip


def execute(spec: dict, progress) -> dict:
    """Runs one spec (see :func:`expand`); returns JSON-serialisable metrics."""
    if spec["kind"] == "infinite":
        return _execute_infinite(spec, progress)
    return _execute_network(spec, progress)


def summarize(config: dict, records: list[dict], outdir) -> Summary:
    """Figures, tables, the C4 verdict and a paragraph, from every finished run."""
    outdir = Path(outdir)
    frame = analysis.frame(records)
    figures = plots.all_figures(frame, config, outdir)
    slopes = analysis.slopes(frame)
    verdict = analysis.verdict(slopes, config)
    tables = {
        "continual: forgetting vs width": analysis.width_table(frame, "forgetting"),
        "continual: average accuracy vs width": analysis.width_table(frame, "average_accuracy"),
        "continual: finite vs linearised vs infinite": analysis.regime_table(frame),
        "continual: forgetting slope vs log2 width": analysis.slope_table(slopes),
    }
    return Summary(figures, tables, [verdict], analysis.text(frame, slopes, verdict, config))


STUDY = Study(
    name="continual",
    claims=("C4",),
    get_config=get_config,
    validate=validate,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
