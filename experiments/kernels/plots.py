"""Figures, tables and the C5 verdict of the kernels study."""

from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from ntk_limits_experiments.study import Summary, Verdict

matplotlib.use("Agg")

__all__ = ["STATEMENT", "c5_verdict", "fit_loglog_slope", "group_records", "slopes", "summarize"]

STATEMENT = "The empirical NTK approaches the infinite-width NTK as width grows (sanity)."
_COLORS = {"mlp": "C0", "cnn": "C1", "wrn": "C2"}
_STYLES = {"ntk": ("-", "o"), "standard": ("--", "s")}
_PARAM_NAME = {"ntk": "NTP", "standard": "SP"}
_NUM_BOOTSTRAP = 1000


def group_records(records: list[dict]) -> dict[tuple[str, str], list[tuple[int, dict]]]:
    """``(arch, parametrization) -> [(hidden width, metrics), ...]`` of finished runs, by width."""
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for r in records:
        if r["status"] == "ok":
            key = (r["spec"]["arch"], r["spec"]["parameterization"])
            groups.setdefault(key, []).append((r["metrics"]["hidden_width"], r["metrics"]))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in sorted(groups.items())}


def fit_loglog_slope(widths, values) -> float:
    """Least-squares slope ``s`` of ``log value = a + s · log width``."""
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


def _rms(errors: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(errors), axis=-1))


