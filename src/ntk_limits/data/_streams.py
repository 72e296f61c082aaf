"""Continual-learning task streams built from a train and a test `Dataset` (pure numpy)."""

import os
from typing import NamedTuple

import numpy as np

from ntk_limits.data._dataset import Dataset
from ntk_limits.data._load import NUM_CLASSES, _locate, load, subset

__all__ = [
    "STREAMS",
    "Task",
    "make_stream",
    "permuted_stream",
    "rotate_images",
    "rotated_stream",
    "split_stream",
]


class Task(NamedTuple):
    """One task of a stream.

    Attributes:
        task_id: position in the stream, 0, 1, ...
        x_train: float32 inputs (n_train, ...), same trailing shape as the source data set.
        y_train: int32 labels (n_train,) in ``0..num_classes-1`` (the head's label space).
        x_test: float32 inputs (n_test, ...).
        y_test: int32 labels (n_test,).
        num_classes: size of the output head this task is scored on.
        classes: the original class ids present in this task, in head order for
            task-incremental splits (``y == i`` means original class ``classes[i]``).
        description: e.g. ``"rotation 45 deg"``, ``"classes (0, 1)"``, ``"permutation 2"``.
    """

    task_id: int
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    classes: tuple[int, ...]
    description: str


def rotate_images(x: np.ndarray, angle: float) -> np.ndarray:
    """Rotates images counter-clockwise (as displayed, row 0 on top) about their centre.

    Multiples of 90 degrees on square images are exact (`np.rot90` over axes (1, 2), so 90
    degrees equals ``np.rot90(x, 1, axes=(1, 2))``); other angles use bilinear interpolation,
    `scipy.ndimage.rotate(order=1, reshape=False)`, which agrees with that sign convention.
    Pixels rotated in from outside the frame take each image-channel's minimum value (the
    background of digit images, before or after an affine normalisation).

    Args:
        x: images (n, H, W, C).
        angle: rotation in degrees.

    Returns:
        Rotated images (n, H, W, C), same dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"rotate_images needs images (n, H, W, C), got shape {x.shape}")
    if float(angle) % 90.0 == 0.0 and x.shape[1] == x.shape[2]:
        return np.ascontiguousarray(np.rot90(x, int(angle // 90) % 4, axes=(1, 2)))
    from scipy import ndimage

    background = x.min(axis=(1, 2), keepdims=True)
    rotated = ndimage.rotate(x - background, angle, axes=(2, 1), reshape=False, order=1)
    return (rotated + background).astype(x.dtype)


def pool_images(x: np.ndarray, factor: int) -> np.ndarray:
    """Average-pools images by ``factor`` in both spatial axes (trailing rows/columns dropped).

    Args:
        x: images (n, H, W, C).
        factor: pooling window and stride, a positive integer (1 returns ``x`` unchanged).

    Returns:
        Images (n, H // factor, W // factor, C), same dtype.
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"pool_images needs images (n, H, W, C), got shape {x.shape}")
    if not isinstance(factor, int) or factor < 1 or factor > min(x.shape[1:3]):
        raise ValueError(f"pool factor must be an int in 1..{min(x.shape[1:3])}, got {factor!r}")
    if factor == 1:
        return x
    n, h, w, c = x.shape
    hp, wp = h // factor, w // factor
    blocks = x[:, : hp * factor, : wp * factor].reshape(n, hp, factor, wp, factor, c)
    return blocks.mean(axis=(2, 4)).astype(x.dtype)


