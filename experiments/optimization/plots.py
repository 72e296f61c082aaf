"""Figures of the optimization study (matplotlib ``Figure`` objects, no global state).

Each function takes the rows of
:func:`ntk_limits_experiments.optimization.analysis.rows_from_records` and writes one PNG
(:func:`ntk_limits_experiments.common.save_figure`); medians over seeds are drawn as
lines, single seeds as dots.
"""

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure

from ntk_limits_experiments import common

__all__ = ["all_figures", "c_prime_figure", "lambda_min_figure", "loss_figure", "trajectory_figure"]

_STYLE = {"ntk": dict(ls="-", marker="o"), "standard": dict(ls="--", marker="s")}
_OPT_COLOR = {"NGD (any η)": "C0", "NGD η=1": "C9", "GD": "C3", "Adam": "C2"}


def _families(rows):
    return list(dict.fromkeys(r["family"] for r in rows))


def _series(rows, family, param, key):
    sel = [r for r in rows if r["family"] == family and r["parameterization"] == param]
    return np.array([r["width"] for r in sel]), np.array([r[key] for r in sel], float), sel


def _finite(y):
    return np.where(np.isfinite(y), y, np.nan)


def _log(ax, **labels):
    """Log axes where the drawn data allow it (a log axis needs a positive finite value)."""
    ok = [
        np.isfinite(x) & (x > 0) & np.isfinite(y) & (y > 0)
        for x, y in ((np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float))
                     for ln in ax.get_lines() if ln.get_transform() == ax.transData)
        if x.shape == y.shape
    ]  # fmt: skip
    scale = "log" if any(np.any(m) for m in ok) else "linear"
    ax.set(xscale=scale, yscale=scale, **labels)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6)


def _axes(n_rows, n_cols, width=4.0, height=3.0):
    fig = Figure(figsize=(width * n_cols, height * n_rows), layout="constrained")
    return fig, np.asarray(fig.subplots(n_rows, n_cols, squeeze=False))


def lambda_min_figure(rows, path: Path) -> Path:
    """λ_min(K₀) and κ(K₀) vs width; the infinite-width λ_min(Θ∞) as a reference."""
    fams = _families(rows)
    fig, axes = _axes(2, len(fams))
    for j, fam in enumerate(fams):
        for p in ("ntk", "standard"):
            w, lam, sel = _series(rows, fam, p, "lambda_min_med")
            if not sel:
                continue
            floor = np.array([np.median(r["metrics"]["lambda_floor"]) for r in sel])
            axes[0, j].plot(
                w, np.maximum(lam, floor), color="C0", label=f"λ_min(K₀) {p}", **_STYLE[p]
            )
            for r, fl in zip(sel, floor, strict=True):
                seeds = np.maximum(r["lambda_min"], fl)
                axes[0, j].scatter([r["width"]] * seeds.size, seeds, s=8, color="C0")
            inf = np.array([r["lambda_min_inf"] for r in sel])
            axes[0, j].plot(
                w, inf, color="k", lw=1, ls=":" if p == "ntk" else "-.", label=f"λ_min(Θ∞) {p}"
            )
            axes[0, j].plot(
                w,
                floor,
                color="0.6",
                lw=0.8,
                ls="--",
                label="float32 floor" if p == "ntk" else None,
            )
            axes[1, j].plot(
                w,
                _finite(_series(rows, fam, p, "condition")[1]),
                color="C1",
                label=f"κ(K₀) {p}",
                **_STYLE[p],
            )
            axes[1, j].plot(
                w,
                [r["condition_inf"] or np.nan for r in sel],
                color="k",
                lw=1,
                ls=":" if p == "ntk" else "-.",
                label=f"κ(Θ∞) {p}",
            )
        _log(axes[0, j], title=fam, ylabel="λ_min")
        _log(axes[1, j], xlabel="width", ylabel="condition number")
    return common.save_figure(fig, path, dpi=110)


def c_prime_figure(rows, path: Path) -> Path:
    """max_t C′ vs width with the 1/2 line; relative Jacobian and kernel change."""
    fams = _families(rows)
    fig, axes = _axes(2, len(fams))
    keys = {"NGD (any η)": "cmax_ngd", "GD": "cmax_gd", "Adam": "cmax_adam"}
    for j, fam in enumerate(fams):
        ax, ax2 = axes[0, j], axes[1, j]
        for p in ("ntk", "standard"):
            for name, key in keys.items():
                w, c, sel = _series(rows, fam, p, key)
                if sel:
                    ax.plot(w, _finite(c), color=_OPT_COLOR[name], label=f"{name} {p}", **_STYLE[p])
            for key, color, lab in (("jac_rel_ngd1", "C0", "‖ΔJ‖₂/‖J₀‖₂ NGD η=1"),
                                    ("kernel_change_ngd1", "C4", "‖ΔK‖_F/‖K₀‖_F NGD η=1"),
                                    ("jac_rel_gd", "C3", "‖ΔJ‖₂/‖J₀‖₂ GD")):  # fmt: skip
                w, v, sel = _series(rows, fam, p, key)
                if sel:
                    ax2.plot(w, _finite(v), color=color, label=f"{lab} {p}", **_STYLE[p])
        ax.axhline(0.5, color="k", lw=1, ls=":", label="C′ = 1/2")
        _log(ax, title=f"{fam}: max_t C′ (∞ not drawn)", ylabel="C′")
        _log(ax2, xlabel="width", ylabel="relative change at the end")
    return common.save_figure(fig, path, dpi=110)


