"""The kernels study (C5): its helpers against independent references, and a smoke run."""

import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import models
from ntk_limits.kernels import empirical_ntk_fn
from ntk_limits_experiments import claims, runner, store
from ntk_limits_experiments.kernels import analysis, study
from ntk_limits_experiments.kernels import verdict as c5


def test_empirical_ntks_match_the_reference_algorithm():
    x = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(6, 5)
    arch = models.mlp(16, depth=2, out_dim=1, parameterization="standard", W_std=1.3, b_std=0.2)
    got = study.empirical_ntks(arch, x, [0, 3])
    draw = models.init_sampler(arch, (-1, 5))
    ref_fn = empirical_ntk_fn(arch.apply_fn, algorithm="reference")
    keys = jax.vmap(jax.random.key)(jnp.array([0, 3], jnp.uint32))
    want = jax.jit(jax.vmap(lambda k: ref_fn(jnp.asarray(x), None, draw(k))))(keys)
    # float32 sums over ~400 parameters in different orders
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_kernel_metrics_against_direct_formulas():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 7))
    k_inf = a @ a.T + np.eye(5)
    k_emp = np.stack([k_inf + 0.1 * (e @ e.T) for e in rng.normal(size=(3, 5, 2))])
    m = study.kernel_metrics(k_emp, k_inf)
    for s in range(3):
        diff = sum((k_emp[s, i, j] - k_inf[i, j]) ** 2 for i in range(5) for j in range(5))
        ref = np.sqrt(diff / np.sum(k_inf**2))
        assert m["rel_error"][s] == pytest.approx(ref, rel=1e-12)  # float64 both ways
        al = np.sum(k_emp[s] * k_inf) / (np.linalg.norm(k_emp[s]) * np.linalg.norm(k_inf))
        assert m["alignment"][s] == pytest.approx(al, rel=1e-12)  # float64 both ways
        lam = np.linalg.eigvalsh(k_emp[s]).min() / np.linalg.eigvalsh(k_inf).min()
        assert m["lambda_min_ratio"][s] == pytest.approx(lam, rel=1e-10)


def test_fit_loglog_slope_of_a_power_law():
    w = np.array([8.0, 64.0, 512.0])
    assert analysis.fit_loglog_slope(w, 3.0 * w**-0.5) == pytest.approx(-0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("override", "message"),
    [("mlp_widths=0,4", "mlp_widths must be"), ("parameterizations=mup", "parameterizations"),
     ("c5_margin=0.5", "c5_margin must be"), ("seeds=1,1", "distinct"),
     ("wrn_depth=12", r"wrn_depth must be 6n\+4"), ("mlp_widths=;cnn_widths=", "no width to run")],
)  # fmt: skip
def test_validate_rejects_bad_configs(override, message):
    with pytest.raises(ValueError, match=message):
        runner.prepare_config(study.STUDY, "smoke", override.split(";"))


def test_expand_gives_one_typed_network_per_run():
    cfg = runner.prepare_config(study.STUDY, "embedded", ["wrn_ks=2", "parameterizations=standard"])
    specs = study.expand(cfg)
    nets = [s.network for s in specs]
    assert [(n.kind, n.width) for n in nets] == [
        ("mlp", 32), ("mlp", 128), ("mlp", 512), ("mlp", 2048), ("cnn", 8), ("cnn", 32),
        ("cnn", 128), ("wrn", 2),
    ]  # fmt: skip
    assert {n.parameterization for n in nets} == {"standard"} and nets[-1].hidden_width == 32
    assert nets[0].W_std == cfg.W_std and (nets[-1].W_std, nets[-1].b_std) == (1.0, 0.0)
    assert len(set(specs)) == len(specs)  # hashable and distinct: each is its own cache key
    assert [s.inputs.flatten for s in specs] == [True] * 4 + [False] * 4


def test_smoke_run_through_the_runner(tmp_path):
    cfg = runner.prepare_config(study.STUDY, "smoke")
    records = runner.run_study(study.STUDY, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert [r["status"] for r in records] == ["ok"] * len(records)
    out = tmp_path / "kernels"
    for name in ("kernel_error_vs_width.png", "kernel_alignment_lambda_min.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = study.STUDY.summarize(cfg, records, out)
    (v,) = summary.verdicts
    assert (v.claim,) == claims.of_study("kernels") and v.rule and summary.text
    # the stored evidence is the rule applied to the stored runs, group by group
    groups = analysis.group_records(records)
    again = c5.evidence_c5(groups, **study.verdict_choices(cfg))
    assert again.pop("decision") == v.verdict
    assert json.loads(json.dumps(store.to_jsonable(again))) == json.loads(
        json.dumps(store.to_jsonable(v.evidence))
    )
    mlp = v.evidence["MLP NTP"]
    want = [np.sqrt(np.mean(np.square(r["metrics"]["rel_error"]))) for r in records[:3]]
    np.testing.assert_allclose(mlp["rms_rel_error"], want, rtol=1e-12)
    assert mlp["widths"] == [16, 64, 256] and mlp["slope_5"] <= mlp["slope"] <= mlp["slope_95"]
    assert mlp["rms_rel_error"][2] < mlp["rms_rel_error"][0]  # 16 -> 256: ~4x, beyond noise
    assert v.evidence["CNN NTP"]["call"] == "undecided"  # one CNN width: no slope
    assert v.verdict == "inconclusive" and "CNN NTP" in v.evidence["inconclusive_reason"]
    assert set(v.robustness["alternatives"]) == {
        "without seed 0", "without seed 1", "without seed 2", "margin 0.2 (stricter)",
        "margin 0.3 (looser)", "widest width dropped",
    }  # fmt: skip

    calls = []
    counting = study.STUDY._replace(execute=lambda s, p: calls.append(s))
    runner.run_study(counting, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert calls == []
