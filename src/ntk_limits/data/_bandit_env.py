"""Contextual bandits from classification data (the NeuralUCB / NeuralTS benchmark)."""

import os
from typing import NamedTuple

import numpy as np

from ntk_limits.data._load import load

__all__ = [
    "BANDITS",
    "BanditEnv",
    "classification_bandit",
    "disjoint_contexts",
    "make_bandit",
    "regret",
]

_MAX_ROUNDS = 10_000


class BanditEnv(NamedTuple):
    """A K-armed contextual bandit with T rounds, fully tabulated in advance.

    An agent sees ``contexts[t]`` and, after choosing arm ``a_t``, only ``rewards[t, a_t]``;
    the runner uses `rewards` and `best_arm` to score it (see `regret`).

    Attributes:
        contexts: float32 (T, K, K*d); arm a's context puts the unit-norm feature vector x_t in
            block a (entries a*d .. a*d+d-1) and zeros elsewhere (e_a kron x_t), so every
            context has unit norm.
        rewards: float32 (T, K), 1 for the rewarded class and 0 for the other arms.
        best_arm: int32 (T,), the rewarded class (the true class unless flipped by label noise).
        labels: int32 (T,), the true class of round t.
        name: where the data came from.
    """

    contexts: np.ndarray
    rewards: np.ndarray
    best_arm: np.ndarray
    labels: np.ndarray
    name: str = ""


def disjoint_contexts(features: np.ndarray, num_arms: int) -> np.ndarray:
    """Disjoint encoding of features for K arms: arm a sees e_a kron x.

    Args:
        features: (n, d).
        num_arms: K.

    Returns:
        float32 (n, K, K*d) with ``out[i, a, a*d:(a+1)*d] == features[i]`` and zeros elsewhere.
    """
    n, d = features.shape
    out = np.zeros((n, num_arms, num_arms, d), np.float32)
    arms = np.arange(num_arms)
    out[:, arms, arms, :] = np.asarray(features, np.float32)[:, None, :]
    return out.reshape(n, num_arms, num_arms * d)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    """Rows of x (n, ...) flattened to (n, d) and scaled to unit L2 norm (zero rows stay 0)."""
    flat = np.asarray(x, np.float64).reshape(x.shape[0], -1)
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.where(norms > 0.0, norms, 1.0)


def _round_order(n: int, num_rounds: int, rng: np.random.Generator) -> np.ndarray:
    """Row of each round: one shuffled pass, then further independent shuffled passes."""
    passes = -(-num_rounds // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:num_rounds]


def classification_bandit(
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    *,
    seed: int = 0,
    num_rounds: int | None = None,
    label_noise: float = 0.0,
    name: str = "",
) -> BanditEnv:
    """Turns a classification data set into a K-armed contextual bandit, K = `num_classes`.

    Each round draws one example; arm a is "predict class a" and pays 1 if a is the rewarded
    class. Features are flattened and L2-normalised, then encoded with `disjoint_contexts`.

    Args:
        x: inputs (n, ...), flattened to (n, d).
        y: int labels (n,) in ``0..K-1``.
        num_classes: K.
        seed: seed of the round order and of the label noise.
        num_rounds: T; default n (one pass in shuffled order). If T > n, further independently
            shuffled passes follow.
        label_noise: probability that a round's rewarded class is replaced by another class,
            drawn uniformly from the K-1 others.
        name: stored in `BanditEnv.name`.

    Returns:
        A `BanditEnv` with contexts (T, K, K*d), rewards (T, K), best_arm and labels (T,).
    """
    if not 0.0 <= label_noise <= 1.0:
        raise ValueError(f"label_noise must be in [0, 1], got {label_noise}")
    rng = np.random.default_rng(seed)
    order = _round_order(len(y), len(y) if num_rounds is None else num_rounds, rng)
    labels = np.asarray(y, np.int32)[order]
    flip = rng.random(labels.size) < label_noise
    other = (labels + rng.integers(1, max(num_classes, 2), labels.size)) % num_classes
    best = np.where(flip, other, labels).astype(np.int32)
    rewards = np.eye(num_classes, dtype=np.float32)[best]
    contexts = disjoint_contexts(_unit_rows(x)[order], num_classes)
    return BanditEnv(contexts, rewards, best, labels, name)


def regret(env: BanditEnv, actions: np.ndarray) -> np.ndarray:
    """Per-round regret of a sequence of actions.

    Args:
        env: the bandit, rewards (T, K).
        actions: int arms chosen (T,).

    Returns:
        float32 (T,): ``max_a rewards[t, a] - rewards[t, actions[t]]``; its cumulative sum is
        the usual cumulative regret.
    """
    actions = np.asarray(actions)
    chosen = np.take_along_axis(env.rewards, actions[:, None].astype(np.intp), axis=1)[:, 0]
    return env.rewards.max(axis=1) - chosen


BANDITS = (
    "digits", "iris", "wine", "breast_cancer",  # embedded (scikit-learn)
    "covertype", "magic", "shuttle", "mushroom", "adult", "letter",  # paper (UCI)
    "covertype_standin", "magic_standin", "shuttle_standin",  # their stand-ins
    "mushroom_standin", "adult_standin", "letter_standin",
)  # fmt: skip


def make_bandit(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    num_rounds: int | None = None,
    seed: int = 0,
    label_noise: float = 0.0,
) -> BanditEnv:
    """A named bandit of `BANDITS` from all examples of the data set (``load(split="all")``).

    Features are standardised (see `load`) before the L2 normalisation. Memory:
    ``T * K * K * d * 4`` bytes for the contexts.

    Args:
        name: a data set name in `BANDITS`.
        data_dir: data directory of the paper (UCI) sets.
        num_rounds: T; default ``min(n, 10_000)`` (one shuffled pass over at most 10,000 rows).
        seed: seed of the round order and label noise.
        label_noise: see `classification_bandit`.

    Returns:
        The `BanditEnv`.

    Raises:
        DataUnavailableError: if the data set is not here (checked before anything is read).
    """
    if name not in BANDITS:
        raise ValueError(f"unknown bandit {name!r}; known: {', '.join(BANDITS)}")
    ds = load(name, split="all", data_dir=data_dir, seed=seed)
    rounds = min(len(ds.y), _MAX_ROUNDS) if num_rounds is None else num_rounds
    return classification_bandit(
        ds.x, ds.y, ds.num_classes, seed=seed, num_rounds=rounds, label_noise=label_noise,
        name=f"{ds.name} bandit, {rounds} rounds, label noise {label_noise:g}",
    )  # fmt: skip
