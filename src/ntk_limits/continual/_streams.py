"""Task streams: ``T`` stacked tasks, their output heads, and the record of one pass.

A stream of ``T`` tasks is held as one :class:`TaskArrays` of stacked, equal-sized tasks.
Task ``k`` is scored on the output slice ``[head_offset[k], head_offset[k] + c)`` of the
network's outputs, ``c = head_size``: a single head (rotated streams, class-incremental
splits) has every offset 0; multi-head task-incremental splits have ``head_offset[k] = k·c``
and ``out_dim = c·T``. A pass over the stream, by a learner or in closed form, is recorded
as a :class:`SequentialResult`.
"""

from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "SequentialResult",
    "TaskArrays",
    "accuracy",
    "head_outputs",
    "stack_tasks",
    "stream_inputs",
]


class TaskArrays(NamedTuple):
    """A stream of ``T`` equal-sized tasks.

    Attributes:
      x_train: ``(T, n, ...)`` inputs.
      y_train: ``(T, n)`` int labels in ``0..head_size-1`` (of the task's head).
      x_test: ``(T, m, ...)``.
      y_test: ``(T, m)``.
      head_offset: ``(T,)`` int, first output of each task's head.
    """

    x_train: jax.Array
    y_train: jax.Array
    x_test: jax.Array
    y_test: jax.Array
    head_offset: jax.Array


class SequentialResult(NamedTuple):
    """One pass over a stream.

    Attributes:
      accuracy: ``(T, T)``, ``a[k, j]`` = test accuracy on task ``j`` after training task ``k``.
      train_accuracy: ``(T,)`` training accuracy reached on each task.
      epochs: ``(T,)`` epochs run per task (kernel regression: the training time ``t``).
      loss: ``(T,)`` final training loss per task.
      kernel_drift: ``(T,)`` ``‖K_after − K_before‖_F / ‖K_before‖_F`` of the empirical NTK
        on a probe set across each task (NaN when not measured).
    """

    accuracy: jax.Array
    train_accuracy: jax.Array
    epochs: jax.Array
    loss: jax.Array
    kernel_drift: jax.Array


def stack_tasks(tasks: Sequence[Any], *, multi_head: bool, flatten: bool = False) -> TaskArrays:
    """Stacks ``ntk_limits.data.Task``-like records into :class:`TaskArrays`.

    Every task is cut to the smallest task's train and test sizes (keeping its first
    examples), so that tasks stack; class-balanced streams lose at most a few examples.

    Args:
      tasks: records with ``x_train (n_k, ...)``, ``y_train (n_k,)``, ``x_test``,
        ``y_test`` and ``num_classes`` (equal for all tasks).
      multi_head: one head of ``num_classes`` outputs per task (offsets ``k·c``) instead of
        one shared head (offsets 0).
      flatten: reshape inputs to ``(n, d)`` (for MLPs).

    Returns:
      The stacked stream (numpy arrays, float32 inputs, int32 labels).
    """
    n = min(len(t.y_train) for t in tasks)
    m = min(len(t.y_test) for t in tasks)
    inputs = lambda x: x.reshape(x.shape[0], -1) if flatten else x
    stack = lambda arrays, size, dtype: np.stack([a[:size] for a in arrays]).astype(dtype)
    c = tasks[0].num_classes
    offsets = np.arange(len(tasks)) * c if multi_head else np.zeros(len(tasks))
    return TaskArrays(
        stack([inputs(np.asarray(t.x_train)) for t in tasks], n, np.float32),
        stack([np.asarray(t.y_train) for t in tasks], n, np.int32),
        stack([inputs(np.asarray(t.x_test)) for t in tasks], m, np.float32),
        stack([np.asarray(t.y_test) for t in tasks], m, np.int32),
        offsets.astype(np.int32),
    )


def stream_inputs(stream: TaskArrays) -> jax.Array:
    """All inputs of a stream, ``(T·n + T·m, ...)``: every task's train set, then every test set."""
    t, n = stream.y_train.shape
    m = stream.y_test.shape[1]
    x_train = stream.x_train.reshape(t * n, *stream.x_train.shape[2:])
    return jnp.concatenate([x_train, stream.x_test.reshape(t * m, *stream.x_test.shape[2:])])


def head_outputs(f: jax.Array, offset: jax.Array, head_size: int) -> jax.Array:
    """The outputs ``f[..., offset : offset + head_size]`` of one head (``offset`` traced)."""
    return jax.lax.dynamic_slice_in_dim(f, offset, head_size, axis=-1)


def accuracy(f: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of rows of ``f: (n, c)`` whose argmax is the label ``y: (n,)``; a scalar."""
    return jnp.mean(jnp.argmax(f, -1).astype(y.dtype) == y)  # int64 argmax under x64
