"""NeuralUCB / NeuralTS against closed forms: LinUCB, Bayesian linear regression, the
weight-space LLA and the reference code's diagonal posterior (all in numpy).

Every reference is computed from its own formula (weight-space solves for the
function-space posteriors), so the agent's incremental Cholesky, kernel normalisation
and schedules are each checked against something they do not share. The module runs in
float64 on one wine bandit of ``ROUNDS`` rounds.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import bandits as B
from ntk_limits import kernels, models
from tests.bandits.helpers import wine_arrays

ROUNDS = 24
E = B.Exploration("kernel-limit", nu=0.5, delta=0.1, norm_bound=1.0)

pytestmark = pytest.mark.usefixtures("x64_module")  # the references agree to ~1e-10


@pytest.fixture(scope="module")
def wine():
    return wine_arrays(ROUNDS)


@functools.cache
def _jacobian(jit, network: models.Network):
    """Jitted dense ``(params, x (n, D)) -> (n, P)`` Jacobian of the network's output."""
    apply_fn = models.build(network).apply_fn
    return jit(lambda p, x: kernels.jacobian(apply_fn, p, x)[:, 0])


def _gamma(log_det_ratio: float, lam: float) -> float:
    return E.nu * math.sqrt(log_det_ratio - 2 * math.log(E.delta)) + math.sqrt(lam) * E.norm_bound


def _linear_arch() -> models.Architecture:
    """``f(x) = xᵀw`` with ``w = 0`` at init: its NTK is the linear kernel ``xᵀx'``."""
    init_fn = lambda key, shape: ((-1, 1), {"w": jnp.zeros((shape[-1], 1))})
    apply_fn = lambda p, x: x @ p["w"]
    kernel_fn = lambda a, b, get: a @ (a if b is None else b).T
    # The network supplies only the parametrisation the agent reads (NTK: kernel scale 1).
    return models.Architecture(init_fn, apply_fn, kernel_fn, models.Network("mlp", 1, 1))


def test_neural_ucb_of_a_linear_model_is_linucb_and_lla_is_blr(jit, wine):
    contexts, rewards = wine
    lam, d = 1.0, contexts.shape[-1]
    # Retrain every round to convergence: GD on a ridge quadratic, rate ≤ 1 − 1/(2n) per
    # step, so 1500 steps reach ~1e-20 relative error for n ≤ 24.
    sched = B.Schedule(train_first=ROUNDS, train_every=1, steps=1500, momentum=0.0)
    agent = B.neural_agent(
        _linear_arch(), ROUNDS, exploration=E, schedule=sched, prior_precision=lam
    )
    state = jit(agent.init)(jax.random.key(0), jnp.asarray(contexts[0]))
    select, update = jit(agent.select), jit(agent.update)
    a_mat, b_vec = lam * np.eye(d), np.zeros(d)  # OFUL / BLR in weight space
    for t in range(ROUNDS):
        arm, info = select(state, jnp.asarray(contexts[t]), jax.random.key(t))
        a_inv = np.linalg.inv(a_mat)
        sd = np.sqrt(np.einsum("kd,de,ke->k", contexts[t], a_inv, contexts[t]))
        gamma = _gamma(np.linalg.slogdet(a_mat)[1] - d * math.log(lam), lam)
        assert int(arm) == int(np.argmax(contexts[t] @ (a_inv @ b_vec) + gamma * sd))
        # The LLA variance of a linear model is the Bayesian linear-regression variance.
        assert float(info["sd"]) == pytest.approx(sd[int(arm)], rel=1e-9)
        assert float(info["gamma"]) == pytest.approx(gamma, rel=1e-10)
        x, r = contexts[t, int(arm)], rewards[t, int(arm)]
        a_mat, b_vec = a_mat + np.outer(x, x), b_vec + r * x
        state = update(state, jnp.asarray(x), r, jnp.int32(t))
    # The trained network (the LLA mean) is the ridge / BLR posterior mean.
    np.testing.assert_allclose(state.params["w"][:, 0], np.linalg.solve(a_mat, b_vec), atol=1e-9)
    assert update._cache_size() == 1  # retraining and plain rounds share one program


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_lla_variance_of_an_mlp_matches_weight_space_formula(jit, wine, parameterization):
    contexts, rewards = wine
    network = models.Network("mlp", 16, 1, parameterization=parameterization)
    arch = models.build(network)
    c, lam = B.kernel_scale(arch), 0.3
    assert c == (1.0 if parameterization == "ntk" else 1.0 / 16)
    sched = B.Schedule(train_first=8, train_every=5, steps=10, learning_rate=1.0)
    zhou = E._replace(mode="zhou")  # Zhou et al.'s γ_t at m = 16, L = 2 (tested alone)
    agent = B.neural_agent(arch, ROUNDS, exploration=zhou, schedule=sched, prior_precision=lam)
    state = jit(agent.init)(jax.random.key(1), jnp.asarray(contexts[0]))
    select, update = jit(agent.select), jit(agent.update)
    jac = _jacobian(jit, network)
    for t in range(ROUNDS):
        arm, info = select(state, jnp.asarray(contexts[t]), jax.random.key(t))
        if t % 4 == 3:  # Independent reference: dense Jacobians at the current parameters,
            # weight-space Z = λI + c Σ g gᵀ, var = c gᵀ Z⁻¹ g, log det(Z)/det(λI).
            rows = np.concatenate([np.asarray(state.x), contexts[t]])  # one shape: T + K
            g_all = np.asarray(jac(state.params, jnp.asarray(rows))) * math.sqrt(c)
            g_obs, g = g_all[:t], g_all[ROUNDS + int(arm)]
            z = lam * np.eye(g_obs.shape[1]) + g_obs.T @ g_obs
            var = g @ np.linalg.solve(z, g)
            log_det_ratio = np.linalg.slogdet(z)[1] - z.shape[0] * math.log(lam)
            # float64 P×P solve (P ~ 230) vs the function-space Cholesky: ~1e-10 apart.
            assert float(info["sd"]) ** 2 == pytest.approx(var, rel=1e-7)
            gamma = B.zhou_gamma(float(t), log_det_ratio, lam, zhou, width=16, depth=2)
            assert float(info["gamma"]) == pytest.approx(float(gamma), rel=1e-9)
        state = update(state, jnp.asarray(contexts[t, arm]), rewards[t, arm], jnp.int32(t))


