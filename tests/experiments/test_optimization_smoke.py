"""The optimization study end to end: smoke profile, the runner, and the paper loader path."""

import copy
import io
import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from ntk_limits import data
from ntk_limits_experiments import runner
from ntk_limits_experiments.optimization import config as cfg
from ntk_limits_experiments.optimization import summary
from ntk_limits_experiments.optimization.study import STUDY
from tests.data.conftest import FakeCifar10

VERDICTS = ("holds", "fails", "inconclusive")


def _execute_all(config):
    return [
        {"spec": s, "metrics": STUDY.execute(s, lambda done, total: None), "status": "ok"}
        for s in STUDY.expand(config)
    ]


@pytest.fixture(scope="module")
def smoke():
    config = STUDY.get_config("smoke")
    STUDY.validate(config)
    return config, _execute_all(config)


def test_smoke_metrics_are_well_formed(smoke):
    config, records = smoke
    assert {r["spec"]["arch"] for r in records} == {"mlp", "cnn"}
    for r in records:
        m = json.loads(json.dumps(r["metrics"], allow_nan=False))  # strict JSON
        seeds, lrs = len(config["seeds"]), len(config["ngd_lrs"])
        assert np.shape(m["ngd"]["loss"]) == (lrs, seeds, config["ngd_steps"] + 1)
        assert np.shape(m["gd"]["loss"]) == (seeds, config["gd_steps"] + 1)
        assert np.shape(m["ngd"]["c_prime"]) == (lrs, seeds, config["num_checkpoints"])
        assert np.shape(m["gd"]["pred_loss"]) == (seeds, config["gd_steps"] + 1)
        assert len(m["lambda_min"]) == seeds and m["lambda_min_inf"] > 0
        assert "MNIST-5k" in m["data"] and m["n"] == config["n_train"]
    mlp = next(r["metrics"] for r in records if r["spec"]["arch"] == "mlp")
    # Width-16 MLP on 16 points: P = 1242 > n·k = 160, and K₀ is well conditioned enough
    # that GD and NGD (η = 1) run; their loss must fall.
    assert mlp["gd"]["loss"][0][-1] < mlp["gd"]["loss"][0][0]
    assert all(v is None or v >= 0 for v in np.ravel(np.asarray(mlp["ngd"]["c_prime"], object)))


def test_smoke_summary_writes_figures_tables_and_verdicts(smoke, tmp_path):
    config, records = smoke
    summary = STUDY.summarize(config, records, tmp_path)
    assert len(summary.figures) == 5
    for path in summary.figures:
        assert path.exists() and path.stat().st_size > 1000
    assert len(summary.tables) == 2 and all("|" in t for t in summary.tables.values())
    assert [v.claim for v in summary.verdicts] == ["C1", "C2"]
    for v in summary.verdicts:
        assert v.verdict in VERDICTS and v.rule and v.statement
        json.dumps(v.evidence, allow_nan=True)
    assert "MNIST-5k" in summary.text


def _edited(records, **edits):
    """Deep copies of the smoke records with every run's metrics edited in place."""
    out = copy.deepcopy(records)
    for r in out:
        for fn in edits.values():
            fn(r["metrics"])
    return out


def _set_steps(gd, gd_pred, ngd, ngd_pred):
    def edit(m):
        seeds = len(m["lambda_min"])
        m["lambda_min"] = [1.0] * seeds  # resolved K₀ so that the runs count
        m["lambda_floor"] = [1e-6] * seeds
        m["gd"]["steps"], m["gd"]["pred_steps"] = [gd] * seeds, [gd_pred] * seeds
        lrs = len(m["ngd"]["lrs"])
        m["ngd"]["steps"] = [[ngd] * seeds] * lrs
        m["ngd"]["pred_steps"] = [[ngd_pred] * seeds] * lrs

    return edit


