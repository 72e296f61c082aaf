"""Stand-ins of the paper's data sets: the real sizes, learnable classes, never silent."""

import numpy as np
import pytest

from ntk_limits import data
from ntk_limits.data import _standin


def _nearest_mean_accuracy(x_train, y_train, x_test, y_test, k):
    x_train, x_test = x_train.reshape(len(x_train), -1), x_test.reshape(len(x_test), -1)
    means = np.stack([x_train[y_train == c].mean(0) for c in range(k)])
    guess = np.argmin((means**2).sum(1) - 2 * x_test @ means.T, axis=1)  # ‖x − m‖² − ‖x‖²
    return float(np.mean(guess == y_test))


@pytest.mark.parametrize("name", ["mnist", "cifar100"])  # cifar10: cifar100 with 1 tint
def test_image_standins_have_the_paper_sets_sizes_and_learnable_classes(name):
    spec = _standin.IMAGES[name]
    train, test = _standin.image_raw(name, "train"), _standin.image_raw(name, "test")
    assert train.x.shape == (spec.n_train, *spec.shape) and train.x.dtype == np.uint8
    assert test.x.shape == (spec.n_test, *spec.shape)
    assert set(np.unique(train.y)) == set(range(spec.num_classes)) == set(np.unique(test.y))
    # Draws of one MNIST-5k image differ (shifts, tints): mostly distinct examples.
    flat = train.x[:5000].reshape(5000, -1)
    assert len(np.unique(flat, axis=0)) > 0.9 * 5000
    # Learnable: nearest class mean on 10 000 train / 2 000 test images is far above chance
    # (chance 1/K; 3/K leaves room for a weak classifier and fails for random labels).
    acc = _nearest_mean_accuracy(train.x[:10000] / 255, train.y[:10000],
                                 test.x[:2000] / 255, test.y[:2000], spec.num_classes)  # fmt: skip
    assert acc > 3 / spec.num_classes, acc


def test_the_tiny_imagenet_standin_test_split():
    test = _standin.image_raw("tiny_imagenet", "test")  # the 100 000 train images take 10 s
    assert test.x.shape == (10_000, 64, 64, 3)
    assert set(np.unique(test.y)) == set(range(200))


@pytest.mark.parametrize("name", list(_standin.TABLES))
def test_table_standins_have_the_paper_sets_sizes_and_learnable_classes(name):
    spec = _standin.TABLES[name]
    raw = _standin.table_raw(name)
    assert raw.x.shape == (spec.n, spec.d) and raw.x.dtype == np.float32
    assert set(np.unique(raw.y)) == set(range(spec.num_classes))
    head = raw.x[:5000]
    assert len(np.unique(head, axis=0)) == len(head)  # jitter: rows are distinct
    half = min(spec.n, 10_000) // 2
    acc = _nearest_mean_accuracy(raw.x[:half], raw.y[:half], raw.x[half : 2 * half],
                                 raw.y[half : 2 * half], spec.num_classes)  # fmt: skip
    # Above chance by a margin: digits folded to K classes stay separable by class means.
    assert acc > 1.5 / spec.num_classes, acc


def test_standins_are_deterministic():
    a = _standin.table_raw.__wrapped__("magic")
    b = _standin.table_raw.__wrapped__("magic")
    np.testing.assert_array_equal(a.x, b.x)
    c = _standin.image_raw.__wrapped__("cifar10", "test")
    np.testing.assert_array_equal(c.x, _standin.image_raw("cifar10", "test").x)


def test_standins_are_named_as_what_they_are():
    ds = data.load("cifar100_standin", split="test", n=200)
    assert ds.name.startswith("stand-in for CIFAR-100") and "for timing only" in ds.name
    assert ds.x.shape == (200, 32, 32, 3) and ds.num_classes == 100
    infos = {i.name: i for i in data.catalogue(None)}
    assert infos["covertype_standin"].available and not infos["covertype"].available
    assert infos["covertype_standin"].size == infos["covertype"].size
    assert all(_standin.is_standin(n) == n.endswith("_standin") for n in data.DATASETS)


def test_the_paper_streams_and_bandits_run_on_standins():
    tasks = data.make_stream("split_cifar100_standin", n_train=2000, n_test=500)
    assert len(tasks) == 20 and {len(t.classes) for t in tasks} == {5}
    env = data.make_bandit("letter_standin", num_rounds=50)
    assert env.contexts.shape == (50, 26, 26 * 16)
