"""From stored runs to the report: per-run rows, tables and the text.

Pure numpy on the records the runner hands to ``summarize`` (each ``"spec"`` is the JSON
form of an :class:`~ntk_limits_experiments.optimization.config.OptimizationRun`, its
network a dict of :class:`ntk_limits.models.Network` fields). The figures are drawn by
:mod:`ntk_limits_experiments.optimization.plots` and the C1/C2 verdicts decided by
:mod:`ntk_limits_experiments.optimization.verdict` from the same rows.

Definitions used below (exact ones in :mod:`ntk_limits.ngd_conditions`):

* ``C′_max``: per seed, the largest ``C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ₀`` over the
  checkpoints of a trajectory (``‖ΔJ‖₂`` exact, from a dense eigensolver); the table shows
  the median over seeds. ``λ₀ = λ_min(K₀)`` comes from the Gram computed in float64; where
  even that is below its resolution (``n·k·eps₆₄·λ_max``), ``λ₀`` is replaced by its upper
  bound ``max(λ̂, 0) + floor`` and ``C′`` is a lower bound (marked ``≥``).
* ``T(τ)``: the first step at which the training loss is ``≤ τ · L₀``; ``> T_max`` when a
  run did not get there. ``speed-up = T_GD / T_NGD`` (NGD with ``η = 1``), measured and
  predicted by the kernel regime on ``Θ∞``; ``delivered = measured / predicted``.
"""

import math

import numpy as np

from ntk_limits_experiments import common
from ntk_limits_experiments.optimization.config import OptimizationConfig
from ntk_limits_experiments.optimization.verdict import PRACTICAL_WIDTH, by_group

__all__ = [
    "conditions_table",
    "delivered",
    "m_steps",
    "per_seed_c1",
    "per_seed_delivered",
    "rows_from_records",
    "speed_table",
    "text",
]
SECTIONS = ("ngd", "gd", "adam")  # the trajectories whose checkpoints C1 reads

_FAMILY_LABEL = {
    "mlp": "MLP depth {d}",
    "cnn": "CNN depth {d}",
    "wrn": "WRN-{d}",
    "wrn_bn": "WRN-{d} BatchNorm",
}


def _arr(values) -> np.ndarray:
    """Nested lists with None -> float array with NaN."""
    if isinstance(values, list):
        return np.asarray([_arr(v) for v in values], float)
    return np.asarray(np.nan if values is None else values, float)


def m_steps(m: dict, name: str) -> int:
    """Number of steps a trajectory ran (its loss curve has one more entry)."""
    return np.shape(m[name]["loss"])[-1] - 1


def _by_seed(a: np.ndarray) -> np.ndarray:
    """``(L, S, C)`` (NGD) or ``(S, C)`` -> ``(S, ·)``: every checkpoint of a seed in a row."""
    return np.moveaxis(a, 1, 0).reshape(a.shape[1], -1) if a.ndim == 3 else a


