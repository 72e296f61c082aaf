"""From stored runs to the report: per-run rows, tables, the C1/C2 verdicts and the text.

Pure numpy on the records the runner hands to ``summarize`` (each ``"spec"`` is the JSON
form of an :class:`~ntk_limits_experiments.optimization.config.OptimizationRun`, its
network a dict of :class:`ntk_limits.models.Network` fields). The figures are drawn by
:mod:`ntk_limits_experiments.optimization.plots` from the same rows.

Definitions used below (exact ones in :mod:`ntk_limits.ngd_conditions`):

* ``C′_max``: per seed, the largest ``C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ_min(K₀)`` over the
  checkpoints of a trajectory; the table shows the median over seeds. Where ``λ_min(K₀)``
  is below the float32 resolution of the Gram (``n·k·eps₃₂·λ_max``, numpy's rank
  tolerance), ``λ_min`` is replaced by its upper bound ``max(λ̂, 0) + floor`` and ``C′``
  is a lower bound (marked ``≥``).
* ``T(τ)``: the first step at which the training loss is ``≤ τ · L₀``; ``> T_max`` when a
  run did not get there. ``speed-up = T_GD / T_NGD`` (NGD with ``η = 1``), measured and
  predicted by the kernel regime on ``Θ∞``; ``delivered = measured / predicted``.
"""

import math

import numpy as np

from ntk_limits_experiments import claims, common
from ntk_limits_experiments.optimization.config import OptimizationConfig
from ntk_limits_experiments.study import Verdict

__all__ = [
    "C1_RULE",
    "C2_RULE",
    "PRACTICAL_WIDTH",
    "conditions_table",
    "rows_from_records",
    "speed_table",
    "text",
    "verdict_c1",
    "verdict_c2",
]

# The widest networks called practical here (hidden units; channels; WRN multiplier k).
PRACTICAL_WIDTH = {"mlp": 4096, "cnn": 1024, "wrn": 16}
_FAMILY_LABEL = {"mlp": "MLP depth {d}", "cnn": "CNN depth {d}", "wrn": "WRN-{d}"}


def _arr(values) -> np.ndarray:
    """Nested lists with None -> float array with NaN."""
    return (
        np.asarray(
            [_arr(v) if isinstance(v, list) else np.nan if v is None else v for v in values], float
        )
        if isinstance(values, list)
        else np.asarray(np.nan if values is None else values, float)
    )


def _median(a) -> float:
    a = np.asarray(a, float)
    return float(np.median(a)) if a.size and not np.all(np.isnan(a)) else math.nan


def _interval(steps, limit: int) -> tuple[float, float]:
    """Steps-to-threshold as an interval: ``[T, T]``, or ``[limit + 1, inf]`` if not reached."""
    return (float(steps), float(steps)) if steps >= 0 else (limit + 1.0, math.inf)


def _delivered(m: dict, i_ngd: int, seed: int, tau: str | None = None) -> tuple[float, float]:
    """Interval of ``(T_GD/T_NGD)_measured / (T_GD/T_NGD)_predicted`` for one seed.

    ``tau``: a key of ``steps_at`` (another loss threshold); ``None`` for the configured one.
    """
    get = lambda sec, key: m[sec][key] if tau is None else m[sec][f"{key}_at"][tau]
    gd = _interval(get("gd", "steps")[seed], m_steps(m, "gd"))
    ngd = _interval(get("ngd", "steps")[i_ngd][seed], m_steps(m, "ngd"))
    gd_pred = get("gd", "pred_steps")[seed]
    ngd_pred = get("ngd", "pred_steps")[i_ngd][seed]
    if gd_pred < 0 or ngd_pred <= 0:
        return math.nan, math.nan
    predicted = gd_pred / ngd_pred
    with np.errstate(divide="ignore", invalid="ignore"):
        lo, hi = gd[0] / ngd[1], gd[1] / ngd[0]
    return lo / predicted, hi / predicted


def m_steps(m: dict, name: str) -> int:
    """Number of steps a trajectory ran (its loss curve has one more entry)."""
    return np.shape(m[name]["loss"])[-1] - 1


def _nanmax(a, axis=-1) -> np.ndarray:
    """``max`` ignoring NaN; NaN where every entry is NaN (no warning)."""
    a = np.asarray(a, float)
    every = np.all(np.isnan(a), axis=axis)
    return np.where(every, np.nan, np.max(np.where(np.isnan(a), -np.inf, a), axis=axis))


def _c_prime_t(section: dict, lam_eff: np.ndarray) -> np.ndarray:
    """``C′(t) = 3‖ΔJ‖₂/√λ`` at the checkpoints, ``(..., S, C)``; NaN for a diverged run."""
    return 3.0 * _arr(section["jacobian_change_spectral"]) / np.sqrt(lam_eff)[:, None]


