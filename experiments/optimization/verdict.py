"""The C1 and C2 rules: per-seed measurements, the decisions, their evidence and robustness.

Each claim has one pure decision function (``decide_c1``, ``decide_c2``) that takes the
summary rows of :func:`ntk_limits_experiments.optimization.analysis.rows_from_records` and
every choice of its rule as a keyword, and returns ``"holds"``, ``"fails"`` or
``"inconclusive"``; ``evidence_c1`` / ``evidence_c2`` return the numbers behind it, and
``verdict_c1`` / ``verdict_c2`` add the robustness check
(:mod:`ntk_limits_experiments.robustness`). The rows' per-seed inputs (``c1``,
``delivered_at``, ``resolved_ngd``) are computed from the stored metrics by
:func:`ntk_limits_experiments.optimization.analysis.per_seed_c1` and
:func:`~ntk_limits_experiments.optimization.analysis.per_seed_delivered`.
"""

import math

import numpy as np

from ntk_limits_experiments import claims, robustness, stats
from ntk_limits_experiments.study import Verdict

__all__ = [
    "C1_RULE",
    "C2_RULE",
    "C2_TAUS",
    "PRACTICAL_WIDTH",
    "by_group",
    "decide_c1",
    "decide_c2",
    "evidence_c1",
    "evidence_c2",
    "verdict_c1",
    "verdict_c2",
]

# The widest networks called practical here (hidden units; channels; WRN multiplier k).
PRACTICAL_WIDTH = {"mlp": 4096, "cnn": 1024, "wrn": 16, "wrn_bn": 16}
C2_TAUS = ("0.1", "0.01", "0.001")

C1_RULE = (
    "Per practical run (MLP ≤ 4096 units, CNN ≤ 1024 channels, WRN k ≤ 16) and seed: "
    "C′_in = max of C′(t) = 3‖J(θ_t)−J(θ₀)‖₂/√λ₀ over the checkpoints of every trajectory "
    "(NGD at each η, GD, Adam) inside Zhang et al.'s ball ‖θ_t−θ₀‖₂ ≤ R = 3‖y−u₀‖₂/√λ₀, "
    "λ₀ = λ_min(K₀) from the float64 Gram (‖ΔJ‖₂ exact by a dense eigensolver, or a "
    "lower bound from matrix-free Lanczos where the profile says so). A seed "
    "violates the condition if C′_in ≥ 1/2 (one witness in the ball suffices; a lower "
    "bound of C′ where λ₀ is below float64 resolution or ‖ΔJ‖₂ is from Lanczos still "
    "counts), meets it along its trajectories if C′_in < 1/2 with an exact λ₀ and an "
    "exact ‖ΔJ‖₂, else is unknown (no checkpoint in the "
    "ball, or only a lower bound below 1/2). A run violates (meets) the condition if all of "
    "its ≥ 2 seeds do (each C′ is a deterministic witness, not a sample mean; two seeds "
    "are the least for 'every seed' to mean anything). Holds if every practical run "
    "violates it; fails if any practical run meets it; else inconclusive (reason given)."
)

C2_RULE = (
    "Per run, seed and τ ∈ {1e-1, 1e-2, 1e-3}·L₀: d = log₂ delivered speed-up = "
    "log₂[(T_GD/T_NGD)_measured/(T_GD/T_NGD)_predicted], T the steps to reach τ·L₀, NGD at "
    "η = 1 and GD at its best step size on the same seed (paired), predictions from the "
    "kernel regime on Θ∞; a run that did not reach τ gives an interval (censored). Runs "
    "whose K₀ is below the resolution of the precision NGD ran in (float32, or float64 "
    "where the profile says so; NGD solved on round-off) are left out. "
    "Trend: per family × parametrisation and seed, the least-squares line of d on log₂ "
    "width evaluated at the practical width (MLP 4096, CNN 1024; interval arithmetic for "
    "censored ends); needs ≥ 2 widths. The group falls short if the 95 % Student-t "
    "interval over seeds of the upper ends lies below −1 (delivered < 1/2: a factor 2 "
    "is far outside the one-step resolution of T_NGD at η = 1 relative to T_GD), delivers "
    "if that of the lower ends lies above −1. Per τ: fails if any group delivers, holds "
    "if every group with data falls short, else inconclusive. Holds (fails) if a "
    "majority of the τ hold (fail) and none fails (holds); else inconclusive."
)


# ---------------------------------------------------------------- selection


def _label(r: dict) -> str:
    return f"{r['family']} {r['parameterization']} w={r['width']}"


