"""Tiny real data directories, built offline: tfds array_record sets, Tiny ImageNet, UCI csv.

The tfds sets are written by subclasses of tfds' own MNIST/CIFAR builders (so the feature
specs, names and versions are the real ones) whose generators yield deterministic fake images
instead of downloading; `download_and_prepare(file_format="array_record")` then writes the same
files a real `tfds build` does. PNG encoding goes through PIL, so TensorFlow is not needed.
"""

import io

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.image_classification import cifar, mnist

SIZES = {"mnist": (60, 20), "cifar10": (40, 20), "cifar100": (200, 100)}  # (train, test)
SPLIT_SEED = {"train": 0, "test": 1}


def fake_image(shape, split: str, index: int) -> np.ndarray:
    """The uint8 image the fake builders store as example `index` of `split`.

    tfds shuffles records when writing, so pixel (0, 0, 0) holds `index` to match them back.
    """
    rng = np.random.default_rng((SPLIT_SEED[split], index))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    image[0, 0, 0] = index
    return image


def _png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="png")
    return buffer.getvalue()


def _fake_example(features, split: str, index: int) -> dict:
    example = {}
    for key, feature in features.items():
        if isinstance(feature, tfds.features.Image):
            example[key] = _png(fake_image(feature.shape, split, index))
        elif isinstance(feature, tfds.features.ClassLabel):
            example[key] = index % feature.num_classes
        else:
            example[key] = f"{split}{index:05d}"
    return example


class _FakeSplits:
    """Mixin: splits of `SIZES[name]` fake examples instead of the download."""

    # tfds looks for a checksums file next to the builder's code; for a builder defined in a
    # package it needs `importlib_resources`, which tfds 4.9.10 does not install. No downloads
    # happen here, so there is no code path to look next to.
    code_path = None

    def _split_generators(self, dl_manager):
        del dl_manager
        train, test = SIZES[self.name]
        return {"train": self._fake("train", train), "test": self._fake("test", test)}

    def _fake(self, split, n):
        for index in range(n):
            yield index, _fake_example(self.info.features, split, index)


class FakeMnist(_FakeSplits, mnist.MNIST, skip_registration=True):
    name = "mnist"


class FakeCifar10(_FakeSplits, cifar.Cifar10, skip_registration=True):
    name = "cifar10"


class FakeCifar100(_FakeSplits, cifar.Cifar100, skip_registration=True):
    name = "cifar100"


@pytest.fixture(scope="session")
def tfds_dir(tmp_path_factory):
    """A tfds data directory holding fake mnist, cifar10 and cifar100 in array_record form."""
    root = tmp_path_factory.mktemp("tfds")
    config = tfds.download.DownloadConfig(compute_stats=tfds.download.ComputeStatsMode.SKIP)
    for builder_cls in (FakeMnist, FakeCifar10, FakeCifar100):
        builder = builder_cls(data_dir=str(root), file_format="array_record")
        builder.download_and_prepare(download_config=config)
    return str(root)


WNIDS = ("n03", "n01", "n02")  # wnids.txt order; labels follow the sorted order


def tiny_pixel(wnid: str, k: int) -> int:
    """The constant grey level of image k of class `wnid` in the fake Tiny ImageNet."""
    return 40 * WNIDS.index(wnid) + 10 * k + 5


def _save(path, level: int, grey: bool) -> None:
    image = Image.new("L" if grey else "RGB", (64, 64), level if grey else (level,) * 3)
    image.save(path, format="JPEG", quality=95)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """A fake ``tiny-imagenet-200/``: 3 classes, 2 train and 1 val JPEG each, one greyscale."""
    root = tmp_path_factory.mktemp("tiny")
    base = root / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    rows = []
    for c, wnid in enumerate(WNIDS):
        folder = base / "train" / wnid / "images"
        folder.mkdir(parents=True)
        for k in range(2):
            _save(folder / f"{wnid}_{k}.JPEG", tiny_pixel(wnid, k), grey=(c == 0 and k == 1))
        _save(base / "val" / "images" / f"val_{c}.JPEG", tiny_pixel(wnid, 0), grey=False)
        rows.append(f"val_{c}.JPEG\t{wnid}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(rows) + "\n")
    return str(root)
