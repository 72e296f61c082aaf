import json

from ntk_limits_experiments import report


def test_report_without_results_lists_every_claim_as_not_run(tmp_path):
    bench = [
        {
            "name": "ntk",
            "value": 1.23456,
            "unit": "s",
            "baseline": 2.0,
            "ratio": 0.617,
            "goal": "< 1",
            "met": True,
        }
    ]
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    md_path, verdicts_path = report.write_report(tmp_path)
    verdicts = json.loads(verdicts_path.read_text())
    assert [v["claim"] for v in verdicts] == ["C1", "C2", "C3", "C4", "C5"]
    assert {v["verdict"] for v in verdicts} == {"not run"}
    assert set(verdicts[0]) == {
        "claim",
        "statement",
        "verdict",
        "rule",
        "evidence",
        "robustness",
        "profile",
        "study",
        "data",
    }
    md = md_path.read_text()
    assert "## Benchmarks" in md and "| ntk | 1.23 | s | 2 | 0.617 | < 1 | True |" in md
    assert md.count("**not run**") == 5


def test_report_shows_rule_evidence_and_robustness_of_a_decided_claim(tmp_path):
    from ntk_limits_experiments import claims, robustness

    rob = robustness.assess("holds", {"without seed 0": "holds", "looser margin": "fails"})
    v = claims.verdict("C5", "holds", "RULE TEXT", {"slope": {"mlp ntk": -0.51}}, rob)
    summary = {"study": "kernels", "profile": "smoke", "verdicts": [v._asdict()], "n_runs": 1}
    (tmp_path / "kernels").mkdir()
    (tmp_path / "kernels" / "summary.json").write_text(json.dumps(summary))
    md_path, verdicts_path = report.write_report(tmp_path)
    md = md_path.read_text()
    c5 = json.loads(verdicts_path.read_text())[4]
    assert c5["robustness"]["label"] == "fragile" and c5["robustness"]["opposite"] == [
        "looser margin"
    ]
    assert "| C5 |" in md and "fragile (1/2 agree)" in md
    assert "looser margin: fails" in md  # the disagreeing alternative is named
    assert "**Rule.** RULE TEXT" in md and "  - `mlp ntk`: -0.51" in md
