"""Marginal likelihood of the linearised model: against scipy's Gaussian density."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from ntk_limits import bandits as B

T = 16


def _gram(rng, n, d=5):
    x = rng.normal(size=(n, d))
    return np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1)) + 0.1 * x @ x.T


def test_log_evidence_matches_scipy_gaussian(x64, jit):
    rng = np.random.default_rng(3)
    gram = _gram(rng, T)
    n, lam, ridge = 11, 2.5, 0.2
    y = rng.normal(size=T)
    got = jit(B.log_evidence)(jnp.asarray(gram), jnp.asarray(y), jnp.int32(n), lam, ridge)
    cov = (gram[:n, :n] + ridge * np.eye(n)) / lam  # K/λ + σ² I with σ² = ρ/λ
    ref = scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(y[:n])
    np.testing.assert_allclose(float(got), ref, rtol=1e-11)  # two float64 Cholesky paths


def test_evidence_optimum_matches_brute_force_grid(x64, jit):
    rng = np.random.default_rng(4)
    gram = _gram(rng, T)
    n = 12
    y = np.sin(np.arange(float(T))) + 0.3 * rng.normal(size=T)
    log_ridges = np.linspace(math.log(1e-3), math.log(10.0), 31)
    log_lams = np.linspace(math.log(1e-2), math.log(1e2), 161)
    # Brute force: the exact Gaussian log density on the 2-D grid (scipy). y ~ N(0, A/λ)
    # iff √λ y ~ N(0, A), so log p(y) = log N(√λ y; 0, A) + (n/2) log λ: one scipy
    # density per ridge, evaluated at every λ.
    lams = np.exp(log_lams)
    brute = np.array(
        [
            scipy.stats.multivariate_normal(
                np.zeros(n), gram[:n, :n] + math.exp(r) * np.eye(n)
            ).logpdf(np.sqrt(lams)[:, None] * y[None, :n])
            + 0.5 * n * log_lams
            for r in log_ridges
        ]
    )
    i, j = np.unravel_index(np.argmax(brute), brute.shape)
    fit = jit(B.tune_evidence)(gram, y, jnp.int32(n), log_ridges)
    assert float(fit.log_ridge) == pytest.approx(log_ridges[i], abs=1e-12)
    # λ* is closed-form; the brute-force λ grid has spacing h = 0.0576 in log λ, so the
    # grid argmax is within h/2 of it.
    assert float(fit.log_prior_precision) == pytest.approx(log_lams[j], abs=0.029)
    # The closed-form λ can only improve on the grid, by at most the curvature n/2 (in
    # log λ) times (h/2)²/2 = 2.5e-3.
    assert brute.max() <= float(fit.log_evidence) <= brute.max() + 3e-3
    np.testing.assert_allclose(fit.curve, brute.max(axis=1), atol=3e-3)
    # The padded spectrum path agrees with the dense Cholesky path at the optimum.
    dense = jit(B.log_evidence)(
        gram, y, jnp.int32(n), jnp.exp(fit.log_prior_precision), jnp.exp(fit.log_ridge)
    )
    np.testing.assert_allclose(float(dense), float(fit.log_evidence), rtol=1e-10)


def test_linearized_targets_of_a_linear_model_are_prior_residuals(x64):
    rng = np.random.default_rng(5)
    x, y = jnp.asarray(rng.normal(size=(6, 3))), jnp.asarray(rng.normal(size=6))
    apply_fn = lambda p, x: (x @ p["w"])[:, None]
    p0, p = {"w": jnp.asarray(rng.normal(size=3))}, {"w": jnp.asarray(rng.normal(size=3))}
    # f_lin(x; θ₀) of a linear model is the model at θ₀ itself.
    np.testing.assert_allclose(
        B.linearized_targets(apply_fn, p, p0, x, y), y - x @ p0["w"], rtol=1e-12
    )
