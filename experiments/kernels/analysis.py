"""Aggregation and tables of the kernels study (numpy on stored records); C5 is in verdict.py."""

import numpy as np

from ntk_limits_experiments.common import markdown_table
from ntk_limits_experiments.kernels.config import KernelsConfig
from ntk_limits_experiments.study import Verdict

__all__ = [
    "PARAM_NAME",
    "bootstrap_interval",
    "fit_loglog_slope",
    "group_records",
    "label",
    "rms",
    "series",
    "slope_table",
    "text",
    "width_table",
]

PARAM_NAME = {"ntk": "NTP", "standard": "SP"}
_NUM_BOOTSTRAP = 1000


def group_records(records: list[dict]) -> dict[tuple[str, str], list[tuple[int, dict]]]:
    """``(arch, parametrization) -> [(hidden width, metrics), ...]`` of finished runs, by width."""
    groups: dict[tuple[str, str], list[tuple[int, dict]]] = {}
    for r in records:
        if r["status"] == "ok":
            net = r["spec"]["network"]
            key = (net["kind"], net["parameterization"])
            groups.setdefault(key, []).append((r["metrics"]["hidden_width"], r["metrics"]))
    return {k: sorted(v, key=lambda t: t[0]) for k, v in sorted(groups.items())}


def fit_loglog_slope(widths, values) -> float:
    """Least-squares slope ``s`` of ``log value = a + s · log width``."""
    return float(np.polyfit(np.log(widths), np.log(values), 1)[0])


def rms(errors: np.ndarray) -> np.ndarray:
    """Root mean square over the last axis (the seeds)."""
    return np.sqrt(np.mean(np.square(errors), axis=-1))


def bootstrap_interval(widths, errors: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """5-95 % interval of the slope, resampling seeds with replacement at each width."""
    rng = np.random.default_rng(seed)
    n_w, n_s = errors.shape
    idx = rng.integers(0, n_s, size=(_NUM_BOOTSTRAP, n_w, n_s))
    resampled = np.take_along_axis(errors[None], idx, axis=2)
    fitted = np.polyfit(np.log(widths), np.log(rms(resampled)).T, 1)[0]
    return float(np.quantile(fitted, 0.05)), float(np.quantile(fitted, 0.95))


def series(rows, name: str) -> np.ndarray:
    """``(widths, seeds)`` array of metric ``name`` of one group's rows."""
    return np.array([m[name] for _, m in rows], np.float64)  # (widths, seeds)


def label(arch: str, param: str) -> str:
    """``"MLP NTP"``-style name of a group."""
    return f"{arch.upper()} {PARAM_NAME[param]}"


def width_table(groups) -> str:
    """Per (arch, parametrization, width): RMS relative error (min–max), alignment, λ ratio."""
    rows = []
    for (arch, param), entries in groups.items():
        for w, m in entries:
            e = np.asarray(m["rel_error"])
            rows.append((
                arch, PARAM_NAME[param], w,
                f"{rms(e):.4f} ({e.min():.3f}–{e.max():.3f})",
                f"{np.mean(m['alignment']):.4f}", f"{np.mean(m['lambda_min_ratio']):.3f}", e.size,
            ))  # fmt: skip
    header = ["arch", "param", "width", "rel. error RMS (min–max)", "alignment", "λ_min ratio"]
    return markdown_table([*header, "seeds"], rows)


def slope_table(evidence: dict) -> str:
    """Per (arch, parametrization): widths, fitted slope, its seed bootstrap, the rule's call."""
    rows = []
    for name, s in evidence.items():
        if not isinstance(s, dict) or "widths" not in s:
            continue
        if "slope" not in s:
            rows.append((name, s["widths"], "–", "–", s["call"]))
            continue
        rows.append((
            name, f"{s['widths'][0]}–{s['widths'][-1]} ({len(s['widths'])})", f"{s['slope']:.3f}",
            f"[{s['slope_5']:.3f}, {s['slope_95']:.3f}]", s["call"],
        ))  # fmt: skip
    header = ["arch, param", "widths", "fitted slope", "5–95 % (seed bootstrap)", "call"]
    return markdown_table(header, rows)


def text(config: KernelsConfig, groups, verdict: Verdict) -> str:
    """The study's paragraph for the report: what ran, the data, the slopes, the verdict."""
    datas = sorted({m["data"] for rows in groups.values() for _, m in rows})
    fits = "; ".join(
        f"{n}: {s['slope']:.2f} [{s['slope_5']:.2f}, {s['slope_95']:.2f}]"
        for n, s in verdict.evidence.items()
        if isinstance(s, dict) and "slope" in s
    )
    return (
        f"Empirical NTK at initialisation (scalar output, {len(config.seeds)} seeds) against "
        f"the infinite-width NTK from stax, for widths {list(config.mlp_widths)} (MLP, depth "
        f"{config.mlp_depth}), {list(config.cnn_widths)} (CNN, depth {config.cnn_depth})"
        + (f", WRN-{config.wrn_depth}-k for k in {list(config.wrn_ks)}" if config.wrn_ks else "")
        + f". Data: {'; '.join(datas)}. In standard parametrization (SP) the reference is stax's "
        "leading-order kernel at that width, not a width-free limit. "
        "Fitted log-log slopes of the relative Frobenius error (5–95 % seed bootstrap): "
        f"{fits or 'none'} (predicted −1/2). C5 {verdict.verdict}."
    )
