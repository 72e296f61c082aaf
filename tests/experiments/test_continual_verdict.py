"""The C4 rule (``continual/verdict.py``) on synthetic forgetting tables, one per outcome."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ntk_limits_experiments.continual import analysis, verdict
from ntk_limits_experiments.continual.config import ContinualConfig

WIDTHS = (32, 64, 128)  # two doublings
F0 = 0.4  # forgetting at the narrowest width: margin 0.25 · 0.4 / 2 = 0.05
MARGIN = 0.25 * F0 / 2
BASE = {"parameterizations": ("standard",), "seeds": (0, 1, 2), "margin_fraction": 0.25,
        "reached_fraction": 0.9, "alpha": 0.05, "drop_widest": False}  # fmt: skip
UNDER = [-0.100, -0.102, -0.098]  # clearly below -margin, even with 2 seeds
FLAT = [0.001, -0.001, 0.0]  # inside ±margin


def _frame(under, trained, *, reached=(0.0, 1.0), par="standard", bench="b", f0=F0):
    """Forgetting exactly ``f0 + slope_s · log2(w / 32)`` for seed ``s``, per setting."""
    rows = []
    for i, (slopes, hit) in enumerate(zip((under, trained), reached, strict=True)):
        for s, slope in enumerate(slopes):
            for w in WIDTHS:
                rows.append({"kind": "finite", "benchmark": bench, "parameterization": par,
                             "setting_index": i, "setting": ["1 epoch", "until"][i], "width": w,
                             "seed": s, "forgetting": f0 + slope * math.log2(w / 32),
                             "reached_target": hit})  # fmt: skip
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("under", "trained", "reached", "outcome", "reason"),
    [
        (UNDER, FLAT, (0.0, 1.0), "holds", None),
        (UNDER, [0.10, 0.12, 0.08], (0.0, 1.0), "holds", None),  # trained: width does not help
        (UNDER, UNDER, (0.0, 1.0), "fails", None),  # trained: width reduces forgetting
        (FLAT, FLAT, (0.0, 1.0), "fails", None),  # under-trained: shown not to reduce it
        (UNDER, [0.2, -0.3, 0.1], (0.0, 1.0), "inconclusive", "straddles"),  # noisy trained
        (UNDER, FLAT, (0.0, 0.8), "inconclusive", "trained setting reached its target on 80%"),
        (UNDER, FLAT, (0.2, 1.0), "inconclusive", "under-trained setting reached the target"),
    ],
)
def test_each_outcome_of_the_rule(under, trained, reached, outcome, reason):
    ev = verdict.evidence_c4(_frame(under, trained, reached=reached), **BASE)
    e = ev["b"]["standard"]
    assert (ev["decision"], e["outcome"]) == (outcome, outcome)
    assert (reason is None) == (e["inconclusive_reason"] is None)
    assert reason is None or reason in e["inconclusive_reason"]
    assert e["margin"] == pytest.approx(MARGIN, rel=1e-12)
    np.testing.assert_allclose(e["trained"]["per_seed_slopes"], trained, atol=1e-12)


def test_no_forgetting_at_the_narrowest_width_is_inconclusive():
    ev = verdict.evidence_c4(_frame(UNDER, FLAT, f0=0.0), **BASE)
    assert ev["decision"] == "inconclusive"
    assert "nothing for width to reduce" in ev["b"]["standard"]["inconclusive_reason"]


@pytest.mark.parametrize(("inside", "call"), [(True, "equivalent"), (False, "negative")])
def test_the_equivalence_margin_edge(inside, call):
    # trained slopes c - d, c, c + d (seed std d): the TOST interval c ± t·d/√3 ends 1e-6
    # inside or outside -δ; outside, the 95 % interval is still below 0: width helps.
    spread = 0.01
    half = scipy_stats.t.ppf(0.95, 2) * spread / math.sqrt(3)
    centre = -MARGIN + half + (1e-6 if inside else -1e-6)
    trained = [centre - spread, centre, centre + spread]
    e = verdict.evidence_c4(_frame(UNDER, trained), **BASE)["b"]["standard"]
    assert e["trained"]["call"] == call
    assert e["outcome"] == ("holds" if inside else "fails")
    assert e["trained"]["equivalence_ci"][0] == pytest.approx(-MARGIN, abs=2e-6)


def test_intervals_against_a_hand_computation():
    e = verdict.evidence_c4(_frame(UNDER, FLAT), **BASE)["b"]["standard"]["undertrained"]
    mean, sd = np.mean(UNDER), np.std(UNDER, ddof=1)
    for key, q in (("ci", 0.975), ("equivalence_ci", 0.95)):
        h = scipy_stats.t.ppf(q, 2) * sd / math.sqrt(3)
        np.testing.assert_allclose(e[key], [mean - h, mean + h], rtol=1e-10)
    assert e["call"] == "negative" and e["n"] == 3


def test_parametrisations_and_benchmarks_combine_fails_first_then_all_hold():
    holds = _frame(UNDER, FLAT)
    fails = _frame(UNDER, UNDER, par="ntk")
    both = {**BASE, "parameterizations": ("standard", "ntk")}
    assert verdict.decide_c4(pd.concat([holds, fails]), **both) == "fails"
    assert verdict.decide_c4(pd.concat([holds, _frame(UNDER, FLAT, par="ntk")]), **both) == "holds"
    noisy = _frame(UNDER, [0.2, -0.3, 0.1], bench="c")
    ev = verdict.evidence_c4(pd.concat([holds, noisy]), **BASE)
    assert (ev["b"]["outcome"], ev["c"]["outcome"], ev["decision"]) == (
        "holds", "inconclusive", "inconclusive")  # fmt: skip


def test_robustness_has_every_alternative_and_the_verdict_carries_it():
    df = pd.concat([_frame(UNDER, FLAT), _frame(UNDER, FLAT, par="ntk")])
    config = ContinualConfig(seeds=(0, 1, 2), parameterizations=("standard", "ntk"))
    v = analysis.verdict(df, config)
    assert v.verdict == "holds" and v.robustness["label"] == "stable"
    assert set(v.robustness["alternatives"]) == {
        "without seed 0", "without seed 1", "without seed 2", "standard only", "ntk only",
        "margin_fraction 0.125 (stricter)", "margin_fraction 0.5 (looser)",
        "reached_fraction 1 (stricter)", "reached_fraction 0.8 (looser)", "widest width dropped",
    }  # fmt: skip
    assert "TOST" in v.rule and "0.25" in v.rule and "90%" in v.rule
