"""tfds loaders read real array_record files (built offline in conftest), never the network."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from ntk_limits import data
from tests.data.conftest import SIZES, fake_image

NO_TF = importlib.util.find_spec("tensorflow") is None


@pytest.mark.parametrize(
    ("name", "shape", "num_classes"),
    [("mnist", (28, 28, 1), 10), ("cifar10", (32, 32, 3), 10), ("cifar100", (32, 32, 3), 100)],
)
def test_reads_prepared_array_record(tfds_dir, name, shape, num_classes):
    for split, n in zip(("train", "test"), SIZES[name], strict=True):
        ds = data.load(name, split=split, data_dir=tfds_dir, standardize=False)
        assert ds.x.shape == (n, *shape) and ds.x.dtype == np.float32
        assert ds.y.dtype == np.int32 and ds.num_classes == num_classes
        index = np.rint(ds.x[:, 0, 0, 0] * 255).astype(int)  # tfds shuffled the records
        assert sorted(index) == list(range(n))
        expected = np.stack([fake_image(shape, split, i) for i in index]) / np.float32(255)
        # float32 division of the same uint8 values on both sides: at most one rounding apart.
        np.testing.assert_allclose(ds.x, expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(ds.y, index % num_classes)
        assert ds.source.startswith(os.path.join(tfds_dir, name))


def test_test_split_is_standardised_with_train_statistics(tfds_dir):
    train = data.load("cifar10", split="train", data_dir=tfds_dir, standardize=False)
    test = data.load("cifar10", split="test", data_dir=tfds_dir, standardize=False)
    got = data.load("cifar10", split="test", data_dir=tfds_dir)
    mean = train.x.astype(np.float64).mean(axis=(0, 1, 2))
    std = train.x.astype(np.float64).std(axis=(0, 1, 2))
    # float32 result of a float64 reference: relative rounding ~1e-7 on values of order 1.
    np.testing.assert_allclose(got.x, (test.x - mean) / std, rtol=0, atol=1e-5)
    every = data.load("cifar10", split="all", data_dir=tfds_dir)
    assert every.x.shape[0] == sum(SIZES["cifar10"])
    # standardised with the statistics of all examples: per-channel mean 0, float32 sums.
    np.testing.assert_allclose(every.x.mean(axis=(0, 1, 2)), 0.0, atol=1e-5)


def test_subset_and_streams_from_tfds(tfds_dir):
    ds = data.load("cifar100", data_dir=tfds_dir, n=100, seed=3)
    assert np.array_equal(np.bincount(ds.y, minlength=100), np.ones(100))
    tasks = data.make_stream("split_cifar100", data_dir=tfds_dir)
    assert len(tasks) == 20 and all(t.num_classes == 5 for t in tasks)
    tasks = data.make_stream("split_cifar10", data_dir=tfds_dir)
    assert [t.classes for t in tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    rotated = data.make_stream("rotated_mnist", data_dir=tfds_dir, angles=(0.0, 90.0))
    np.testing.assert_array_equal(rotated[1].x_test, np.rot90(rotated[0].x_test, 1, axes=(1, 2)))


def test_catalogue_sees_prepared_sets(tfds_dir):
    here = {i.name: i.available for i in data.catalogue(Path(tfds_dir))}  # path-like works
    assert here["mnist"] and here["cifar10"] and here["cifar100"]
    assert not here["tiny_imagenet"] and not here["covertype"]


def test_unfinished_preparation_does_not_count(tmp_path):
    variant = tmp_path / "mnist" / "incomplete.AB12CD_3.0.1"  # tfds' folder while writing
    variant.mkdir(parents=True)
    (variant / "dataset_info.json").write_text("{}")
    for split in ("train", "test"):
        (variant / f"mnist-{split}.array_record-00000-of-00001").write_bytes(b"")
    assert not data.catalogue(tmp_path)[list(data.DATASETS).index("mnist")].available
    with pytest.raises(data.DataUnavailableError, match="no prepared tfds split train"):
        data.load("mnist", data_dir=tmp_path)


@pytest.mark.skipif(not NO_TF, reason="checks the message given when TensorFlow is missing")
def test_tfrecord_only_needs_tensorflow(tmp_path):
    variant = tmp_path / "mnist" / "3.0.1"
    variant.mkdir(parents=True)
    (variant / "dataset_info.json").write_text("{}")
    for split in ("train", "test"):
        (variant / f"mnist-{split}.tfrecord-00000-of-00001").write_bytes(b"")
    with pytest.raises(data.DataUnavailableError, match="TFRecord.*ntk-limits datasets --fetch"):
        data.load("mnist", data_dir=str(tmp_path))


@pytest.mark.skipif(not NO_TF, reason="only without TensorFlow does fetch fail before downloading")
def test_fetch_tfds_is_wired_and_fails_cleanly_without_tensorflow(tmp_path):
    with pytest.raises(data.DataUnavailableError, match="mnist.*needs TensorFlow"):
        data.fetch("mnist", str(tmp_path))
    assert list(tmp_path.iterdir()) == []  # nothing downloaded or created
