"""The C4 decision rule: width reduces forgetting only when networks are under-trained.

Everything the rule chooses is a keyword of :func:`decide_c4` / :func:`evidence_c4`, so the
robustness check (:func:`robustness_c4`) re-applies the same rule under alternatives.
The rule is :data:`RULE` (also in the config's docstring and in the report).
"""

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from ntk_limits_experiments import claims, robustness, stats
from ntk_limits_experiments.study import Verdict

__all__ = ["RULE", "decide_c4", "evidence_c4", "robustness_c4", "verdict_c4"]

RULE = (
    "Per benchmark and parametrisation (finite nets), forgetting F is regressed on log2 width "
    "per seed; the per-seed slopes (change of F per width doubling) give a Student-t interval "
    "over seeds. Margin δ = {margin_fraction:g}·F_ref/D, F_ref the mean forgetting of the "
    "trained setting at the narrowest width and D the number of doublings in the sweep: a "
    "width effect smaller than {margin_fraction:g} of the forgetting level over the whole sweep "
    "does not matter. Calls at α = {alpha:g} (stats.call): 'negative' = 95 % interval below 0 and "
    "not within ±δ; 'equivalent' = TOST, 90 % interval inside ±δ. Conditions, else "
    "inconclusive with the reason: the trained (train-until) setting reached its target "
    "accuracy on ≥ {reached_fraction:.0%} of (width, seed, task) runs and the under-trained "
    "(fewest epochs) setting on ≤ {unreached:.0%}, with ≥ 2 seeds and ≥ 2 widths (fewer seeds "
    "show as wider intervals). Holds if the "
    "under-trained slope is 'negative' and the trained one 'equivalent' or 'positive' (width "
    "does not reduce forgetting); fails if the trained slope is 'negative' or the under-trained "
    "one 'equivalent' or 'positive'; else inconclusive. Parametrisations {parameterizations} and "
    "benchmarks combine alike: fails if any fails (one shown counterexample refutes a general "
    "claim), holds if all hold, else inconclusive."
)
MIN_SEEDS, MIN_WIDTHS = 2, 2  # the least for a per-seed slope and a t interval
_TRAINED_OK = ("equivalent", "positive")


def _per_seed(rows: pd.DataFrame, seeds, drop_widest: bool):
    """(widths, (seeds, widths) forgetting) of one setting, seeds restricted."""
    rows = rows[rows["seed"].isin(seeds)]
    table = rows.pivot_table(index="seed", columns="width", values="forgetting").dropna()
    if drop_widest and table.shape[1]:
        table = table.iloc[:, :-1]
    return np.asarray(table.columns, float), table.to_numpy()


def _reached(rows: pd.DataFrame, seeds, widths) -> float:
    """Fraction of (width, seed, task) runs at or above the train-until target accuracy."""
    sel = rows[rows["seed"].isin(seeds) & rows["width"].isin(widths)]
    return float(sel["reached_target"].mean()) if len(sel) else math.nan


def _setting_evidence(slopes: np.ndarray, margin: float, alpha: float, reached: float) -> dict:
    if margin > 0 and slopes.size >= 2:
        call, info = stats.call(slopes, margin, alpha)
    else:
        call, info = "undecided", {"estimate": float(np.mean(slopes)) if slopes.size else None}
    return {"call": call, **info, "per_seed_slopes": slopes.tolist(), "reached_target": reached}


def _outcome(under: dict, trained: dict, reason: str | None) -> tuple[str, str | None]:
    if reason:
        return "inconclusive", reason
    if trained["call"] == "negative" or under["call"] in ("equivalent", "positive"):
        return "fails", None
    if under["call"] == "negative" and trained["call"] in _TRAINED_OK:
        return "holds", None
    return "inconclusive", (
        f"under-trained slope {under['call']}, trained slope {trained['call']}: "
        "an interval straddles 0 or the margin"
    )


