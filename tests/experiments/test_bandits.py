"""The bandit study (C3): the smoke profile end to end once, its config, specs and rule."""

import io
import json

import numpy as np
import pytest

from ntk_limits import models
from ntk_limits_experiments import claims, runner, store
from ntk_limits_experiments.bandits import analysis, study
from ntk_limits_experiments.bandits.config import BASELINES, Agent, Run
from ntk_limits_experiments.bandits.study import STUDY, curve_index
from ntk_limits_experiments.config import apply_overrides


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile through the runner, once: ``(config, workdir, records)``."""
    workdir = tmp_path_factory.mktemp("bandits")
    config = STUDY.get_config("smoke")
    records = runner.run_study(STUDY, config, workdir, out=io.StringIO())
    return config, workdir, records


def test_smoke_runs_are_ok_and_complete(smoke):
    config, _, records = smoke
    assert [r["status"] for r in records] == ["ok"] * len(STUDY.expand(config))
    for r in records:
        m = r["metrics"]
        assert len(m["final_regret"]) == len(config.seeds)
        assert all(0 <= v <= config.rounds for v in m["final_regret"])
        assert m["curve_rounds"][-1] == config.rounds
        assert len(m["regret_curve"][0]) == len(m["curve_rounds"]) <= config.curve_points
        assert np.all(np.diff(m["regret_curve"], axis=1) >= 0)  # cumulative
        assert (
            np.all(np.asarray(m["prior_precision_final"]) > 0)
            or r["spec"]["prior_precision"] is None
        )


def test_smoke_summary_decides_the_studys_claims(smoke):
    config, workdir, _ = smoke
    summary = json.loads((workdir / "bandits" / "summary.json").read_text())
    assert tuple(v["claim"] for v in summary["verdicts"]) == claims.of_study("bandits")
    (verdict,) = summary["verdicts"]
    assert verdict["verdict"] in ("holds", "fails", "inconclusive")
    assert set(verdict["evidence"]) == {"iris/ucb", "iris/ts"}
    assert all(np.isfinite(v["ratio"]) for v in verdict["evidence"].values())
    assert len(summary["figures"]) == 3
    for fig in summary["figures"]:
        assert (workdir / fig).read_bytes()[:4] == b"\x89PNG"
    tables = summary["tables"]
    assert "| greedy |" in tables["bandits_final_regret"]
    assert "| neuralucb-diag-theory |" in tables["bandits_final_regret"]
    assert "ratio" in tables["bandits_c3"] and summary["text"]


def test_smoke_resumes_without_rerunning(smoke):
    config, workdir, records = smoke
    again = runner.run_study(STUDY, config, workdir, out=io.StringIO())
    assert [r["key"] for r in again] == [r["key"] for r in records]
    assert [r["finished_at"] for r in again] == [r["finished_at"] for r in records]


def test_execute_reports_progress_per_seed(smoke):
    config = smoke[0]
    calls = []
    STUDY.execute(STUDY.expand(config)[0], lambda done, total: calls.append((done, total)))
    assert calls == [(i + 1, len(config.seeds)) for i in range(len(config.seeds))]


def test_stored_specs_read_back_as_the_typed_runs(smoke):
    config, _, records = smoke
    runs = STUDY.expand(config)
    assert [Run.from_json(r["spec"]) for r in records] == runs
    assert {r.agent for r in runs} >= {BASELINES[name] for name in config.baselines}


def test_embedded_and_paper_specs_are_unique_and_complete():
    for profile in ("embedded", "paper"):
        config = STUDY.get_config(profile)
        runs = STUDY.expand(config)
        keys = {store.run_key("bandits", store.to_jsonable(r)) for r in runs}
        assert len(keys) == len(runs)
        names = {r.agent.name for r in runs}
        assert {"neuralucb-theory", "neuralucb-evidence", "neuralts-theory", "greedy"} <= names
        assert {"random", "linucb", "ntkgp-ucb-evidence", "neuralucb-diag-theory"} <= names
        for r in runs:
            json.dumps(store.to_jsonable(r))
            assert r.rounds == config.rounds and r.seeds == config.seeds
            assert r.network == config.network_of(r.agent) or r.dataset in config.sweep_datasets
    embedded = STUDY.expand(STUDY.get_config("embedded"))
    networks = [r.network for r in embedded if r.dataset == "wine" and r.network is not None]
    sweep = {(n.width, n.parameterization) for n in networks}
    assert {(32, "ntk"), (256, "ntk"), (100, "standard"), (256, "standard")} <= sweep
    assert len(embedded) == 37  # the embedded profile's documented size


def test_a_width_and_gamma_travel_from_set_to_the_program():
    overrides = ["width=24", "widths=24,48", "fixed_gammas=0,0.05"]
    config = apply_overrides(STUDY.get_config("smoke"), overrides)
    runs = STUDY.expand(config)
    networks = {r.network for r in runs if r.agent.family == "neural"}
    assert {models.build(n).network.hidden_width for n in networks} == {24, 48}
    fixed = [r for r in runs if r.agent.exploration == "fixed"]
    assert [r.agent.name for r in fixed] == ["greedy", "neuralucb-fixed-0.05"]
    assert [study._exploration(r).gamma for r in fixed] == [0.0, 0.05]  # what the agent gets


@pytest.mark.parametrize(
    "key, value",
    [("widths", "0"), ("rounds", "0"), ("learning_rate", "2.5"), ("delta", "1.0"),
     ("datasets", "x"), ("standard_widths", "-4"), ("fixed_gammas", "-1.0"),
     ("prior_precision", "0.0"), ("base_parameterization", "mup"), ("tune_every", "15"),
     ("diag_datasets", "x"), ("baselines", "neuralucb-theory"), ("fixed_methods", "ts,ucb,ts"),
     ("ridge_low", "1e3")],
)  # fmt: skip
def test_bad_values_are_rejected(key, value):
    config = apply_overrides(STUDY.get_config("smoke"), [])
    if key == "fixed_methods":
        value = "ts"
        config = apply_overrides(config, ["methods=ucb"])
    with pytest.raises(ValueError, match="allowed"):
        apply_overrides(config, [f"{key}={value}"])


def test_agent_names_are_derived_from_fields():
    assert Agent("neural", exploration="fixed", gamma=0.0).name == "greedy"
    assert Agent("neural", "ts", exploration="fixed", gamma=0.1).name == "neuralts-fixed-0.1"
    assert Agent("neural", exploration="evidence").name == "neuralucb-evidence"
    assert Agent("neural", "ts", prior_precision=1.0).name == "neuralts-theory-lam1"
    assert Agent("neural", posterior="diag").name == "neuralucb-diag-theory"
    assert Agent("ntkgp", "ts", exploration="evidence").name == "ntkgp-ts-evidence"
    assert list(BASELINES) == [a.name for a in BASELINES.values()]
    with pytest.raises(ValueError, match="allowed"):
        Agent("neural", exploration="theory", gamma=0.5)  # γ belongs to fixed exploration
    with pytest.raises(ValueError, match="allowed"):
        Agent("ntkgp", posterior="diag")
    np.testing.assert_array_equal(curve_index(5, 100), [0, 1, 2, 3, 4])
    idx = curve_index(1000, 10)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 10


def _records(theory, alternative):
    """Fake base-width records: final regrets per seed for theory and one alternative."""
    config = STUDY.get_config("smoke")
    out = []
    for exploration, finals in (("theory", theory), ("evidence", alternative)):
        agent = Agent("neural", "ucb", exploration=exploration)
        run = Run("iris", agent, config.rounds, config.seeds, config.curve_points,
                  network=config.network_of(agent))  # fmt: skip
        metrics = {"final_regret": list(finals), "gamma_final": [5.0] * len(finals)}
        out.append({"spec": store.to_jsonable(run), "metrics": metrics, "status": "ok"})
    return apply_overrides(config, ["methods=ucb", "fixed_methods=ucb"]), out


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
    verdict, cases = analysis.verdict_c3(config, analysis.group_records(records))
    assert verdict.claim == "C3" and verdict.verdict == expected
    assert cases[0]["ratio"] == pytest.approx(np.mean(theory) / np.mean(alternative))
    assert cases[0]["theory_agent"] == "neuralucb-theory"
    assert cases[0]["best"] == "neuralucb-evidence"


def test_c3_ties_go_to_fixed_gamma_in_config_order_then_evidence():
    config, records = _records((30, 31, 29), (10, 11, 9))
    base = config.network_of(Agent("neural"))
    for gamma in (0.1, 0.0):  # same regret as the evidence agent: ties
        agent = Agent("neural", exploration="fixed", gamma=gamma)
        run = Run("iris", agent, config.rounds, config.seeds, config.curve_points, network=base)
        metrics = {"final_regret": [10, 11, 9], "gamma_final": [0.0] * 3}
        records.append({"spec": store.to_jsonable(run), "metrics": metrics, "status": "ok"})
    _, cases = analysis.verdict_c3(config, analysis.group_records(records))
    assert cases[0]["best"] == "greedy"  # fixed_gammas = (0.0, 0.1): γ = 0 comes first
