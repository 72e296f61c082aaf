"""Stand-ins for the paper's data sets: their sizes and shapes, built from packaged data.

A stand-in lets the paper profile run at the paper's sizes where the paper's data sets
are absent (no network, no tfds folder), so that its cost can be measured and its code
paths exercised. It is never a substitute for the results: its name ends in
``_standin`` (so its runs are keyed apart from the real set's), its display name says
"stand-in", and its labels are only as learnable as the construction below makes them.

Images (``mnist``, ``cifar10``, ``cifar100``, ``tiny_imagenet``): the real set's train and
test sizes, image shape and class count, drawn with replacement from MNIST-5k's own
80/20 split (train from train, test from test), padded (and for 64×64 first upsampled
2×) to the real height and width and shifted by up to 2 pixels so that draws of one
image differ. Colour sets tint each image by one of ``K / 10`` fixed colours; the class
is (digit, tint), so each of the ``K`` classes is learnable.

Tables (the UCI bandit sets): the real row count, feature count and class count, from
UCI digits' 64 features through a fixed random projection to ``d``, a class-group offset
and Gaussian jitter (0.1 of a feature's scale), so rows are distinct; digits are folded
onto the ``K`` classes (``digit mod K``, or (digit, group) for ``K`` > 10). For mushroom
and adult, ``d`` is the width of the real set's one-hot encoding, counted from the UCI
attribute lists (116 and 105).
"""

import functools
from typing import NamedTuple

import numpy as np

from ntk_limits.data import _packaged
from ntk_limits.data._dataset import _Raw, _stratified_split

__all__ = ["IMAGES", "SUFFIX", "TABLES", "image_raw", "is_standin", "real_name", "table_raw"]

SUFFIX = "_standin"


class _Images(NamedTuple):
    n_train: int
    n_test: int
    shape: tuple[int, int, int]
    num_classes: int


class _Table(NamedTuple):
    n: int
    d: int
    num_classes: int


IMAGES = {
    "mnist": _Images(60_000, 10_000, (28, 28, 1), 10),
    "cifar10": _Images(50_000, 10_000, (32, 32, 3), 10),
    "cifar100": _Images(50_000, 10_000, (32, 32, 3), 100),
    "tiny_imagenet": _Images(100_000, 10_000, (64, 64, 3), 200),
}
TABLES = {
    "covertype": _Table(581_012, 54, 7),
    "magic": _Table(19_020, 10, 2),
    "shuttle": _Table(58_000, 9, 7),
    "mushroom": _Table(8_124, 116, 2),
    "adult": _Table(48_842, 105, 2),
    "letter": _Table(20_000, 16, 26),
}
_MAX_SHIFT = 2
_JITTER = 0.1


def is_standin(name: str) -> bool:
    """Whether ``name`` names a stand-in (``<paper set>_standin``)."""
    return name.endswith(SUFFIX) and name[: -len(SUFFIX)] in IMAGES | TABLES


def real_name(name: str) -> str:
    """The paper set a stand-in stands in for."""
    return name[: -len(SUFFIX)]


def _rng(name: str, stream: int) -> np.random.Generator:
    return np.random.default_rng((sum(map(ord, name)), len(name), stream))


def _tints(groups: int) -> np.ndarray:
    """``groups`` fixed, distinct colours (rows of 3 channel gains in [0.25, 1])."""
    if groups == 1:
        return np.ones((1, 3))
    return 0.25 + 0.75 * np.random.default_rng(7).random((groups, 3))


def _place(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """(n, 28, 28) uint8 centred in (n, height, width), upsampled 2x first if it fits twice."""
    if height >= 2 * images.shape[1]:
        images = images.repeat(2, axis=1).repeat(2, axis=2)
    top, left = (height - images.shape[1]) // 2, (width - images.shape[2]) // 2
    out = np.zeros((len(images), height, width), np.uint8)
    out[:, top : top + images.shape[1], left : left + images.shape[2]] = images
    return out


@functools.lru_cache(maxsize=2)  # a standardised test split reads the train split too
def image_raw(name: str, split: str) -> _Raw:
    """The stand-in of paper image set ``name`` (``"train"`` or ``"test"``), uint8."""
    spec = IMAGES[name]
    size = spec.n_train if split == "train" else spec.n_test
    base = _packaged.mnist5k_raw()
    train, test = _stratified_split(base.y, 0)
    pool = train if split == "train" else test
    rng = _rng(name, 0 if split == "train" else 1)
    rows = rng.choice(pool, size)
    groups = spec.num_classes // 10
    group = rng.integers(groups, size=size)
    height, width, channels = spec.shape
    x = _place(base.x[rows, :, :, 0], height, width)
    shifts = rng.integers(-_MAX_SHIFT, _MAX_SHIFT + 1, size=(size, 2))
    for dy in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
        for dx in range(-_MAX_SHIFT, _MAX_SHIFT + 1):
            at = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
            x[at] = np.roll(x[at], (dy, dx), axis=(1, 2))
    if channels == 3:
        out = np.empty((size, height, width, 3), np.uint8)
        for g, gain in enumerate(_tints(groups).astype(np.float32)):
            at = group == g
            out[at] = (x[at, :, :, None] * gain).round().astype(np.uint8)
        x = out
    else:
        x = x[..., None]
    y = (group * 10 + base.y[rows]).astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return _Raw(x, y, base.scale, True)


@functools.lru_cache(maxsize=2)
def table_raw(name: str) -> _Raw:
    """The stand-in of UCI set ``name``: (n, d) float32 and labels ``0..K-1``."""
    spec = TABLES[name]
    digits = _packaged.sklearn_raw("digits")
    features = digits.x.reshape(len(digits.y), -1).astype(np.float64) * digits.scale
    rng = _rng(name, 0)
    groups = -(-spec.num_classes // 10)
    group_of = np.repeat(np.arange(groups), len(digits.y))
    row_of = np.tile(np.arange(len(digits.y)), groups)
    keep = (spec.num_classes <= 10) | (group_of * 10 + digits.y[row_of] < spec.num_classes)
    pick = rng.choice(np.flatnonzero(keep), spec.n)
    group, rows = group_of[pick], row_of[pick]
    projection = rng.normal(size=(features.shape[1], spec.d)) / np.sqrt(features.shape[1])
    offsets = rng.normal(size=(groups, spec.d))
    x = features[rows] @ projection + offsets[group]
    x += _JITTER * x.std(axis=0) * rng.normal(size=x.shape)
    digit = digits.y[rows]
    y = digit % spec.num_classes if spec.num_classes <= 10 else group * 10 + digit
    x, y = x.astype(np.float32), y.astype(np.int32)
    x.flags.writeable = y.flags.writeable = False
    return _Raw(x, y, 1.0, False)