def _effective_lambda(lam: np.ndarray, floor: np.ndarray) -> np.ndarray:
    """``λ_min(K₀)``, or ``max(λ̂, 0) + floor`` where ``λ̂ ≤ floor`` (float32 round-off).

    In the second case the true ``λ_min`` is at most ``λ̂ + floor``, so ``C′`` computed with
    it is a lower bound.
    """
    return np.where(lam > floor, lam, np.maximum(lam, 0.0) + floor)


def _row(spec: dict, m: dict) -> dict:
    net = spec["network"]
    lam, floor = _arr(m["lambda_min"]), _arr(m["lambda_floor"])
    singular = lam <= floor
    lam_eff = _effective_lambda(lam, floor)
    c_ngd_t = _c_prime_t(m["ngd"], lam_eff)  # (L, S, C)
    c_gd_t = _c_prime_t(m["gd"], lam_eff)
    c_ngd, c_gd = _nanmax(c_ngd_t), _nanmax(c_gd_t)
    c_adam = _nanmax(_c_prime_t(m["adam"], lam_eff))
    i1 = int(np.argmax(m["ngd"]["lrs"]))
    seeds = range(len(lam))
    delivered = [_delivered(m, i1, s) for s in seeds]
    last = lambda sec, key: _median(_arr(m[sec][key])[..., -1] if sec != "ngd" else
                                    _arr(m[sec][key])[i1, :, -1])  # fmt: skip
    return {
        "arch": net["kind"], "depth": net["depth"], "width": net["width"],
        "parameterization": net["parameterization"], "num_params": m["num_params"],
        "family": _FAMILY_LABEL[net["kind"]].format(d=net["depth"]),
        "practical": net["width"] <= PRACTICAL_WIDTH[net["kind"]],
        "lambda_min": lam, "lambda_min_med": _median(lam), "singular": bool(np.any(singular)),
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
        "delivered": delivered, "metrics": m,
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


def conditions_table(rows: list[dict]) -> str:
    """λ_min, condition number and C′ per run (medians over seeds)."""
    header = [
        "network",
        "param.",
        "width",
        "P",
        "λ_min(K₀)",
        "λ_min(Θ∞)",
        "κ(K₀)",
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
            _fmt(r["lambda_min_med"]) + (" (≤ float32 floor)" if r["singular"] else ""),
            _fmt(r["lambda_min_inf"]),
            _fmt(r["condition"]),
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


def _delivered_text(r: dict, tau: str | None = None) -> str:
    if tau is None:
        intervals = r["delivered"]
    else:
        seeds = range(len(r["lambda_min"]))
        intervals = [_delivered(r["metrics"], r["i_ngd1"], s, tau) for s in seeds]
    lo = _median([d[0] for d in intervals])
    hi = _median([d[1] for d in intervals])
    return _fmt(lo) if lo == hi else f"[{_fmt(lo)}, {_fmt(hi)}]"


def _stricter(practical: list[dict]) -> dict:
    """Delivered speed-up at the other thresholds of ``steps_at`` (evidence only)."""
    if not practical:
        return {}
    taus = list(practical[0]["metrics"]["gd"]["steps_at"])[1:]
    label = lambda r: f"{r['family']} {r['parameterization']} w={r['width']}"
    return {f"tau={tau}": {label(r): _delivered_text(r, tau) for r in practical} for tau in taus}


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


def _groups(rows: list[dict]) -> dict:
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["family"], r["parameterization"]), []).append(r)
    return groups


C1_RULE = (
    "Per run, C′_max = median over seeds of the largest C′(t) = 3‖J(θ_t)−J(θ₀)‖₂/√λ_min(K₀) "
    "over the checkpoints of all NGD trajectories (a lower bound where λ_min(K₀) is below the "
    "float32 resolution n·k·eps·λ_max); "
    "holds if C′_max ≥ 1/2 at every practical width run (MLP ≤ 4096 units, CNN ≤ 1024 "
    "channels, WRN k ≤ 16), fails if C′_max < 1/2 at any of them; inconclusive if none ran."
)


def verdict_c1(rows: list[dict]) -> Verdict:
    """C1 from the C′_max of every practical run (rule in :data:`C1_RULE`)."""
    practical = [r for r in rows if r["practical"]]
    label = lambda r: f"{r['family']} {r['parameterization']} w={r['width']}"
    below = {label(r): r["cmax_ngd"] for r in practical if r["cmax_ngd"] < 0.5}
    evidence = {
        "runs": len(practical),
        "runs_with_C_prime_below_half": below,
        "C_prime_max_by_run": {label(r): r["cmax_ngd"] for r in practical},
        "C_prime_max_GD_by_run": {label(r): r["cmax_gd"] for r in practical},
        "lambda_min_K0_by_run": {label(r): r["lambda_min_med"] for r in practical},
        "runs_with_singular_K0": [label(r) for r in practical if r["singular"]],
        "width_where_power_law_fit_reaches_half": {
            f"{fam} {p}": _power_law_width(g) for (fam, p), g in _groups(practical).items()
        },
    }
    if not practical:
        decision = "inconclusive"
    else:
        decision = "fails" if below else "holds"
    return claims.verdict("C1", decision, C1_RULE, evidence)


