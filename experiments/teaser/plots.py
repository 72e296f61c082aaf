"""The teaser's figures: predictive bands per width, distance to infinite width."""

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntk_limits_experiments.common import save_figure

__all__ = ["figures"]

matplotlib.use("Agg")


def _band(ax, grid, mean, sd, color, label):
    ax.fill_between(grid, mean - 2 * sd, mean + 2 * sd, color=color, alpha=0.25, lw=0)
    ax.plot(grid, mean, color=color, lw=1.5, label=label)


def _predictive_figure(arrays, inf, finite, path: Path) -> Path:
    x, y, grid = (a[:, 0] for a in arrays)
    panels = [(f"width {w}", m) for w, m in finite] + [("infinite width (NTK-GP)", inf)]
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig = Figure(figsize=(3.3 * cols, 2.6 * rows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, sharex=True, sharey=True)).ravel()
    for ax, (title, m) in zip(axes, panels, strict=False):
        if m is None:
            continue
        mean, sd = np.atleast_2d(m["mean"]), np.atleast_2d(m["sd"])
        for extra in mean[1:]:
            ax.plot(grid, extra, color="C0", lw=0.6, alpha=0.5)
        color = "C3" if title.startswith("infinite") else "C0"
        _band(ax, grid, mean[0], sd[0], color, "mean ± 2 sd (seed 0)")
        if inf is not None and not title.startswith("infinite"):
            ax.plot(grid, inf["mean"], color="C3", lw=1, ls="--", label="infinite-width mean")
        ax.scatter(x, y, s=6, color="k", zorder=3)
        ax.set_title(title, fontsize=9)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7, loc="upper left")
    fig.supxlabel("body-mass index (standardised)", fontsize=9)
    fig.supylabel("disease progression (standardised)", fontsize=9)
    fig.suptitle("Linearised-Laplace predictive of trained finite MLPs vs the NTK-GP", fontsize=10)
    return save_figure(fig, path)


def _distance_figure(finite, path: Path) -> Path:
    fig = Figure(figsize=(4.8, 3.5), layout="constrained")
    ax = fig.subplots()
    w = np.array([wi for wi, _ in finite], np.float64)
    for name, label, color in (
        ("mean_distance", r"RMS$(\mu_w-\mu_\infty)$", "C0"),
        ("sd_distance", r"RMS$(\sigma_w-\sigma_\infty)$", "C1"),
    ):
        d = np.array([m[name] for _, m in finite])  # (widths, seeds)
        ax.fill_between(w, d.min(1), d.max(1), color=color, alpha=0.2, lw=0)
        ax.plot(w, d.mean(1), "o-", color=color, label=label)
    first = np.array([m["mean_distance"] for _, m in finite]).mean(1)[0]
    ax.plot(w, first * (w / w[0]) ** -0.5, ":", color="0.4", label=r"$\propto$ width$^{-1/2}$")
    ax.set(xscale="log", yscale="log", xlabel="width", ylabel="distance on the grid (target sd)")
    ax.set_title("Finite-width predictive vs infinite width (mean over seeds)", fontsize=9)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def figures(arrays, inf, finite, outdir) -> list[Path]:
    """The band panels (if any run finished) and the distance figure (if both kinds did).

    Args:
      arrays: ``(x_train, y_train, x_grid)``, each ``(·, 1)``.
      inf: the infinite-width run's metrics, or None.
      finite: ``[(width, metrics), ...]`` by width.
      outdir: the study's folder.
    """
    outdir, paths = Path(outdir), []
    if inf is not None or finite:
        paths.append(_predictive_figure(arrays, inf, finite, outdir / "teaser_predictive.png"))
    if finite and inf is not None:
        paths.append(_distance_figure(finite, outdir / "teaser_distance_vs_width.png"))
    return paths
