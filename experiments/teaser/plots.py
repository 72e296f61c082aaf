"""The teaser's figures (predictive bands per width; distance to infinite width) and table."""

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntk_limits_experiments.study import Summary

__all__ = ["summarize"]

matplotlib.use("Agg")


def _split(records: list[dict]):
    """``(infinite metrics or None, [(width, metrics), ...] by width)`` of finished runs."""
    ok = [r for r in records if r["status"] == "ok"]
    inf = next((r["metrics"] for r in ok if r["spec"]["width"] is None), None)
    finite = sorted((r["spec"]["width"], r["metrics"]) for r in ok if r["spec"]["width"])
    return inf, finite


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
    fig.savefig(path, dpi=120)
    return path


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
    fig.savefig(path, dpi=120)
    return path


def _slope(w, d) -> float:
    return float(np.polyfit(np.log(w), np.log(d), 1)[0]) if len(w) >= 2 else float("nan")


def _table(finite) -> str:
    lines = [
        "| width | RMS(μ_w − μ_∞) | RMS(σ_w − σ_∞) | ‖σ²_w − σ²_∞‖/‖σ²_∞‖ | "
        "‖K* − Θ‖/‖Θ‖ (train) | train loss, last step |",
        "|---|---|---|---|---|---|",
    ]
    for w, m in finite:
        lines.append(
            f"| {w} | {np.mean(m['mean_distance']):.4f} | {np.mean(m['sd_distance']):.4f} | "
            f"{np.mean(m['var_rel_distance']):.4f} | {np.mean(m['kernel_rel_error']):.4f} | "
            f"{np.mean(m['final_loss']):.4f} |"
        )
    return "\n".join(lines) + "\n"


def summarize(config: dict, records: list[dict], outdir, arrays) -> Summary:
    """Predictive-band panels, distance-vs-width figure and table; no claim verdict.

    ``arrays`` is ``(x_train, y_train, x_grid)`` of the config, each ``(·, 1)``.
    """
    outdir = Path(outdir)
    inf, finite = _split(records)
    figures = []
    if inf is not None or finite:
        figures.append(_predictive_figure(arrays, inf, finite, outdir / "teaser_predictive.png"))
    if finite and inf is not None:
        figures.append(_distance_figure(finite, outdir / "teaser_distance_vs_width.png"))
    w = [wi for wi, _ in finite]
    slopes = {
        k: _slope(w, [np.mean(m[k]) for _, m in finite]) for k in ("mean_distance", "sd_distance")
    }
    noise = f"{inf['noise_var']:.3g}" if inf is not None else "n/a"
    text = (
        f"Diabetes (scikit-learn's packaged copy): BMI -> disease progression, "
        f"{config['n_train']} random patients, standardised. Centred one-hidden-layer "
        f"{config['activation']} MLPs in NTK parametrization, widths {config['widths']}, "
        f"{len(config['seeds'])} seeds, {config['steps']} full-batch GD steps; "
        f"linearised-Laplace (empirical-NTK GP at the trained parameters) bands with noise "
        f"variance {noise} "
        + ("(fitted on the infinite NTK)" if config["noise_var"] is None else "(given)")
        + ", against the infinite-width NTK-GP built the same way. Log-log slopes of the "
        f"distance to infinite width: mean {slopes['mean_distance']:.2f}, standard deviation "
        f"{slopes['sd_distance']:.2f} (width^-1/2 would be -0.5)."
    )
    return Summary(figures, {"distance to infinite width": _table(finite)}, [], text)
