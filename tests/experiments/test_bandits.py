"""The bandit study (C3): the smoke profile end to end once, its config, specs and rule."""

import dataclasses
import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import bandits, data, models
from ntk_limits_experiments import claims, runner, store
from ntk_limits_experiments.bandits import analysis, study, verdict
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
    assert len(summary["figures"]) == 3
    for fig in summary["figures"]:
        assert (workdir / fig).read_bytes()[:4] == b"\x89PNG"
    tables = summary["tables"]
    assert "| greedy |" in tables["bandits_final_regret"]
    assert "| neuralucb-reference |" in tables["bandits_final_regret"]
    assert "regret ratio" in tables["bandits_c3"] and summary["text"]


def test_smoke_verdict_is_the_rule_applied_to_the_stored_runs(smoke):
    config, workdir, _ = smoke
    (stored,) = json.loads((workdir / "bandits" / "summary.json").read_text())["verdicts"]
    groups = analysis.group_records(store.list_runs(workdir, "bandits"))  # read back from disk
    cases = verdict.collect(config, groups)
    assert [c["label"] for c in cases] == ["iris/ucb/ntk-16", "iris/ts/ntk-16"]
    assert stored["verdict"] == verdict.decide_c3(cases, **verdict.base_choices(config))
    assert stored["rule"] == verdict.rule_text(config)
    for case in cases:  # the stored ratio is the geometric mean of (theory+1)/(best+1)
        full = verdict.case_outcome(
            case,
            **{
                k: v
                for k, v in verdict.base_choices(config).items()
                if k in ("seeds", "theory", "margin_ratio", "alpha")
            },
        )
        for name, d in full["theories"].items():
            t = np.asarray(case["theories"]["zhou"][name]) + 1.0
            a = np.asarray(case["alternatives"][d["best_alternative"]]) + 1.0
            ratio = float(np.exp(np.mean(np.log(t / a))))
            assert (
                f"{name} / {d['best_alternative']} = {ratio:.2f}"
                in stored["evidence"][case["label"]]
            )
    alternatives = set(stored["robustness"]["alternatives"])
    expected = {f"without seed {s}" for s in config.seeds} | {"alpha 0.01", "alpha 0.1"}
    expected |= {
        "margin ratio 1.125",
        "margin ratio 1.5",
        "kernel-limit γ_t instead of Zhou's (cases where it ran)",
    }
    assert alternatives == expected and stored["robustness"]["total"] == len(expected)


def test_smoke_theory_agents_use_zhous_gamma_and_the_reference_its_scale(smoke):
    config, workdir, _ = smoke
    groups = analysis.group_records(store.list_runs(workdir, "bandits"))
    net = config.base_network
    gamma = {a.name: m["gamma_final"] for (d, a, n), m in groups.items() if n in (net, None)}
    # Zhou's γ_T at m = 16, T = 40, λ = 0.01 exceeds its kernel limit by orders of magnitude.
    assert min(gamma["neuralucb-zhou"]) > 1e6 * max(gamma["neuralucb-kernel-limit"])
    lam, nu = config.prior_precision, config.nu
    e = bandits.Exploration(nu=nu, delta=config.delta, norm_bound=config.norm_bound)
    lower = float(bandits.zhou_gamma(config.rounds - 1.0, 0.0, lam, e, width=16, depth=2))
    assert min(gamma["neuralucb-zhou"]) >= lower * (1 - 1e-5)  # log det ≥ 0; float32
    assert gamma["neuralucb-reference"] == pytest.approx([math.sqrt(lam * nu)] * 3, rel=1e-6)
    for m in groups.values():  # every run reports its posterior repairs, one per seed
        assert len(m["clamps"]) == len(config.seeds) and min(m["clamps"]) >= 0


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


def test_agents_are_paired_by_seed(smoke):
    # Thompson sampling with γ = 0 is the greedy network: equal regrets on every seed only
    # if the seed alone (not the agent) fixes the data order and the initialisation.
    config = smoke[0]
    runs = [r for r in STUDY.expand(config) if r.agent.is_greedy]
    ts = dataclasses.replace(runs[0], agent=Agent("neural", "ts", exploration="fixed", gamma=0.0))
    greedy, other = (STUDY.execute(r, lambda *_: None) for r in (runs[0], ts))
    assert greedy["final_regret"] == other["final_regret"]
    assert len(set(greedy["final_regret"])) > 1  # the seeds differ from each other


