"""The teaser: its helpers against independent references, and a smoke run."""

import dataclasses
import io

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import multivariate_normal

from ntk_limits import models
from ntk_limits_experiments import claims, runner
from ntk_limits_experiments.teaser import study


def _psd(n, seed=0):
    a = np.random.default_rng(seed).normal(size=(n, n + 2))
    return a @ a.T / n + 0.1 * np.eye(n)


def test_laplace_predictive_against_the_gp_formulas_in_float64():
    n, g = 5, 4
    k = _psd(n + g)
    g_all = np.random.default_rng(1).normal(size=(n + g, 1))
    y = np.random.default_rng(2).normal(size=(n, 1))
    mean, sd = study.laplace_predictive(
        jnp.asarray(k, jnp.float32), jnp.asarray(g_all, jnp.float32), jnp.asarray(y, jnp.float32),
        0.3,
    )  # fmt: skip
    a = k[:n, :n] + 0.3 * np.eye(n)
    want_mean = g_all[n:, 0] + k[n:, :n] @ np.linalg.solve(a, y[:, 0] - g_all[:n, 0])
    want_var = np.diag(k[n:, n:] - k[n:, :n] @ np.linalg.solve(a, k[:n, n:]))
    # float32 Cholesky of a well-conditioned 5x5 system
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(np.square(sd), want_var, rtol=1e-4, atol=1e-5)


def test_fit_noise_maximises_the_marginal_likelihood():
    k = _psd(8, seed=3)
    y = np.random.default_rng(4).normal(size=(8, 1))
    grid = np.geomspace(1e-2, 10.0, 31)
    lml = [multivariate_normal(np.zeros(8), k + s * np.eye(8)).logpdf(y[:, 0]) for s in grid]
    assert study.fit_noise(k, y, grid) == grid[int(np.argmax(lml))]  # exact: same grid point


def test_load_data_is_offline_standardised_and_deterministic():
    x, y, grid = study.load_data(30, 0, 11, 1.0)
    assert x.shape == y.shape == (30, 1) and grid.shape == (11, 1) and x.dtype == np.float32
    assert grid[0, 0] < x.min() and grid[-1, 0] > x.max()
    np.testing.assert_array_equal(x, study.load_data.__wrapped__(30, 0, 11, 1.0)[0])


@pytest.mark.parametrize(
    ("override", "message"),
    [("widths=0,4", "widths must be"), ("lr_fraction=1.5", "lr_fraction"),
     ("n_train=1000", "n_train"), ("noise_var=-1", "noise_var")],
)  # fmt: skip
def test_validate_rejects_bad_configs(override, message):
    with pytest.raises(ValueError, match=message):
        runner.prepare_config(study.STUDY, "smoke", [override])


def test_expand_puts_the_infinite_reference_first_with_the_same_architecture():
    cfg = runner.prepare_config(study.STUDY, "smoke", ["depth=2", "b_std=0.5"])
    first, *finite = study.expand(cfg)
    assert first.infinite and first.seeds == () and [s.network.width for s in finite] == [16, 256]
    same = {dataclasses.replace(s.network, width=1) for s in (first, *finite)}
    assert same == {models.Network("mlp", 1, 2, 1, "ntk", "relu", cfg.W_std, 0.5)}
    assert {s.problem for s in finite} == {first.problem} == {cfg.problem}


def test_smoke_run_through_the_runner(tmp_path):
    assert claims.of_study("teaser") == ()
    cfg = runner.prepare_config(study.STUDY, "smoke")
    records = runner.run_study(study.STUDY, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert [r["status"] for r in records] == ["ok"] * (1 + len(cfg.widths))
    out = tmp_path / "teaser"
    for name in ("teaser_predictive.png", "teaser_distance_vs_width.png", "summary.json"):
        assert (out / name).stat().st_size > 0
    inf = records[0]["metrics"]
    assert len(inf["mean"]) == len(inf["sd"]) == cfg.num_grid and inf["noise_var"] > 0
    for r in records[1:]:
        d = np.asarray(r["metrics"]["mean_distance"] + r["metrics"]["sd_distance"])
        assert d.shape == (2 * len(cfg.seeds),) and np.all(np.isfinite(d)) and np.all(d > 0)
    summary = study.STUDY.summarize(cfg, records, out)
    assert summary.verdicts == [] and "distance to infinite width" in summary.tables

    calls = []
    counting = study.STUDY._replace(execute=lambda s, p: calls.append(s))
    runner.run_study(counting, cfg, tmp_path, profile="smoke", out=io.StringIO())
    assert calls == []
