"""Continual learning: task streams, sequential fine-tuning, forgetting, the kernel regime.

A stream of ``T`` tasks is one :class:`TaskArrays` of stacked, equal-sized tasks
(:func:`stack_tasks`). A network is fine-tuned on task 0, 1, ..., T-1 in turn
(:func:`fine_tuning`, a :class:`Learner` over immutable :class:`LearnerState`;
:func:`sequential_train` runs it over the stream) and, after each task ``k``, scored on
every task's test set, giving the accuracy matrix ``a[k, j]`` of a
:class:`SequentialResult`. :func:`continual_metrics` summarises it (average accuracy,
forgetting, learning accuracy). The kernel-regime counterpart,
:func:`sequential_kernel_regression`, trains a kernel machine (the infinite-width NTK, or
any fixed kernel) on the same stream by MSE in closed form.

One module per concept: ``_streams`` (stream arrays, heads, the pass record), ``_metrics``,
``_learners``, ``_kernel_regression``; this package re-exports their public names.

Example:
  >>> stream = stack_tasks(data.make_stream("split_digits"), multi_head=True, flatten=True)
  >>> run = sequential_train(arch.apply_fn, optax.sgd(0.1), head_size=2, batch_size=32)
  >>> _, res = jax.jit(run)(params, stream, key, 1, 2.0)   # 1 epoch per task
  >>> continual_metrics(res.accuracy).forgetting.shape     # res.accuracy: (T, T)
  ()
"""

from ntk_limits.continual._kernel_regression import sequential_kernel_regression
from ntk_limits.continual._learners import (
    Learner,
    LearnerState,
    TaskLog,
    fine_tuning,
    sequential_train,
)
from ntk_limits.continual._metrics import (
    ContinualMetrics,
    average_accuracy,
    average_forgetting,
    continual_metrics,
    learning_accuracy,
)
from ntk_limits.continual._streams import SequentialResult, TaskArrays, stack_tasks, stream_inputs

__all__ = [
    "ContinualMetrics",
    "Learner",
    "LearnerState",
    "SequentialResult",
    "TaskArrays",
    "TaskLog",
    "average_accuracy",
    "average_forgetting",
    "continual_metrics",
    "fine_tuning",
    "learning_accuracy",
    "sequential_kernel_regression",
    "sequential_train",
    "stack_tasks",
    "stream_inputs",
]