def per_seed_c1(m: dict) -> dict:
    """Per seed ``(S,)``: ``R``, ``C′`` max inside the ball and overall, checkpoint counts.

    ``C′ = 3‖ΔJ‖₂/√λ₀`` and ``R = 3‖y−u₀‖₂/√λ₀`` use ``λ₀``'s float64 value or, where it
    is unresolved, its upper bound (``c_exact`` False: both are then lower bounds, and the
    ball of radius ``R`` lies inside the true one). ``‖ΔJ‖₂`` from Lanczos is a lower bound
    too (``c_exact`` False).
    """
    lam = _arr(m["lambda_zero_upper"])
    dj = np.concatenate([_by_seed(_arr(m[s]["jacobian_change_spectral"])) for s in SECTIONS], 1)
    dist = np.concatenate([_by_seed(_arr(m[s]["param_distance"])) for s in SECTIONS], 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = np.where(lam > 0, 3.0 * _arr(m["residual0_norm"]) / np.sqrt(lam), np.inf)
        c = np.where(lam[:, None] > 0, 3.0 * dj / np.sqrt(lam)[:, None], np.inf * dj)
    inside = dist <= radius[:, None]
    return {
        "radius": radius,
        "c_in": _nanmax(np.where(inside, c, np.nan)),
        "c_all": _nanmax(c),
        "n_in_ball": inside.sum(axis=1),
        "n_checkpoints": np.isfinite(dist).sum(axis=1),
        "max_distance_over_R": _nanmax(dist / radius[:, None]),
        "lambda_exact": np.asarray(m["lambda_zero_exact"], bool),
        "c_exact": np.asarray(m["lambda_zero_exact"], bool)
        & (m.get("jacobian_norm", "dense") == "dense"),
        "jacobian_norm": m.get("jacobian_norm", "dense"),
        "lambda_zero": lam,
    }


def _interval(steps, limit: int) -> tuple[float, float]:
    """Steps-to-threshold as an interval: ``[T, T]``, or ``[limit + 1, inf]`` if not reached."""
    return (float(steps), float(steps)) if steps >= 0 else (limit + 1.0, math.inf)


def delivered(m: dict, i_ngd: int, seed: int, tau: str) -> tuple[float, float]:
    """Interval of ``(T_GD/T_NGD)_measured / (T_GD/T_NGD)_predicted`` for one seed at ``τ``.

    NaN where the kernel regime predicts no finite step count.
    """
    gd = _interval(m["gd"]["steps_at"][tau][seed], m_steps(m, "gd"))
    ngd = _interval(m["ngd"]["steps_at"][tau][i_ngd][seed], m_steps(m, "ngd"))
    gd_pred = m["gd"]["pred_steps_at"][tau][seed]
    ngd_pred = m["ngd"]["pred_steps_at"][tau][i_ngd][seed]
    if gd_pred < 0 or ngd_pred <= 0:
        return math.nan, math.nan
    predicted = gd_pred / ngd_pred
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = gd[0] / ngd[1], gd[1] / ngd[0]
    return lo / predicted, hi / predicted


def per_seed_delivered(m: dict, i_ngd: int) -> dict[str, list[tuple[float, float]]]:
    """``{τ: [(lo, hi) per seed]}`` at every stored threshold (see :func:`delivered`)."""
    seeds = range(len(m["lambda_min"]))
    return {tau: [delivered(m, i_ngd, s, tau) for s in seeds] for tau in m["gd"]["steps_at"]}


def _median(a) -> float:
    a = np.asarray(a, float)
    return float(np.median(a)) if a.size and not np.all(np.isnan(a)) else math.nan


def _nanmax(a, axis=-1) -> np.ndarray:
    """``max`` ignoring NaN; NaN where every entry is NaN (no warning)."""
    a = np.asarray(a, float)
    every = np.all(np.isnan(a), axis=axis)
    return np.where(every, np.nan, np.max(np.where(np.isnan(a), -np.inf, a), axis=axis))


def _c_prime_t(section: dict, lam_eff: np.ndarray) -> np.ndarray:
    """``C′(t) = 3‖ΔJ‖₂/√λ`` at the checkpoints, ``(..., S, C)``; NaN for a diverged run."""
    return 3.0 * _arr(section["jacobian_change_spectral"]) / np.sqrt(lam_eff)[:, None]


def _row(spec: dict, m: dict) -> dict:
    net = spec["network"]
    lam, floor = _arr(m["lambda_min"]), _arr(m["lambda_floor"])
    lam_eff = _arr(m["lambda_zero_upper"])  # float64 λ₀ (its upper bound where unresolved)
    c1 = per_seed_c1(m)
    c_ngd_t = _c_prime_t(m["ngd"], lam_eff)  # (L, S, C)
    c_gd_t = _c_prime_t(m["gd"], lam_eff)
    c_ngd, c_gd = _nanmax(c_ngd_t), _nanmax(c_gd_t)
    c_adam = _nanmax(_c_prime_t(m["adam"], lam_eff))
    i1 = int(np.argmax(m["ngd"]["lrs"]))
    delivered_at = per_seed_delivered(m, i1)
    last = lambda sec, key: _median(_arr(m[sec][key])[..., -1] if sec != "ngd" else
                                    _arr(m[sec][key])[i1, :, -1])  # fmt: skip
    return {
        "arch": net["kind"], "depth": net["depth"], "width": net["width"],
        "parameterization": net["parameterization"], "num_params": m["num_params"],
        "family": _FAMILY_LABEL[net["kind"]].format(d=net["depth"]),
        "practical": net["width"] <= PRACTICAL_WIDTH[net["kind"]],
        "seeds": list(spec["seeds"]), "c1": c1,
        # K₀ resolved in the precision NGD ran in (else NGD was solved on round-off)
        "resolved_ngd": (np.asarray(m["lambda_zero_exact"], bool) if m.get("ngd_float64")
                         else lam > floor),
        "lambda_min": lam, "lambda_min_med": _median(lam),
        "lambda_zero_med": _median(lam_eff), "singular": not all(m["lambda_zero_exact"]),
        "lambda_min_avg": _median(_arr(m["lambda_min_avg"])),
        "condition": _median(_arr(m["condition"])), "lambda_min_inf": m["lambda_min_inf"],
        "condition_inf": m["condition_inf"],
        "c_prime_ngd1_t": c_ngd_t[i1], "c_prime_gd_t": c_gd_t,
        "cmax_ngd_all": _nanmax(c_ngd, axis=0), "cmax_ngd": _median(_nanmax(c_ngd, axis=0)),
        "cmax_ngd1": _median(c_ngd[i1]), "cmax_gd": _median(c_gd), "cmax_adam": _median(c_adam),
        "jac_rel_ngd1": last("ngd", "jacobian_change_relative"),
        "jac_rel_gd": last("gd", "jacobian_change_relative"),
        "kernel_change_ngd1": last("ngd", "kernel_change"),
        "kernel_change_gd": last("gd", "kernel_change"),
        "steps_ngd": m["ngd"]["steps"], "pred_steps_ngd": m["ngd"]["pred_steps"],
        "steps_gd": m["gd"]["steps"], "pred_steps_gd": m["gd"]["pred_steps"],
        "steps_adam": m["adam"]["steps"], "ngd_lrs": m["ngd"]["lrs"], "i_ngd1": i1,
        "delivered_at": delivered_at, "delivered": next(iter(delivered_at.values())),
        "metrics": m,
    }  # fmt: skip


def rows_from_records(records: list[dict]) -> list[dict]:
    """One summary row per successful run, sorted by family, parametrization and width."""
    rows = [_row(r["spec"], r["metrics"]) for r in records if r["status"] == "ok"]
    return sorted(rows, key=lambda r: (r["arch"], r["depth"], r["parameterization"], r["width"]))


def _fmt(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float) and math.isinf(v):
        return "∞"
    return f"{v:.{digits}g}" if isinstance(v, float) else str(v)


def _steps(values, limit: int) -> str:
    """Median steps over seeds, ``>limit`` if the median run did not get there."""
    a = np.asarray(values, float)
    a = np.where(a < 0, np.inf, a)
    med = float(np.median(a))
    return f">{limit}" if math.isinf(med) else f"{med:.0f}"


def _min_c_in(r: dict) -> float:
    """The smallest over seeds of C′ inside the ball (NaN if no seed has a checkpoint there)."""
    c = r["c1"]["c_in"]
    return float(np.nanmin(c)) if not np.all(np.isnan(c)) else math.nan


def conditions_table(rows: list[dict]) -> str:
    """λ_min, condition number and C′ per run (medians over seeds)."""
    header = [
        "network",
        "param.",
        "width",
        "P",
        "λ_min(K₀) f64",
        "λ_min(Θ∞)",
        "κ(K₀)",
        "C′ in R-ball (min seed)",
        "C′ NGD η=1",
        "C′ NGD any η",
        "C′ GD",
        "C′ Adam",
        "‖ΔJ‖₂/‖J₀‖₂ NGD",
        "‖ΔK‖/‖K₀‖ NGD",
    ]
    lines = [
        [
            r["family"],
            r["parameterization"],
            str(r["width"]),
            str(r["num_params"]),
            ("≤ " if r["singular"] else "") + _fmt(r["lambda_zero_med"]),
            _fmt(r["lambda_min_inf"]),
            _fmt(r["condition"]),
            ("≥ " if r["singular"] else "") + _fmt(_min_c_in(r)),
            _fmt(r["cmax_ngd1"]),
            _fmt(r["cmax_ngd"]),
            _fmt(r["cmax_gd"]),
            _fmt(r["cmax_adam"]),
            _fmt(r["jac_rel_ngd1"]),
            _fmt(r["kernel_change_ngd1"]),
        ]
        for r in rows
    ]
    return common.markdown_table(header, lines)  # fmt: skip


def _delivered_text(r: dict) -> str:
    intervals = r["delivered"]
    lo = _median([d[0] for d in intervals])
    hi = _median([d[1] for d in intervals])
    return _fmt(lo) if lo == hi else f"[{_fmt(lo)}, {_fmt(hi)}]"


def speed_table(rows: list[dict]) -> str:
    """Steps to reach τ·L₀ per optimizer, measured (predicted), medians over seeds."""
    lrs = rows[0]["ngd_lrs"] if rows else []
    header = ["network", "param.", "width", *[f"NGD η={lr:g}" for lr in lrs], "GD", "Adam",
              "delivered speed-up"]  # fmt: skip
    lines = []
    for r in rows:
        m = r["metrics"]
        t_ngd, t_gd = m_steps(m, "ngd"), m_steps(m, "gd")
        ngd = [f"{_steps(s, t_ngd)} ({_steps(p, 10**9)})"
               for s, p in zip(r["steps_ngd"], r["pred_steps_ngd"], strict=True)]  # fmt: skip
        gd = f"{_steps(r['steps_gd'], t_gd)} ({_steps(r['pred_steps_gd'], 10**9)})"
        lines.append([r["family"], r["parameterization"], str(r["width"]), *ngd, gd,
                      _steps(r["steps_adam"], t_gd), _delivered_text(r)])  # fmt: skip
    return common.markdown_table(header, lines)


def _power_law_width(rows: list[dict]) -> float:
    """Width at which the power law through the two widest runs' ``C′_max`` reaches 1/2.

    Only runs whose ``K₀`` is resolved in float32 count; ``inf`` if ``C′`` does not fall,
    NaN if fewer than two such runs. (``C′`` falls faster at small widths, where
    ``λ_min(K₀)`` still grows, so a fit through all widths would be optimistic.)
    """
    pts = sorted((r["width"], r["cmax_ngd"]) for r in rows
                 if np.isfinite(r["cmax_ngd"]) and not r["singular"])  # fmt: skip
    if len(pts) < 2:
        return math.nan
    (w0, c0), (w1, c1) = np.log(pts[-2]), np.log(pts[-1])
    slope = (c1 - c0) / (w1 - w0)
    return float(np.exp(w1 + (np.log(0.5) - c1) / slope)) if slope < 0 else math.inf


def text(config: OptimizationConfig, rows: list[dict], records: list[dict]) -> str:
    """The report's paragraph: what was run, how, and the per-family findings."""
    if not rows:
        return "No run of the optimization study finished; nothing to report."
    failed = [r for r in records if r["status"] != "ok"]
    lrs = ", ".join(f"{v:g}" for v in config.ngd_lrs)
    data = "; ".join(
        dict.fromkeys(
            f"{r['metrics']['data']} (n = {r['metrics']['n']}, k = {r['metrics']['k']})"
            for r in rows
        )
    )

    def span(g):
        lo, hi = (_fmt(f(r["num_params"] for r in g)) for f in (min, max))
        return lo if lo == hi else f"{lo}–{hi}"

    sizes = "; ".join(
        f"{fam} {p} widths {[r['width'] for r in g]} ({span(g)} parameters)"
        for (fam, p), g in by_group(rows).items()
    )
    batchnorm = (
        " The BatchNorm WRN (flax, standard parametrisation) runs in BatchNorm's training "
        "mode: batch statistics of the whole training batch, the function that full-batch "
        "NGD, GD and Adam differentiate; its Jacobian is that of the batch (examples "
        "coupled), and its Gram, λ_min and C′ are taken on the whole batch at once. It has "
        "no infinite-width limit: its kernel-regime curves use its own output-averaged K₀ "
        "(mean over seeds) in place of Θ∞, and with one width it gives C1 witnesses but no "
        "C2 trend."
        if any(r["arch"] == "wrn_bn" for r in rows)
        else ""
    )
    return (
        f"Data: {data}; one-hot MSE targets, loss L = ‖f−y‖²/(2nk). Networks: {sizes}. "
        f"Seeds {list(config.seeds)}.{batchnorm} For each network we form the full "
        f"(nk × nk) Gram K₀ = J₀J₀ᵀ of the raw outputs; in the infinite-width limit "
        f"K₀ → Θ∞ ⊗ I_k with Θ∞ the output-averaged NTK, so λ_min(K₀) is compared with "
        f"λ_min(Θ∞). Exact NGD (damped Gauss–Newton, Cholesky on K + εI, "
        f"ε = {config.ngd_damping:g}·tr(K₀)/(nk); "
        f"{'float64' if config.ngd_float64 else 'float32'}) ran {config.ngd_steps} steps at "
        f"η ∈ {{{lrs}}}; GD ran {config.gd_steps} steps (CNNs and WRNs "
        f"{config.conv_gd_steps}) at the best of "
        f"{list(config.gd_lr_fractions)} × 2nk/λ_max(K₀); Adam {config.adam_steps} steps at "
        f"lr {config.adam_lr:g}. "
        + (
            "C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ_min(K₀) was evaluated from the exact ΔJΔJᵀ (the "
            "NTK of f(θ_t + δ) − f(θ₀ + δ); its top eigenvalue by a dense eigensolver, exact "
            "to float32 round-off) "
            if config.jacobian_norm == "dense"
            else f"C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ_min(K₀) was evaluated with ‖ΔJ‖₂ from "
            f"{config.lanczos_iters} matrix-free Lanczos steps on ΔJΔJᵀ (NTK-vector products "
            "of f(θ_t + δ) − f(θ₀ + δ); a lower bound, so C′ is too: it can witness C′ ≥ 1/2 "
            "but not certify C′ < 1/2) "
        )
        + f"and λ_min(K₀) of the Gram recomputed in float64, at "
        f"{config.num_checkpoints} checkpoints per trajectory, next to ‖θ_t − θ₀‖₂ and the "
        f"radius R = 3‖y − u₀‖₂/√λ_min(K₀) of Zhang et al.'s condition. Speed is the "
        f"number of steps to reach {config.loss_threshold:g}·L₀; predictions are the "
        f"kernel-regime curves on Θ∞ (NGD: damped (1−η)^{{2t}}; GD: closed form). "
        f"{len(rows)} runs finished, {len(failed)} did not. {_findings(rows)}"
    )


def _findings(rows: list[dict]) -> str:
    """One sentence per family: the smallest C′_max and where C′ = 1/2 would be reached."""
    out = []
    for (fam, p), group in by_group(rows).items():
        best = min(group, key=lambda r: r["cmax_ngd"])
        reach = _power_law_width(group)
        out.append(
            f"{fam} ({p}): smallest C′_max {_fmt(best['cmax_ngd'])} at width {best['width']}"
            + (
                f", 1/2 reached near width {reach:.3g} by the power law through the two widest"
                if np.isfinite(reach)
                else ""
            )  # fmt: skip
            + "."
        )
    return " ".join(out)