def test_diagonal_posterior_is_the_reference_code(jit, wine):
    contexts, rewards = wine
    network = models.Network("mlp", 16, 1)
    arch = models.build(network)
    lam, reference = 0.1, B.Exploration("reference", nu=0.5)
    never = B.Schedule(train_first=0, train_every=10**6, steps=1)  # parameters stay at θ₀
    agent = B.neural_agent(
        arch, ROUNDS, posterior="diag", exploration=reference, schedule=never,
        prior_precision=lam,
    )  # fmt: skip
    traj = jit(lambda k: B.run_bandit(agent, contexts, rewards, k))(jax.random.key(2))
    init = jit(lambda key: arch.init_fn(key, (-1, contexts.shape[-1]))[1])
    params = init(jax.random.split(jax.random.key(2))[0])  # the key run_bandit gives init
    u = np.full(sum(p.size for p in jax.tree_util.tree_leaves(params)), lam)
    jac, pad = _jacobian(jit, network), np.zeros((ROUNDS, contexts.shape[-1]))
    means = np.asarray(jit(arch.apply_fn)(params, contexts.reshape(-1, contexts.shape[-1])))
    means = means.reshape(contexts.shape[:2])  # (T, K): θ stays at θ₀
    for t in range(ROUNDS):
        g_all = np.asarray(jac(params, jnp.asarray(np.concatenate([pad, contexts[t]]))))
        g_all = g_all[ROUNDS:]  # the arms (the padding keeps the shape of the test above)
        arm = int(traj.actions[t])
        # uclaml/NeuralUCB learner_diag.py: bonus √(Σ λν g²/U) = √(λν) σ with
        # σ² = Σ g²/U, then U += g_arm².
        assert float(traj.info["sd"][t]) ** 2 == pytest.approx(
            np.sum(g_all[arm] ** 2 / u), rel=1e-9
        )
        gamma = math.sqrt(lam * 0.5)
        assert float(traj.info["gamma"][t]) == pytest.approx(gamma, rel=1e-9)
        assert arm == int(np.argmax(means[t] + gamma * np.sqrt(np.sum(g_all**2 / u, axis=1))))
        u += g_all[arm] ** 2


def test_agent_validation():
    arch = models.build(models.Network("mlp", 8, 1))
    with pytest.raises(ValueError, match="posterior='full'"):
        B.neural_agent(arch, 10, posterior="diag", exploration=B.Exploration("evidence"))
    with pytest.raises(ValueError, match="allowed"):
        B.neural_agent(arch, 10, posterior="low-rank")
    with pytest.raises(ValueError, match="learning_rate"):
        B.neural_agent(arch, 10, schedule=B.Schedule(learning_rate=3.0))
    with pytest.raises(ValueError, match="momentum"):
        B.neural_agent(arch, 10, schedule=B.Schedule(momentum=1.0))
    with pytest.raises(ValueError, match="prior_precision"):
        B.neural_agent(arch, 10, prior_precision=0.0)


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_cached_factors_and_segments_reproduce_the_generic_agent(jit, wine, parameterization):
    """NeuralUCB with the cached MLP factors, run segment by segment (retraining outside the
    round loop), against the generic agent: neural-tangents' structured NTK per call and
    the retraining ``lax.cond`` inside every round. Evidence exploration: every branch
    (retraining, re-tuning, incremental and fresh factors) is exercised."""
    contexts, rewards = (jnp.asarray(a) for a in wine)
    arch = models.build(models.Network("mlp", 16, 1, parameterization=parameterization))
    sched = B.Schedule(train_first=5, train_every=4, steps=10, tune_every=8)
    kw = dict(exploration=B.Exploration("evidence"), schedule=sched, prior_precision=0.1)
    fast = B.neural_agent(arch, ROUNDS, ntk_algorithm="factors", **kw)
    slow = B.neural_agent(arch, ROUNDS, ntk_algorithm="structured", **kw)
    slow = slow._replace(refresh_after=None)  # run_bandit takes the one-scan path
    run = lambda agent: jit(lambda c, r: B.run_bandit(agent, c, r, jax.random.key(3)))
    got, want = run(fast)(contexts, rewards), run(slow)(contexts, rewards)
    np.testing.assert_array_equal(got.actions, want.actions)
    # float64; the two kernels sum the same terms in different orders (~1e-15 relative),
    # amplified by the posterior solves at ρ ≥ 1e-4 (condition ≲ 1e5).
    for key in ("sd", "gamma", "prior_precision", "noise_variance"):
        np.testing.assert_allclose(got.info[key], want.info[key], rtol=1e-8, err_msg=key)
