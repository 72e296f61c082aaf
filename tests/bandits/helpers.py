"""Plain helpers shared by the bandit tests."""

import numpy as np

from ntk_limits import data


def wine_arrays(rounds: int) -> tuple[np.ndarray, np.ndarray]:
    """The wine bandit of ``rounds`` rounds (seed 0): contexts and rewards in float64."""
    env = data.make_bandit("wine", num_rounds=rounds, seed=0)
    return np.asarray(env.contexts, np.float64), np.asarray(env.rewards, np.float64)