def _select(rows, parameterizations, drop_widest) -> list[dict]:
    """Practical runs of the chosen parametrisations, without each group's widest if asked."""
    rows = [r for r in rows if r["practical"]]
    if parameterizations is not None:
        rows = [r for r in rows if r["parameterization"] in parameterizations]
    if drop_widest:
        widest = {}
        for r in rows:
            g = (r["family"], r["parameterization"])
            widest[g] = max(widest.get(g, 0), r["width"])
        rows = [r for r in rows if r["width"] < widest[(r["family"], r["parameterization"])]]
    return rows


def _seed_index(r: dict, seeds) -> np.ndarray:
    return np.asarray([seeds is None or s in seeds for s in r["seeds"]], bool)


def by_group(rows) -> dict:
    """``(family, parametrisation) -> rows`` sorted by width."""
    out: dict = {}
    for r in rows:
        out.setdefault((r["family"], r["parameterization"]), []).append(r)
    return {g: sorted(v, key=lambda r: r["width"]) for g, v in out.items()}


# ---------------------------------------------------------------- C1


def _c1_seed(r: dict, i: int, threshold: float) -> str:
    c = r["c1"]["c_in"][i]
    if np.isnan(c):
        return "unknown (no checkpoint inside R)"
    if c >= threshold:
        return "violated"
    return (
        "met"
        if r["c1"]["c_exact"][i]
        else "unknown (C′ a lower bound: λ₀ unresolved or ‖ΔJ‖₂ from Lanczos)"
    )


def _c1_run(r: dict, seeds, threshold: float, min_seeds: int) -> tuple[str, str]:
    idx = np.flatnonzero(_seed_index(r, seeds))
    per = [_c1_seed(r, i, threshold) for i in idx]
    if len(per) < min_seeds:
        return "undecided", f"{len(per)} seed(s), fewer than {min_seeds}"
    if all(p == per[0] for p in per) and per[0] in ("violated", "met"):
        return per[0], ""
    return "undecided", "seeds: " + ", ".join(sorted(set(per)))


def _c1_outcome(rows, *, threshold, min_seeds, seeds, parameterizations, drop_widest):
    runs = _select(rows, parameterizations, drop_widest)
    status = {_label(r): _c1_run(r, seeds, threshold, min_seeds) for r in runs}
    met = [k for k, (s, _) in status.items() if s == "met"]
    undecided = {k: why for k, (s, why) in status.items() if s == "undecided"}
    if not runs:
        return "inconclusive", status, "no practical run"
    if met:
        return "fails", status, ""
    if undecided:
        return (
            "inconclusive",
            status,
            "undecided runs: " + "; ".join(f"{k} ({why})" for k, why in undecided.items()),
        )
    return "holds", status, ""


C1_BASE = {"threshold": 0.5, "min_seeds": 2, "seeds": None, "parameterizations": None,
           "drop_widest": False}  # fmt: skip


def decide_c1(rows, **choices) -> str:
    """C1's decision (rule in :data:`C1_RULE`); ``choices`` as in :data:`C1_BASE`."""
    return _c1_outcome(rows, **{**C1_BASE, **choices})[0]


def _f(v) -> float | None:
    v = float(v)
    return v if np.isfinite(v) else (None if np.isnan(v) else v)


def evidence_c1(rows, **choices) -> dict:
    """The numbers behind :func:`decide_c1`, per practical run and seed (JSON-ready)."""
    decision, status, reason = _c1_outcome(rows, **{**C1_BASE, **choices})
    runs = _select(rows, choices.get("parameterizations"), choices.get("drop_widest", False))
    per_run = {}
    for r in runs:
        c = r["c1"]
        per_run[_label(r)] = {
            "status": status[_label(r)][0],
            "reason": status[_label(r)][1],
            "seeds": list(r["seeds"]),
            # λ₀ in float64, or its upper bound where even float64 cannot resolve it
            "lambda_zero_f64_or_bound": [_f(v) for v in c["lambda_zero"]],
            "lambda_zero_exact": [bool(v) for v in c["lambda_exact"]],
            "jacobian_change_norm": (
                "exact (dense eigensolver)"
                if c["jacobian_norm"] == "dense"
                else "Lanczos lower bound"
            ),
            "radius_R": [_f(v) for v in c["radius"]],
            "C_prime_in_ball": [_f(v) for v in c["c_in"]],
            "C_prime_whole_trajectory": [_f(v) for v in c["c_all"]],
            "max_distance_over_R": [_f(v) for v in c["max_distance_over_R"]],
            "checkpoints_in_ball": [f"{a}/{b}" for a, b in
                                    zip(c["n_in_ball"], c["n_checkpoints"], strict=True)],
        }  # fmt: skip
    unresolved = {k: [s for s, e in zip(v["seeds"], v["lambda_zero_exact"], strict=True)
                      if not e] for k, v in per_run.items()}  # fmt: skip
    out = {
        "decision": decision,
        "status_by_run": {k: v["status"] for k, v in per_run.items()},
        "min_C_prime_in_ball_by_run": {
            k: min((c for c in v["C_prime_in_ball"] if c is not None), default=None)
            for k, v in per_run.items()
        },
        "lambda_zero_unresolved_in_float64": {k: s for k, s in unresolved.items() if s},
        "runs": per_run,
    }
    if decision == "inconclusive":
        out["inconclusive_reason"] = reason
    return out


