"""Fixed-kernel GP bandits against closed forms: LinUCB/OFUL and the NTK-GP in numpy.

Every reference is computed in numpy from its own formula (weight-space solves for
LinUCB), so the incremental Cholesky and the re-tuning schedule are each checked against
something they do not share. All tests run in float64 on one wine bandit of 30 rounds.
"""

import math

import jax
import numpy as np
import pytest

from ntk_limits import bandits as B
from ntk_limits import models
from tests.bandits.helpers import wine_arrays

ROUNDS = 30
E = B.Exploration("kernel-limit", nu=0.5, delta=0.1, norm_bound=1.0)

pytestmark = pytest.mark.usefixtures("x64_module")  # the references agree to ~1e-12


@pytest.fixture(scope="module")
def wine():
    return wine_arrays(ROUNDS)


def _play(jit, agent, env, seed=0):
    contexts, rewards = env
    return jit(lambda k: B.run_bandit(agent, contexts, rewards, k))(jax.random.key(seed))


def _oful(contexts, rewards, lam, e):
    """LinUCB / OFUL in weight space (Abbasi-Yadkori et al., 2011), numpy."""
    _, _, d = contexts.shape
    a_mat, b_vec = lam * np.eye(d), np.zeros(d)
    actions, gammas, sds = [], [], []
    for x, r in zip(contexts, rewards, strict=True):
        a_inv = np.linalg.inv(a_mat)
        log_det_ratio = np.linalg.slogdet(a_mat)[1] - d * math.log(lam)
        gamma = (
            e.nu * math.sqrt(log_det_ratio - 2 * math.log(e.delta)) + math.sqrt(lam) * e.norm_bound
        )
        sd = np.sqrt(np.einsum("kd,de,ke->k", x, a_inv, x))
        arm = int(np.argmax(x @ (a_inv @ b_vec) + gamma * sd))
        a_mat += np.outer(x[arm], x[arm])
        b_vec += r[arm] * x[arm]
        actions.append(arm)
        gammas.append(gamma)
        sds.append(sd[arm])
    return np.array(actions), np.array(gammas), np.array(sds)


GRID = (1e-3, 1.0, 7)  # the ridge grid of the LinUCB agents below (λ = 1: the default)


def _linucb(exploration):
    """LinUCB with evidence re-tuning (when asked) every 10 observations."""
    grid = B.ridge_grid(*GRID)
    return B.linucb(ROUNDS, exploration=exploration, tune_every=10, log_ridge_grid=grid)


@pytest.fixture(scope="module")
def theory_run(jit, wine):
    return _play(jit, _linucb(E), wine)


@pytest.fixture(scope="module")
def evidence_run(jit, wine):
    return _play(jit, _linucb(B.Exploration("evidence")), wine)


def test_linucb_is_oful(wine, theory_run):
    actions, gammas, sds = _oful(*wine, 1.0, E)
    traj = theory_run
    np.testing.assert_array_equal(traj.actions, actions)
    # Function-space (kernel) vs weight-space solves in float64: ~1e-13 apart.
    np.testing.assert_allclose(traj.info["gamma"], gammas, rtol=1e-10)
    np.testing.assert_allclose(traj.info["sd"], sds, rtol=1e-9)


def test_ntk_gp_agent_matches_numpy_gp(jit, wine):
    contexts, rewards = wine
    arch = models.build(models.Network("mlp", 64, 1))
    lam = 0.2
    traj = _play(jit, B.ntk_gp_agent(arch, ROUNDS, exploration=E, prior_precision=lam), wine)
    flat = contexts.reshape(-1, contexts.shape[-1])
    gram = np.asarray(jit(lambda x: arch.kernel_fn(x, None, "ntk"))(flat))  # (T·K, T·K)
    chosen, ys = [], []
    for t in range(ROUNDS):
        rows = t * contexts.shape[1] + np.arange(contexts.shape[1])
        if chosen:
            a = gram[np.ix_(chosen, chosen)] + lam * np.eye(len(chosen))
            kx = gram[np.ix_(rows, chosen)]
            mean = kx @ np.linalg.solve(a, ys)
            var = (
                np.diag(gram)[rows] - np.einsum("ki,ki->k", kx, np.linalg.solve(a, kx.T).T)
            ) / lam
            ratio = np.linalg.slogdet(np.eye(len(chosen)) + gram[np.ix_(chosen, chosen)] / lam)[1]
        else:
            mean, var, ratio = np.zeros(len(rows)), np.diag(gram)[rows] / lam, 0.0
        gamma = E.nu * math.sqrt(ratio - 2 * math.log(E.delta)) + math.sqrt(lam)
        arm = int(np.argmax(mean + gamma * np.sqrt(var)))
        assert arm == int(traj.actions[t])
        # Same float64 GP algebra through dense solves: ~1e-12 apart; the variance is a
        # difference of O(1) terms that cancel to ~1e-3 of them, so its ~1e-12 error
        # grows to ~1e-9.
        assert float(traj.info["gamma"][t]) == pytest.approx(gamma, rel=1e-9)
        assert float(traj.info["sd"][t]) == pytest.approx(math.sqrt(var[arm]), rel=1e-7)
        chosen.append(int(rows[arm]))
        ys.append(rewards[t, arm])