def rotated_stream(
    train: Dataset,
    test: Dataset,
    angles: tuple[float, ...] | None = None,
    num_tasks: int = 5,
    max_angle: float = 90.0,
) -> tuple[Task, ...]:
    """Rotated-images stream: task t shows every class, rotated by ``angles[t]`` degrees.

    Args:
        train: image data set, `x` (n_train, H, W, C).
        test: image data set, `x` (n_test, H, W, C).
        angles: rotation of each task in degrees (counter-clockwise, see `rotate_images`);
            default ``np.linspace(0, max_angle, num_tasks)``, i.e. 0, 22.5, 45, 67.5, 90.
        num_tasks: number of tasks when `angles` is None.
        max_angle: last angle when `angles` is None.

    Returns:
        One `Task` per angle, with all `train.num_classes` classes and the original labels.
    """
    if angles is None:
        angles = tuple(float(a) for a in np.linspace(0.0, max_angle, num_tasks))
    classes = tuple(range(train.num_classes))
    return tuple(
        Task(t, rotate_images(train.x, a), train.y, rotate_images(test.x, a), test.y,
             train.num_classes, classes, f"rotation {a:g} deg")
        for t, a in enumerate(angles)
    )  # fmt: skip


def _relabel(y: np.ndarray, classes: tuple[int, ...], num_classes: int) -> np.ndarray:
    lookup = np.full(num_classes, -1, np.int32)
    lookup[list(classes)] = np.arange(len(classes), dtype=np.int32)
    return lookup[y]


def split_stream(
    train: Dataset,
    test: Dataset,
    classes_per_task: int,
    task_incremental: bool = True,
    class_order: tuple[int, ...] | None = None,
) -> tuple[Task, ...]:
    """Split stream: the classes are cut into consecutive groups, one task per group.

    Args:
        train: data set, `x` (n_train, ...), `y` (n_train,).
        test: data set, `x` (n_test, ...), `y` (n_test,).
        classes_per_task: group size c; must divide ``train.num_classes`` (K).
        task_incremental: if True each task has its own head of c outputs and labels are
            remapped to ``0..c-1`` in the order of `Task.classes`; if False
            (class-incremental) labels stay global and every head has K outputs.
        class_order: a permutation of ``0..K-1`` to group; default ``0, 1, ..., K-1`` (so
            split MNIST is (0, 1), (2, 3), ...).

    Returns:
        K / c tasks whose class sets are disjoint and together cover all K classes.
    """
    k = train.num_classes
    order = tuple(range(k)) if class_order is None else tuple(int(c) for c in class_order)
    if sorted(order) != list(range(k)) or k % classes_per_task:
        raise ValueError(
            f"need a permutation of 0..{k - 1} cut into groups of {classes_per_task} "
            f"dividing {k}; got class_order={class_order}"
        )
    tasks = []
    for t, start in enumerate(range(0, k, classes_per_task)):
        classes = order[start : start + classes_per_task]
        keep_train, keep_test = np.isin(train.y, classes), np.isin(test.y, classes)
        y_train, y_test = train.y[keep_train], test.y[keep_test]
        if task_incremental:
            y_train, y_test = _relabel(y_train, classes, k), _relabel(y_test, classes, k)
        head = len(classes) if task_incremental else k
        tasks.append(Task(t, train.x[keep_train], y_train, test.x[keep_test], y_test, head,
                          classes, f"classes {classes}"))  # fmt: skip
    return tuple(tasks)


def _permute(x: np.ndarray, perm: np.ndarray) -> np.ndarray:
    """Permutes the pixels (channels kept together) of images, or the features of a table."""
    flat = x.reshape(x.shape[0], perm.size, -1)
    return flat[:, perm].reshape(x.shape)


def permuted_stream(
    train: Dataset, test: Dataset, num_tasks: int, seed: int = 0
) -> tuple[Task, ...]:
    """Permuted stream: task t applies one fixed random permutation to every input.

    Task 0 uses the identity permutation (the unpermuted data), the common convention;
    task t >= 1 uses ``np.random.default_rng((seed, t)).permutation(P)``, so a longer stream
    extends a shorter one. P is the number of pixels H*W (all C channels of a pixel move
    together) or of features d.

    Args:
        train: data set, `x` (n_train, H, W, C) or (n_train, d).
        test: data set with the same trailing shape.
        num_tasks: number of tasks.
        seed: seed of the permutations.

    Returns:
        `num_tasks` tasks with all classes and the original labels.
    """
    num_positions = int(np.prod(train.x.shape[1:3])) if train.x.ndim == 4 else train.x.shape[1]
    classes = tuple(range(train.num_classes))
    tasks = []
    for t in range(num_tasks):
        perm = np.arange(num_positions)
        if t > 0:
            perm = np.random.default_rng((seed, t)).permutation(num_positions)
        tasks.append(Task(t, _permute(train.x, perm), train.y, _permute(test.x, perm), test.y,
                          train.num_classes, classes, f"permutation {t}"))  # fmt: skip
    return tuple(tasks)


