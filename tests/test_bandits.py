"""Bandit posterior linear algebra, evidence, exploration scales and regret accounting.

References are independent: numpy/scipy dense solves, closed forms, sums by hand.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg
import scipy.stats

from ntk_limits import bandits as B
from ntk_limits import data


def _gram(rng, n, d=5):
    x = rng.normal(size=(n, d))
    return np.exp(-0.5 * ((x[:, None] - x[None]) ** 2).sum(-1)) + 0.1 * x @ x.T, x


def test_dense_posterior_is_inverse_cholesky_padded(x64):
    rng = np.random.default_rng(0)
    gram, _ = _gram(rng, 12)
    n, ridge = 9, 0.3
    factor = B.dense_posterior(jnp.asarray(gram), jnp.int32(n), jnp.float64(ridge))
    ref = np.linalg.inv(np.linalg.cholesky(gram[:n, :n] + ridge * np.eye(n)))
    w = np.asarray(factor.winv)
    # float64 Cholesky + triangular inverse of a condition-~1e2 matrix: ~1e-13 error.
    np.testing.assert_allclose(w[:n, :n], ref, atol=1e-11)
    np.testing.assert_array_equal(w[n:, n:], np.eye(12 - n))
    np.testing.assert_array_equal(w[:n, n:], 0.0)
    np.testing.assert_array_equal(w[n:, :n], 0.0)
    log_det = np.linalg.slogdet(gram[:n, :n] + ridge * np.eye(n))[1]
    np.testing.assert_allclose(float(B.posterior_log_det(factor)), log_det, rtol=1e-12)


def test_incremental_posterior_equals_fresh_dense_solve_after_many_rounds(x64):
    rng = np.random.default_rng(1)
    size, ridge = 200, 1e-2
    gram, _ = _gram(rng, size)
    gram_j = jnp.asarray(gram)
    factor = B.empty_posterior(size, ridge, jnp.float64)
    step = jax.jit(B.incremental_posterior_update)
    for i in range(size):
        factor = step(factor, gram_j[i], gram_j[i, i])
    dense = B.dense_posterior(gram_j, jnp.int32(size), jnp.float64(ridge))
    # 200 bordered updates of a matrix with condition ~1e4 in float64: errors grow like
    # n * cond * eps ~ 1e-10; 1e-8 leaves margin and still catches any algebra slip.
    np.testing.assert_allclose(np.asarray(factor.winv), np.asarray(dense.winv), atol=1e-8)
    queries = jnp.asarray(rng.normal(size=(4, size)))
    np.testing.assert_allclose(
        B.posterior_reduction(factor, queries), B.posterior_reduction(dense, queries), rtol=1e-8
    )
    assert step._cache_size() == 1  # one compilation for every round


def test_posterior_mean_and_variance_match_gp_closed_form(x64):
    rng = np.random.default_rng(2)
    gram, _ = _gram(rng, 15)
    n, ridge = 10, 0.05
    y = rng.normal(size=15)
    factor = B.dense_posterior(jnp.asarray(gram), jnp.int32(n), jnp.float64(ridge))
    k_cross = gram[10:13]  # three "query" rows against the buffer
    a = gram[:n, :n] + ridge * np.eye(n)
    mean_ref = k_cross[:, :n] @ np.linalg.solve(a, y[:n])
    red_ref = np.einsum("qi,qi->q", k_cross[:, :n], np.linalg.solve(a, k_cross[:, :n].T).T)
    # float64 solves of a condition-~1e3 system.
    np.testing.assert_allclose(
        B.posterior_mean(factor, jnp.asarray(k_cross), jnp.asarray(y)), mean_ref, rtol=1e-10
    )
    np.testing.assert_allclose(
        B.posterior_reduction(factor, jnp.asarray(k_cross)), red_ref, rtol=1e-10
    )
    sol = np.zeros(15)
    sol[:n] = np.linalg.solve(a, y[:n])
    np.testing.assert_allclose(B.solve(factor, jnp.asarray(y)), sol, atol=1e-10)


def test_log_evidence_matches_scipy_gaussian(x64):
    rng = np.random.default_rng(3)
    gram, _ = _gram(rng, 14)
    n, lam, ridge = 11, 2.5, 0.2
    y = rng.normal(size=14)
    got = B.log_evidence(jnp.asarray(gram), jnp.asarray(y), jnp.int32(n), lam, ridge)
    cov = (gram[:n, :n] + ridge * np.eye(n)) / lam  # K/λ + σ² I with σ² = ρ/λ
    ref = scipy.stats.multivariate_normal(np.zeros(n), cov).logpdf(y[:n])
    np.testing.assert_allclose(float(got), ref, rtol=1e-11)  # two float64 Cholesky paths


def test_evidence_optimum_matches_brute_force_grid(x64):
    rng = np.random.default_rng(4)
    gram, _ = _gram(rng, 16)
    n = 12
    y = np.sin(np.arange(16.0)) + 0.3 * rng.normal(size=16)
    log_ridges = np.linspace(math.log(1e-3), math.log(10.0), 31)
    log_lams = np.linspace(math.log(1e-2), math.log(1e2), 161)
    # Brute force: the exact Gaussian log density on the 2-D grid (scipy).
    brute = np.array(
        [
            [
                scipy.stats.multivariate_normal(
                    np.zeros(n), (gram[:n, :n] + math.exp(r) * np.eye(n)) / math.exp(ll)
                ).logpdf(y[:n])
                for ll in log_lams
            ]
            for r in log_ridges
        ]
    )
    i, j = np.unravel_index(np.argmax(brute), brute.shape)
    fit = B.tune_evidence(jnp.asarray(gram), jnp.asarray(y), jnp.int32(n), jnp.asarray(log_ridges))
    assert float(fit.log_ridge) == pytest.approx(log_ridges[i], abs=1e-12)
    # λ* is closed-form; the brute-force λ grid has spacing h = 0.0576 in log λ, so the
    # grid argmax is within h/2 of it.
    assert float(fit.log_prior_precision) == pytest.approx(log_lams[j], abs=0.029)
    # The closed-form λ can only improve on the grid, by at most the curvature n/2 (in
    # log λ) times (h/2)²/2 = 2.5e-3.
    assert brute.max() <= float(fit.log_evidence) <= brute.max() + 3e-3
    np.testing.assert_allclose(fit.curve, brute.max(axis=1), atol=3e-3)
    # The padded spectrum path agrees with the dense Cholesky path at the optimum.
    dense = B.log_evidence(
        jnp.asarray(gram), jnp.asarray(y), jnp.int32(n), jnp.exp(fit.log_prior_precision),
        jnp.exp(fit.log_ridge),
    )  # fmt: skip
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


def test_theory_gamma_closed_form_and_zhou_is_larger():
    e = B.Exploration("theory", nu=0.5, delta=0.05, norm_bound=2.0)
    got = float(B.theory_gamma(jnp.float32(3.0), jnp.float32(0.25), e))
    ref = 0.5 * math.sqrt(3.0 - 2.0 * math.log(0.05)) + math.sqrt(0.25) * 2.0
    assert got == pytest.approx(ref, rel=1e-6)  # float32 rounding
    full = B.zhou_gamma(
        100.0, 3.0, width=100, depth=2, prior_precision=0.25, learning_rate=1e-3, steps=50,
        exploration=e,
    )  # fmt: skip
    assert full > ref  # every finite-width correction term is non-negative
    scale = B.exploration_scale(B.Exploration("fixed", 0.3), jnp.float32(3.0), jnp.float32(1.0))
    assert float(scale) == pytest.approx(0.3)
    ev = B.exploration_scale(B.Exploration("evidence"), jnp.float32(3.0), jnp.float32(1.0))
    assert float(ev) == 1.0


def test_exploration_validation():
    with pytest.raises(ValueError, match="allowed"):
        B.check_exploration(B.Exploration("optimism"))
    with pytest.raises(ValueError, match="delta"):
        B.check_exploration(B.Exploration(delta=1.5))
    with pytest.raises(ValueError, match="non-negative"):
        B.check_exploration(B.Exploration(gamma=-1.0))


def test_score_arms_ucb_and_thompson():
    mean, sd = jnp.array([0.5, 0.45, 0.0]), jnp.array([0.0, 0.2, 1.0])
    key = jax.random.key(0)
    # Scores mean + γ sd by hand: γ=0.1 -> (.5, .47, .1); γ=.4 -> (.5, .53, .4); γ=.7 ->
    # (.5, .59, .7).
    assert int(B.score_arms(mean, sd, jnp.float32(0.1), False, key)) == 0
    assert int(B.score_arms(mean, sd, jnp.float32(0.4), False, key)) == 1
    assert int(B.score_arms(mean, sd, jnp.float32(0.7), False, key)) == 2
    assert int(B.score_arms(mean, sd, jnp.float32(0.0), True, key)) == 0  # TS with γ=0 is greedy
    draws = jax.vmap(lambda k: B.score_arms(mean, sd, jnp.float32(1.0), True, k))(
        jax.random.split(key, 4000)
    )
    # Under TS each arm wins with probability > 0.2 here (arm 0 ~0.41, arm 1 ~0.28, arm 2
    # ~0.31 from the Gaussian scores), so > 100 wins of 4000 is a > 10-sd margin.
    counts = np.bincount(np.asarray(draws), minlength=3)
    assert counts.min() > 100


def _tiny_env():
    rewards = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], np.float32)
    contexts = np.eye(3, dtype=np.float32)[None].repeat(3, 0)  # (3, 3, 3)
    return contexts, rewards


def test_regret_accounting_by_hand():
    contexts, rewards = _tiny_env()
    actions = np.array([1, 2, 0])
    # Round 0: best 1, played 1 -> 0. Round 1: best 0, played 2 -> 1. Round 2: best 2,
    # played 0 -> 1. Cumulative: 0, 1, 2.
    np.testing.assert_array_equal(
        B.regret_of(jnp.asarray(rewards), jnp.asarray(actions)), [0, 1, 1]
    )
    env = data.BanditEnv(contexts, rewards, rewards.argmax(1), rewards.argmax(1))
    np.testing.assert_array_equal(data.regret(env, actions), [0, 1, 1])

    class _Scripted:  # plays the fixed actions through the real loop
        pass

    def select(state, ctx, key):
        return jnp.asarray(actions)[state].astype(jnp.int32), B.loop.empty_info()

    agent = B.Agent(lambda k, c: jnp.int32(0), select, lambda s, c, r, t: s + 1, "scripted")
    traj = B.run_bandit(agent, jnp.asarray(contexts), jnp.asarray(rewards), jax.random.key(0))
    np.testing.assert_array_equal(traj.actions, actions)
    np.testing.assert_array_equal(traj.rewards, [1, 0, 0])
    np.testing.assert_array_equal(np.cumsum(traj.regret), [0, 1, 2])


def test_oracle_has_zero_regret_and_random_does_not():
    env = data.make_bandit("iris", num_rounds=200, seed=0)
    c, r = jnp.asarray(env.contexts), jnp.asarray(env.rewards)
    traj = jax.jit(lambda k: B.run_bandit(B.oracle_agent(r), c, r, k))(jax.random.key(0))
    assert float(traj.regret.sum()) == 0.0
    np.testing.assert_array_equal(traj.actions, env.best_arm)
    rand = jax.jit(lambda k: B.run_bandit(B.random_agent(), c, r, k))(jax.random.key(1))
    # Random play on 3 arms: regret ~ Binomial(200, 2/3), mean 133, sd 6.7; 5 sd band.
    assert 100 < float(rand.regret.sum()) < 167
