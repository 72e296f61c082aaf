"""Tiny ImageNet folder and UCI csv readers, and their fetch paths, offline."""

import sys
import types
import urllib.error
import urllib.request

import numpy as np
import pandas as pd
import pytest

from ntk_limits import data
from tests.data.conftest import WNIDS, tiny_pixel

SORTED = sorted(WNIDS)


def test_tiny_imagenet_folder(tiny_dir):
    train = data.load("tiny_imagenet", split="train", data_dir=tiny_dir, standardize=False)
    assert train.x.shape == (6, 64, 64, 3) and train.num_classes == 3
    np.testing.assert_array_equal(train.y, [0, 0, 1, 1, 2, 2])  # sorted wnids, sorted files
    levels = [tiny_pixel(SORTED[c], k) for c in range(3) for k in range(2)]
    # JPEG of a flat grey image: the DC coefficient is quantised, off by at most a few levels.
    np.testing.assert_allclose(train.x * 255, np.broadcast_to(np.reshape(levels, (6, 1, 1, 1)),
                                                              train.x.shape), atol=3)  # fmt: skip
    test = data.load("tiny_imagenet", split="test", data_dir=tiny_dir)
    # val_0, val_1, val_2 belong to WNIDS[0], WNIDS[1], WNIDS[2] in wnids.txt order.
    np.testing.assert_array_equal(test.y, [SORTED.index(w) for w in WNIDS])
    stream = data.make_stream("split_tiny_imagenet", data_dir=tiny_dir, classes_per_task=1)
    assert [t.classes for t in stream] == [(0,), (1,), (2,)]


def _write_adult_like(path):
    frame = pd.DataFrame(
        {
            "age": [30, 40, None, 50, 60, 20, 35, 45, 55, 25],
            "work": ["a", "b", "a", "?", "b", "a", "b", "a", "b", "a"],
            "class": [">50K", "<=50K"] * 5,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return frame


def test_uci_csv_encoding(tmp_path):
    _write_adult_like(tmp_path / "uci" / "adult.csv")
    ds = data.load("adult", split="all", data_dir=str(tmp_path), standardize=False)
    assert ds.x.shape == (10, 3) and ds.num_classes == 2
    known = np.float32([30, 40, 50, 60, 20, 35, 45, 55, 25])
    np.testing.assert_array_equal(ds.x[:, 0], np.insert(known, 2, known.mean()))  # NaN -> mean
    np.testing.assert_array_equal(ds.x[:, 1:].sum(axis=1), [1, 1, 1, 0, 1, 1, 1, 1, 1, 1])  # "?"
    np.testing.assert_array_equal(ds.y, [1, 0] * 5)  # sorted labels: "<=50K" < ">50K"
    train = data.load("adult", split="train", data_dir=str(tmp_path))
    assert len(train.y) == 8 and train.x.dtype == np.float32
    env = data.make_bandit("adult", data_dir=str(tmp_path), num_rounds=20)
    assert env.contexts.shape == (20, 2, 6)


def test_fetch_uci_writes_the_documented_csv(tmp_path, monkeypatch):
    frame = _write_adult_like(tmp_path / "expected.csv")
    calls = []

    def fake_fetch_openml(**kwargs):
        calls.append(kwargs)
        x = frame.drop(columns="class").replace("?", None)
        return type("Bunch", (), {"data": x, "target": frame["class"]})

    # Stand-in modules: importing the real scikit-learn takes 2-6 s here.
    fake = types.ModuleType("sklearn.datasets")
    fake.fetch_openml = fake_fetch_openml
    monkeypatch.setitem(sys.modules, "sklearn", types.ModuleType("sklearn"))
    monkeypatch.setitem(sys.modules, "sklearn.datasets", fake)
    path = data.fetch("adult", str(tmp_path))
    assert path == str(tmp_path / "uci" / "adult.csv") and calls[0]["data_id"] == 1590
    assert str(tmp_path) in calls[0]["data_home"]  # the OpenML cache stays in data_dir
    ds = data.load("adult", split="all", data_dir=str(tmp_path), standardize=False)
    assert ds.x.shape == (10, 3) and np.array_equal(ds.y, [1, 0] * 5)


def test_fetch_failure_is_one_clean_error(tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(urllib.request, "urlretrieve", offline)
    with pytest.raises(data.DataUnavailableError, match="tiny_imagenet: fetching into .* failed"):
        data.fetch("tiny_imagenet", str(tmp_path))
