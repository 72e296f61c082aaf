"""Data sets kept as plain files under the data directory: Tiny ImageNet and six UCI sets.

Layout under ``data_dir``:

* ``tiny-imagenet-200/``: the unzipped official archive (``wnids.txt``,
  ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG``, ``val/val_annotations.txt``).
  tfds has no Tiny ImageNet builder, so the folder is read with PIL. Split ``"test"`` is the
  official validation set (the official test labels were never released).
* ``uci/<name>.csv``: one header line, one column per feature, the class in the last column.
  Numeric columns stay numbers; every other column is one-hot encoded (``?`` and empty cells
  are missing: zero one-hot rows, or the column mean for numbers). `fetch_uci` writes this file
  from OpenML; a csv of the same shape made by hand works as well.
"""

import functools
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ntk_limits.data._dataset import _Raw

TINY_IMAGENET_DIR = "tiny-imagenet-200"
TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
UCI_DIR = "uci"
_MAX_THREADS = 8
# OpenML data ids of the UCI sets (https://www.openml.org/d/<id>).
OPENML_IDS = {
    "covertype": 1596,
    "magic": 1120,
    "shuttle": 40685,
    "mushroom": 24,
    "adult": 1590,
    "letter": 6,
}


def tiny_imagenet_missing(data_dir: str, split: str) -> str | None:
    """The first file or folder of the `split` that is missing, or None if all are present."""
    root = os.path.join(data_dir, TINY_IMAGENET_DIR)
    need = ["wnids.txt", "train" if split == "train" else os.path.join("val", "images")]
    if split != "train":
        need.append(os.path.join("val", "val_annotations.txt"))
    for part in need:
        if not os.path.exists(os.path.join(root, part)):
            return os.path.join(root, part)
    return None


def _tiny_imagenet_files(root: str, split: str) -> tuple[list[str], list[str]]:
    """(image paths, wnid of each) of a split, in a fixed (sorted) order."""
    if split == "train":
        pairs = []
        for wnid in sorted(os.listdir(os.path.join(root, "train"))):
            folder = os.path.join(root, "train", wnid, "images")
            pairs += [(os.path.join(folder, f), wnid) for f in sorted(os.listdir(folder))]
    else:
        with open(os.path.join(root, "val", "val_annotations.txt")) as f:
            rows = [line.split("\t")[:2] for line in f if line.strip()]
        pairs = sorted((os.path.join(root, "val", "images", name), wnid) for name, wnid in rows)
    return [p for p, _ in pairs], [w for _, w in pairs]


@functools.lru_cache(maxsize=2)
def tiny_imagenet_raw(data_dir: str, split: str) -> tuple[_Raw, int]:
    """A Tiny ImageNet split and its class count (200 for the official folder).

    Images are uint8 RGB (n, 64, 64, 3) with `scale` 1/255; labels index the sorted wnids.txt.
    """
    from PIL import Image

    root = os.path.join(data_dir, TINY_IMAGENET_DIR)
    with open(os.path.join(root, "wnids.txt")) as f:
        wnids = sorted(line.strip() for line in f if line.strip())
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = _tiny_imagenet_files(root, split)
    x = np.empty((len(paths), 64, 64, 3), np.uint8)

    def decode(i: int) -> None:
        with Image.open(paths[i]) as image:
            x[i] = np.asarray(image.convert("RGB"))  # a few of the JPEGs are greyscale

    with ThreadPoolExecutor(min(_MAX_THREADS, os.cpu_count() or 1)) as pool:
        list(pool.map(decode, range(len(paths)), chunksize=256))  # PIL releases the GIL
    y = np.array([index[w] for w in labels], np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return _Raw(x, y, 1.0 / 255.0, True), len(wnids)


def uci_path(data_dir: str, name: str) -> str:
    """Where the csv of a UCI set lives: ``<data_dir>/uci/<name>.csv``."""
    return os.path.join(data_dir, UCI_DIR, f"{name}.csv")


def _encode_columns(frame) -> np.ndarray:
    """Numeric columns as they are (missing -> column mean), the others one-hot; float32."""
    import pandas as pd

    blocks = []
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            numbers = values.to_numpy(np.float64)
            numbers = np.where(np.isnan(numbers), np.nanmean(numbers), numbers)
            blocks.append(numbers[:, None])
        else:
            blocks.append(pd.get_dummies(values.astype("string"), dtype=np.float64).to_numpy())
    return np.concatenate(blocks, axis=1).astype(np.float32)


@functools.lru_cache(maxsize=2)
def uci_raw(data_dir: str, name: str) -> tuple[_Raw, int]:
    """A UCI set read from its csv: float32 table (n, d) and int32 labels; also the class count.

    Classes are numbered in sorted order of the label values.
    """
    import pandas as pd

    frame = pd.read_csv(uci_path(data_dir, name), na_values=["?"], skipinitialspace=True)
    labels = frame.iloc[:, -1]
    if not pd.api.types.is_numeric_dtype(labels):
        labels = labels.astype(str)
    classes, y = np.unique(labels.to_numpy(), return_inverse=True)
    x = _encode_columns(frame.iloc[:, :-1])
    y = y.astype(np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return _Raw(x, y, 1.0, False), int(classes.size)


def fetch_uci(name: str, data_dir: str) -> str:
    """Downloads a UCI set from OpenML (needs the network) and writes ``<data_dir>/uci/<name>.csv``.

    Returns:
        The path of the csv written.
    """
    from sklearn.datasets import fetch_openml

    cache = os.path.join(data_dir, UCI_DIR, "openml")
    os.makedirs(cache, exist_ok=True)
    bunch = fetch_openml(data_id=OPENML_IDS[name], as_frame=True, data_home=cache, parser="auto")
    frame = bunch.data.copy()
    frame["class"] = bunch.target
    path = uci_path(data_dir, name)
    frame.to_csv(path + ".part", index=False)
    os.replace(path + ".part", path)
    return path


def fetch_tiny_imagenet(data_dir: str) -> str:
    """Downloads the Tiny ImageNet zip (~240 MB, needs the network), unzips it in `data_dir`.

    The zip is deleted once unpacked.

    Returns:
        The ``tiny-imagenet-200`` folder.
    """
    import urllib.request

    os.makedirs(data_dir, exist_ok=True)
    archive = os.path.join(data_dir, "tiny-imagenet-200.zip")
    urllib.request.urlretrieve(TINY_IMAGENET_URL, archive + ".part")
    os.replace(archive + ".part", archive)
    with zipfile.ZipFile(archive) as zipped:
        zipped.extractall(data_dir)
    os.remove(archive)
    return os.path.join(data_dir, TINY_IMAGENET_DIR)
