"""Figures of the kernels study (matplotlib ``Figure`` objects, no global state)."""

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntk_limits_experiments.common import save_figure
from ntk_limits_experiments.kernels.analysis import label, rms, series

matplotlib.use("Agg")

__all__ = ["figures"]

_COLORS = {"mlp": "C0", "cnn": "C1", "wrn": "C2"}
_STYLES = {"ntk": ("-", "o"), "standard": ("--", "s")}


def _error_figure(groups, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for (arch, param), rows in groups.items():
        w, err = np.array([r[0] for r in rows]), series(rows, "rel_error")
        ls, marker = _STYLES[param]
        ax.fill_between(w, err.min(1), err.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax.plot(w, rms(err), ls=ls, marker=marker, color=_COLORS[arch], label=label(arch, param))
    all_w = np.concatenate([[r[0] for r in rows] for rows in groups.values()])
    all_e = np.concatenate([rms(series(rows, "rel_error")) for rows in groups.values()])
    c = np.exp(np.mean(np.log(all_e) + 0.5 * np.log(all_w)))
    guide = np.geomspace(all_w.min(), all_w.max(), 20)
    ax.plot(guide, c * guide**-0.5, ":", color="0.4", label=r"$\propto$ width$^{-1/2}$")
    ax.set(xscale="log", yscale="log", xlabel="width (hidden units / channels)")
    ax.set(ylabel=r"$\|K_{emp}-K_{\infty}\|_F / \|K_{\infty}\|_F$")
    ax.set_title("Empirical vs infinite-width NTK (RMS over seeds; band: min-max)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _spectrum_figure(groups, path: Path) -> Path:
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_a, ax_l = fig.subplots(1, 2)
    for (arch, param), rows in groups.items():
        w = np.array([r[0] for r in rows])
        ls, marker = _STYLES[param]
        kw = dict(ls=ls, marker=marker, color=_COLORS[arch], label=label(arch, param))
        mis = 1 - series(rows, "alignment")
        ax_a.fill_between(w, mis.min(1), mis.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax_a.plot(w, mis.mean(1), **kw)
        ratio = series(rows, "lambda_min_ratio")
        ax_l.fill_between(w, ratio.min(1), ratio.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax_l.plot(w, ratio.mean(1), **kw)
    ax_a.set(xscale="log", yscale="log", xlabel="width", ylabel="1 − alignment(K_emp, K_inf)")
    ax_l.axhline(1.0, color="0.4", ls=":")
    ax_l.set(xscale="log", xlabel="width", ylabel="λ_min(K_emp) / λ_min(K_inf)")
    ax_a.legend(fontsize=8)
    fig.suptitle("Kernel alignment and smallest eigenvalue (mean over seeds; band: min-max)")
    return save_figure(fig, path)


def figures(groups, outdir) -> list[Path]:
    """Error-vs-width and alignment/λ_min figures of :func:`.analysis.group_records` groups."""
    outdir = Path(outdir)
    return [
        _error_figure(groups, outdir / "kernel_error_vs_width.png"),
        _spectrum_figure(groups, outdir / "kernel_alignment_lambda_min.png"),
    ]
