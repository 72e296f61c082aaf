"""The C3 rule on synthetic cases: each outcome, the margin's edge, Bonferroni, by-hand stats."""

import math

import numpy as np
import pytest

from ntk_limits_experiments.bandits import verdict
from ntk_limits_experiments.bandits.study import STUDY
from ntk_limits_experiments.config import apply_overrides

SEEDS = (0, 1, 2, 3)
BASE = dict(seeds=SEEDS, theory="zhou", margin_ratio=1.25, alpha=0.05)


def _case(theory, alternatives, *, par="ntk", width=100, kernel_limit=None, seeds=SEEDS):
    """One case (the form of :func:`verdict.collect`) with one Zhou theory agent."""
    return {
        "label": f"iris/ucb/{par}-{width}", "dataset": "iris", "method": "ucb",
        "width": width, "parameterization": par, "seeds": list(seeds),
        "theories": {
            "zhou": {"neuralucb-zhou": list(theory)},
            "kernel-limit": {"neuralucb-kernel-limit": list(kernel_limit or theory)},
        },
        "alternatives": {k: list(v) for k, v in alternatives.items()},
    }  # fmt: skip


def _regrets(effects, alternative=99.0):
    """Theory regrets whose per-seed effect log((t + 1)/(a + 1)) is ``effects`` exactly."""
    return [(alternative + 1.0) * math.exp(e) - 1.0 for e in effects]


@pytest.mark.parametrize(
    "theory, alternative, expected",
    [
        ((190, 195, 200, 185), (20, 25, 18, 30), "holds"),  # ~8x the regret on every seed
        ((100, 102, 98, 101), (99, 101, 100, 100), "fails"),  # equivalent within 1.25
        ((20, 22, 21, 19), (100, 110, 90, 105), "fails"),  # theory significantly better
        ((190, 30, 200, 25), (20, 190, 25, 200), "inconclusive"),  # seeds disagree
    ],
)
def test_each_outcome(theory, alternative, expected):
    cases = [_case(theory, {"greedy": alternative})]
    assert verdict.decide_c3(cases, **BASE) == expected
    reason = verdict.evidence_c3(cases, **BASE)["inconclusive_reason"]
    assert (reason is not None) == (expected == "inconclusive")


def test_the_margins_edge():
    # Effects log 1.2 ± 0.001: the 90 % interval lies inside ±log 1.25 -> equivalent -> fails.
    inside = _regrets([math.log(1.2) + d for d in (0.001, -0.001, 0.0005, -0.0005)])
    assert verdict.decide_c3([_case(inside, {"greedy": [99.0] * 4})], **BASE) == "fails"
    # Effects log 1.3 ± 0.001: above the margin and above 0 -> theory worse -> holds.
    outside = _regrets([math.log(1.3) + d for d in (0.001, -0.001, 0.0005, -0.0005)])
    assert verdict.decide_c3([_case(outside, {"greedy": [99.0] * 4})], **BASE) == "holds"
    # The same 1.2 effects under a margin of 1.125 are no longer equivalent, and > 0: holds.
    looser = {**BASE, "margin_ratio": 1.125}
    assert verdict.decide_c3([_case(inside, {"greedy": [99.0] * 4})], **looser) == "holds"


