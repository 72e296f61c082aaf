"""The C1 and C2 rules of the optimization study on synthetic rows (no study run).

Each outcome of each rule (holds, fails, inconclusive), the edges of its thresholds, the
per-seed inputs computed by hand from a metrics dict, and the extrapolated trend and its
Student-t interval against a by-hand computation.
"""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from ntk_limits_experiments.optimization import analysis
from ntk_limits_experiments.optimization import verdict as V

SEEDS = (0, 1, 2)


def _row(width, c_in, *, param="ntk", arch="mlp", exact=True, delivered=None, resolved=True):
    """A summary row with the fields the rules read; ``delivered``: τ -> per-seed (lo, hi)."""
    c_in = np.asarray(c_in, float)
    family = {"mlp": "MLP depth 2", "cnn": "CNN depth 2"}[arch]
    return {
        "arch": arch, "family": family, "parameterization": param, "width": width,
        "practical": width <= V.PRACTICAL_WIDTH[arch], "seeds": list(SEEDS),
        "c1": {"c_in": c_in, "c_all": c_in, "c_exact": np.full(c_in.size, exact),
               "lambda_exact": np.full(c_in.size, exact), "jacobian_norm": "dense",
               "radius": np.ones(c_in.size), "lambda_zero": np.ones(c_in.size),
               "n_in_ball": np.ones(c_in.size, int), "n_checkpoints": np.ones(c_in.size, int),
               "max_distance_over_R": np.full(c_in.size, 0.5)},
        "resolved_ngd": np.full(len(SEEDS), resolved),
        "delivered_at": delivered or {t: [(1.0, 1.0)] * len(SEEDS) for t in V.C2_TAUS},
    }  # fmt: skip


# ---------------------------------------------------------------- C1


def test_c1_holds_when_every_seed_of_every_run_has_a_witness_in_the_ball():
    rows = [_row(128, [3.0, 2.0, 0.5]), _row(1024, [0.9, 0.6, 0.7], param="standard")]
    assert V.decide_c1(rows) == "holds"  # 0.5 is on the edge: C′ ≥ 1/2 violates


def test_c1_fails_when_a_practical_run_meets_the_condition_at_every_seed():
    rows = [_row(128, [3.0, 2.0, 5.0]), _row(1024, [0.4999, 0.2, 0.1])]
    assert V.decide_c1(rows) == "fails"
    # The same run past the practical width does not count.
    assert V.decide_c1([rows[0], _row(8192, [0.1, 0.2, 0.3])]) == "holds"


@pytest.mark.parametrize(
    ("c_in", "exact", "reason"),
    [
        ([3.0, 0.2, 4.0], True, "met, violated"),  # seeds disagree
        ([3.0, math.nan, 4.0], True, "no checkpoint inside R"),
        ([3.0, 0.2, 4.0], False, "lower bound"),  # C′ < 1/2 is only a lower bound
    ],
)
def test_c1_is_inconclusive_with_its_reason(c_in, exact, reason):
    rows = [_row(128, [3.0, 2.0, 5.0]), _row(1024, c_in, exact=exact)]
    assert V.decide_c1(rows) == "inconclusive"
    ev = V.evidence_c1(rows)
    assert reason in ev["inconclusive_reason"] and "w=1024" in ev["inconclusive_reason"]


def test_c1_needs_two_seeds_and_a_lower_bound_above_the_threshold_still_counts():
    rows = [_row(128, [3.0, 2.0, 5.0], exact=False)]
    assert V.decide_c1(rows) == "holds"  # a lower bound ≥ 1/2 is a witness
    assert V.decide_c1(rows, seeds=(1,)) == "inconclusive"  # one seed
    assert V.decide_c1(rows, min_seeds=4) == "inconclusive"
    assert V.decide_c1(rows, threshold=2.5) == "inconclusive"  # seed 1 now below, inexact
    assert V.decide_c1([]) == "inconclusive"


