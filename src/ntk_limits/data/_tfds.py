"""Reading (and, on request, preparing) tfds data sets: MNIST, CIFAR-10, CIFAR-100.

Reading needs no TensorFlow: data prepared in the array_record format is opened with
`tfds.builder_from_directory(...).as_data_source(split)` (random access, decoding with PIL).
Data prepared in tfds' default TFRecord format is read from the same directory with tfds'
TensorFlow reader (`as_dataset`, never a download) only if TensorFlow is importable.
Preparing (`fetch_tfds`) runs tfds' `download_and_prepare` with ``file_format="array_record"``;
the tfds MNIST/CIFAR builders read their downloads with `tf.io.gfile`, so preparing needs
TensorFlow once (reading afterwards does not).

`tensorflow_datasets` is imported inside the functions: importing it costs ~0.5-1 s.
"""

import functools
import glob
import importlib.util
import os
import re
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ntk_limits.data._dataset import DataUnavailableError, _Raw

_BATCH = 512
_MAX_THREADS = 8
_FORMATS = ("array_record", "tfrecord")
_VERSION = re.compile(r"\d+\.\d+\.\d+")


def _has_tensorflow() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(p) for p in os.path.basename(path).split("."))


def _prepared(tfds_name: str, split: str, data_dir: str) -> tuple[str, str] | None:
    """(version directory, file format) of the newest prepared `split`, or None.

    Only finished versions count: tfds writes into ``incomplete.*`` folders and renames them.
    """
    infos = glob.glob(os.path.join(glob.escape(data_dir), tfds_name, "*", "dataset_info.json"))
    variants = [os.path.dirname(p) for p in infos]
    variants = [v for v in variants if _VERSION.fullmatch(os.path.basename(v))]
    for variant in sorted(variants, key=_version_key, reverse=True):
        for fmt in _FORMATS:
            pattern = os.path.join(glob.escape(variant), f"{tfds_name}-{split}.{fmt}*")
            if glob.glob(pattern):
                return variant, fmt
    return None


def locate_tfds(
    tfds_name: str, splits: tuple[str, ...], data_dir: str, hint: str
) -> list[tuple[str, str]]:
    """Checks, without reading any record, that every split is readable here.

    Args:
        tfds_name: tfds catalogue name, e.g. ``"mnist"``.
        splits: tfds split names, e.g. ``("train", "test")``.
        data_dir: the tfds data directory.
        hint: the end of the error message (how to fetch).

    Returns:
        For each split, (version directory, file format), e.g.
        ``("<data_dir>/mnist/3.0.1", "array_record")``.

    Raises:
        DataUnavailableError: when a split is missing, or only in TFRecord form without TensorFlow.
    """
    where = os.path.join(data_dir, tfds_name)
    found = [_prepared(tfds_name, split, data_dir) for split in splits]
    missing = [s for s, f in zip(splits, found, strict=True) if f is None]
    if missing:
        raise DataUnavailableError(
            f"{tfds_name}: no prepared tfds split {'+'.join(missing)} (array_record or "
            f"tfrecord files next to a dataset_info.json) under {where}/<version>/; {hint}"
        )
    if any(fmt == "tfrecord" for _, fmt in found) and not _has_tensorflow():
        raise DataUnavailableError(
            f"{tfds_name}: {found[0][0]} holds TFRecord files, which need TensorFlow to read; "
            f"prepare it again in the array_record format: {hint}"
        )
    return found


def _stack(records: list[dict], start: int, x: np.ndarray, y: np.ndarray) -> None:
    for i, record in enumerate(records):
        x[start + i] = record["image"]
        y[start + i] = record["label"]


def _read_array_record(variant_dir: str, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Reads a split in batches on a thread pool (PNG decoding in PIL releases the GIL)."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(variant_dir)
    source = builder.as_data_source(split=split)
    features = builder.info.features
    n = len(source)
    x = np.empty((n, *features["image"].shape), np.uint8)
    y = np.empty((n,), np.int32)
    starts = range(0, n, _BATCH)
    read = lambda start: source.__getitems__(list(range(start, min(start + _BATCH, n))))
    with ThreadPoolExecutor(min(_MAX_THREADS, os.cpu_count() or 1)) as pool:
        for start, records in zip(starts, pool.map(read, starts), strict=True):
            _stack(records, start, x, y)
    return x, y, features["label"].num_classes


def _read_tfrecord(variant_dir: str, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(variant_dir)
    arrays = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1))
    num_classes = builder.info.features["label"].num_classes
    return arrays["image"].astype(np.uint8), arrays["label"].astype(np.int32), num_classes


@functools.lru_cache(maxsize=4)
def tfds_raw(variant_dir: str, split: str, fmt: str) -> tuple[_Raw, int]:
    """One prepared split: uint8 images (n, H, W, C) with `scale` 1/255, and the class count."""
    if fmt == "tfrecord":
        x, y, num_classes = _read_tfrecord(variant_dir, split)
    else:
        x, y, num_classes = _read_array_record(variant_dir, split)
    x.flags.writeable = False
    y.flags.writeable = False
    return _Raw(x, y, 1.0 / 255.0, True), num_classes


def fetch_tfds(tfds_name: str, data_dir: str) -> str:
    """Downloads and prepares a tfds data set in the array_record format (needs the network).

    Args:
        tfds_name: tfds catalogue name (``"mnist"``, ``"cifar10"``, ``"cifar100"``).
        data_dir: the tfds data directory to write into.

    Returns:
        The directory of the prepared data set.

    Raises:
        DataUnavailableError: if TensorFlow is not installed (checked before any download).
    """
    if not _has_tensorflow():
        raise DataUnavailableError(
            f"{tfds_name}: preparing it with tfds needs TensorFlow (pip install 'ntk-limits[tf]'), "
            f"only once: reading it afterwards does not; or run `tfds build {tfds_name} "
            f"--file_format array_record --data_dir {data_dir}` where TensorFlow is installed"
        )
    import tensorflow_datasets as tfds

    builder = tfds.builder(tfds_name, data_dir=data_dir, file_format="array_record")
    builder.download_and_prepare()
    return os.fspath(builder.data_dir)
