"""The C5 decision rule: the empirical NTK approaches the infinite-width NTK as width grows.

Everything the rule chooses is a keyword of :func:`decide_c5` / :func:`evidence_c5`, so the
robustness check (:func:`robustness_c5`) re-applies the same rule under alternatives. The
rule is :data:`RULE` (also in the config's docstring and in the report).
"""

from collections.abc import Sequence

import numpy as np

from ntk_limits_experiments import claims, robustness
from ntk_limits_experiments.kernels import analysis
from ntk_limits_experiments.study import Verdict

__all__ = ["PREDICTED", "RULE", "decide_c5", "evidence_c5", "robustness_c5", "verdict_c5"]

PREDICTED = -0.5
RULE = (
    "Per (architecture, parametrisation): least-squares slope s of log RMS-over-seeds relative "
    "Frobenius error against log width, with its 5–95 % seed-bootstrap interval (seeds "
    "resampled at every width). Predicted s = −1/2 (fluctuations of a sum of width independent "
    "terms); margin ±{margin:g}, halfway to the nearest other rates (0: no convergence; −1: "
    "an O(1/width) bias). A group is 'within' if its interval lies below 0 and inside "
    "[{lo:g}, {hi:g}] (an equivalence test at 5 % per side), 'outside' if its interval lies "
    "wholly outside that band (or at or above 0: the error does not fall), else 'undecided' "
    "(interval straddles a band edge). Needs ≥ {min_widths} widths and ≥ 2 seeds per group, "
    "else inconclusive. Groups combine: fails if any is 'outside', holds if all are 'within', "
    "else inconclusive with the groups and reasons."
)


def _call(lo: float, hi: float, margin: float) -> str:
    band_lo, band_hi = PREDICTED - margin, PREDICTED + margin
    if hi < 0 and band_lo < lo and hi < band_hi:
        return "within"
    if lo >= 0 or hi < band_lo or lo > band_hi:
        return "outside"
    return "undecided"


def _group(widths, errors: np.ndarray, *, margin: float, min_widths: int) -> dict:
    """Evidence of one group: ``errors`` is ``(widths, seeds)``."""
    rms = analysis.rms(errors).tolist() if errors.size else []
    entry = {"widths": list(widths), "rms_rel_error": rms,
             "n_seeds": int(errors.shape[1])}  # fmt: skip
    if len(widths) >= 2:
        lo, hi = analysis.bootstrap_interval(np.asarray(widths), errors)
        slope = analysis.fit_loglog_slope(widths, analysis.rms(errors))
        entry.update(slope=slope, slope_5=lo, slope_95=hi)
    if len(widths) < min_widths or errors.shape[1] < 2:
        entry.update(call="undecided", reason=f"{len(widths)} widths, {errors.shape[1]} seeds")
    else:
        entry.update(call=_call(lo, hi, margin), reason=None)
        if entry["call"] == "undecided":
            entry["reason"] = f"interval [{lo:.3f}, {hi:.3f}] straddles a band edge"
    return entry


def evidence_c5(
    groups: dict,
    *,
    seeds: Sequence[int],
    keep_seeds: Sequence[int] | None = None,
    parameterizations: Sequence[str] = ("ntk", "standard"),
    margin: float = 0.25,
    min_widths: int = 3,
    drop_widest: bool = False,
) -> dict:
    """The rule applied to :func:`analysis.group_records` output.

    Args:
      groups: ``(arch, parametrisation) -> [(width, metrics), ...]``.
      seeds: the seeds in the order of each run's ``rel_error`` list.
      keep_seeds: the seeds used (``None``: all).
      parameterizations: the parametrisations that decide.
      margin: half-width of the band around −1/2.
      min_widths: fewer widths in a group: inconclusive.
      drop_widest: leave out each group's widest width.

    Returns:
      ``{"decision", "<label>": evidence, ...}``.
    """
    cols = [i for i, s in enumerate(seeds) if keep_seeds is None or s in keep_seeds]
    out = {}
    for (arch, param), rows in groups.items():
        if param not in parameterizations:
            continue
        rows = rows[:-1] if drop_widest else rows
        errors = analysis.series(rows, "rel_error")[:, cols] if rows else np.zeros((0, 0))
        widths = [w for w, _ in rows]
        out[analysis.label(arch, param)] = _group(
            widths, errors, margin=margin, min_widths=min_widths
        )
    calls = [e["call"] for e in out.values()]
    if "outside" in calls:
        decision = "fails"
    else:
        decision = "holds" if calls and all(c == "within" for c in calls) else "inconclusive"
    reasons = {k: e["reason"] for k, e in out.items() if e["call"] == "undecided"}
    return {"decision": decision, "inconclusive_reason": reasons or None, **out}


def decide_c5(groups: dict, **choices) -> str:
    """``"holds"``, ``"fails"`` or ``"inconclusive"`` (see :func:`evidence_c5`)."""
    return evidence_c5(groups, **choices)["decision"]


def robustness_c5(groups: dict, base: dict) -> dict:
    """:func:`robustness.assess` of the rule under the standard alternatives."""
    m = base["margin"]
    variants = [(lbl, {"keep_seeds": s}) for lbl, s in robustness.leave_one_out(base["seeds"])]
    pars = [p for p in base["parameterizations"] if any(k[1] == p for k in groups)]
    if len(pars) > 1:
        variants += [(f"{analysis.PARAM_NAME[p]} only", {"parameterizations": (p,)}) for p in pars]
    variants += [(f"margin {m - 0.05:g} (stricter)", {"margin": m - 0.05}),
                 (f"margin {m + 0.05:g} (looser)", {"margin": m + 0.05}),
                 ("widest width dropped", {"drop_widest": True})]  # fmt: skip
    decisions = robustness.recompute(lambda **kw: decide_c5(groups, **kw), base, variants)
    return robustness.assess(decide_c5(groups, **base), decisions)


def verdict_c5(groups: dict, base: dict) -> Verdict:
    """The C5 :class:`Verdict`: rule text, decision, evidence and robustness."""
    m = base["margin"]
    rule = RULE.format(margin=m, lo=PREDICTED - m, hi=PREDICTED + m, min_widths=base["min_widths"])
    ev = evidence_c5(groups, **base)
    return claims.verdict("C5", ev.pop("decision"), rule, ev, robustness_c5(groups, base))
