"""Smoke test of the bandit study (C3) end to end, plus its config, specs and decision rule."""

import io
import json

import numpy as np
import pytest

from ntk_limits_experiments import store
from ntk_limits_experiments.bandits import analysis
from ntk_limits_experiments.bandits.study import STUDY, curve_index, neural_name
from ntk_limits_experiments.study import Summary


def test_smoke_profile_end_to_end(tmp_path):
    config = STUDY.get_config("smoke")
    STUDY.validate(config)
    specs = STUDY.expand(config)
    records = []
    for spec in specs:
        calls = []
        metrics = STUDY.execute(spec, lambda done, total, c=calls: c.append((done, total)))
        json.dumps(metrics)
        assert calls[-1] == (len(config["seeds"]),) * 2
        assert len(metrics["final_regret"]) == len(config["seeds"])
        assert all(0 <= r <= config["rounds"] for r in metrics["final_regret"])
        assert metrics["curve_rounds"][-1] == config["rounds"]
        records.append({"spec": spec, "metrics": metrics, "status": "ok"})
    summary = STUDY.summarize(config, records, tmp_path)
    assert isinstance(summary, Summary)
    assert len(summary.figures) == 3
    for fig in summary.figures:
        assert fig.exists() and fig.read_bytes()[:4] == b"\x89PNG"
    (verdict,) = summary.verdicts
    assert verdict.claim == "C3" and verdict.verdict in ("holds", "fails", "inconclusive")
    assert set(verdict.evidence) == {"iris/ucb", "iris/ts"}
    assert all(np.isfinite(v["ratio"]) for v in verdict.evidence.values())
    assert "| greedy |" in summary.tables["bandits_final_regret"]
    assert "ratio" in summary.tables["bandits_c3"] and summary.text


def test_smoke_through_the_runner(tmp_path):
    runner = pytest.importorskip("ntk_limits_experiments.runner")
    config = STUDY.get_config("smoke")
    records = runner.run_study(STUDY, config, tmp_path, profile="smoke", out=io.StringIO())
    assert {r["status"] for r in records} == {"ok"}
    summary = json.loads((tmp_path / "bandits" / "summary.json").read_text())
    assert summary["verdicts"][0]["claim"] == "C3"
    again = runner.run_study(STUDY, config, tmp_path, profile="smoke", out=io.StringIO())
    assert [r["key"] for r in again] == [r["key"] for r in records]  # resumed, not rerun


def test_embedded_and_paper_specs_are_unique_and_complete():
    for profile in ("embedded", "paper"):
        config = STUDY.get_config(profile)
        specs = STUDY.expand(config)
        keys = {store.run_key("bandits", s) for s in specs}
        assert len(keys) == len(specs)
        agents = {s["agent"] for s in specs}
        assert {"neuralucb-theory", "neuralucb-evidence", "neuralts-theory", "greedy"} <= agents
        assert {"random", "linucb", "ntkgp-ucb-evidence", "neuralucb-diag-theory"} <= agents
        for s in specs:
            json.dumps(s)
            assert s["rounds"] == config["rounds"] and s["seeds"] == config["seeds"]
    embedded = STUDY.expand(STUDY.get_config("embedded"))
    sweep = {(s["width"], s["parameterization"]) for s in embedded if s["dataset"] == "wine"}
    assert {(32, "ntk"), (256, "ntk"), (100, "standard"), (256, "standard")} <= sweep


@pytest.mark.parametrize(
    "key, value",
    [("widths", [0]), ("rounds", 0), ("learning_rate", 2.5), ("delta", 1.0), ("datasets", ["x"]),
     ("standard_widths", [-4]), ("fixed_gammas", [-1.0]), ("prior_precision", 0.0),
     ("base_parameterization", "mup"), ("tune_every", 15), ("diag_datasets", ["x"])],
)  # fmt: skip
def test_validate_rejects_bad_values(key, value):
    config = {**STUDY.get_config("smoke"), key: value}
    with pytest.raises(ValueError, match="allowed|must be"):
        STUDY.validate(config)


def _records(theory, alternative, seeds=(0, 1, 2)):
    """Fake base-width records: final regrets per seed for theory and one alternative."""
    config = STUDY.get_config("smoke")
    out = []
    for agent, finals in (("neuralucb-theory", theory), ("neuralucb-evidence", alternative)):
        spec = {
            "dataset": "iris",
            "agent": agent,
            "width": config["width"],
            "parameterization": "ntk",
        }
        metrics = {"final_regret": list(finals), "gamma_final": [5.0] * len(seeds)}
        out.append({"spec": spec, "metrics": metrics, "status": "ok"})
    return {**config, "methods": ["ucb"]}, out


@pytest.mark.parametrize(
    "theory, alternative, expected",
    [
        ((30, 31, 29), (10, 11, 9), "holds"),  # ratio 3, gap ≫ 2 SE
        ((10, 11, 9), (10, 12, 8), "fails"),  # theory as good as the alternative
        ((12, 14, 10), (10, 11, 9), "inconclusive"),  # ratio 1.2 < 1.25
        ((30, 10, 50), (10, 11, 9), "inconclusive"),  # ratio 3 but within 2 SE
    ],
)
def test_c3_decision_rule(theory, alternative, expected):
    config, records = _records(theory, alternative)
    verdict, cases = analysis.verdict_c3(config, analysis.group_records(config, records))
    assert verdict.verdict == expected
    assert cases[0]["ratio"] == pytest.approx(np.mean(theory) / np.mean(alternative))


def test_names_and_curve_index():
    assert neural_name("ucb", "fixed", 0.0) == "greedy"
    assert neural_name("ts", "fixed", 0.1) == "neuralts-fixed-0.1"
    assert neural_name("ucb", "evidence") == "neuralucb-evidence"
    np.testing.assert_array_equal(curve_index(5, 100), [0, 1, 2, 3, 4])
    idx = curve_index(1000, 10)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 10
