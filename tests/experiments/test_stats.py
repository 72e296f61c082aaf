"""The verdicts' statistics against by-hand values and an independent formula."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ntk_limits_experiments import stats


def _t_quantile_df2(p: float) -> float:
    """Closed form of Student's t quantile with 2 degrees of freedom."""
    return (2 * p - 1) / math.sqrt(2 * p * (1 - p))


T975_2, T95_2 = _t_quantile_df2(0.975), _t_quantile_df2(0.95)


def test_mean_interval_by_hand():
    # values 1, 2, 3: mean 2, sample sd 1, SE 1/sqrt(3); half-width t_{0.975,2}/sqrt(3).
    iv = stats.mean_interval([1.0, 2.0, 3.0], 0.95)
    half = T975_2 / math.sqrt(3)
    assert iv.estimate == 2.0 and iv.n == 3
    assert iv.lo == pytest.approx(2 - half, rel=1e-12)  # float64 arithmetic only
    assert iv.hi == pytest.approx(2 + half, rel=1e-12)


def test_mean_interval_matches_scipy_t_interval():
    v = np.random.default_rng(0).normal(0.3, 1.0, size=7)
    iv = stats.mean_interval(v, 0.9)
    ref = scipy_stats.t.interval(0.9, len(v) - 1, loc=v.mean(), scale=scipy_stats.sem(v))
    np.testing.assert_allclose([iv.lo, iv.hi], ref, rtol=1e-12)  # same formula, float64


def test_mean_interval_drops_nonfinite_and_is_unbounded_below_two_values():
    assert stats.mean_interval([1.0, math.nan, 3.0]).n == 2
    one = stats.mean_interval([5.0])
    assert (one.estimate, one.lo, one.hi, one.n) == (5.0, -math.inf, math.inf, 1)
    assert math.isnan(stats.mean_interval([]).estimate)
    with pytest.raises(ValueError, match="level"):
        stats.mean_interval([1.0, 2.0], 1.5)


def test_paired_difference_cancels_the_seed_effect():
    seed_effect = np.array([10.0, -5.0, 3.0, 0.0])
    a, b = seed_effect + 1.0, seed_effect + np.array([0.1, -0.1, 0.05, -0.05])
    paired = stats.paired_difference(a, b)
    unpaired_sd = np.std(np.r_[a, b], ddof=1)
    assert paired.lo > 0  # the difference (about 1) is resolved only when paired
    assert paired.hi - paired.lo < unpaired_sd
    with pytest.raises(ValueError, match="one per seed"):
        stats.paired_difference([1.0, 2.0], [1.0])


def test_per_seed_slopes_match_polyfit():
    rng = np.random.default_rng(1)
    x = np.log2([64, 128, 512, 2048])
    y = rng.normal(size=(3, 4)) + 0.5 * x
    ref = [np.polyfit(x, row, 1)[0] for row in y]
    np.testing.assert_allclose(stats.per_seed_slopes(x, y), ref, rtol=1e-10)  # two LS solvers
    with pytest.raises(ValueError, match="two distinct"):
        stats.per_seed_slopes([1.0, 1.0], np.ones((2, 2)))


@pytest.mark.parametrize(
    ("values", "margin", "expected"),
    [
        ([-1.0, -1.1, -0.9, -1.05], 0.1, "negative"),
        ([1.0, 1.1, 0.9, 1.05], 0.1, "positive"),
        ([0.01, -0.01, 0.0, 0.005], 0.1, "equivalent"),
        ([0.5, -0.5, 0.3, -0.2], 0.1, "undecided"),
        ([-1.0], 0.1, "undecided"),  # one seed decides nothing
    ],
)
def test_call_outcomes(values, margin, expected):
    assert stats.call(values, margin)[0] == expected


def test_call_equivalence_margin_edge_by_hand():
    # values 1, 2, 3 shifted: mean m, SE 1/sqrt(3); the 90 % interval is m ± t_{0.95,2}/sqrt(3).
    half = T95_2 / math.sqrt(3)
    base = np.array([-1.0, 0.0, 1.0])
    just_inside = stats.call(base, margin=half * 1.001)
    just_outside = stats.call(base, margin=half * 0.999)
    assert just_inside[0] == "equivalent"
    assert just_outside[0] == "undecided"
    np.testing.assert_allclose(just_inside[1]["equivalence_ci"], [-half, half], rtol=1e-12)


def test_non_significance_is_not_equivalence():
    # A noisy effect around 0 is neither significant nor shown to be small.
    decision, info = stats.call([0.3, -0.4, 0.5], margin=0.05)
    assert decision == "undecided"
    assert info["ci"][0] < 0 < info["ci"][1]


def test_call_rejects_bad_margin_and_alpha():
    with pytest.raises(ValueError, match="margin"):
        stats.call([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="alpha"):
        stats.call([1.0, 2.0], 0.1, alpha=0.6)
