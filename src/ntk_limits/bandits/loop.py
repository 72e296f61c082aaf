"""The bandit loop, regret accounting and the two reference agents (random, oracle).

An agent is a triple of pure functions over an immutable state::

    state = agent.init(key, contexts0)                  # contexts0: (K, D)
    arm, info = agent.select(state, contexts_t, key_t)  # arm: () int32
    state = agent.update(state, contexts_t[arm], reward, t)

``t`` is the round index (``()`` int32, unbatched under ``vmap``): agents take their
schedules (retraining, re-tuning) from it so that ``lax.cond`` stays a branch when
seeds or variants are vmapped (a predicate computed from batched state would turn
every branch into a ``select`` that runs both sides). ``info`` is a dict with the keys
:data:`INFO_KEYS` (scalars; zero where meaningless).
:func:`run_bandit` runs ``T`` rounds in one ``lax.scan``; ``jax.vmap`` it over seeds.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "INFO_KEYS",
    "Agent",
    "Trajectory",
    "empty_info",
    "oracle_agent",
    "random_agent",
    "regret_of",
    "run_bandit",
]

INFO_KEYS = ("gamma", "sd", "prior_precision", "noise_variance", "clamps")
"""Per-round diagnostics: ``γ_t``, ``σ_t`` of the chosen arm, ``λ``, ``σ²`` and the
posterior's clamp count so far (:attr:`~ntk_limits.bandits.GramFactor.clamps`)."""


class Agent(NamedTuple):
    """A bandit agent as ``(init, select, update)`` pure functions.

    Attributes:
      init: ``(key, contexts (K, D)) -> state``.
      select: ``(state, contexts (K, D), key) -> (arm () int32, info dict)``.
      update: ``(state, context (D,), reward (), t ()) -> state``; ``t`` is the round.
      name: a short label.
    """

    init: Callable[..., Any]
    select: Callable[..., tuple[jax.Array, dict[str, jax.Array]]]
    update: Callable[..., Any]
    name: str


class Trajectory(NamedTuple):
    """What happened in ``T`` rounds.

    Attributes:
      actions: ``(T,)`` int32 arms chosen.
      rewards: ``(T,)`` rewards received.
      regret: ``(T,)`` per-round regret ``max_a r_t,a − r_t,a_t``.
      info: dict of ``(T,)`` per-round diagnostics (:data:`INFO_KEYS`).
    """

    actions: jax.Array
    rewards: jax.Array
    regret: jax.Array
    info: dict[str, jax.Array]


def empty_info(dtype=jnp.float32) -> dict[str, jax.Array]:
    """The info dict of an agent without posterior: all :data:`INFO_KEYS` zero."""
    return {k: jnp.zeros((), dtype) for k in INFO_KEYS}


def regret_of(rewards: jax.Array, actions: jax.Array) -> jax.Array:
    """Per-round regret ``max_a r[t, a] − r[t, actions[t]]``.

    Args:
      rewards: ``(T, K)`` reward table.
      actions: ``(T,)`` int arms.

    Returns:
      ``(T,)``; ``jnp.cumsum`` of it is the cumulative regret.
    """
    chosen = jnp.take_along_axis(rewards, actions[:, None].astype(jnp.int32), axis=1)[:, 0]
    return jnp.max(rewards, axis=1) - chosen


def run_bandit(agent: Agent, contexts: jax.Array, rewards: jax.Array, key: jax.Array) -> Trajectory:
    """Runs ``agent`` for ``T`` rounds in one ``lax.scan``.

    Args:
      agent: the :class:`Agent`.
      contexts: ``(T, K, D)`` arm contexts of every round.
      rewards: ``(T, K)`` reward table (the agent sees only the chosen entry).
      key: PRNG key (split for init and one per round).

    Returns:
      The :class:`Trajectory`. Not jitted: wrap in ``jax.jit`` (and ``jax.vmap`` over
      seeds) as needed.
    """
    init_key, loop_key = jax.random.split(key)
    state = agent.init(init_key, contexts[0])
    keys = jax.random.split(loop_key, contexts.shape[0])
    rounds = jnp.arange(contexts.shape[0], dtype=jnp.int32)

    def step(state, inputs):
        ctx, rew, k, t = inputs
        arm, info = agent.select(state, ctx, k)
        reward = rew[arm]
        state = agent.update(state, ctx[arm], reward, t)
        return state, (arm, reward, jnp.max(rew) - reward, info)

    inputs = (contexts, rewards, keys, rounds)
    _, (actions, got, regret, info) = jax.lax.scan(step, state, inputs)
    return Trajectory(actions.astype(jnp.int32), got, regret, info)


def random_agent() -> Agent:
    """Uniformly random arms (stateless)."""

    def select(state, contexts, key):
        arm = jax.random.randint(key, (), 0, contexts.shape[0], dtype=jnp.int32)
        return arm, empty_info(contexts.dtype)

    return Agent(lambda key, contexts: (), select, lambda s, c, r, t: s, "random")


class _OracleState(NamedTuple):
    rewards: jax.Array  # (T, K)
    t: jax.Array  # () int32


def oracle_agent(rewards: jax.Array) -> Agent:
    """Cheats: plays ``argmax_a rewards[t, a]`` (zero regret by construction).

    Args:
      rewards: ``(T, K)`` the same table the loop is run on.

    Returns:
      The :class:`Agent` (a reference for the regret accounting).
    """

    def init(key, contexts):
        return _OracleState(jnp.asarray(rewards), jnp.zeros((), jnp.int32))

    def select(state, contexts, key):
        arm = jnp.argmax(state.rewards[state.t]).astype(jnp.int32)
        return arm, empty_info(contexts.dtype)

    def update(state, context, reward, t):
        return state._replace(t=t + 1)

    return Agent(init, select, update, "oracle")
