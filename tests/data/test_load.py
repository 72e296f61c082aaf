"""`data.load`: embedded data sets, splits, standardising and the missing-data error."""

import time

import numpy as np
import pytest

from ntk_limits import data

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