def _t_quantile_df2(p: float) -> float:
    """Closed form of Student's t quantile with 2 degrees of freedom."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


def test_paired_interval_by_hand_and_bonferroni_over_alternatives():
    # Effects 0.5, 0.7, 0.9 on 3 seeds: mean 0.7, s = 0.2, t statistic 0.7/(0.2/√3) = 6.06,
    # between t_{.975,2} = 4.30 (one alternative, level 0.95) and t_{.9875,2} = 6.21 (two
    # alternatives, Bonferroni level 0.975).
    seeds = (0, 1, 2)
    theory, alt = _regrets([0.5, 0.7, 0.9]), [99.0] * 3
    kw = {**BASE, "seeds": seeds}
    one = _case(theory, {"greedy": alt}, seeds=seeds)
    assert verdict.decide_c3([one], **kw) == "holds"
    d = verdict.case_outcome(one, **{k: kw[k] for k in BASE})["theories"]["neuralucb-zhou"]
    half = _t_quantile_df2(0.975) * 0.2 / math.sqrt(3)
    assert d["ratio"] == pytest.approx(math.exp(0.7), rel=1e-12)  # float64 sums
    assert d["ratio_ci"] == pytest.approx([math.exp(0.7 - half), math.exp(0.7 + half)], rel=1e-9)
    # A second alternative as bad as the theory: k = 2, the 0.975 interval includes 0.
    two = _case(theory, {"greedy": alt, "neuralucb-fixed-1": theory}, seeds=seeds)
    assert verdict.decide_c3([two], **kw) == "inconclusive"
    d = verdict.case_outcome(two, **{k: kw[k] for k in BASE})["theories"]["neuralucb-zhou"]
    half = _t_quantile_df2(0.9875) * 0.2 / math.sqrt(3)
    assert d["level"] == pytest.approx(0.975)
    assert math.log(d["ratio_ci"][0]) == pytest.approx(0.7 - half, rel=1e-9)
    assert d["ratio_ci"][0] < 1.0 and d["best_alternative"] == "greedy"


def test_every_case_must_support_and_the_choices_select_cases():
    good = ((190, 195, 200, 185), {"greedy": (20, 25, 18, 30)})
    noisy = ((190, 30, 200, 25), {"greedy": (20, 190, 25, 200)})
    same = ((100, 102, 98, 101), {"greedy": (99, 101, 100, 100)})
    ntp, sp = _case(*good), _case(*noisy, par="standard", width=256)
    assert verdict.decide_c3([ntp, sp], **BASE) == "inconclusive"
    assert verdict.decide_c3([ntp, sp], **BASE, parameterizations=("ntk",)) == "holds"
    assert verdict.decide_c3([ntp, sp], **BASE, exclude_widths=(256,)) == "holds"
    assert verdict.decide_c3([ntp, sp, _case(*same, width=32)], **BASE) == "fails"
    assert verdict.decide_c3([ntp], **BASE, parameterizations=("standard",)) == "inconclusive"


def test_every_theory_agent_must_be_beaten_and_the_kernel_limit_is_an_alternative():
    alt = {"greedy": (20, 25, 18, 30)}
    case = _case((190, 195, 200, 185), alt, kernel_limit=(21, 24, 19, 29))
    case["theories"]["zhou"]["neuralucb-zhou-lam1"] = [22, 23, 20, 31]  # as good as greedy
    assert verdict.decide_c3([case], **BASE) == "fails"  # equivalent to the alternative
    del case["theories"]["zhou"]["neuralucb-zhou-lam1"]
    assert verdict.decide_c3([case], **BASE) == "holds"
    assert verdict.decide_c3([case], **{**BASE, "theory": "kernel-limit"}) == "fails"
    # A case without kernel-limit agents (not run there) is left out of that alternative.
    other = _case((190, 195, 200, 185), alt, width=32)
    other["theories"]["kernel-limit"] = {}
    kl = {**BASE, "theory": "kernel-limit"}
    assert list(verdict.evidence_c3([case, other], **kl)["cases"]) == ["iris/ucb/ntk-100"]


def test_leaving_seeds_out_pairs_the_remaining_seeds():
    case = _case((190, 195, 200, 185), {"greedy": (20, 25, 18, 30)})
    d = verdict.case_outcome(case, **{**BASE, "seeds": (3, 0)})["theories"]["neuralucb-zhou"]
    effects = np.log(np.array([186.0, 191.0]) / np.array([31.0, 21.0]))  # seeds 3 and 0
    assert d["n"] == 2 and d["ratio"] == pytest.approx(math.exp(effects.mean()), rel=1e-12)


def test_robustness_alternatives_are_the_ones_a_reviewer_asks_for():
    config = apply_overrides(STUDY.get_config("smoke"), ["seeds=0,1,2,3"])
    cases = [_case((1,) * 4, {"g": (1,) * 4}), _case((1,) * 4, {"g": (1,) * 4}, par="standard",
                                                      width=256)]  # fmt: skip
    labels = [label for label, _ in verdict._variants(config, cases)]
    assert labels == [
        "without seed 0", "without seed 1", "without seed 2", "without seed 3",
        "ntk cases only", "standard cases only", "margin ratio 1.125", "margin ratio 1.5",
        "alpha 0.01", "alpha 0.1", "widest width (256) dropped",
        "kernel-limit γ_t instead of Zhou's (cases where it ran)",
    ]  # fmt: skip
