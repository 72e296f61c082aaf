"""Classification bandits: rewards, oracle regret, unit-norm disjoint contexts, noise, seeds."""

import numpy as np
import pytest

from ntk_limits import data


def _toy(n=40, d=3, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, k, n).astype(np.int32)


def test_best_arm_is_the_true_class_and_oracle_has_zero_regret():
    x, y = _toy()
    env = data.classification_bandit(x, y, 4, seed=1)
    assert env.contexts.shape == (40, 4, 12) and env.contexts.dtype == np.float32
    assert env.rewards.shape == (40, 4) and env.best_arm.dtype == np.int32
    np.testing.assert_array_equal(env.best_arm, env.labels)
    np.testing.assert_array_equal(env.rewards.sum(axis=1), 1.0)
    np.testing.assert_array_equal(env.rewards[np.arange(40), env.best_arm], 1.0)
    np.testing.assert_array_equal(data.regret(env, env.best_arm), 0.0)
    wrong = (env.best_arm + 1) % 4
    np.testing.assert_array_equal(data.regret(env, wrong), 1.0)
    assert sorted(env.labels) == sorted(y)  # one shuffled pass over the rows


def test_contexts_are_unit_norm_disjoint_blocks():
    x, y = _toy()
    env = data.classification_bandit(x, y, 4, seed=2)
    # float32 storage of a float64-normalised vector: norm within a few ulp of 1.
    np.testing.assert_allclose(np.linalg.norm(env.contexts, axis=-1), 1.0, atol=1e-6)
    blocks = env.contexts.reshape(40, 4, 4, 3)  # (round, arm, block, feature)
    off_diagonal = ~np.eye(4, dtype=bool)
    assert np.all(blocks[:, off_diagonal] == 0.0)
    diagonal = blocks[:, np.arange(4), np.arange(4)]  # (round, arm, feature)
    assert np.all(diagonal == diagonal[:, :1])  # every arm sees the same x_t in its own block
    # rounds are rows of x, L2-normalised: find each round's row by its direction.
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    rows = np.argmax(diagonal[:, 0] @ unit.T, axis=1)
    np.testing.assert_allclose(diagonal[:, 0], unit[rows], atol=1e-6)  # float32 rounding
    np.testing.assert_array_equal(env.labels, y[rows])


def test_disjoint_contexts_matches_kronecker_product():
    features = np.arange(6, dtype=np.float32).reshape(2, 3)
    got = data.disjoint_contexts(features, 3)
    want = np.stack([[np.kron(np.eye(3)[a], f) for a in range(3)] for f in features])
    np.testing.assert_array_equal(got, want)


def test_label_noise_flips_to_another_class_at_the_given_rate():
    x, y = _toy(n=500, k=5)
    env = data.classification_bandit(x, y, 5, seed=3, num_rounds=20_000, label_noise=0.3)
    flipped = env.best_arm != env.labels
    # Binomial(20000, 0.3): standard deviation 0.0032; 5 sigma.
    assert abs(flipped.mean() - 0.3) < 0.017
    counts = np.bincount((env.best_arm - env.labels)[flipped] % 5, minlength=5)
    assert counts[0] == 0 and counts[1:].min() > 0.2 * flipped.sum()  # uniform over the others
    np.testing.assert_array_equal(data.regret(env, env.best_arm), 0.0)


def test_rounds_beyond_n_repeat_shuffled_passes_and_seeds_determine_everything():
    x, y = _toy(n=10)
    env = data.classification_bandit(x, y, 4, seed=5, num_rounds=25)
    again = data.classification_bandit(x, y, 4, seed=5, num_rounds=25)
    for a, b in zip(env[:4], again[:4], strict=True):
        np.testing.assert_array_equal(a, b)
    other = data.classification_bandit(x, y, 4, seed=6, num_rounds=25)
    assert not np.array_equal(other.contexts, env.contexts)
    first_pass = env.contexts[:10, 0, :3]
    assert len({r.tobytes() for r in first_pass}) == 10  # each row once per pass
    with pytest.raises(ValueError):
        data.classification_bandit(x, y, 4, label_noise=1.5)


def test_named_embedded_bandits():
    for name, (k, d) in {"iris": (3, 4), "wine": (3, 13), "digits": (10, 64)}.items():
        env = data.make_bandit(name, num_rounds=30, seed=0)
        assert env.contexts.shape == (30, k, k * d) and name in env.name.lower()
    env = data.make_bandit("breast_cancer")
    assert env.contexts.shape == (569, 2, 60)  # default: one pass over at most 10,000 rows
    with pytest.raises(ValueError, match="unknown bandit"):
        data.make_bandit("mnist")