def test_per_seed_c1_reads_the_ball_by_hand():
    # One seed, λ₀ = 4, ‖y − u₀‖ = 2: R = 3·2/√4 = 3. NGD (one η) checkpoints at distances
    # 1 and 5 with ‖ΔJ‖₂ 0.1 and 10: C′ = 3·0.1/2 = 0.15 inside, 15 outside; GD at distance
    # 2.9 (inside), ‖ΔJ‖₂ 0.2 -> 0.3; Adam diverged (NaN).
    sec = lambda dj, d: {"jacobian_change_spectral": dj, "param_distance": d}
    m = {"lambda_zero_upper": [4.0], "lambda_zero_exact": [True], "residual0_norm": [2.0],
         "ngd": sec([[[0.1, 10.0]]], [[[1.0, 5.0]]]), "gd": sec([[0.2, 0.2]], [[2.9, 3.1]]),
         "adam": sec([[None, None]], [[None, None]])}  # fmt: skip
    got = analysis.per_seed_c1(m)
    np.testing.assert_allclose(got["radius"], [3.0])
    np.testing.assert_allclose(got["c_in"], [0.3])  # max of 0.15 and 0.3 (3.1 > R)
    np.testing.assert_allclose(got["c_all"], [15.0])
    assert got["n_in_ball"].tolist() == [2] and got["n_checkpoints"].tolist() == [4]
    np.testing.assert_allclose(got["max_distance_over_R"], [5 / 3])
    m["lambda_zero_upper"] = [0.0]  # K₀ singular: R = ∞, C′ = ∞ wherever ΔJ ≠ 0
    assert (
        analysis.per_seed_c1(m)["c_in"][0] == np.inf
        and analysis.per_seed_c1(m)["radius"][0] == np.inf
    )


def test_c1_robustness_alternatives():
    rows = [_row(128, [3.0, 2.0, 5.0]), _row(1024, [3.0, 2.0, 5.0]),
            _row(128, [3.0, 2.0, 5.0], param="standard")]  # fmt: skip
    v = V.verdict_c1(rows)
    assert set(v.robustness["alternatives"]) == {
        "without seed 0", "without seed 1", "without seed 2", "ntk parametrisation only",
        "standard parametrisation only", "C′ threshold 1/4", "C′ threshold 1",
        "widest width dropped",
    }  # fmt: skip
    # Every C′ is ≥ 1 (the loosest alternative threshold): every alternative agrees.
    assert v.verdict == "holds" and v.robustness["label"] == "stable"


# ---------------------------------------------------------------- C2


def _delivered(values_128, values_1024):
    """Two MLP widths with per-seed point values of the delivered speed-up at every τ."""
    point = lambda vals: {t: [(v, v) for v in vals] for t in V.C2_TAUS}
    return [_row(128, [1, 1, 1], delivered=point(values_128)),
            _row(1024, [1, 1, 1], delivered=point(values_1024))]  # fmt: skip


def test_c2_trend_extrapolated_to_the_practical_width_by_hand():
    rows = _delivered([0.5, 0.6, 0.4], [0.8, 0.9, 0.85])
    ev = V.evidence_c2(rows)["by_threshold"]["tau=0.1"]["groups"]["MLP depth 2 ntk"]
    # Line through (7, d₁₂₈), (10, d₁₀₂₄) at x = 12: weights −2/3 and 5/3.
    want = -2 / 3 * np.log2([0.5, 0.6, 0.4]) + 5 / 3 * np.log2([0.8, 0.9, 0.85])
    got = np.asarray(ev["log2_delivered_at_width_per_seed"])
    np.testing.assert_allclose(got[:, 0], want, rtol=1e-12)
    np.testing.assert_allclose(got[:, 1], want, rtol=1e-12)
    half = scipy_stats.t.ppf(0.975, 2) * want.std(ddof=1) / math.sqrt(3)
    np.testing.assert_allclose(ev["lower_ends_interval"], [want.mean() - half, want.mean() + half])
    assert want.mean() - half > ev["shortfall_line"] == -1.0  # hence "delivers"
    assert ev["call"] == "delivers" and ev["at_width"] == 4096
    slope = (np.log2([0.8, 0.9, 0.85]) - np.log2([0.5, 0.6, 0.4])) / 3  # per doubling
    np.testing.assert_allclose(ev["slope_per_doubling"]["estimate"], slope.mean())


