"""The kernels study (C5): its helpers against independent references, and a smoke run."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import models
from ntk_limits.kernels import empirical_ntk_fn, kernel_alignment
from ntk_limits_experiments import registry, runner
from ntk_limits_experiments.kernels import plots, study
from ntk_limits_experiments.kernels.params import compile_jit, draw_params, leaf_scales

_TINY = [
    (lambda p: models.mlp(8, depth=2, out_dim=1, parameterization=p, W_std=1.3, b_std=0.2),
     (-1, 5), (1.3, 0.2)),
    (lambda p: models.cnn(4, depth=2, out_dim=1, parameterization=p, W_std=1.3, b_std=0.2),
     (-1, 6, 6, 2), (1.3, 0.2)),
    pytest.param(lambda p: models.wide_resnet(10, k=1, out_dim=1, parameterization=p),
                 (-1, 8, 8, 1), (1.0, 0.0), marks=pytest.mark.slow),  # ~10 s of init compiles
]  # fmt: skip


@pytest.mark.parametrize(("make", "shape", "stds"), _TINY, ids=["mlp", "cnn", "wrn"])
def test_leaf_scales_turn_ntk_init_into_standard_init_exactly(make, shape, stds):
    key = jax.random.key(3, impl="unsafe_rbg")  # compiles fastest; both inits share the key
    ntk_leaves = jax.tree_util.tree_leaves(make("ntk").init_fn(key, shape)[1])
    sp_params = make("standard").init_fn(key, shape)[1]
    scales = leaf_scales(sp_params, "standard", *stds)
    assert leaf_scales(sp_params, "ntk", *stds) == [1.0] * len(ntk_leaves)
    for c, a, b in zip(scales, ntk_leaves, jax.tree_util.tree_leaves(sp_params), strict=True):
        # stax draws the same normals for both parametrizations and multiplies by one float
        np.testing.assert_allclose(c * np.asarray(a), np.asarray(b), rtol=1e-6, atol=0)


def test_draw_params_matches_init_distribution():
    arch = models.mlp(64, depth=1, out_dim=1, parameterization="standard", W_std=1.5, b_std=0.3)
    params = jax.jit(draw_params(arch, (-1, 200), 1.5, 0.3))(jax.random.key(0))
    ref = jax.eval_shape(lambda k: arch.init_fn(k, (-1, 200))[1], jax.random.key(0))
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(ref)
    expected = [1.5 / np.sqrt(200), 0.3, 1.5 / np.sqrt(64), 0.3]
    for leaf, sd in zip(jax.tree_util.tree_leaves(params), expected, strict=True):
        n = leaf.size
        # sample sd of n normals has standard error sd/sqrt(2n); allow 5 of them (+ n=1 bias)
        tol = 5 / np.sqrt(2 * n) if n > 1 else 4.0
        assert abs(np.sqrt(np.mean(np.square(leaf))) / sd - 1) < tol


def test_empirical_ntks_match_the_reference_algorithm():
    x = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(6, 5)
    arch = models.mlp(16, depth=2, out_dim=1, parameterization="standard", W_std=1.3, b_std=0.2)
    got = study.empirical_ntks(arch, x, [0, 3], 1.3, 0.2)
    draw = draw_params(arch, (-1, 5), 1.3, 0.2)
    ref_fn = empirical_ntk_fn(arch.apply_fn, algorithm="reference")
    keys = jax.vmap(jax.random.key)(jnp.array([0, 3], jnp.uint32))
    want = jax.jit(jax.vmap(lambda k: ref_fn(jnp.asarray(x), None, draw(k))))(keys)
    # float32 sums over ~400 parameters in different orders
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_compile_jit_gives_the_same_numbers_at_both_optimisation_levels():
    f = lambda a: jnp.tanh(a @ a.T).sum(0)
    a = jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)
    cheap, full = compile_jit(f, (a,), 0.0), compile_jit(f, (a,), 1e12)
    np.testing.assert_allclose(cheap(a), full(a), rtol=1e-6)  # float32 round-off only
    np.testing.assert_allclose(full(a), f(a), rtol=1e-6)


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
        al = float(kernel_alignment(jnp.asarray(k_emp[s]), jnp.asarray(k_inf)))
        assert m["alignment"][s] == pytest.approx(al, rel=1e-5)  # float32 foundation version
        lam = np.linalg.eigvalsh(k_emp[s]).min() / np.linalg.eigvalsh(k_inf).min()
        assert m["lambda_min_ratio"][s] == pytest.approx(lam, rel=1e-10)


def _records(slope: float, widths=(32, 128, 512), arch="mlp"):
    rng = np.random.default_rng(0)
    out = []
    for w in widths:
        err = (w**slope) * np.exp(0.01 * rng.normal(size=4))
        metrics = {"hidden_width": w, "rel_error": err.tolist(), "alignment": [0.99] * 4,
                   "lambda_min_ratio": [1.0] * 4, "data": "synthetic"}  # fmt: skip
        spec = {"arch": arch, "parameterization": "ntk", "width": w}
        out.append({"spec": spec, "metrics": metrics, "status": "ok"})
    return out


@pytest.mark.parametrize(
    ("slope", "widths", "verdict"),
    [(-0.5, (32, 128, 512), "holds"), (-0.1, (32, 128, 512), "fails"),
     (-1.0, (32, 128, 512), "fails"), (-0.5, (32, 128), "inconclusive")],
)  # fmt: skip
def test_c5_rule(slope, widths, verdict):
    v = plots.c5_verdict(plots.slopes(plots.group_records(_records(slope, widths))), -0.8, -0.3)
    assert v.claim == "C5" and v.verdict == verdict
    fitted = v.evidence["MLP NTP"]["slope"]
    assert fitted == pytest.approx(slope, abs=0.03)  # 1 % multiplicative noise on 2-3 points


def test_fit_loglog_slope_of_a_power_law():
    w = np.array([8.0, 64.0, 512.0])
    assert plots.fit_loglog_slope(w, 3.0 * w**-0.5) == pytest.approx(-0.5, abs=1e-12)


@pytest.mark.parametrize(
    ("override", "message"),
    [("mlp_widths=0,4", "mlp_widths must be"), ("parameterizations=mup", "parameterizations"),
     ("slope_lo=-0.1", "slope_lo must be below"), ("seeds=1,1", "distinct")],
)  # fmt: skip
def test_validate_rejects_bad_configs(override, message):
    with pytest.raises(ValueError, match=message):
        runner.prepare_config(study.STUDY, "smoke", [override])


def test_smoke_run_through_the_runner(tmp_path):
    assert study.STUDY.claims == registry.CLAIMS["kernels"] == ("C5",)
    cfg = runner.prepare_config(study.STUDY, "smoke")
    records = runner.run_study(study.STUDY, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert [r["status"] for r in records] == ["ok"] * len(records)
    out = tmp_path / "kernels"
    for name in ("kernel_error_vs_width.png", "kernel_alignment_lambda_min.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    summary = study.STUDY.summarize(cfg, records, out)
    (v,) = summary.verdicts
    assert v.claim == "C5" and v.verdict in ("holds", "fails", "inconclusive")
    assert v.rule and v.evidence and summary.text
    mlp = [np.sqrt(np.mean(np.square(r["metrics"]["rel_error"]))) for r in records[:3]]
    assert mlp[2] < mlp[0]  # widths 16 -> 256: the error falls ~4x, far beyond seed noise

    calls = []
    counting = study.STUDY._replace(execute=lambda s, p: calls.append(s))
    runner.run_study(counting, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert calls == []
