"""The optimization study: its config and runs, one smoke run end to end, and the paper loader.

The smoke profile runs once (module fixture) through the runner; the tests read its records,
its stored summary and its figures. The paper loader path runs the smallest paper network
(a width-1 MLP) on a tiny MNIST written by tfds itself.
"""

import dataclasses
import io
import json

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from ntk_limits import data, models
from ntk_limits_experiments import claims, config, runner, store
from ntk_limits_experiments.optimization import analysis, verdict
from ntk_limits_experiments.optimization import config as cfg
from ntk_limits_experiments.optimization.study import STUDY, expand, load_data
from ntk_limits_experiments.study import Summary
from tests.data.conftest import FakeCifar10, FakeMnist

VERDICTS = ("holds", "fails", "inconclusive")
CLAIMS = list(claims.of_study("optimization"))


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke profile run once through the runner: (config, records, workdir, summary)."""
    workdir = tmp_path_factory.mktemp("optimization")
    config = STUDY.get_config("smoke")
    records = runner.run_study(STUDY, config, workdir, out=io.StringIO())
    summary = json.loads((workdir / "optimization" / "summary.json").read_text())
    return config, records, workdir, summary


def test_profiles_are_typed_values_and_overrides_are_checked():
    assert set(STUDY.profiles) == set(config.PROFILES)
    assert all(isinstance(c, cfg.OptimizationConfig) for c in STUDY.profiles.values())
    smoke = STUDY.get_config("smoke")
    assert {smoke: 1}[dataclasses.replace(smoke)] == 1  # hashable: a config keys a cache
    changed = config.apply_overrides(smoke, ["mlp_widths=8,32", "ngd_lrs=1", "ngd_solver=cg"])
    assert changed.mlp_widths == (8, 32) and changed.ngd_lrs == (1.0,)
    assert changed.ngd_solver == "cg"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("mlp_widths=0", "mlp_widths"),
        ("ngd_lrs=nan", "ngd_lrs"),
        ("ngd_lrs=2.5", "ngd_lrs"),
        ("gd_lr_fractions=1.5", "gd_lr_fractions"),
        ("ngd_solver=lu", "ngd_solver"),
        ("num_checkpoints=99", "num_checkpoints"),
        ("mlp_parameterizations=mup", "mlp_parameterizations"),
        ("mlp_dataset=imagenet", "mlp_dataset"),
        ("seeds=0,0", "seeds"),
        ("wrn_depth=12", "wrn_depth"),
        ("loss_threshold=1", "loss_threshold"),
    ],
)
def test_bad_overrides_are_rejected_in_one_line(override, message):
    with pytest.raises(ValueError, match=message) as info:
        config.apply_overrides(STUDY.get_config("smoke"), [override])
    assert "allowed:" in str(info.value) and "\n" not in str(info.value)


def test_a_config_without_networks_is_rejected():
    with pytest.raises(ValueError, match="no architecture to run"):
        dataclasses.replace(STUDY.get_config("smoke"), mlp_widths=(), cnn_widths=())


def test_checkpoints_are_increasing_and_end_at_the_last_step():
    assert cfg.checkpoints(100, 3) == [3, 17, 100]  # 100 // 30 = 3, geometric to 100
    assert cfg.checkpoints(4, 4) == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="num_checkpoints"):
        cfg.checkpoints(2, 3)


def test_expand_gives_one_network_per_run_in_order():
    paper = STUDY.get_config("paper")
    runs = expand(paper)
    nets = [r.network for r in runs]
    assert all(isinstance(r, cfg.OptimizationRun) for r in runs)
    mlps = [(n.depth, n.parameterization, n.width) for n in nets if n.kind == "mlp"]
    assert mlps == [
        (d, p, w)
        for d in paper.mlp_depths
        for p in paper.mlp_parameterizations
        for w in paper.mlp_widths
    ]
    conv = [(n.kind, n.parameterization) for n in nets if n.kind != "mlp"]
    assert conv == [  # per parametrisation CNNs then WRNs; the BatchNorm WRN (standard) last
        (kind, p)
        for p in paper.conv_parameterizations
        for kind, ws in (("cnn", paper.cnn_widths), ("wrn", paper.wrn_ks))
        for _ in ws
    ] + [("wrn_bn", "standard")] * len(paper.wrn_bn_ks)
    assert [n.kind for n in nets[: len(mlps)]] == ["mlp"] * len(mlps)
    conv_runs = [r for r in runs if r.network.kind != "mlp"]
    assert {(r.n_train, r.pool, r.gd_steps) for r in conv_runs} == {
        (paper.conv_n_train, paper.conv_pool, paper.conv_gd_steps)
    }
    wrn = next(n for n in nets if n.kind == "wrn")
    assert (wrn.width, wrn.hidden_width, wrn.W_std, wrn.b_std) == (1, 16, 1.0, 0.0)
    cnn = next(r for r in runs if r.network.kind == "cnn")
    assert (cnn.dataset, cnn.network.out_dim, cnn.network.W_std) == ("cifar10", 10, 2**0.5)
    assert runs[0].gd_checkpoints == tuple(cfg.checkpoints(paper.gd_steps, 5))
    assert runs[0].thresholds == (0.1, 1e-2, 1e-3)


def test_a_width_from_set_reaches_the_dense_layer():
    config = runner.prepare_config(STUDY, "smoke", ["mlp_widths=8,32", "cnn_widths="])
    (_, run) = expand(config)
    arch = models.build(run.network)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, 49))[1], jax.random.key(0))
    (w1, _), _, (w2, _), _, (w3, _) = shapes
    assert (w1.shape, w2.shape, w3.shape) == ((49, 32), (32, 32), (32, 10))


def test_smoke_metrics_are_well_formed(smoke):
    config, records, _, _ = smoke
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert [r["spec"]["network"]["kind"] for r in records] == ["mlp", "cnn"]
    seeds, lrs = len(config.seeds), len(config.ngd_lrs)
    for r in records:
        m = json.loads(json.dumps(r["metrics"], allow_nan=False))  # strict JSON
        assert np.shape(m["ngd"]["loss"]) == (lrs, seeds, config.ngd_steps + 1)
        assert np.shape(m["ngd"]["pred_loss"]) == (lrs, seeds, config.ngd_steps + 1)
        assert np.shape(m["gd"]["loss"]) == (seeds, config.gd_steps + 1)
        assert np.shape(m["adam"]["loss"]) == (seeds, config.adam_steps + 1)
        assert np.shape(m["ngd"]["c_prime"]) == (lrs, seeds, config.num_checkpoints)
        assert np.shape(m["gd"]["pred_loss"]) == (seeds, config.gd_steps + 1)
        assert m["ngd"]["checkpoints"] == cfg.checkpoints(config.ngd_steps, config.num_checkpoints)
        assert len(m["lambda_min"]) == seeds and m["lambda_min_inf"] > 0
        assert m["data"].startswith("MNIST-5k") and (m["n"], m["k"]) == (config.n_train, 10)
        assert m["name"] == models.Network(**r["spec"]["network"]).name
    mlp = records[0]["metrics"]
    # Width-16 MLP on 16 points: P = 1242 > n·k = 160, and K₀ is well conditioned enough
    # that GD and NGD (η = 1) run; their loss must fall.
    assert mlp["num_params"] == 49 * 16 + 16 + 16 * 16 + 16 + 16 * 10 + 10 == 1242
    assert mlp["gd"]["loss"][0][-1] < mlp["gd"]["loss"][0][0]
    assert mlp["ngd"]["loss"][-1][0][-1] < mlp["ngd"]["loss"][-1][0][0]
    # The first NGD step from θ₀ is −η·d₀ with one d₀ for every η: ‖θ₁ − θ₀‖/η agrees
    # across η (float32 norms of ~1e3 entries: 1e-5).
    assert mlp["ngd"]["checkpoints"][0] == 1
    step1 = (
        np.asarray(mlp["ngd"]["param_distance"])[:, :, 0] / np.asarray(mlp["ngd"]["lrs"])[:, None]
    )
    np.testing.assert_allclose(step1, np.broadcast_to(step1[-1], step1.shape), rtol=1e-5)
    for r in records:
        m = r["metrics"]
        n, k = m["n"], m["k"]
        # ‖y − u₀‖² = 2nk·L₀, both in float64 from the same float32 outputs.
        np.testing.assert_allclose(np.square(m["residual0_norm"]), 2 * n * k *
                                   np.asarray(m["loss0"]), rtol=1e-10)  # fmt: skip
        lam64, lam32, floor32 = (np.asarray(m[key], float) for key in
                                 ("lambda_min_f64", "lambda_min", "lambda_floor"))  # fmt: skip
        # The float32 and float64 Grams of the same parameters: λ_min within float32's
        # resolution of the Gram (Weyl; the floor is numpy's rank tolerance).
        assert np.all(np.abs(lam32 - lam64) <= floor32)
        lam = np.asarray(m["lambda_zero_upper"], float)
        for sec in ("ngd", "gd", "adam"):
            dj = np.asarray(m[sec]["jacobian_change_spectral"], float)
            want = 3 * dj / np.sqrt(lam)[:, None]
            # C′ is stored from float32 ‖ΔJ‖₂ and λ₀: float32 round-off.
            np.testing.assert_allclose(np.asarray(m[sec]["c_prime"], float), want, rtol=1e-5)


def test_smoke_summary_writes_figures_tables_and_the_claims(smoke):
    _, _, workdir, summary = smoke
    assert summary["claims"] == CLAIMS == [v["claim"] for v in summary["verdicts"]]
    assert summary["status_counts"] == {"ok": 2}
    assert len(summary["figures"]) == 5
    for name in summary["figures"]:
        assert (workdir / name).exists() and (workdir / name).stat().st_size > 1000
    assert len(summary["tables"]) == 2
    for table in summary["tables"].values():
        assert table.count("\n") == 4 and table.startswith("| network |")  # header, rule, 2 runs
    for v in summary["verdicts"]:
        assert v["verdict"] in VERDICTS and v["rule"] and v["statement"]
        assert v["statement"] == claims.CLAIMS[v["claim"]].statement
    assert "MNIST-5k" in summary["text"]


def test_a_second_run_reads_every_run_back(smoke):
    config, records, workdir, _ = smoke

    def execute(spec, progress):
        raise AssertionError("a finished run was executed again")

    quiet = lambda config, records, outdir: Summary([], {}, [], "")
    again = runner.run_study(
        STUDY._replace(execute=execute, summarize=quiet), config, workdir, out=io.StringIO()
    )
    assert [r["key"] for r in again] == [r["key"] for r in records]
    assert [r["metrics"] for r in again] == [r["metrics"] for r in records]


def test_stored_verdicts_are_recomputed_from_the_stored_runs(smoke):
    """The summary's verdicts (decision, evidence, robustness) follow from the run files."""
    config, _, workdir, summary = smoke
    rows = analysis.rows_from_records(store.list_runs(workdir, "optimization"))
    again = [verdict.verdict_c1(rows), verdict.verdict_c2(rows)]
    for got, stored in zip(again, summary["verdicts"], strict=True):
        assert store.canonical_json(got._asdict()) == store.canonical_json(stored)
    c1, c2 = summary["verdicts"]
    loo = {f"without seed {s}" for s in config.seeds}
    assert set(c1["robustness"]["alternatives"]) == loo | {
        "C′ threshold 1/4", "C′ threshold 1", "widest width dropped"}  # fmt: skip
    assert set(c2["robustness"]["alternatives"]) == loo | {
        "margin 2^-0.5", "margin 2^-2", "τ ∈ {1e-2, 1e-3} (stricter)",
        "τ ∈ {1e-1, 1e-2} (looser)", "widest width dropped"}  # fmt: skip
    # Smoke: each run (width-16 MLP, width-4 CNN) has a seed whose K₀ is below float32
    # resolution, and one width per family: C2 has no trend to decide on. C1 has a witness
    # C′ ≫ 1/2 inside the ball at every seed.
    assert c2["verdict"] == "inconclusive" and "inconclusive_reason" in c2["evidence"]
    assert c1["verdict"] == "holds"
    for run in c1["evidence"]["runs"].values():
        assert min(run["C_prime_in_ball"]) > 100 and run["status"] == "violated"


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    """A tfds data folder with a tiny fake MNIST and CIFAR-10 (array_record)."""
    root = tmp_path_factory.mktemp("tfds")
    dl = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    for builder in (FakeMnist, FakeCifar10):
        builder(data_dir=str(root), file_format="array_record").download_and_prepare(
            download_config=dl
        )
    return str(root)