def _variants(rows, seeds, base: dict, steps: list[tuple[str, dict]]) -> list:
    params = sorted({r["parameterization"] for r in rows if r["practical"]})
    out = [(label, {"seeds": sub}) for label, sub in robustness.leave_one_out(seeds)]
    if len(params) > 1:
        out += [(f"{p} parametrisation only", {"parameterizations": (p,)}) for p in params]
    return out + steps + [("widest width dropped", {"drop_widest": True})]


def verdict_c1(rows: list[dict]) -> Verdict:
    """C1 with its evidence and robustness (rule in :data:`C1_RULE`)."""
    decision = decide_c1(rows)
    seeds = rows[0]["seeds"] if rows else ()
    steps = [("C′ threshold 1/4", {"threshold": 0.25}), ("C′ threshold 1", {"threshold": 1.0})]
    alts = robustness.recompute(
        lambda **kw: decide_c1(rows, **kw), C1_BASE, _variants(rows, seeds, C1_BASE, steps)
    )
    return claims.verdict(
        "C1", decision, C1_RULE, evidence_c1(rows), robustness.assess(decision, alts)
    )


# ---------------------------------------------------------------- C2


def _coefficients(x: np.ndarray, at: float) -> np.ndarray:
    """Weights ``c`` with ``Σ c_w y_w`` = the least-squares line of ``y`` on ``x`` at ``at``."""
    xc = x - x.mean()
    return 1.0 / x.size + xc * (at - x.mean()) / (xc @ xc)


def _extrapolate(lo: np.ndarray, hi: np.ndarray, coef: np.ndarray):
    """Interval of ``Σ c_w d_w`` for ``d_w ∈ [lo_w, hi_w]``, rows ``(S, W)`` -> ``(S,)``."""
    pos = coef > 0
    with np.errstate(invalid="ignore"):
        low = np.where(pos, coef * lo, coef * hi)
        high = np.where(pos, coef * hi, coef * lo)
    low, high = np.where(coef == 0, 0.0, low), np.where(coef == 0, 0.0, high)
    return low.sum(axis=1), high.sum(axis=1)


def _c2_group(group, tau, seeds, margin, alpha) -> dict:
    """One family × parametrisation at one τ: the trend, extrapolated, and its call."""
    used, left_out = [], {}
    for r in group:
        idx = _seed_index(r, seeds)
        if tau not in r["delivered_at"]:  # a config whose loss_threshold replaced 0.1
            left_out[r["width"]] = "τ not measured"
            continue
        d = np.asarray(r["delivered_at"][tau], float)[idx]
        if not np.all(r["resolved_ngd"][idx]):
            left_out[r["width"]] = "K₀ below the resolution of NGD's precision"
        elif np.isnan(d).any():
            left_out[r["width"]] = "no finite kernel-regime prediction"
        else:
            used.append((r["width"], d))
    out = {"widths": [w for w, _ in used], "left_out": left_out}
    if len(used) < 2:
        return out | {"call": "no data", "reason": "fewer than 2 usable widths"}
    x = np.log2([w for w, _ in used])
    with np.errstate(divide="ignore"):
        lo = np.log2(np.stack([d[:, 0] for _, d in used], axis=1))
        hi = np.log2(np.stack([d[:, 1] for _, d in used], axis=1))
    at = PRACTICAL_WIDTH[group[0]["arch"]]
    ext_lo, ext_hi = _extrapolate(lo, hi, _coefficients(x, math.log2(at)))
    upper = stats.mean_interval(ext_hi, 1 - alpha)  # of the seeds' upper ends
    lower = stats.mean_interval(ext_lo, 1 - alpha)  # of their lower ends
    if np.all(np.isfinite(ext_hi)) and upper.hi < -margin:
        call, reason = "falls short", ""
    elif np.all(np.isfinite(ext_lo)) and lower.lo > -margin:
        call, reason = "delivers", ""
    else:
        censored = not (np.all(np.isfinite(ext_lo)) and np.all(np.isfinite(ext_hi)))
        reason = "censored seeds" if censored else f"interval straddles 2^-{margin:g}"
        call = "undecided"
    out |= {"call": call, "reason": reason, "at_width": at,
            "log2_delivered_at_width_per_seed": [[_f(a), _f(b)] for a, b in
                                                 zip(ext_lo, ext_hi, strict=True)],
            "upper_ends_interval": [_f(upper.lo), _f(upper.hi)],
            "lower_ends_interval": [_f(lower.lo), _f(lower.hi)],
            "shortfall_line": -margin}  # fmt: skip
    out["log2_delivered_by_width"] = {
        int(w): _interval_dict(stats.mean_interval(lo[:, j], 1 - alpha))
        if np.all(lo[:, j] == hi[:, j]) else "censored"
        for j, (w, _) in enumerate(used)
    }  # fmt: skip
    if np.all(lo == hi):
        slope = stats.slope_interval(x, lo, 1 - alpha)
        out["slope_per_doubling"] = _interval_dict(slope)
    return out