C2_RULE = (
    "Per run and seed, delivered = (T_GD/T_NGD)_measured / (T_GD/T_NGD)_predicted with T the "
    "steps to reach τ·L₀, NGD at η = 1, GD at its best step size, predictions from the "
    "kernel regime on Θ∞ (censored runs give an interval); a run 'falls short' if the median "
    "over seeds of the interval's upper end is < 1/2 and 'delivers' if its lower end is ≥ 1/2; "
    "holds if ≥ 2/3 of the decided practical runs fall short, fails if ≤ 1/3 do, else "
    "inconclusive (also if fewer than half of the runs are decided)."
)


def _delivery(r: dict) -> str:
    lo = _median([d[0] for d in r["delivered"]])
    hi = _median([d[1] for d in r["delivered"]])
    if hi < 0.5:
        return "falls short"
    return "delivers" if lo >= 0.5 else "undecided"


def verdict_c2(rows: list[dict]) -> Verdict:
    """C2 from the delivered fraction of the kernel-regime speed-up (rule in :data:`C2_RULE`)."""
    practical = [r for r in rows if r["practical"]]
    label = lambda r: f"{r['family']} {r['parameterization']} w={r['width']}"
    status = {label(r): _delivery(r) for r in practical}
    decided = [s for s in status.values() if s != "undecided"]
    short = sum(s == "falls short" for s in decided)
    frac = short / len(decided) if decided else math.nan
    if not decided or len(decided) < len(status) / 2:
        decision = "inconclusive"
    else:
        decision = "holds" if frac >= 2 / 3 else "fails" if frac <= 1 / 3 else "inconclusive"
    evidence = {
        "runs": len(practical),
        "decided": len(decided),
        "fraction_falling_short": frac,
        "status_by_run": status,
        "delivered_speed_up_by_run": {label(r): _delivered_text(r) for r in practical},
        "speed_up_measured_vs_predicted_by_run": {label(r): _speedups(r) for r in practical},
        "delivered_speed_up_at_stricter_thresholds": _stricter(practical),
    }
    return claims.verdict("C2", decision, C2_RULE, evidence)


def _speedups(r: dict) -> str:
    m, i1 = r["metrics"], r["i_ngd1"]
    gd, ngd = _steps(r["steps_gd"], m_steps(m, "gd")), _steps(r["steps_ngd"][i1], m_steps(m, "ngd"))
    gd_p, ngd_p = _steps(r["pred_steps_gd"], 10**9), _steps(r["pred_steps_ngd"][i1], 10**9)
    return f"measured T_GD/T_NGD = {gd}/{ngd}; predicted {gd_p}/{ngd_p}"


def text(config: OptimizationConfig, rows: list[dict], records: list[dict]) -> str:
    """The report's paragraph: what was run, how, and the per-family findings."""
    if not rows:
        return "No run of the optimization study finished; nothing to report."
    m = rows[0]["metrics"]
    failed = [r for r in records if r["status"] != "ok"]
    lrs = ", ".join(f"{v:g}" for v in config.ngd_lrs)
    return (
        f"Data: {m['data']}; one-hot MSE targets (n = {m['n']}, k = {m['k']}), "
        f"loss L = ‖f−y‖²/(2nk). Seeds {list(config.seeds)}. For each network we form the full "
        f"(nk × nk) Gram K₀ = J₀J₀ᵀ of the raw outputs; in the infinite-width limit "
        f"K₀ → Θ∞ ⊗ I_k with Θ∞ the output-averaged NTK, so λ_min(K₀) is compared with "
        f"λ_min(Θ∞). Exact NGD (damped Gauss–Newton, Cholesky on K + εI, "
        f"ε = {config.ngd_damping:g}·tr(K₀)/(nk)) ran {config.ngd_steps} steps at "
        f"η ∈ {{{lrs}}}; GD ran {config.gd_steps} steps at the best of "
        f"{list(config.gd_lr_fractions)} × 2nk/λ_max(K₀); Adam at lr {config.adam_lr:g}. "
        f"C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ_min(K₀) was evaluated from the exact ΔJΔJᵀ (the NTK "
        f"of f(θ_t + δ) − f(θ₀ + δ); its top eigenvalue by 200 power iterations, which converge "
        f"from below) at {config.num_checkpoints} checkpoints per trajectory. Speed is the "
        f"number of steps to reach {config.loss_threshold:g}·L₀; predictions are the "
        f"kernel-regime curves on Θ∞ (NGD: damped (1−η)^{{2t}}; GD: closed form). "
        f"{len(rows)} runs finished, {len(failed)} did not. {_findings(rows)}"
    )


def _findings(rows: list[dict]) -> str:
    """One sentence per family: the smallest C′_max and where C′ = 1/2 would be reached."""
    out = []
    for (fam, p), group in _groups(rows).items():
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