def _bootstrap_interval(widths, errors: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """5-95 % interval of the slope, resampling seeds with replacement at each width."""
    rng = np.random.default_rng(seed)
    n_w, n_s = errors.shape
    idx = rng.integers(0, n_s, size=(_NUM_BOOTSTRAP, n_w, n_s))
    resampled = np.take_along_axis(errors[None], idx, axis=2)
    fitted = np.polyfit(np.log(widths), np.log(_rms(resampled)).T, 1)[0]
    return float(np.quantile(fitted, 0.05)), float(np.quantile(fitted, 0.95))


def _series(rows, name: str) -> np.ndarray:
    return np.array([m[name] for _, m in rows], np.float64)  # (widths, seeds)


def _label(arch: str, param: str) -> str:
    return f"{arch.upper()} {_PARAM_NAME[param]}"


def _error_figure(groups, path: Path) -> Path:
    fig = Figure(figsize=(5.5, 4.0), layout="constrained")
    ax = fig.subplots()
    for (arch, param), rows in groups.items():
        w, err = np.array([r[0] for r in rows]), _series(rows, "rel_error")
        ls, marker = _STYLES[param]
        ax.fill_between(w, err.min(1), err.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax.plot(w, _rms(err), ls=ls, marker=marker, color=_COLORS[arch], label=_label(arch, param))
    all_w = np.concatenate([[r[0] for r in rows] for rows in groups.values()])
    all_e = np.concatenate([_rms(_series(rows, "rel_error")) for rows in groups.values()])
    c = np.exp(np.mean(np.log(all_e) + 0.5 * np.log(all_w)))
    guide = np.geomspace(all_w.min(), all_w.max(), 20)
    ax.plot(guide, c * guide**-0.5, ":", color="0.4", label=r"$\propto$ width$^{-1/2}$")
    ax.set(xscale="log", yscale="log", xlabel="width (hidden units / channels)")
    ax.set(ylabel=r"$\|K_{emp}-K_{\infty}\|_F / \|K_{\infty}\|_F$")
    ax.set_title("Empirical vs infinite-width NTK (RMS over seeds; band: min-max)", fontsize=9)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return path


def _spectrum_figure(groups, path: Path) -> Path:
    fig = Figure(figsize=(9.0, 3.6), layout="constrained")
    ax_a, ax_l = fig.subplots(1, 2)
    for (arch, param), rows in groups.items():
        w = np.array([r[0] for r in rows])
        ls, marker = _STYLES[param]
        kw = dict(ls=ls, marker=marker, color=_COLORS[arch], label=_label(arch, param))
        mis = 1 - _series(rows, "alignment")
        ax_a.fill_between(w, mis.min(1), mis.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax_a.plot(w, mis.mean(1), **kw)
        ratio = _series(rows, "lambda_min_ratio")
        ax_l.fill_between(w, ratio.min(1), ratio.max(1), color=_COLORS[arch], alpha=0.15, lw=0)
        ax_l.plot(w, ratio.mean(1), **kw)
    ax_a.set(xscale="log", yscale="log", xlabel="width", ylabel="1 − alignment(K_emp, K_inf)")
    ax_l.axhline(1.0, color="0.4", ls=":")
    ax_l.set(xscale="log", xlabel="width", ylabel="λ_min(K_emp) / λ_min(K_inf)")
    ax_a.legend(fontsize=8)
    fig.suptitle("Kernel alignment and smallest eigenvalue (mean over seeds; band: min-max)")
    fig.savefig(path, dpi=120)
    return path


def _width_table(groups) -> str:
    lines = [
        "| arch | param | width | rel. error RMS (min–max) | alignment | λ_min ratio | seeds |",
        "|---|---|---|---|---|---|---|",
    ]
    for (arch, param), rows in groups.items():
        for w, m in rows:
            e = np.asarray(m["rel_error"])
            lines.append(
                f"| {arch} | {_PARAM_NAME[param]} | {w} | {_rms(e):.4f} ({e.min():.3f}–"
                f"{e.max():.3f}) | {np.mean(m['alignment']):.4f} | "
                f"{np.mean(m['lambda_min_ratio']):.3f} | {e.size} |"
            )
    return "\n".join(lines) + "\n"


def slopes(groups) -> dict[str, dict]:
    """Per (arch, parametrization): widths, RMS errors, fitted slope and its seed bootstrap."""
    out = {}
    for (arch, param), rows in groups.items():
        w, err = np.array([r[0] for r in rows]), _series(rows, "rel_error")
        entry = {"widths": w.tolist(), "rms_rel_error": _rms(err).tolist()}
        if len(rows) >= 2:
            lo, hi = _bootstrap_interval(w, err)
            entry.update(slope=fit_loglog_slope(w, _rms(err)), slope_5=lo, slope_95=hi)
        out[_label(arch, param)] = entry
    return out


def c5_verdict(fits: dict, lo: float, hi: float, min_widths: int = 3) -> Verdict:
    """C5 from the fitted slopes (:func:`slopes`): holds iff every slope lies in ``[lo, hi]``."""
    rule = (
        f"fit log RMS-over-seeds relative error vs log width per (arch, parametrization); holds if "
        f"every slope lies in [{lo}, {hi}] around the predicted -1/2, fails if any lies "
        f"outside, inconclusive if any has fewer than {min_widths} widths"
    )
    evidence = {name: dict(s) for name, s in fits.items()}
    short = [n for n, s in fits.items() if len(s["widths"]) < min_widths]
    if not fits or short:
        verdict = "inconclusive"
    else:
        ok = all(lo <= s["slope"] <= hi for s in fits.values())
        verdict = "holds" if ok else "fails"
    return Verdict("C5", STATEMENT, verdict, rule, evidence)


def _slope_table(fits: dict, lo: float, hi: float) -> str:
    lines = ["| arch, param | widths | fitted slope | 5–95 % (seed bootstrap) | in range |"]
    lines.append("|---|---|---|---|---|")
    for name, s in fits.items():
        if "slope" not in s:
            lines.append(f"| {name} | {s['widths']} | – | – | – |")
            continue
        inside = "yes" if lo <= s["slope"] <= hi else "no"
        lines.append(
            f"| {name} | {s['widths'][0]}–{s['widths'][-1]} ({len(s['widths'])}) | "
            f"{s['slope']:.3f} | [{s['slope_5']:.3f}, {s['slope_95']:.3f}] | {inside} |"
        )
    return "\n".join(lines) + "\n"


def _text(config: dict, groups, verdict: Verdict) -> str:
    datas = sorted({m["data"] for rows in groups.values() for _, m in rows})
    fits = "; ".join(f"{n}: {s['slope']:.2f}" for n, s in verdict.evidence.items() if "slope" in s)
    return (
        f"Empirical NTK at initialisation (scalar output, {len(config['seeds'])} seeds) against "
        f"the infinite-width NTK from stax, for widths {config['mlp_widths']} (MLP, depth "
        f"{config['mlp_depth']}), {config['cnn_widths']} (CNN, depth {config['cnn_depth']})"
        + (f", WRN-{config['wrn_depth']}-k for k in {config['wrn_ks']}" if config["wrn_ks"] else "")
        + f". Data: {'; '.join(datas)}. In standard parametrization (SP) the reference is stax's "
        "leading-order kernel at that width, not a width-free limit. "
        f"Fitted log-log slopes of the relative Frobenius error: {fits or 'none'} "
        f"(predicted −1/2). C5 {verdict.verdict}."
    )


def summarize(config: dict, records: list[dict], outdir) -> Summary:
    """Error-vs-width and spectrum figures, per-width and slope tables, the C5 verdict."""
    outdir = Path(outdir)
    groups = group_records(records)
    fits = slopes(groups)
    lo, hi = config["slope_lo"], config["slope_hi"]
    verdict = c5_verdict(fits, lo, hi)
    figures = []
    if groups:
        figures = [
            _error_figure(groups, outdir / "kernel_error_vs_width.png"),
            _spectrum_figure(groups, outdir / "kernel_alignment_lambda_min.png"),
        ]
    tables = {
        "kernel error by width": _width_table(groups),
        "fitted slopes": _slope_table(fits, lo, hi),
    }
    return Summary(figures, tables, [verdict], _text(config, groups, verdict))
