"""The continual study (C4) end to end through the runner, and checks of its building blocks."""

import functools
import io
import json
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models
from ntk_limits_experiments import claims, common, runner, store
from ntk_limits_experiments.config import PROFILES, apply_overrides
from ntk_limits_experiments.continual import analysis, networks
from ntk_limits_experiments.continual import verdict as c4
from ntk_limits_experiments.continual.config import KernelRun, NetworkRun
from ntk_limits_experiments.continual.study import STUDY
from ntk_limits_experiments.study import Summary

# The smoke profile is the smallest config that still takes every path: two widths (a
# slope), both parametrisations, a fixed-epochs and a train-until setting, a linearised
# run, and an infinite-width run on a subset of each task (kernel_max_train) with a finite
# and an infinite training time. Its programs compile unoptimised (common.compile_jit).
# Unoptimised CPU programs for the building-block checks too: about 3x faster to compile.
jit = functools.partial(jax.jit, compiler_options=common.cpu_compile_options())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """``(config, records, workdir)`` of one smoke run through the runner."""
    workdir = tmp_path_factory.mktemp("continual")
    config = runner.prepare_config(STUDY, "smoke")
    records = runner.run_study(STUDY, config, workdir, profile="smoke", out=io.StringIO())
    return config, records, workdir


def test_smoke_runs_are_ok_and_metrics_well_formed(smoke):
    config, records, _ = smoke
    specs = STUDY.expand(config)
    assert [r["status"] for r in records] == ["ok"] * len(specs) == ["ok"] * 4
    assert [type(s) for s in specs] == [NetworkRun, NetworkRun, NetworkRun, KernelRun]
    assert [s.network.width for s in specs[:2]] == list(config.widths)
    m = records[0]["metrics"]
    seeds, settings = len(config.seeds), len(config.settings)
    for par in config.parameterizations:
        d = m["parameterizations"][par]
        assert np.shape(d["accuracy"]) == (settings, seeds, 5, 5)  # 5 split-digits tasks
        assert np.shape(d["kernel_drift"]) == (settings, seeds, 5)
        assert np.all(np.asarray(d["kernel_drift"]) > 0)
        until = np.asarray(d["epochs"][-1])
        assert np.all(np.asarray(d["epochs"][0]) == 1) and np.all(until >= 1)
        assert np.all(until <= config.max_epochs)
    assert "kernel_drift" not in records[2]["metrics"]["parameterizations"]["ntk"]
    inf = records[3]["metrics"]
    assert inf["labels"] == ["t=10", "t=∞"] and inf["n_train_per_task"] == 20
    assert np.shape(inf["accuracy"]) == (2, 5, 5)
    np.testing.assert_array_equal(inf["train_accuracy"][-1], 1.0)  # converged: interpolates
    assert inf["solve_dtype"] == "float64" and len(inf["float32_accuracy_change"]) == 2
    assert all(0 <= c <= 1 for c in inf["float32_accuracy_change"])


def test_smoke_summary_decides_the_study_claims(smoke):
    _, _, workdir = smoke
    summary = json.loads((workdir / "continual" / "summary.json").read_text())
    assert len(summary["figures"]) == 4
    for fig in summary["figures"]:
        assert (workdir / fig).stat().st_size > 1000
    assert tuple(v["claim"] for v in summary["verdicts"]) == claims.of_study("continual")
    (verdict,) = summary["verdicts"]
    assert verdict["statement"] == claims.CLAIMS["C4"].statement
    # the stored evidence is the rule applied to the stored runs, slope by slope
    config, records, _ = smoke
    df = analysis.frame(records)
    choices = analysis.verdict_choices(config)
    again = c4.evidence_c4(df, **choices)
    assert verdict["verdict"] == again.pop("decision") == c4.decide_c4(df, **choices)
    assert json.loads(json.dumps(store.to_jsonable(again))) == verdict["evidence"]
    for par in config.parameterizations:
        e = verdict["evidence"]["split_digits"][par]
        for i, name in enumerate(("undertrained", "trained")):
            f = df[(df.kind == "finite") & (df.parameterization == par) & (df.setting_index == i)]
            table = f.pivot(index="seed", columns="width", values="forgetting")
            by_hand = np.diff(table.to_numpy(), axis=1)[:, 0] / np.log2(16 / 8)  # two widths
            np.testing.assert_allclose(e[name]["per_seed_slopes"], by_hand, rtol=1e-9)
        assert e["trained"]["reached_target"] >= 0 and e["margin"] > 0
    assert verdict["robustness"]["total"] == len(config.seeds) + 2 + 4 + 1
    assert {"without seed 0", "standard only", "widest width dropped"} <= set(
        verdict["robustness"]["alternatives"]
    )
    assert set(summary["tables"]) == {
        "continual: forgetting vs width",
        "continual: average accuracy vs width",
        "continual: finite vs linearised vs infinite",
        "continual: forgetting slope vs log2 width",
    }


def test_execute_and_summarize_called_directly_agree_with_the_runner(smoke, tmp_path):
    config, records, _ = smoke
    spec = STUDY.expand(config)[-1]
    again = STUDY.execute(spec, lambda done, total: None)
    np.testing.assert_allclose(again["forgetting"], records[-1]["metrics"]["forgetting"], atol=1e-6)
    direct = STUDY.summarize(config, records, tmp_path)
    assert isinstance(direct, Summary) and all(p.exists() for p in direct.figures)
    assert [v.verdict for v in direct.verdicts] == [
        json.loads((smoke[2] / "continual" / "summary.json").read_text())["verdicts"][0]["verdict"]
    ]


