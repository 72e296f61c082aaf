"""Neural contextual bandits with empirical-NTK and infinite-width NTK posteriors.

Agents are ``(init, select, update)`` pure functions over NamedTuple state
(:class:`Agent`); :func:`run_bandit` plays them for ``T`` rounds in one ``lax.scan``::

    from ntk_limits import bandits, data, models
    env = data.make_bandit("wine", num_rounds=1000, seed=0)
    arch = models.build(models.Network("mlp", width=100, depth=1))
    agent = bandits.neural_agent(arch, 1000, exploration=bandits.Exploration("evidence"))
    traj = jax.jit(lambda k: bandits.run_bandit(agent, env.contexts, env.rewards, k))(key)
    traj.regret.cumsum()                                          # (1000,)

One compiled program can serve every exploration (Zhou / kernel-limit / fixed γ / evidence /
reference, UCB / TS):
build the agent inside the jitted function from ``exploration.as_arrays()``::

    play = jax.jit(lambda e, k: bandits.run_bandit(
        bandits.neural_agent(arch, 1000, exploration=e), env.contexts, env.rewards, k))
    play(bandits.Exploration("fixed", 0.1, thompson=True).as_arrays(), key)

Posterior linear algebra (for benchmarks): :func:`dense_posterior` (fresh ``O(T³)``)
and :func:`incremental_posterior_update` (one observation, ``O(T²)``).
"""

from ntk_limits.bandits.evidence import (
    EvidenceFit,
    evidence_spectrum,
    linearized_targets,
    log_evidence,
    profile_log_evidence,
    tune_evidence,
)
from ntk_limits.bandits.exploration import (
    EXPLORATIONS,
    ZHOU_CONSTANTS,
    Exploration,
    check_exploration,
    exploration_scale,
    is_mode,
    kernel_limit_gamma,
    may_tune,
    score_arms,
    zhou_gamma,
)
from ntk_limits.bandits.kernel_agents import (
    KernelState,
    kernel_agent,
    linucb,
    ntk_gp_agent,
    ridge_grid,
)
from ntk_limits.bandits.loop import (
    INFO_KEYS,
    Agent,
    Trajectory,
    oracle_agent,
    random_agent,
    regret_of,
    run_bandit,
)
from ntk_limits.bandits.neural import POSTERIORS, NeuralState, kernel_scale, neural_agent
from ntk_limits.bandits.posterior import (
    GramFactor,
    buffer_mask,
    dense_posterior,
    empty_posterior,
    incremental_posterior_update,
    posterior_log_det,
    posterior_mean,
    posterior_moments,
    posterior_reduction,
    solve,
)
from ntk_limits.bandits.retrain import (
    Schedule,
    fit_network,
    kernel_diagonal,
    safe_step_size,
    should_retrain,
)

__all__ = [
    "EXPLORATIONS",
    "INFO_KEYS",
    "ZHOU_CONSTANTS",
    "POSTERIORS",
    "Agent",
    "EvidenceFit",
    "Exploration",
    "GramFactor",
    "KernelState",
    "NeuralState",
    "Schedule",
    "Trajectory",
    "buffer_mask",
    "dense_posterior",
    "empty_posterior",
    "check_exploration",
    "evidence_spectrum",
    "exploration_scale",
    "fit_network",
    "kernel_diagonal",
    "incremental_posterior_update",
    "kernel_agent",
    "kernel_scale",
    "linearized_targets",
    "linucb",
    "log_evidence",
    "is_mode",
    "kernel_limit_gamma",
    "may_tune",
    "neural_agent",
    "ntk_gp_agent",
    "oracle_agent",
    "posterior_log_det",
    "posterior_mean",
    "posterior_moments",
    "posterior_reduction",
    "profile_log_evidence",
    "random_agent",
    "regret_of",
    "ridge_grid",
    "run_bandit",
    "safe_step_size",
    "score_arms",
    "should_retrain",
    "solve",
    "tune_evidence",
    "zhou_gamma",
]
