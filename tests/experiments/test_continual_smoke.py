"""Smoke test of the continual study (C4) end to end, and checks of its building blocks."""

import io
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models
from ntk_limits_experiments.continual import analysis, networks
from ntk_limits_experiments.continual.study import STUDY
from ntk_limits_experiments.study import Summary


def _train(apply_fn, params, opt, x, y, steps):
    """``steps`` full-batch steps of ``opt`` on cross-entropy, one compiled loop."""
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()

    def step(_, carry):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    return jax.jit(lambda p: jax.lax.fori_loop(0, steps, step, (p, opt.init(p)))[0])(params)


def test_ntk_parametrization_is_standard_network_with_per_layer_learning_rates():
    x = jax.random.normal(jax.random.key(0), (12, 5))
    y = jnp.arange(12) % 3
    ntp = models.mlp(16, 2, 3, parameterization="ntk")
    sp = models.mlp(16, 2, 3, parameterization="standard")
    theta = jax.jit(lambda k: ntp.init_fn(k, (-1, 5))[1])(jax.random.key(1))
    mult = networks.layer_multipliers(theta, *networks.STDS["mlp"])
    theta_sp = jax.tree.map(lambda w, a: a * w, theta, mult)
    lrs = networks.member_learning_rates(mult, "ntk", 0.5)
    a = _train(ntp.apply_fn, theta, optax.sgd(0.5), x, y, 5)
    b = _train(sp.apply_fn, theta_sp, networks.per_leaf_sgd(lrs), x, y, 5)
    # the same SGD in two coordinate systems: equal up to float32 rounding
    np.testing.assert_allclose(ntp.apply_fn(a, x), sp.apply_fn(b, x), rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(ntp.apply_fn(a, x) - ntp.apply_fn(theta, x)))) > 1e-2
    members = {"standard": sp, "ntk": ntp}
    kernel = jax.jit(networks._member_kernel(members, mult, jnp.array(True), x[:4]))(theta_sp)
    ref_fn = kernels.empirical_ntk_fn(ntp.apply_fn, algorithm="reference")
    ref = jax.jit(lambda p: ref_fn(x[:4], None, p))(theta)
    np.testing.assert_allclose(kernel, ref, rtol=1e-4)  # float32 kernels, two algorithms


def test_layer_multipliers_match_conv_fan_in_and_wide_resnet_tree():
    x = jax.random.normal(jax.random.key(2), (2, 6, 6, 3))
    ntp = models.cnn(4, 1, 2, parameterization="ntk")
    sp = models.cnn(4, 1, 2, parameterization="standard")
    theta = jax.jit(lambda k: ntp.init_fn(k, (-1, 6, 6, 3))[1])(jax.random.key(3))
    mult = networks.layer_multipliers(theta, *networks.STDS["mlp"])  # models.cnn defaults
    theta_sp = jax.tree.map(lambda w, a: a * w, theta, mult)
    # stax standard conv scales by W_std/sqrt(3*3*C_in): float32 rounding only
    np.testing.assert_allclose(ntp.apply_fn(theta, x), sp.apply_fn(theta_sp, x), rtol=1e-5)
    wrn = models.wide_resnet(10, 1, 4)
    shapes = jax.eval_shape(lambda k: wrn.init_fn(k, (-1, 8, 8, 3))[1], jax.random.key(4))
    wrn_mult = networks.layer_multipliers(shapes, *networks.STDS["wrn"])
    assert jax.tree.structure(wrn_mult) == jax.tree.structure(shapes)
    assert sorted(set(jax.tree.leaves(wrn_mult)))[:2] == [0.0, 1 / math.sqrt(3 * 3 * 64)]


def _fake_records(under_slopes, trained_slopes, widths=(32, 64, 128)):
    """Records whose forgetting is exactly slope·log2(w) + seed offset, per seed."""
    spec = {
        "kind": "finite",
        "benchmark": "b",
        "seeds": [0, 1, 2],
        "settings": [[1, 2.0], [9, 0.99]],
    }
    records = []
    for w in widths:
        forget = [[s * math.log2(w) + 0.1 * i for i, s in enumerate(slopes)]
                  for slopes in (under_slopes, trained_slopes)]  # fmt: skip
        ones = [[[1.0] * 2] * 3] * 2
        par = {"forgetting": forget, "average_accuracy": forget, "learning_accuracy": forget,
               "train_accuracy": ones, "epochs": ones, "kernel_drift": ones}  # fmt: skip
        metrics = {"settings": ["1 epoch", "until"], "parameterizations": {"standard": par}}
        records.append({"spec": {**spec, "width": w}, "metrics": metrics, "status": "ok"})
    return records


@pytest.mark.parametrize(
    "under, trained, expected",
    [
        ([-0.05, -0.06, -0.04], [0.01, -0.01, 0.0], "holds"),
        ([-0.05, -0.06, -0.04], [-0.05, -0.06, -0.04], "fails"),
        ([0.01, -0.01, 0.0], [0.02, -0.01, 0.0], "inconclusive"),
    ],
)
def test_verdict_rule_on_synthetic_slopes(under, trained, expected):
    config = {"slope_sigmas": 2.0, "verdict_parameterization": "standard"}
    slopes = analysis.slopes(analysis.frame(_fake_records(under, trained)))
    got = slopes.sort_values("setting_index")["slope"].to_numpy()
    np.testing.assert_allclose(got, [np.mean(under), np.mean(trained)], atol=1e-12)  # exact fit
    assert analysis.verdict(slopes, config).verdict == expected


def test_validate_rejects_bad_configs():
    good = STUDY.get_config("smoke")
    STUDY.validate(good)
    bad_values = [("widths", [0, 8]), ("lr_standard", float("nan")), ("seeds", [0]),
                  ("benchmarks", ["nope"]), ("linearized_widths", [3]), ("epochs", [])]  # fmt: skip
    for key, bad in bad_values:
        with pytest.raises(ValueError, match="allowed"):
            STUDY.validate({**good, key: bad})


def test_smoke_end_to_end_through_runner(tmp_path):
    from ntk_limits_experiments.runner import prepare_config, run_study

    config = prepare_config(STUDY, "smoke")
    records = run_study(STUDY, config, tmp_path, profile="smoke", out=io.StringIO())
    assert [r["status"] for r in records] == ["ok"] * len(STUDY.expand(config))
    summary = json.loads((tmp_path / "continual" / "summary.json").read_text())
    assert len(summary["figures"]) == 4
    for fig in summary["figures"]:
        assert (tmp_path / fig).stat().st_size > 1000
    (verdict,) = summary["verdicts"]
    assert verdict["claim"] == "C4" and verdict["verdict"] in ("holds", "fails", "inconclusive")
    assert "split_digits.undertrained.slope" in verdict["evidence"]
    assert {"continual: forgetting vs width", "continual: finite vs linearised vs infinite"} <= set(
        summary["tables"]
    )
    # the study's functions called directly agree with what the runner stored
    again = STUDY.execute(records[-1]["spec"], lambda done, total: None)
    np.testing.assert_allclose(again["forgetting"], records[-1]["metrics"]["forgetting"], atol=1e-6)
    direct = STUDY.summarize(config, records, tmp_path / "direct")
    assert isinstance(direct, Summary) and all(p.exists() for p in direct.figures)
    m = records[0]["metrics"]["parameterizations"]["standard"]
    assert np.asarray(m["accuracy"]).shape == (2, 2, 5, 5)  # settings, seeds, T, T
