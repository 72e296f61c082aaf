"""The C5 rule (``kernels/verdict.py``) on synthetic error-vs-width tables, one per outcome."""

import numpy as np
import pytest

from ntk_limits_experiments.kernels import analysis, study, verdict
from ntk_limits_experiments.kernels.config import KernelsConfig

SEEDS = tuple(range(8))
BASE = {"seeds": SEEDS, "keep_seeds": None, "parameterizations": ("ntk", "standard"),
        "margin": 0.25, "min_widths": 3, "drop_widest": False}  # fmt: skip


def _groups(slope, widths=(32, 128, 512, 2048), noise=0.01, param="ntk", arch="mlp", seed=0):
    """errors ``w^slope · exp(noise · z)`` per seed: the RMS follows the power law."""
    rng = np.random.default_rng(seed)
    rows = [(w, {"rel_error": (w**slope * np.exp(noise * rng.normal(size=len(SEEDS)))).tolist()})
            for w in widths]  # fmt: skip
    return {(arch, param): rows}


@pytest.mark.parametrize(
    ("slope", "kwargs", "decision", "call"),
    [
        (-0.5, {}, "holds", "within"),
        (-0.1, {}, "fails", "outside"),  # converges too slowly
        (-1.0, {}, "fails", "outside"),  # faster: not the predicted fluctuation
        (0.05, {}, "fails", "outside"),  # the error does not fall
        (-0.5, {"widths": (32, 128)}, "inconclusive", "undecided"),  # 2 widths
        (-0.25, {"noise": 0.3}, "inconclusive", "undecided"),  # straddles -0.25
    ],
)
def test_each_outcome_of_the_rule(slope, kwargs, decision, call):
    ev = verdict.evidence_c5(_groups(slope, **kwargs), **BASE)
    e = ev["MLP NTP"]
    assert (ev["decision"], e["call"]) == (decision, call)
    assert (decision == "inconclusive") == (ev["inconclusive_reason"] is not None)
    if "slope" in e and kwargs.get("noise", 0.01) <= 0.01:
        assert e["slope"] == pytest.approx(slope, abs=0.02)  # 1 % noise on 4 points


@pytest.mark.parametrize(("offset", "decision"), [(-1e-6, "holds"), (1e-6, "fails")])
def test_the_margin_edge(offset, decision):
    # noise-free: every bootstrap resample gives the same slope, so the interval is a point
    ev = verdict.evidence_c5(_groups(-0.25 + offset, noise=0.0), **BASE)
    e = ev["MLP NTP"]
    assert e["slope_5"] == pytest.approx(-0.25 + offset, abs=1e-9) == e["slope_95"]
    assert ev["decision"] == decision


def test_bootstrap_interval_against_a_hand_resampling():
    errors = np.exp(np.random.default_rng(3).normal(size=(3, 5)))
    widths = np.array([8.0, 32.0, 128.0])
    lo, hi = analysis.bootstrap_interval(widths, errors, seed=7)
    rng = np.random.default_rng(7)
    idx = rng.integers(0, 5, size=(1000, 3, 5))
    fits = [np.polyfit(np.log(widths), np.log(np.sqrt(np.mean(
        np.square([errors[w, idx[b, w]] for w in range(3)]), axis=1))), 1)[0]
        for b in range(1000)]  # fmt: skip
    np.testing.assert_allclose([lo, hi], np.quantile(fits, [0.05, 0.95]), rtol=1e-10)


def test_groups_combine_and_robustness_has_every_alternative():
    within = _groups(-0.5)
    outside = _groups(-0.05, param="standard")
    assert verdict.decide_c5({**within, **outside}, **BASE) == "fails"
    assert verdict.decide_c5({**within, **_groups(-0.5, param="standard")}, **BASE) == "holds"
    config = KernelsConfig(seeds=SEEDS)
    v = verdict.verdict_c5({**within, **_groups(-0.5, param="standard")},
                           study.verdict_choices(config))  # fmt: skip
    assert v.verdict == "holds" and v.robustness["label"] == "stable"
    assert set(v.robustness["alternatives"]) == {
        *(f"without seed {s}" for s in SEEDS), "NTP only", "SP only",
        "margin 0.2 (stricter)", "margin 0.3 (looser)", "widest width dropped",
    }  # fmt: skip
    assert "[-0.75, -0.25]" in v.rule