def test_evidence_agent_retunes_on_schedule(wine, evidence_run):
    contexts, rewards = wine
    lam = np.asarray(evidence_run.info["prior_precision"])
    # Re-tuned after the 10th and 20th observations, used from rounds 10 and 20 on.
    assert np.all(lam[:10] == 1.0) and lam[10] != 1.0
    assert np.all(lam[10:20] == lam[10]) and lam[20] != lam[10]
    actions = np.asarray(evidence_run.actions)
    x = np.stack([contexts[t, a] for t, a in enumerate(actions)])[:20]
    y = np.array([rewards[t, a] for t, a in enumerate(actions)])[:20]
    # Reference: the exact Gaussian evidence log N(y; 0, (XXᵀ + ρI)/λ) by numpy
    # slogdet/solve on the 20 observed points, on the agent's ridge grid × a fine λ grid.
    log_lams = np.linspace(-8, 8, 3201)  # spacing 0.005
    best, best_log_lam, best_ridge = -np.inf, None, None
    for r in np.exp(np.asarray(B.ridge_grid(*GRID), np.float64)):
        a_mat = x @ x.T + r * np.eye(20)
        quad, log_det = y @ np.linalg.solve(a_mat, y), np.linalg.slogdet(a_mat)[1]
        values = -0.5 * (
            np.exp(log_lams) * quad + log_det - 20 * log_lams + 20 * math.log(2 * math.pi)
        )
        if values.max() > best:
            best, best_log_lam, best_ridge = values.max(), log_lams[values.argmax()], r
    assert math.log(lam[20]) == pytest.approx(best_log_lam, abs=0.003)  # half the spacing
    # The noise variance reported is ρ/λ at the chosen ridge (grid values: exact in float64).
    noise = float(evidence_run.info["noise_variance"][20])
    assert noise == pytest.approx(best_ridge / lam[20], rel=1e-12)


def test_traced_explorations_equal_static_agents(jit, wine, theory_run, evidence_run):
    """One program with the exploration as arrays reproduces the static agents."""
    contexts, rewards = wine
    program = jit(lambda e: B.run_bandit(_linucb(e), contexts, rewards, jax.random.key(0)))
    for static, ref in ((E, theory_run), (B.Exploration("evidence"), evidence_run)):
        traced = program(static.as_arrays())
        np.testing.assert_array_equal(traced.actions, ref.actions)
        # float64; the traced program selects among all three γ: ~1 ulp apart at most.
        for key in ("gamma", "sd", "prior_precision"):
            np.testing.assert_allclose(traced.info[key], ref.info[key], rtol=1e-12)
    fixed = program(B.Exploration("fixed", 0.4).as_arrays())
    np.testing.assert_array_equal(fixed.info["gamma"], 0.4)  # γ and λ stay as given
    np.testing.assert_array_equal(fixed.info["prior_precision"], 1.0)
    assert program._cache_size() == 1


def test_ridge_grid_and_validation():
    grid = np.asarray(B.ridge_grid(1e-3, 10.0, 5))
    # float64 log-spacing of the two ends.
    np.testing.assert_allclose(np.exp(grid[[0, -1]]), [1e-3, 10.0], rtol=1e-12)
    np.testing.assert_allclose(np.diff(grid), math.log(1e4) / 4, rtol=1e-12)
    with pytest.raises(ValueError, match="prior_precision"):
        B.linucb(10, prior_precision=-1.0)
    with pytest.raises(ValueError, match="horizon"):
        B.linucb(0)