def _interval_dict(i: stats.Interval) -> dict:
    return {"estimate": _f(i.estimate), "ci": [_f(i.lo), _f(i.hi)], "n": i.n}


def _c2_tau(groups, tau, seeds, margin, alpha) -> tuple[str, dict]:
    per = {f"{f} {p}": _c2_group(g, tau, seeds, margin, alpha) for (f, p), g in groups.items()}
    calls = [v["call"] for v in per.values() if v["call"] != "no data"]
    if "delivers" in calls:
        return "fails", per
    if calls and all(c == "falls short" for c in calls):
        return "holds", per
    return "inconclusive", per


C2_BASE = {"taus": C2_TAUS, "margin": 1.0, "alpha": 0.05, "seeds": None,
           "parameterizations": None, "drop_widest": False}  # fmt: skip


def _c2_outcome(rows, *, taus, margin, alpha, seeds, parameterizations, drop_widest):
    groups = by_group(_select(rows, parameterizations, drop_widest))
    per_tau = {tau: _c2_tau(groups, tau, seeds, margin, alpha) for tau in taus}
    decisions = [d for d, _ in per_tau.values()]
    n_holds, n_fails = decisions.count("holds"), decisions.count("fails")
    if n_holds > len(taus) / 2 and not n_fails:
        decision, reason = "holds", ""
    elif n_fails > len(taus) / 2 and not n_holds:
        decision, reason = "fails", ""
    else:
        decision = "inconclusive"
        reason = "per τ: " + ", ".join(f"{t}: {d}" for t, d in zip(taus, decisions, strict=True))
    return decision, per_tau, reason


def decide_c2(rows, **choices) -> str:
    """C2's decision (rule in :data:`C2_RULE`); ``choices`` as in :data:`C2_BASE`."""
    return _c2_outcome(rows, **{**C2_BASE, **choices})[0]


def evidence_c2(rows, **choices) -> dict:
    """The numbers behind :func:`decide_c2`: per τ, per group, the trend and its call."""
    decision, per_tau, reason = _c2_outcome(rows, **{**C2_BASE, **choices})
    out = {
        "decision": decision,
        "calls": {
            f"tau={t}": {g: c["call"] for g, c in groups.items()}
            for t, (_, groups) in per_tau.items()
        },
        "by_threshold": {f"tau={t}": {"decision": d, "groups": g} for t, (d, g) in per_tau.items()},
        "delivered_per_seed": {
            _label(r): {t: [[_f(a), _f(b)] for a, b in v] for t, v in r["delivered_at"].items()}
            for r in _select(rows, None, False)
        },
    }
    if decision == "inconclusive":
        out["inconclusive_reason"] = reason
    return out


def verdict_c2(rows: list[dict]) -> Verdict:
    """C2 with its evidence and robustness (rule in :data:`C2_RULE`)."""
    decision = decide_c2(rows)
    seeds = rows[0]["seeds"] if rows else ()
    steps = [("margin 2^-0.5", {"margin": 0.5}), ("margin 2^-2", {"margin": 2.0}),
             ("τ ∈ {1e-2, 1e-3} (stricter)", {"taus": ("0.01", "0.001")}),
             ("τ ∈ {1e-1, 1e-2} (looser)", {"taus": ("0.1", "0.01")})]  # fmt: skip
    alts = robustness.recompute(
        lambda **kw: decide_c2(rows, **kw), C2_BASE, _variants(rows, seeds, C2_BASE, steps)
    )
    return claims.verdict(
        "C2", decision, C2_RULE, evidence_c2(rows), robustness.assess(decision, alts)
    )