def _train(apply_fn, params, opt, x, y, steps):
    """``steps`` full-batch steps of ``opt`` on cross-entropy, one compiled loop."""
    loss = lambda p: optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, x), y).mean()

    def step(_, carry):
        params, state = carry
        updates, state = opt.update(jax.grad(loss)(params), state, params)
        return optax.apply_updates(params, updates), state

    return jit(lambda p: jax.lax.fori_loop(0, steps, step, (p, opt.init(p)))[0])(params)


def test_ntk_parametrization_is_standard_network_with_per_layer_learning_rates():
    x = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)  # numpy: no compile
    y = np.arange(12, dtype=np.int32) % 3
    archs = networks.both_parameterizations(models.Network("mlp", 16, 2, 3, "standard"))
    ntp, sp = archs["ntk"], archs["standard"]
    assert ntp.network.W_std == sp.network.W_std == math.sqrt(2.0)
    theta = jit(lambda k: ntp.init_fn(k, (-1, 5))[1])(jax.random.key(1))
    mult = models.fan_in_scales(theta, sp.network.W_std, sp.network.b_std)
    theta_sp = jax.tree.map(lambda w, a: a * w, theta, mult)
    lrs = networks.member_learning_rates(mult, "ntk", 0.5)
    a = _train(ntp.apply_fn, theta, optax.sgd(0.5), x, y, 5)
    b = _train(sp.apply_fn, theta_sp, networks.per_leaf_sgd(lrs), x, y, 5)
    # the same SGD in two coordinate systems: equal up to float32 rounding
    np.testing.assert_allclose(ntp.apply_fn(a, x), sp.apply_fn(b, x), rtol=1e-4, atol=1e-5)
    assert float(jnp.max(jnp.abs(ntp.apply_fn(a, x) - ntp.apply_fn(theta, x)))) > 1e-2
    kernel = jit(networks._member_kernel(archs, mult, jnp.array(True), x[:4]))(theta_sp)
    ref_fn = kernels.empirical_ntk_fn(ntp.apply_fn, algorithm="reference")
    ref = jit(lambda p: ref_fn(x[:4], None, p))(theta)
    np.testing.assert_allclose(kernel, ref, rtol=1e-4)  # float32 kernels, two algorithms


def test_fan_in_scales_give_learning_rates_for_every_wide_resnet_leaf():
    net = models.Network("wrn", 1, 10, 4, "standard")
    arch = models.build(net)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, 8, 8, 3))[1], jax.random.key(4))
    scales = models.fan_in_scales(shapes, net.W_std, net.b_std)
    lrs = networks.member_learning_rates(scales, "ntk", 2.0)
    assert jax.tree.structure(lrs) == jax.tree.structure(shapes)  # one rate per leaf
    fan_ins = {math.prod(s.shape[:-1]) for s in jax.tree.leaves(shapes)} - {1}  # biases: 1
    assert fan_ins == {3 * 3 * 3, 3 * 3 * 16, 3 * 3 * 32, 3 * 3 * 64, 64}  # convs, readout
    want = {0.0} | {np.float32(2.0 / f) for f in fan_ins}  # biases (b_std 0), lr·W_std²/fan_in
    assert set(jax.tree.leaves(lrs)) == want
    sgd = networks.member_learning_rates(scales, "standard", 2.0)
    assert set(jax.tree.leaves(sgd)) == {np.float32(2.0)}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("widths=0,8", "widths must be a list of integers, each >= 1"),
        ("lr_standard=nan", "is not finite"),
        ("seeds=0", "seeds=[0]; allowed: at least two distinct ints"),
        ("benchmarks=nope", "benchmarks ['nope'] unknown or empty; allowed: rotated_mnist5k"),
        ("linearized_widths=3", "linearized_widths=[3]; allowed: a subset of widths"),
        ("epochs=", "epochs is empty"),
        ("widths=8", "widths=[8]; allowed: two or more distinct values"),
        ("c4_reached_fraction=0.5", "c4_reached_fraction must be a finite number > 0.5"),
        ("wrn_depth=12", "wrn_depth=12; allowed: 6n+4"),
        ("target_accuracy=1.5", "target_accuracy must be a finite number > 0 and <= 1"),
        ("kernel_times=", "no kernel training time"),
    ],
)
def test_bad_overrides_are_rejected_in_one_line(override, message):
    good = STUDY.get_config("smoke")
    extra = {"kernel_times=": ["kernel_converged=false"]}.get(override, [])
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        apply_overrides(good, [*extra, override])
    assert "\n" not in str(info.value) and "allowed:" in str(info.value)


def test_profiles_expand_to_runs_of_their_networks():
    smoke, embedded, paper = (STUDY.get_config(p) for p in PROFILES)
    runs = STUDY.expand(embedded)
    assert len(STUDY.expand(smoke)) == 4 < len(runs) == 10
    for run in runs:  # depth-2 MLPs sized for the 10 classes of MNIST; NTP for the kernel run
        assert (run.network.kind, run.network.depth, run.network.out_dim) == ("mlp", 2, 10)
        assert run.network.parameterization == ("ntk" if run.kind == "infinite" else "standard")
    assert {r.network.width for r in runs if r.kind == "linearized"} == {64}
    assert paper.uses_wrn("split_cifar10") and not paper.uses_wrn("rotated_mnist")