def test_verdict_rules_on_edited_metrics(smoke):
    _, records = smoke

    # C1: scale every ‖ΔJ‖₂ down so that C′ = 3‖ΔJ‖₂/√λ_min < 1/2 everywhere -> "fails".
    def tiny(m):
        for sec in ("ngd", "gd", "adam"):
            a = np.asarray(m[sec]["jacobian_change_spectral"], dtype=float)
            m[sec]["jacobian_change_spectral"] = np.where(np.isnan(a), np.nan, 1e-9).tolist()
        m["lambda_min"], m["lambda_floor"] = [1.0] * 2, [1e-6] * 2

    rows = summary.rows_from_records(_edited(records, c=tiny))
    assert summary.verdict_c1(rows).verdict == "fails"
    rows = summary.rows_from_records(records)
    assert summary.verdict_c1(rows).verdict == "holds"  # smoke C′ ≫ 1/2 (tiny, narrow nets)
    # C2: measured speed-up 50/1 vs predicted 50/1 -> delivered 1 -> "fails";
    # measured 50/25 vs predicted 50/1 -> delivered 0.04 -> "holds".
    rows = summary.rows_from_records(_edited(records, s=_set_steps(50, 50, 1, 1)))
    assert summary.verdict_c2(rows).verdict == "fails"
    rows = summary.rows_from_records(_edited(records, s=_set_steps(50, 50, 25, 1)))
    assert summary.verdict_c2(rows).verdict == "holds"
    # GD not at the threshold within its T_max = 20 steps (-1), NGD at 1 step: delivered is
    # only bounded below, by (21/1)/(pred 30/1) = 0.7 >= 1/2 -> "delivers" -> "fails"; with
    # a predicted 60 steps the bound 0.35 decides nothing -> "inconclusive".
    rows = summary.rows_from_records(_edited(records, s=_set_steps(-1, 30, 1, 1)))
    assert summary.verdict_c2(rows).verdict == "fails"
    rows = summary.rows_from_records(_edited(records, s=_set_steps(-1, 60, 1, 1)))
    assert summary.verdict_c2(rows).verdict == "inconclusive"


def test_through_the_runner_and_resume(tmp_path):
    config = runner.prepare_config(STUDY, "smoke", ["cnn_widths=", "seeds=0"])
    out = io.StringIO()
    records = runner.run_study(STUDY, config, tmp_path, profile="smoke", out=out)
    assert [r["status"] for r in records] == ["ok"]
    summary = json.loads((tmp_path / "optimization" / "summary.json").read_text())
    assert {v["claim"] for v in summary["verdicts"]} == {"C1", "C2"}
    assert all((tmp_path / f).exists() for f in summary["figures"])
    again = runner.run_study(STUDY, config, tmp_path, profile="smoke", out=io.StringIO())
    assert again[0]["key"] == records[0]["key"]  # read back, not executed again


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"mlp_widths": [0]}, "mlp_widths"),
        ({"ngd_lrs": [float("nan")]}, "ngd_lrs"),
        ({"gd_lr_fractions": [1.5]}, "gd_lr_fractions"),
        ({"ngd_solver": "lu"}, "ngd_solver"),
        ({"num_checkpoints": 99}, "num_checkpoints"),
        ({"mlp_parameterizations": ["mup"]}, "mlp_parameterizations"),
    ],
)
def test_validate_rejects_bad_configs(override, message):
    config = {**cfg.get_config("smoke"), **override}
    with pytest.raises(ValueError, match=message):
        STUDY.validate(config)


def test_paper_profile_reads_tfds_cifar10(tmp_path):
    """The paper loader path on a tiny CIFAR-10 written by tfds itself (fake images)."""
    config = {**STUDY.get_config("paper"), "data_dir": None}
    spec = next(s for s in STUDY.expand(config) if s["arch"] == "cnn")
    with pytest.raises(data.DataUnavailableError):
        STUDY.execute(spec, lambda done, total: None)
    dl = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    FakeCifar10(data_dir=str(tmp_path), file_format="array_record").download_and_prepare(
        download_config=dl
    )
    tiny = {"n_train": 10, "seeds": [0], "ngd_steps": 2, "gd_steps": 2, "num_checkpoints": 1,
            "data_dir": str(tmp_path), "cnn_widths": [2], "mlp_widths": [], "wrn_ks": [],
            "conv_parameterizations": ["ntk"], "pool": 4}  # fmt: skip
    config = {**STUDY.get_config("paper"), **tiny}
    STUDY.validate(config)
    (spec,) = STUDY.expand(config)
    m = STUDY.execute(spec, lambda done, total: None)
    assert m["data"].startswith("CIFAR-10") and m["n"] == 10 and m["k"] == 10
    assert len(m["ngd"]["loss"][0][0]) == 3