def test_paper_profile_reads_tfds(tfds_dir):
    """The paper loader path: no data folder fails at once; tfds data is read and trained on."""
    paper = STUDY.get_config("paper")
    for kind in ("mlp", "cnn", "wrn", "wrn_bn"):
        run = next(r for r in expand(paper) if r.network.kind == kind)
        with pytest.raises(data.DataUnavailableError):
            STUDY.execute(run, lambda done, total: None)
    x, y, name = load_data("cifar10", tfds_dir, 10, 8)  # the CNN's and WRN's data
    assert (x.shape, y.shape, name[:10]) == ((10, 4, 4, 3), (10, 10), "CIFAR-10: ")
    tiny = ["n_train=10", "seeds=0", "ngd_lrs=1", "gd_lr_fractions=0.5", "ngd_steps=1",
            "gd_steps=1", "num_checkpoints=1", "pool=8", "mlp_depths=1", "mlp_widths=1",
            "mlp_parameterizations=ntk", "cnn_widths=", "wrn_ks=", "wrn_bn_ks="]  # fmt: skip
    config = runner.prepare_config(STUDY, "paper", tiny, data_dir=tfds_dir)
    (run,) = expand(config)
    m = STUDY.execute(run, lambda done, total: None)
    assert m["data"] == "MNIST: 10 class-balanced training images, 8x8-average-pooled to 3x3"
    assert (m["n"], m["k"], m["num_params"]) == (10, 10, 9 * 1 + 1 + 1 * 10 + 10)
    assert np.shape(m["ngd"]["loss"]) == (1, 1, 2) and np.shape(m["gd"]["loss"]) == (1, 2)


