"""Figures of the continual study (matplotlib ``Figure`` objects, no pyplot state)."""

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ntk_limits_experiments import common

__all__ = ["all_figures", "metric_vs_width", "regimes", "kernel_drift"]

_LABELS = {
    "forgetting": "average forgetting F",
    "average_accuracy": "average accuracy A",
    "kernel_drift": "NTK drift per task ‖ΔK‖/‖K‖",
}


def _grid(n_rows: int, n_cols: int, panel_width: float = 4.0) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(panel_width * n_cols, 3.0 * n_rows), layout="constrained")
    return fig, np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))


def _mean_std(g: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    stats = g.groupby("width")[metric].agg(["mean", "std"]).sort_index()
    return (
        np.asarray(stats.index, float),
        stats["mean"].to_numpy(),
        stats["std"].fillna(0).to_numpy(),
    )


def _curve(ax, g: pd.DataFrame, metric: str, **kw) -> None:
    w, mean, std = _mean_std(g, metric)
    line = ax.errorbar(w, mean, yerr=std, marker="o", ms=3, capsize=2, **kw)
    if metric == "average_accuracy" and "learning_accuracy" in g:
        w, la, _ = _mean_std(g, "learning_accuracy")
        ax.plot(w, la, ls=":", color=line[0].get_color(), lw=1)


def metric_vs_width(df: pd.DataFrame, metric: str, path: Path) -> Path:
    """Finite nets: ``metric`` vs width, one panel per (benchmark, parametrization)."""
    nets = df[df["kind"] == "finite"]
    benches, pars = (
        list(dict.fromkeys(nets["benchmark"])),
        list(dict.fromkeys(nets["parameterization"])),
    )
    fig, axes = _grid(len(benches), len(pars))
    for i, b in enumerate(benches):
        for j, p in enumerate(pars):
            ax = axes[i, j]
            sel = nets[(nets["benchmark"] == b) & (nets["parameterization"] == p)]
            for (_, s), g in sel.groupby(["setting_index", "setting"], sort=True):
                acc = g["train_accuracy"].mean()
                _curve(ax, g, metric, label=f"{s} (train acc {acc:.2f})")
            ax.set(xlabel="width", ylabel=_LABELS[metric], title=f"{b}, {p}")
            ax.set_xscale("log", base=2)
            ax.legend(fontsize=7)
    if metric == "average_accuracy":
        fig.suptitle(
            "solid: average accuracy A; dotted: learning accuracy mean_j a[j,j]", fontsize=9
        )
    return common.save_figure(fig, path, dpi=110)


def regimes(df: pd.DataFrame, path: Path) -> Path:
    """Forgetting of finite NTP nets (solid), linearised (dashed), infinite-width NTK (grey)."""
    benches = list(dict.fromkeys(df["benchmark"]))
    fig, axes = _grid(1, len(benches), panel_width=6.5)
    for ax, b in zip(axes[0], benches, strict=True):
        sel = df[(df["benchmark"] == b) & (df["parameterization"] == "ntk")]
        for kind, ls in (("finite", "-"), ("linearized", "--")):
            for (i, s), g in sel[sel["kind"] == kind].groupby(
                ["setting_index", "setting"], sort=True
            ):
                _curve(ax, g, "forgetting", ls=ls, color=f"C{i}", label=f"{kind}, {s}")
        inf = sel[sel["kind"] == "infinite"].sort_values("setting_index")
        for shade, (_, r) in zip(np.linspace(0.75, 0.2, len(inf)), inf.iterrows(), strict=True):
            ax.axhline(
                r["forgetting"],
                color=str(shade),
                lw=1.2,
                label=f"∞-width NTK {r['setting']} (train acc {r['train_accuracy']:.2f})",
            )
        ax.set(xlabel="width", ylabel=_LABELS["forgetting"], title=f"{b}: kernel regime (NTP)")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return common.save_figure(fig, path, dpi=110)


def kernel_drift(df: pd.DataFrame, path: Path) -> Path:
    """Mean relative empirical-NTK change per task vs width, finite nets."""
    nets = df[df["kind"] == "finite"]
    benches = list(dict.fromkeys(nets["benchmark"]))
    fig, axes = _grid(1, len(benches))
    for ax, b in zip(axes[0], benches, strict=True):
        sel = nets[nets["benchmark"] == b]
        for (p, _, s), g in sel.groupby(
            ["parameterization", "setting_index", "setting"], sort=True
        ):
            _curve(ax, g, "kernel_drift", label=f"{p}, {s}", ls="-" if p == "ntk" else "--")
        ax.set(xlabel="width", ylabel=_LABELS["kernel_drift"], title=b, yscale="log")
        ax.set_xscale("log", base=2)
        ax.legend(fontsize=7)
    return common.save_figure(fig, path, dpi=110)


def all_figures(df: pd.DataFrame, outdir: Path) -> list[Path]:
    """Every figure of the study that the finished runs allow, written into ``outdir``."""
    if not len(df) or not (df["kind"] == "finite").any():
        return []
    paths = [
        metric_vs_width(df, "forgetting", outdir / "forgetting_vs_width.png"),
        metric_vs_width(df, "average_accuracy", outdir / "accuracy_vs_width.png"),
        kernel_drift(df, outdir / "kernel_drift.png"),
    ]
    if "ntk" in set(df["parameterization"]):
        paths.append(regimes(df, outdir / "regimes.png"))
    return paths