# name -> (data set, builder, options)
STREAMS = {
    "rotated_mnist5k": ("mnist5k", rotated_stream, {}),
    "split_mnist5k": ("mnist5k", split_stream, {"classes_per_task": 2}),
    "permuted_mnist5k": ("mnist5k", permuted_stream, {"num_tasks": 5}),
    "rotated_digits": ("digits", rotated_stream, {}),
    "split_digits": ("digits", split_stream, {"classes_per_task": 2}),
    "rotated_mnist": ("mnist", rotated_stream, {}),
    "split_cifar10": ("cifar10", split_stream, {"classes_per_task": 2}),
    "split_cifar100": ("cifar100", split_stream, {"classes_per_task": 5}),
    "split_tiny_imagenet": ("tiny_imagenet", split_stream, {"classes_per_task": 10}),
}
STREAMS |= {  # the paper's streams on stand-ins of their data sets (data._standin)
    f"{name}_standin": (f"{dataset}_standin", builder, options)
    for name, (dataset, builder, options) in tuple(STREAMS.items())
    if dataset in ("mnist", "cifar10", "cifar100", "tiny_imagenet")
}


def stream_heads(name: str, **options) -> tuple[int, int]:
    """``(number of tasks, classes per task head)`` of `make_stream` (name, **options).

    Reads no data: computed from the stream's builder and options and the data set's
    class count. Args as in `make_stream`.
    """
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; known: {', '.join(STREAMS)}")
    dataset, builder, defaults = STREAMS[name]
    kwargs, k = {**defaults, **options}, NUM_CLASSES[dataset]
    if builder is split_stream:
        per_task = kwargs["classes_per_task"]
        return k // per_task, per_task if kwargs.get("task_incremental", True) else k
    if builder is rotated_stream:
        angles = kwargs.get("angles")
        return (kwargs.get("num_tasks", 5) if angles is None else len(angles)), k
    return kwargs["num_tasks"], k


def make_stream(
    name: str,
    *,
    data_dir: str | os.PathLike | None = None,
    seed: int = 0,
    n_train: int | None = None,
    n_test: int | None = None,
    **options,
) -> tuple[Task, ...]:
    """A named stream of `STREAMS` (5 rotations 0..90 deg; 5x2, 20x5 or 20x10 class splits).

    Args:
        name: e.g. ``"rotated_mnist5k"``, ``"split_cifar100"``.
        data_dir: data directory of the paper sets (see `load`).
        seed: seed of the embedded sets' train/test split, the subsets and permutations.
        n_train: if given, a class-balanced subset of the train split of this size.
        n_test: likewise for the test split.
        **options: override the builder's options, e.g. ``num_tasks=3``,
            ``task_incremental=False``, ``angles=(0, 45)``.

    Returns:
        The tasks, in order.

    Raises:
        DataUnavailableError: if the data set is not here (checked before anything is read).
    """
    if name not in STREAMS:
        raise ValueError(f"unknown stream {name!r}; known: {', '.join(STREAMS)}")
    dataset, builder, defaults = STREAMS[name]
    _locate(dataset, ("train", "test"), data_dir)
    train = load(dataset, split="train", data_dir=data_dir, seed=seed)
    test = load(dataset, split="test", data_dir=data_dir, seed=seed)
    train = train if n_train is None else subset(train, n_train, seed)
    test = test if n_test is None else subset(test, n_test, seed)
    kwargs = {**defaults, **options}
    if builder is permuted_stream:
        kwargs.setdefault("seed", seed)
    return builder(train, test, **kwargs)