def _median_curve(values):
    """Median over seeds (rows) of a curve, ignoring diverged (None/NaN) seeds."""
    a = np.asarray([[np.nan if v is None else v for v in row] for row in values], float)
    out = np.full(a.shape[-1], np.nan)
    for j in range(a.shape[-1]):
        col = a[:, j][np.isfinite(a[:, j])]
        out[j] = np.median(col) if col.size else np.nan
    return out


def trajectory_figure(rows, path: Path) -> Path:
    """C′(t) at the checkpoints of NGD (η = 1, solid) and GD (dashed), colour = width."""
    groups = list(dict.fromkeys((r["family"], r["parameterization"]) for r in rows))
    fig, axes = _axes(1, len(groups))
    for ax, (fam, p) in zip(axes[0], groups, strict=True):
        sel = [r for r in rows if (r["family"], r["parameterization"]) == (fam, p)]
        for k, r in enumerate(sel):
            color, m = plt_color(k, len(sel)), r["metrics"]
            ax.plot(
                m["ngd"]["checkpoints"],
                _median_curve(r["c_prime_ngd1_t"]),
                color=color,
                marker="o",
                label=f"w={r['width']}" + (" (≥)" if r["singular"] else ""),
            )
            ax.plot(m["gd"]["checkpoints"], _median_curve(r["c_prime_gd_t"]), color=color,
                    marker="s", ls="--")  # fmt: skip
        ax.axhline(0.5, color="k", lw=1, ls=":")
        _log(ax, title=f"{fam} {p}\nC′(t): NGD η=1 (—), GD (--)", xlabel="step t")
    return common.save_figure(fig, path, dpi=110)


def plt_color(k: int, n: int):
    """The ``k``-th of ``n`` colours from viridis."""
    return colormaps["viridis"](k / max(n - 1, 1))


def _loss_panel(ax, r, threshold):
    m = r["metrics"]
    blues = ["#9ecae1", "#4292c6", "#08306b"]
    t_ngd = np.arange(len(m["ngd"]["loss"][0][0]))
    for i, lr in enumerate(m["ngd"]["lrs"]):
        color = blues[i % len(blues)]
        ax.plot(t_ngd + 1, _median_curve(m["ngd"]["loss"][i]), color=color, label=f"NGD η={lr:g}")
        ax.plot(t_ngd + 1, _median_curve(m["ngd"]["pred_loss"][i]), color=color, ls="--", lw=1)
    t_gd = np.arange(len(m["gd"]["loss"][0]))
    ax.plot(t_gd + 1, _median_curve(m["gd"]["loss"]), color="C3", label="GD")
    ax.plot(t_gd + 1, _median_curve(m["gd"]["pred_loss"]), color="C3", ls="--", lw=1)
    adam = _median_curve(m["adam"]["loss"])
    ax.plot(np.arange(len(adam)) + 1, adam, color="C2", label="Adam")
    ax.axhline(threshold * np.median(m["loss0"]), color="0.5", lw=0.8, ls=":")
    _log(
        ax,
        xlabel="step + 1",
        ylabel="training loss",
        title=f"{r['family']} {r['parameterization']} w={r['width']}",
    )
    if ax.get_yscale() == "log":  # predictions reach 1e-30: show 10 decades below L₀
        ax.set_ylim(bottom=max(ax.get_ylim()[0], 1e-10 * float(np.median(m["loss0"]))))


def loss_figure(rows, path: Path, threshold: float) -> Path:
    """Loss vs step (solid, median over seeds) beside kernel-regime predictions on Θ∞ (dashed).

    The dotted grey line is the threshold ``τ · L₀`` of the steps-to-threshold table.
    """
    groups = list(dict.fromkeys((r["family"], r["parameterization"]) for r in rows))
    n_cols = max(sum(1 for r in rows if (r["family"], r["parameterization"]) == g) for g in groups)
    fig, axes = _axes(len(groups), n_cols, width=3.2, height=2.6)
    for i, g in enumerate(groups):
        sel = [r for r in rows if (r["family"], r["parameterization"]) == g]
        for j in range(n_cols):
            if j < len(sel):
                _loss_panel(axes[i, j], sel[j], threshold)
            else:
                axes[i, j].set_visible(False)
    return common.save_figure(fig, path, dpi=100)


def all_figures(rows, outdir: Path, threshold: float = 0.1) -> list[Path]:
    """Every figure of the study; returns the PNG paths."""
    outdir = Path(outdir)
    paths = [
        lambda_min_figure(rows, outdir / "lambda_min.png"),
        c_prime_figure(rows, outdir / "c_prime.png"),
        trajectory_figure(rows, outdir / "c_prime_trajectory.png"),
    ]
    for name, archs in (("mlp", ("mlp",)), ("conv", ("cnn", "wrn"))):
        sel = [r for r in rows if r["arch"] in archs]
        if sel:
            paths.append(loss_figure(sel, outdir / f"loss_{name}.png", threshold))
    return paths