def _one(rows: pd.DataFrame, *, seeds, margin_fraction, reached_fraction, alpha, drop_widest):
    """Evidence of one (benchmark, parametrisation): both settings' calls and the outcome."""
    rows = rows.sort_values("setting_index")
    first, last = rows["setting_index"].min(), rows["setting_index"].max()
    under_rows, trained_rows = rows[rows.setting_index == first], rows[rows.setting_index == last]
    w, f_under = _per_seed(under_rows, seeds, drop_widest)
    w_t, f_trained = _per_seed(trained_rows, seeds, drop_widest)
    n_seeds, n_widths = min(len(f_under), len(f_trained)), min(len(w), len(w_t))
    f_ref = float(np.mean(f_trained[:, 0])) if f_trained.size else math.nan
    doublings = float(np.log2(w_t[-1] / w_t[0])) if n_widths >= 2 else math.nan
    margin = margin_fraction * max(f_ref, 0.0) / doublings if n_widths >= 2 else math.nan
    slopes = [stats.per_seed_slopes(np.log2(x), f) if len(x) >= 2 and len(f) else np.array([])
              for x, f in ((w, f_under), (w_t, f_trained))]  # fmt: skip
    reached_u, reached_t = _reached(under_rows, seeds, w), _reached(trained_rows, seeds, w_t)
    reason = None
    if first == last:
        reason = "one training setting only"
    elif n_seeds < MIN_SEEDS or n_widths < MIN_WIDTHS:
        reason = f"{n_seeds} seeds and {n_widths} widths (need {MIN_SEEDS} and {MIN_WIDTHS})"
    elif not reached_t >= reached_fraction:
        reason = f"trained setting reached its target on {reached_t:.0%} of runs only"
    elif not reached_u <= 1 - reached_fraction:
        reason = f"under-trained setting reached the target on {reached_u:.0%} of runs"
    elif not margin > 0:
        reason = "no forgetting at the narrowest width: nothing for width to reduce"
    under = _setting_evidence(slopes[0], margin, alpha, reached_u)
    trained = _setting_evidence(slopes[1], margin, alpha, reached_t)
    outcome, why = _outcome(under, trained, reason)
    return {
        "outcome": outcome, "inconclusive_reason": why, "margin": margin, "F_ref": f_ref,
        "doublings": doublings, "widths": w_t.tolist(), "n_seeds": n_seeds,
        "undertrained": {"setting": under_rows["setting"].iloc[0], **under},
        "trained": {"setting": trained_rows["setting"].iloc[0], **trained},
    }  # fmt: skip


def _combine(outcomes: Sequence[str]) -> str:
    if "fails" in outcomes:
        return "fails"
    return "holds" if outcomes and all(o == "holds" for o in outcomes) else "inconclusive"


def evidence_c4(
    df: pd.DataFrame,
    *,
    parameterizations: Sequence[str],
    seeds: Sequence[int],
    margin_fraction: float = 0.25,
    reached_fraction: float = 0.9,
    alpha: float = 0.05,
    drop_widest: bool = False,
) -> dict:
    """The rule applied to the finite nets of ``df`` (:func:`analysis.frame`).

    Returns:
      ``{"decision", "<benchmark>": {"outcome", "<parametrisation>": evidence, ...}, ...}``.
    """
    nets = df[df["kind"] == "finite"] if len(df) else df
    out, outcomes = {}, []
    for b, by_bench in nets.groupby("benchmark", sort=True) if len(nets) else ():
        per = {}
        for p in parameterizations:
            rows = by_bench[by_bench["parameterization"] == p]
            if len(rows):
                per[p] = _one(rows, seeds=seeds, margin_fraction=margin_fraction,
                              reached_fraction=reached_fraction, alpha=alpha,
                              drop_widest=drop_widest)  # fmt: skip
        outcome = _combine([e["outcome"] for e in per.values()])
        out[b] = {"outcome": outcome, **per}
        outcomes.append(outcome)
    return {"decision": _combine(outcomes), **out}


def decide_c4(df: pd.DataFrame, **choices) -> str:
    """``"holds"``, ``"fails"`` or ``"inconclusive"`` (see :func:`evidence_c4`)."""
    return evidence_c4(df, **choices)["decision"]


def _variants(base: dict, step: dict) -> list[tuple[str, dict]]:
    out = [(label, {"seeds": s}) for label, s in robustness.leave_one_out(base["seeds"])]
    pars = base["parameterizations"]
    if len(pars) > 1:
        out += [(f"{p} only", {"parameterizations": (p,)}) for p in pars]
    for key, (strict, loose) in step.items():
        out += [(f"{key} {strict:g} (stricter)", {key: strict}),
                (f"{key} {loose:g} (looser)", {key: loose})]  # fmt: skip
    return [*out, ("widest width dropped", {"drop_widest": True})]


def robustness_c4(df: pd.DataFrame, base: dict) -> dict:
    """:func:`robustness.assess` of the rule under the standard alternatives."""
    m, q = base["margin_fraction"], base["reached_fraction"]
    step = {"margin_fraction": (m / 2, m * 2), "reached_fraction": (1.0, max(2 * q - 1, 0.5))}
    decisions = robustness.recompute(lambda **kw: decide_c4(df, **kw), base, _variants(base, step))
    return robustness.assess(decide_c4(df, **base), decisions)


def verdict_c4(df: pd.DataFrame, base: dict) -> Verdict:
    """The C4 :class:`Verdict`: rule text, decision, evidence and robustness."""
    rule = RULE.format(**{**base, "parameterizations": " and ".join(base["parameterizations"])},
                       unreached=1 - base["reached_fraction"])  # fmt: skip
    if not len(df):
        return claims.verdict("C4", "inconclusive", rule, {"reason": "no finished runs"})
    ev = evidence_c4(df, **base)
    return claims.verdict("C4", ev.pop("decision"), rule, ev, robustness_c4(df, base))
