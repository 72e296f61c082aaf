"""Tests of ntk_limits.continual._streams: stacking real task streams, stream inputs."""

import numpy as np

from ntk_limits import continual, data
from tests.continual.helpers import random_stream


def test_stack_tasks_cuts_to_smallest_and_sets_heads():
    tasks = data.make_stream("split_digits", seed=0)
    stream = continual.stack_tasks(tasks, multi_head=True, flatten=True)
    n = min(len(t.y_train) for t in tasks)
    assert stream.x_train.shape == (5, n, 64) and stream.y_train.shape == (5, n)
    np.testing.assert_array_equal(stream.head_offset, [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(stream.y_train[1], tasks[1].y_train[:n])
    np.testing.assert_array_equal(stream.x_train[2], tasks[2].x_train[:n].reshape(n, 64))
    assert stream.x_train.dtype == np.float32 and stream.y_train.dtype == np.int32
    single = continual.stack_tasks(tasks, multi_head=False)
    assert single.x_train.shape[2:] == (8, 8, 1) and not single.head_offset.any()


def test_streams_deterministic_by_seed():
    a = continual.stack_tasks(data.make_stream("rotated_digits", seed=3), multi_head=False)
    b = continual.stack_tasks(data.make_stream("rotated_digits", seed=3), multi_head=False)
    c = continual.stack_tasks(data.make_stream("rotated_digits", seed=4), multi_head=False)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(a.y_train, c.y_train)


def test_stream_inputs_are_train_sets_then_test_sets_in_task_order():
    stream = random_stream(0)
    z = np.asarray(continual.stream_inputs(stream))
    want = np.concatenate([*np.asarray(stream.x_train), *np.asarray(stream.x_test)])
    np.testing.assert_array_equal(z, want)  # a reshape and a concatenation: exact