def test_x64_runs_the_agent_in_float64(smoke):
    config = smoke[0]
    (run,) = [r for r in STUDY.expand(config) if r.agent.name == "neuralucb-evidence"]
    run64 = dataclasses.replace(run, x64=True)  # traced only (a trace checks every dtype)
    program = study._program(study._Key.of(run64))
    env = data.make_bandit(run.dataset, num_rounds=run.rounds, seed=0)
    with jax.enable_x64(True):
        args = (jnp.asarray(env.contexts, jnp.float64), jnp.asarray(env.rewards, jnp.float64))
        lam = jnp.float64(run64.lam)
        shapes = jax.eval_shape(
            program, *args, jax.random.key(0), study._exploration(run64).as_arrays(), lam
        )
    assert {v.dtype for v in shapes[1].values()} == {jnp.dtype("float64")}


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
        assert {"neuralucb-zhou", "neuralucb-evidence", "neuralts-zhou", "greedy"} <= names
        assert {"neuralucb-kernel-limit", "neuralucb-kernel-limit-lam1"} <= names
        assert ("neuralts-kernel-limit" in names) == (profile == "paper")  # budget: UCB only
        assert {"random", "linucb", "ntkgp-ucb-evidence", "neuralucb-reference"} <= names
        for r in runs:
            json.dumps(store.to_jsonable(r))
            assert r.rounds == config.rounds_of(r.dataset) and r.seeds == config.seeds
            assert r.network == config.network_of(r.agent) or r.dataset in config.sweep_datasets
    embedded = STUDY.expand(STUDY.get_config("embedded"))
    networks = [r.network for r in embedded if r.dataset == "wine" and r.network is not None]
    sweep = {(n.width, n.parameterization) for n in networks}
    assert {(w, p) for w in (32, 256, 1024) for p in ("ntk", "standard")} <= sweep
    # The documented size: 4 data sets × 14 agents, the reference agent on wine, and
    # 6 sweep networks × 3 agents (Zhou, evidence, greedy).
    assert len(embedded) == 4 * 14 + 1 + 6 * 3


def test_rounds_are_capped_at_the_passes_over_the_data_set():
    config = apply_overrides(STUDY.get_config("smoke"), ["rounds=1000", "passes=2"])
    assert config.rounds_of("iris") == 300  # 150 rows
    assert config.rounds_of("digits") == 1000  # 1797 rows: the cap binds first
    assert apply_overrides(config, ["passes=0.5"]).rounds_of("wine") == 89  # ⌊0.5 · 178⌋
    assert STUDY.get_config("paper").rounds_of("covertype") == 10_000  # loads nothing


def test_a_width_and_gamma_travel_from_set_to_the_program():
    overrides = ["width=24", "widths=24,48", "fixed_gammas=0,0.05"]
    config = apply_overrides(STUDY.get_config("smoke"), overrides)
    runs = STUDY.expand(config)
    networks = {r.network for r in runs if r.agent.family == "neural"}
    assert {models.build(n).network.hidden_width for n in networks} == {24, 48}
    fixed = [r for r in runs if r.agent.exploration == "fixed" and r.network.width == 24]
    assert [r.agent.name for r in fixed] == ["greedy", "neuralucb-fixed-0.05"]
    assert [study._exploration(r).gamma for r in fixed] == [0.0, 0.05]  # what the agent gets


@pytest.mark.parametrize(
    "key, value",
    [("widths", "0"), ("rounds", "0"), ("learning_rate", "2.5"), ("delta", "1.0"),
     ("datasets", "x"), ("standard_widths", "-4"), ("fixed_gammas", "-1.0"),
     ("prior_precision", "0.0"), ("base_parameterization", "mup"), ("tune_every", "15"),
     ("diag_datasets", "x"), ("baselines", "neuralucb-zhou"), ("fixed_methods", "ts,ucb,ts"),
     ("kernel_limit_methods", "x"),
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
    assert Agent("neural", "ts", prior_precision=1.0).name == "neuralts-zhou-lam1"
    assert Agent("neural", exploration="kernel-limit").name == "neuralucb-kernel-limit"
    assert Agent("neural", posterior="diag", exploration="reference").name == "neuralucb-reference"
    assert Agent("ntkgp", "ts", exploration="evidence").name == "ntkgp-ts-evidence"
    assert list(BASELINES) == [a.name for a in BASELINES.values()]
    with pytest.raises(ValueError, match="allowed"):
        Agent("neural", exploration="zhou", gamma=0.5)  # γ belongs to fixed exploration
    with pytest.raises(ValueError, match="allowed"):
        Agent("ntkgp", posterior="diag")
    with pytest.raises(ValueError, match="allowed"):
        Agent("neural", posterior="diag")  # the old hybrid: diagonal posterior, theory γ_t
    with pytest.raises(ValueError, match="allowed"):
        Agent("ntkgp")  # Zhou's γ_t at infinite width is the kernel limit: say so
    np.testing.assert_array_equal(curve_index(5, 100), [0, 1, 2, 3, 4])
    idx = curve_index(1000, 10)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) == 10
