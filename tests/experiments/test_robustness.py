"""The robustness rule: stable, fragile, not assessed."""

from ntk_limits_experiments import robustness


def test_all_agree_is_stable():
    r = robustness.assess("holds", {"a": "holds", "b": "holds"})
    assert (r["label"], r["agree"], r["total"], r["fraction"]) == ("stable", 2, 2, 1.0)
    assert r["disagreeing"] == {} and r["opposite"] == []


def test_one_opposite_decision_makes_it_fragile_even_above_the_fraction():
    alts = {f"alt {i}": "holds" for i in range(9)} | {"strict": "fails"}
    r = robustness.assess("holds", alts)
    assert r["fraction"] == 0.9 and r["label"] == "fragile" and r["opposite"] == ["strict"]


def test_fraction_threshold_edge():
    four_of_five = {"a": "fails", "b": "fails", "c": "fails", "d": "fails", "e": "inconclusive"}
    assert robustness.assess("fails", four_of_five)["label"] == "stable"  # 0.8 >= 0.8
    three_of_five = four_of_five | {"d": "inconclusive"}
    assert robustness.assess("fails", three_of_five)["label"] == "fragile"


def test_no_alternatives_is_not_assessed():
    r = robustness.assess("inconclusive", {})
    assert r["label"] == "not assessed" and r["fraction"] is None


def test_leave_one_out_and_recompute():
    assert robustness.leave_one_out([0]) == []
    assert robustness.leave_one_out([0, 1, 2])[1] == ("without seed 1", (0, 2))

    def decide(seeds, margin):
        return "holds" if len(seeds) == 3 and margin < 1 else "fails"

    base = {"seeds": (0, 1, 2), "margin": 0.5}
    variants = [*((lbl, {"seeds": s}) for lbl, s in robustness.leave_one_out(base["seeds"]))]
    variants += [("same margin", {"margin": 0.5}), ("looser margin", {"margin": 2.0})]
    out = robustness.recompute(decide, base, variants)
    assert "same margin" not in out  # identical to the stated choice: not an alternative
    assert out == {
        "without seed 0": "fails",
        "without seed 1": "fails",
        "without seed 2": "fails",
        "looser margin": "fails",
    }
