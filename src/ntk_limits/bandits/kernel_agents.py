"""GP bandits with a fixed kernel: the infinite-width NTK-GP agent and LinUCB.

The posterior is that of a GP with kernel ``k/λ`` and noise ``σ² = ρ/λ`` on the observed
(context, reward) pairs: mean ``k_xᵀ(K + ρI)⁻¹y``, variance
``(k(x,x) − k_xᵀ(K + ρI)⁻¹k_x)/λ``. The kernel never changes, so every round is an
``O(T²)`` incremental update (:func:`~ntk_limits.bandits.posterior.incremental_posterior_update`)
except re-tuning rounds of the ``"evidence"`` exploration, which refactor in ``O(T³)``.

With the linear kernel ``k(x, x') = xᵀx'`` and ``"kernel-limit"`` exploration this is LinUCB /
OFUL (Abbasi-Yadkori et al., 2011): ``A = λI + Σ x xᵀ``, ``θ̂ = A⁻¹ Σ r x``, score
``θ̂ᵀx + γ_t √(xᵀA⁻¹x)``.
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntk_limits.bandits.evidence import tune_evidence
from ntk_limits.bandits.exploration import (
    Exploration,
    check_exploration,
    exploration_scale,
    is_mode,
    may_tune,
    score_arms,
)
from ntk_limits.bandits.loop import Agent
from ntk_limits.bandits.posterior import (
    GramFactor,
    dense_posterior,
    empty_posterior,
    incremental_posterior_update,
    posterior_log_det,
    posterior_moments,
)

__all__ = ["KernelState", "kernel_agent", "linucb", "ntk_gp_agent", "ridge_grid"]

Kernel = Callable[[jax.Array, jax.Array], jax.Array]


class KernelState(NamedTuple):
    """State of a fixed-kernel GP bandit.

    Attributes:
      x: ``(T, D)`` observed contexts (rows ``≥ n`` are zero).
      y: ``(T,)`` observed rewards.
      factor: the :class:`~ntk_limits.bandits.posterior.GramFactor` of ``K + ρI``.
      log_prior_precision: ``()`` ``log λ``.
    """

    x: jax.Array
    y: jax.Array
    factor: GramFactor
    log_prior_precision: jax.Array


def ridge_grid(low: float = 1e-4, high: float = 1e2, num: int = 25) -> jax.Array:
    """``(num,)`` log-spaced candidate ``log ρ`` for evidence tuning."""
    return jnp.linspace(math.log(low), math.log(high), num)


def _check(horizon: int, exploration: Exploration, prior_precision: float) -> None:
    if horizon < 1:
        raise ValueError(f"horizon must be positive, got {horizon}")
    if isinstance(prior_precision, int | float) and not prior_precision > 0.0:
        raise ValueError(f"prior_precision must be positive, got {prior_precision}")
    check_exploration(exploration)


def kernel_agent(
    kernel: Kernel,
    horizon: int,
    *,
    exploration: Exploration = Exploration(),
    prior_precision: float = 1.0,
    tune_every: int = 100,
    log_ridge_grid: jax.Array | None = None,
    name: str = "gp",
) -> Agent:
    """GP-UCB / GP-TS with a fixed kernel and an incremental Cholesky posterior.

    Args:
      kernel: ``(x1 (n1, D), x2 (n2, D)) -> (n1, n2)``.
      horizon: ``T``, the buffer size (number of rounds).
      exploration: UCB or Thompson sampling, and how ``γ`` is set (see
        :mod:`~ntk_limits.bandits.exploration`; ``"zhou"`` is ``"kernel-limit"`` here,
        the kernel being the infinite-width one). All but ``"evidence"`` use ``σ² = 1``
        (``ρ = λ``); ``"evidence"`` re-tunes ``λ, ρ`` every
        ``tune_every`` observations and uses ``γ = 1``. Fields may be traced
        (:meth:`~ntk_limits.bandits.Exploration.as_arrays`).
      prior_precision: ``λ`` (initial value under ``"evidence"``).
      tune_every: observations between evidence re-tunings.
      log_ridge_grid: ``(G,)`` candidate ``log ρ`` (default :func:`ridge_grid`).
      name: label.

    Returns:
      The :class:`~ntk_limits.bandits.loop.Agent`; state :class:`KernelState`.
    """
    _check(horizon, exploration, prior_precision)
    grid = ridge_grid() if log_ridge_grid is None else jnp.asarray(log_ridge_grid)
    tuning = may_tune(exploration)
    is_evidence = is_mode(exploration, "evidence")

    def init(key, contexts):
        dtype = contexts.dtype
        x = jnp.zeros((horizon, contexts.shape[-1]), dtype)
        lam = jnp.asarray(prior_precision, dtype)
        factor = empty_posterior(horizon, lam, dtype)
        return KernelState(x, jnp.zeros(horizon, dtype), factor, jnp.log(lam))

    def select(state, contexts, key):
        lam = jnp.exp(state.log_prior_precision)
        k_cross = kernel(contexts, state.x)
        k_diag = jnp.diag(kernel(contexts, contexts))
        mean, reduction = posterior_moments(state.factor, k_cross, state.y)
        var = jnp.maximum(k_diag - reduction, 0.0) / lam
        gamma = exploration_scale(exploration, _log_det_ratio(state.factor, lam), lam)
        sd = jnp.sqrt(var)
        arm = score_arms(mean, sd, gamma, exploration.thompson, key)
        noise = state.factor.ridge / lam
        clamps = state.factor.clamps.astype(lam.dtype)
        info = {"gamma": gamma, "sd": sd[arm], "prior_precision": lam, "noise_variance": noise}
        info["clamps"] = clamps
        return arm, info

    def retune(state):
        gram = kernel(state.x, state.x)
        count = state.factor.count
        fit = tune_evidence(gram, state.y, count, grid.astype(gram.dtype))
        log_ridge = jnp.where(is_evidence, fit.log_ridge, jnp.log(state.factor.ridge))
        log_lam = jnp.where(is_evidence, fit.log_prior_precision, state.log_prior_precision)
        factor = dense_posterior(gram, count, jnp.exp(log_ridge), state.factor.clamps)
        return state._replace(factor=factor, log_prior_precision=log_lam)

    def update(state, context, reward, t):
        n = state.factor.count
        x = state.x.at[n].set(context)
        k_row = kernel(context[None], x)[0]
        factor = incremental_posterior_update(state.factor, k_row, k_row[n])
        state = state._replace(x=x, y=state.y.at[n].set(reward), factor=factor)
        if not tuning:
            return state
        return jax.lax.cond((t + 1) % tune_every == 0, retune, lambda s: s, state)

    return Agent(init, select, update, name)


def _log_det_ratio(factor: GramFactor, lam: jax.Array) -> jax.Array:
    """``log det(I + K/λ)`` when ``ρ = λ`` (theory mode): ``log det(K + λI) − n log λ``."""
    return posterior_log_det(factor) - factor.count.astype(lam.dtype) * jnp.log(lam)


def ntk_gp_agent(arch, horizon: int, **kwargs) -> Agent:
    """The exact infinite-width NTK-GP bandit of ``arch`` (``arch.kernel_fn(·, ·, "ntk")``).

    Args:
      arch: an :class:`~ntk_limits.models.Architecture` (use the NTK parametrisation: its
        kernel is width-independent).
      horizon: ``T``.
      **kwargs: see :func:`kernel_agent`.

    Returns:
      The agent.
    """
    kwargs.setdefault("name", "ntk-gp")
    return kernel_agent(lambda a, b: arch.kernel_fn(a, b, "ntk"), horizon, **kwargs)


def linucb(horizon: int, **kwargs) -> Agent:
    """LinUCB / OFUL: the GP agent with the linear kernel ``xᵀx'`` (see module doc)."""
    kwargs.setdefault("name", "linucb")
    return kernel_agent(lambda a, b: a @ b.T, horizon, **kwargs)