def test_c2_holds_fails_and_is_inconclusive():
    assert V.decide_c2(_delivered([0.1, 0.12, 0.09], [0.1, 0.11, 0.1])) == "holds"
    assert V.decide_c2(_delivered([0.8, 0.9, 1.0], [1.0, 1.1, 0.95])) == "fails"
    straddle = _delivered([0.1, 0.9, 0.4], [0.2, 1.0, 0.3])  # seeds scatter across 1/2
    assert V.decide_c2(straddle) == "inconclusive"
    assert "per τ" in V.evidence_c2(straddle)["inconclusive_reason"]


def test_c2_combines_thresholds_by_majority_without_an_opposite():
    short, deliver = [0.1, 0.12, 0.09], [1.0, 1.1, 0.95]
    rows = _delivered(short, short)
    for r in rows:
        r["delivered_at"]["0.001"] = [(0.0, math.inf)] * 3  # censored both ways
    assert V.decide_c2(rows) == "holds"  # 2 of 3 hold, the third undecided
    rows[1]["delivered_at"]["0.001"] = [(v, v) for v in deliver]
    rows[0]["delivered_at"]["0.001"] = [(v, v) for v in deliver]
    assert V.decide_c2(rows) == "inconclusive"  # 2 hold, 1 fails
    assert V.decide_c2(rows, taus=("0.001",)) == "fails"


def test_c2_censoring_and_unresolved_widths():
    rows = _delivered([0.9, 1.0, 0.95], [1.0, 1.0, 1.0])
    # GD at the widest width not at τ by T_max: only a lower end there, which enters the
    # extrapolation with a positive weight (5/3): still enough to deliver.
    rows[1]["delivered_at"] = {t: [(1.0, math.inf)] * 3 for t in V.C2_TAUS}
    assert V.decide_c2(rows) == "fails"
    rows[0]["delivered_at"] = {t: [(1.0, math.inf)] * 3 for t in V.C2_TAUS}
    assert V.decide_c2(rows) == "inconclusive"  # the narrow width's upper end has weight −2/3
    for r in rows:  # censored runs never fall short
        r["delivered_at"] = {t: [(0.0, 0.01)] * 3 for t in V.C2_TAUS}
    ev = V.evidence_c2(rows)["by_threshold"]["tau=0.1"]["groups"]["MLP depth 2 ntk"]
    assert ev["call"] == "undecided" and ev["reason"] == "censored seeds"
    rows[0]["resolved_ngd"] = np.array([True, False, True])  # one seed's K₀ below float32
    ev = V.evidence_c2(rows)["by_threshold"]["tau=0.1"]["groups"]["MLP depth 2 ntk"]
    assert ev["call"] == "no data" and ev["left_out"] == {
        128: "K₀ below the resolution of NGD's precision"
    }
    assert V.decide_c2(rows) == "inconclusive"


def test_c2_margin_edge_and_robustness():
    # Extrapolated log₂ delivered ≈ −1 ± noise: neither side of 2^-1 at margin 1.
    edge = _delivered([0.5, 0.52, 0.48], [0.5, 0.52, 0.48])
    assert V.decide_c2(edge) == "inconclusive"
    assert V.decide_c2(edge, margin=0.5) == "holds"  # clearly below 2^-0.5
    assert V.decide_c2(edge, margin=2.0) == "fails"  # clearly above 2^-2
    v = V.verdict_c2(_delivered([0.1, 0.12, 0.09], [0.1, 0.11, 0.1]))
    assert set(v.robustness["alternatives"]) == {
        "without seed 0", "without seed 1", "without seed 2", "margin 2^-0.5", "margin 2^-2",
        "τ ∈ {1e-2, 1e-3} (stricter)", "τ ∈ {1e-1, 1e-2} (looser)", "widest width dropped",
    }  # fmt: skip
    assert v.robustness["alternatives"]["widest width dropped"] == "inconclusive"  # 1 width
