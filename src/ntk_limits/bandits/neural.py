"""NeuralUCB / NeuralTS with the empirical-NTK (linearised-Laplace) posterior.

The network ``f(θ, x)`` is trained on the observed (context, reward) pairs by full-batch
gradient descent on ``[½ Σ_i (f(θ, x_i) − r_i)² + ½ (ρ/c) ‖θ − θ₀‖²] / n``, a fixed number
of steps from the current parameters, every round for the first rounds and every ``k``
rounds after (:class:`~ntk_limits.bandits.retrain.Schedule`; the protocol of
uclaml/NeuralUCB). The posterior of the
network linearised at the current ``θ̂`` with prior ``θ ~ N(θ₀, (c/λ)I)`` and noise
``σ² = ρ/λ`` (the LLA) has predictive variance

    σ²(x) = (k(x, x) − k_xᵀ (K + ρI)⁻¹ k_x) / λ,    k = c · g(x)ᵀ g(x'),

computed in function space over the observed points (``posterior="full"``). The kernel
normalisation ``c`` is ``1`` in the NTK parametrisation (its gradients are already
``O(1)``, like Zhou et al.'s ``g/√m``) and ``1/width`` in the standard one (Zhou et al.'s
``/m``). With ``ρ = λ`` (``σ² = 1``), ``σ²(x) = gᵀ Z⁻¹ g`` with ``Z = λI + c Σ g gᵀ``,
the NeuralUCB matrix. ``posterior="diag"`` keeps only the diagonal of ``Z``, accumulated
with the gradients at selection time, as the reference code does; ``posterior="none"``
is the greedy network.

Cost model per round (``T`` buffer, ``K`` arms, ``P`` parameters, ``S`` GD steps,
``F = Σ_l (fan_in_l + fan_out_l)`` the per-example NTK factor size of an MLP): with the
buffer's factors kept in the state (``ntk_algorithm="factors"``, for stax MLPs),
selection costs ``O(K T F + K T²)`` and an update without retraining ``O(T F + T²)``
(incremental Cholesky); a generic empirical-NTK call instead runs the network over the
buffer again, ``O(T P)`` per call (measured at T = 1500, digits, width 100: 3.4 ms per
kernel row against 0.3 ms for the rest of the update). A retraining round costs
``O(S T P)`` for GD, ``O(T P)`` for the new factors and ``O(T² F + T³)`` for the new Gram
and its fresh factor (the kernel has changed); evidence agents add one ``O(T³)``
eigendecomposition at each re-tuning (other agents skip it).
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ntk_limits.bandits.evidence import linearized_targets, tune_evidence
from ntk_limits.bandits.exploration import (
    Exploration,
    check_exploration,
    exploration_scale,
    is_mode,
    may_tune,
    score_arms,
)
from ntk_limits.bandits.kernel_agents import ridge_grid
from ntk_limits.bandits.loop import Agent
from ntk_limits.bandits.posterior import (
    dense_posterior,
    empty_posterior,
    incremental_posterior_update,
    posterior_log_det,
    posterior_reduction,
)
from ntk_limits.bandits.retrain import Schedule, fit_network, safe_step_size, should_retrain
from ntk_limits.kernels import (
    MLPFactors,
    empirical_ntk_fn,
    factor_kernel,
    factor_kernel_diagonal,
    mlp_factors,
)

__all__ = ["POSTERIORS", "NeuralState", "kernel_scale", "neural_agent"]

POSTERIORS = ("full", "diag", "none")


class NeuralState(NamedTuple):
    """State of a neural bandit.

    Attributes:
      params: current parameters ``θ̂``.
      params0: initial parameters ``θ₀`` (prior mean, regularisation centre).
      x: ``(T, D)`` observed contexts.
      y: ``(T,)`` observed rewards.
      count: ``()`` int32 observations so far.
      factor: :class:`~ntk_limits.bandits.posterior.GramFactor` (``"full"``) or ``()``.
      features: :class:`~ntk_limits.kernels.MLPFactors` of the buffer at ``params``
        (``"full"`` with the ``"factors"`` kernel) or ``()``.
      diag: ``(P,)`` diagonal of ``Z`` (``"diag"``) or ``()``.
      log_prior_precision: ``()`` ``log λ``.
      log_ridge: ``()`` ``log ρ``.
    """

    params: Any
    params0: Any
    x: jax.Array
    y: jax.Array
    count: jax.Array
    factor: Any
    features: Any
    diag: Any
    log_prior_precision: jax.Array
    log_ridge: jax.Array


def kernel_scale(arch) -> float:
    """Kernel normalisation ``c``: ``1`` (NTK parametrisation) or ``1/width`` (standard)."""
    return 1.0 if arch.parameterization == "ntk" else 1.0 / arch.network.hidden_width


def _check(horizon, posterior, exploration, schedule, prior_precision) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be positive, got {horizon}")
    if posterior not in POSTERIORS:
        raise ValueError(f"unknown posterior {posterior!r}; allowed: {', '.join(POSTERIORS)}")
    check_exploration(exploration)
    if may_tune(exploration) and posterior != "full":
        raise ValueError("evidence exploration needs posterior='full'; allowed: full")
    if min(schedule.train_first, schedule.train_every - 1, schedule.steps) < 0:
        raise ValueError(f"schedule needs train_every >= 1 and non-negative counts: {schedule}")
    if not 0.0 <= schedule.momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {schedule.momentum}")
    if not 0.0 < schedule.learning_rate < 2.0:
        raise ValueError(
            f"learning_rate is relative, allowed: (0, 2); got {schedule.learning_rate}"
        )
    if isinstance(prior_precision, int | float) and not prior_precision > 0.0:
        raise ValueError(f"prior_precision must be positive, got {prior_precision}")
    if schedule.tune_every < 1:
        raise ValueError(f"tune_every must be positive, got {schedule.tune_every}")


def neural_agent(
    arch,
    horizon: int,
    *,
    posterior: str = "full",
    exploration: Exploration = Exploration(),
    schedule: Schedule = Schedule(),
    prior_precision: float = 1.0,
    log_ridge_grid: jax.Array | None = None,
    ntk_algorithm: str = "structured",
    name: str | None = None,
) -> Agent:
    """NeuralUCB (``exploration.thompson=False``) or NeuralTS (``True``).

    Args:
      arch: :class:`~ntk_limits.models.Architecture` with ``out_dim=1``.
      horizon: ``T``, the buffer size.
      posterior: ``"full"`` (function-space LLA, incremental Cholesky), ``"diag"``
        (diagonal ``Z``, the reference code) or ``"none"`` (greedy).
      exploration: UCB/TS and how ``γ`` is set (static, or traced from
        :meth:`~ntk_limits.bandits.Exploration.as_arrays`, e.g. ``vmap``-ed over
        variants). ``"evidence"`` needs ``"full"``: at retraining rounds that are
        multiples of ``schedule.tune_every`` it re-tunes ``λ`` and ``ρ`` by the linearised
        model's marginal likelihood, and ``ρ`` feeds back into the weight decay.
        ``"zhou"`` takes ``m = arch.network.hidden_width`` and ``L = depth + 1`` (the
        weight layers of an MLP) and ``t`` the observations so far.
      schedule: retraining schedule and GD settings.
      prior_precision: ``λ`` (``ρ = λ``, i.e. ``σ² = 1``, unless tuned).
      log_ridge_grid: ``(G,)`` candidate ``log ρ`` for evidence tuning.
      ntk_algorithm: ``"factors"`` (:func:`ntk_limits.kernels.mlp_factors` of the buffer
        kept in the state and refreshed at each retraining: a kernel row costs
        ``O(T Σ_l (fan_in_l + fan_out_l))`` instead of a forward pass through the buffer;
        for the stax MLPs of :func:`ntk_limits.models.build` only, and much the fastest
        there) or an algorithm of :func:`ntk_limits.kernels.empirical_ntk_fn`.
      name: label (default from the settings).

    Returns:
      The :class:`~ntk_limits.bandits.loop.Agent`; state :class:`NeuralState`.
    """
    _check(horizon, posterior, exploration, schedule, prior_precision)
    grid = ridge_grid() if log_ridge_grid is None else jnp.asarray(log_ridge_grid)
    c = kernel_scale(arch)
    factored = ntk_algorithm == "factors"
    if factored:
        features_of = lambda p, x: mlp_factors(arch.network, p, x)  # checks the kind
    else:
        ntk = empirical_ntk_fn(arch.apply_fn, algorithm=ntk_algorithm)
        kern = lambda a, b, p: c * ntk(a, b, p)
    cached = factored and posterior == "full"  # the buffer's factors live in the state
    tuning = may_tune(exploration)
    is_evidence = is_mode(exploration, "evidence")
    name = name or f"neural-{posterior}"
    # Zhou et al.'s m and L: hidden width, weight layers (an MLP's hidden layers + 1).
    zhou_network = {"width": arch.network.hidden_width, "depth": arch.network.depth + 1}

    def init(key, contexts):
        _, params = arch.init_fn(key, (-1, contexts.shape[-1]))
        dtype = contexts.dtype
        lam = jnp.asarray(prior_precision, dtype)
        factor = empty_posterior(horizon, lam, dtype) if posterior == "full" else ()
        diag = jnp.full(ravel_pytree(params)[0].shape, lam, dtype)
        diag = diag if posterior == "diag" else ()
        x = jnp.zeros((horizon, contexts.shape[-1]), dtype)
        features = features_of(params, x) if cached else ()
        y, zero = jnp.zeros(horizon, dtype), jnp.zeros((), jnp.int32)
        log_lam = jnp.log(lam)
        return NeuralState(params, params, x, y, zero, factor, features, diag, log_lam, log_lam)

    def arm_gradients(params, contexts):
        flat, unravel = ravel_pytree(params)
        f = lambda p, xi: arch.apply_fn(unravel(p), xi[None])[0, 0]
        return jax.vmap(jax.grad(f), (None, 0))(flat, contexts) * jnp.sqrt(c)

    def buffer_kernel(state, queries):
        """``(m, T)`` kernel between the queries and the buffer, ``(m,)`` of the queries."""
        if cached:
            new = features_of(state.params, queries)
            return c * factor_kernel(new, state.features), c * factor_kernel_diagonal(new)
        k_all = kern(queries, jnp.concatenate([state.x, queries]), state.params)
        return k_all[:, :horizon], jnp.diag(k_all[:, horizon:])

    def variance(state, contexts, lam):
        if posterior == "full":
            k_cross, k_diag = buffer_kernel(state, contexts)
            var = (k_diag - posterior_reduction(state.factor, k_cross)) / lam
            n = state.count.astype(lam.dtype)
            return var, posterior_log_det(state.factor) - n * jnp.log(lam)
        g = arm_gradients(state.params, contexts)
        return jnp.sum(g**2 / state.diag[None, :], axis=1), jnp.sum(jnp.log(state.diag / lam))

    def select(state, contexts, key):
        mean = arch.apply_fn(state.params, contexts)[:, 0]
        lam = jnp.exp(state.log_prior_precision)
        if posterior == "none":
            sd, gamma = jnp.zeros_like(mean), jnp.zeros((), mean.dtype)
        else:
            var, ratio = variance(state, contexts, lam)
            sd = jnp.sqrt(jnp.maximum(var, 0.0))
            gamma = exploration_scale(exploration, ratio, lam, t=state.count, **zhou_network)
        arm = score_arms(mean, sd, gamma, exploration.thompson, key)
        noise = jnp.exp(state.log_ridge) / lam
        info = {"gamma": gamma, "sd": sd[arm], "prior_precision": lam, "noise_variance": noise}
        clamps = state.factor.clamps if posterior == "full" else jnp.zeros((), jnp.int32)
        info["clamps"] = clamps.astype(lam.dtype)
        return arm, info

    def observe(state, context, reward):
        """Stores the pair and updates the posterior with the selection-time parameters."""
        n = state.count
        state = state._replace(x=state.x.at[n].set(context), y=state.y.at[n].set(reward))
        if posterior == "diag":
            g = arm_gradients(state.params, context[None])[0]
            state = state._replace(diag=state.diag + g**2)
        elif cached:
            new = features_of(state.params, context[None])
            features = _set_row(state.features, n, new)
            k_row = c * factor_kernel(new, features)[0]
            factor = incremental_posterior_update(state.factor, k_row, k_row[n])
            state = state._replace(factor=factor, features=features)
        elif posterior == "full":
            k_row = kern(context[None], state.x, state.params)[0]
            factor = incremental_posterior_update(state.factor, k_row, k_row[n])
            state = state._replace(factor=factor)
        return state._replace(count=n + 1)

    def retune(state, gram):
        targets = linearized_targets(arch.apply_fn, state.params, state.params0, state.x, state.y)
        fit = tune_evidence(gram, targets, state.count, grid.astype(gram.dtype))
        return state._replace(log_prior_precision=fit.log_prior_precision, log_ridge=fit.log_ridge)

    def retrain(state, t):
        ridge = jnp.exp(state.log_ridge)
        diagonal = None  # the buffer's kernel diagonal at the current parameters
        if factored:
            current = state.features if cached else features_of(state.params, state.x)
            diagonal = factor_kernel_diagonal(current)
        bound = safe_step_size(
            arch.apply_fn, state.params, state.x, state.count, ridge, c, diagonal=diagonal
        )
        params = fit_network(
            arch.apply_fn, state.params, state.params0, state.x, state.y, state.count, ridge / c,
            schedule.learning_rate * c * bound, schedule.steps, schedule.momentum,
        )  # fmt: skip
        state = state._replace(params=params)
        if posterior != "full":
            return state
        if cached:  # the kernel has changed: fresh features, Gram and factor
            features = features_of(params, state.x)
            gram = c * factor_kernel(features, features)
            state = state._replace(features=features)
        else:
            gram = kern(state.x, None, params)
        if tuning:  # only evidence agents re-tune (a branch: seeds run one at a time)
            due = ((t + 1) % schedule.tune_every == 0) & is_evidence
            state = jax.lax.cond(due, retune, lambda s, g: s, state, gram)
        ridge = jnp.exp(state.log_ridge)
        factor = dense_posterior(gram, state.count, ridge, state.factor.clamps)
        return state._replace(factor=factor)

    def update(state, context, reward, t):
        state = observe(state, context, reward)
        return jax.lax.cond(should_retrain(t + 1, schedule), retrain, lambda s, t: s, state, t)

    def retrain_after(t: int) -> bool:  # should_retrain(t + 1), static
        return t + 1 <= schedule.train_first or (t + 1) % schedule.train_every == 0

    return Agent(
        init, select, update, name,
        observe=lambda state, context, reward, t: observe(state, context, reward),
        refresh=retrain, refresh_after=retrain_after,
    )  # fmt: skip


def _set_row(features: MLPFactors, n: jax.Array, new: MLPFactors) -> MLPFactors:
    """``features`` with row ``n`` of every per-example array replaced by ``new``'s row 0."""
    put = lambda rows: tuple(a.at[n].set(b[0]) for a, b in zip(*rows, strict=True))
    return features._replace(
        inputs=put((features.inputs, new.inputs)),
        backprops=put((features.backprops, new.backprops)),
    )