def test_batchnorm_wrn_runs_beside_its_twin_with_its_own_kernel_as_the_reference():
    """The practical network: trained by NGD, GD and Adam in BatchNorm's training mode."""
    tiny = ["mlp_widths=", "cnn_widths=", "wrn_ks=1", "wrn_bn_ks=1", "seeds=0,1",
            "conv_n_train=6", "conv_pool=7", "ngd_steps=2", "conv_gd_steps=4", "adam_steps=4",
            "num_checkpoints=2", "jacobian_norm=lanczos", "lanczos_iters=8"]  # fmt: skip
    config = runner.prepare_config(STUDY, "smoke", tiny)
    twin, bn = expand(config)
    assert (twin.network.kind, bn.network.kind, bn.network.parameterization) == (
        "wrn", "wrn_bn", "standard",
    )  # fmt: skip
    with jax.numpy_dtype_promotion("standard"):  # flax's BatchNorm promotes float64 with float32
        m = STUDY.execute(bn, lambda done, total: None)
    assert m["name"] == "wrn-bn-10-1" and m["kernel_reference"].startswith("empirical NTK")
    assert m["jacobian_norm"] == "lanczos" and (m["n"], m["k"]) == (6, 10)
    assert np.shape(m["gd"]["loss"]) == (2, 5) and np.shape(m["adam"]["loss"]) == (2, 5)
    # The kernel-regime reference is the seeds' mean output-averaged K₀: λ_min is concave
    # on symmetric matrices, so its λ_min is at least the smallest of the seeds' own.
    assert min(m["lambda_min_avg"]) <= m["lambda_min_inf"] * (1 + 1e-6)
    assert np.all(np.isfinite(np.asarray(m["ngd"]["c_prime"], float)))
