"""The bandit loop and regret accounting: by hand, and the oracle / random references."""

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import bandits as B
from ntk_limits import data


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

    def select(state, ctx, key):  # plays the fixed actions through the real loop
        return jnp.asarray(actions)[state].astype(jnp.int32), B.loop.empty_info()

    agent = B.Agent(lambda k, c: jnp.int32(0), select, lambda s, c, r, t: s + 1, "scripted")
    traj = B.run_bandit(agent, jnp.asarray(contexts), jnp.asarray(rewards), jax.random.key(0))
    np.testing.assert_array_equal(traj.actions, actions)
    np.testing.assert_array_equal(traj.rewards, [1, 0, 0])
    np.testing.assert_array_equal(np.cumsum(traj.regret), [0, 1, 2])
    assert set(traj.info) == set(B.INFO_KEYS)


def test_oracle_has_zero_regret_and_random_does_not(jit):
    env = data.make_bandit("iris", num_rounds=200, seed=0)
    c, r = jnp.asarray(env.contexts), jnp.asarray(env.rewards)
    traj = jit(lambda k: B.run_bandit(B.oracle_agent(r), c, r, k))(jax.random.key(0))
    assert float(traj.regret.sum()) == 0.0
    np.testing.assert_array_equal(traj.actions, env.best_arm)
    rand = jit(lambda k: B.run_bandit(B.random_agent(), c, r, k))(jax.random.key(1))
    # Random play on 3 arms: regret ~ Binomial(200, 2/3), mean 133, sd 6.7; 5 sd band.
    assert 100 < float(rand.regret.sum()) < 167
