"""Continual learning: sequential fine-tuning, accuracy matrices, forgetting, kernel regime.

A stream of ``T`` tasks is held as one :class:`TaskArrays` of stacked, equal-sized tasks.
A network is fine-tuned on task 0, 1, ..., T-1 in turn (no continual-learning method)
and, after each task ``k``, scored on every task's test set, giving the accuracy matrix
``a[k, j]`` (rows: after training task ``k``; columns: test set of task ``j``).

Metrics (Chaudhry et al. 2018; Mirzadeh et al. 2022), with ``T`` tasks indexed ``0..T-1``:

* average accuracy ``A = mean_j a[T-1, j]``;
* average forgetting ``F = mean_{j < T-1} (max_{k < T-1} a[k, j] − a[T-1, j])``, the best
  accuracy any earlier model had on task ``j`` minus the final one (rows ``k < j`` are the
  accuracy before task ``j`` was trained; they rarely attain the maximum);
* learning accuracy ``mean_j a[j, j]``, the accuracy on each task right after learning it.

Heads: task ``k`` is scored on the output slice ``[head_offset[k], head_offset[k] + c)`` of
the network's outputs, ``c = head_size``. A single head (rotated streams, class-incremental
splits) has every offset 0; multi-head task-incremental splits have ``head_offset[k] = k·c``
and ``out_dim = c·T``.

The kernel-regime counterpart, :func:`sequential_kernel_regression`, trains a kernel
machine (the infinite-width NTK, or any fixed kernel) on the same stream by MSE on one-hot
targets in closed form, each task starting from the previous task's function.
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits.kernels import kernel_change
from ntk_limits.linearize import gradient_descent_mse, linearize

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


class ContinualMetrics(NamedTuple):
    """Summary of an accuracy matrix (scalars, or batched like the matrix)."""

    average_accuracy: jax.Array
    forgetting: jax.Array
    learning_accuracy: jax.Array


def average_accuracy(acc: jax.Array) -> jax.Array:
    """``A = mean_j a[T-1, j]`` of ``acc: (..., T, T)``; returns ``(...)``."""
    return jnp.mean(acc[..., -1, :], axis=-1)


def average_forgetting(acc: jax.Array) -> jax.Array:
    """``F = mean_{j<T-1} (max_{k<T-1} a[k, j] − a[T-1, j])`` of ``acc: (..., T, T)``, T ≥ 2."""
    best = jnp.max(acc[..., :-1, :-1], axis=-2)
    return jnp.mean(best - acc[..., -1, :-1], axis=-1)


def learning_accuracy(acc: jax.Array) -> jax.Array:
    """``mean_j a[j, j]`` of ``acc: (..., T, T)``; returns ``(...)``."""
    return jnp.mean(jnp.diagonal(acc, axis1=-2, axis2=-1), axis=-1)


def continual_metrics(acc: jax.Array) -> ContinualMetrics:
    """Average accuracy, average forgetting and learning accuracy of ``acc: (..., T, T)``."""
    return ContinualMetrics(average_accuracy(acc), average_forgetting(acc), learning_accuracy(acc))


def _head(f: jax.Array, offset: jax.Array, head_size: int) -> jax.Array:
    return jax.lax.dynamic_slice_in_dim(f, offset, head_size, axis=-1)


def _accuracy(f: jax.Array, y: jax.Array) -> jax.Array:
    return jnp.mean(jnp.argmax(f, -1) == y)


def _task_loss(kind: str, f: jax.Array, y: jax.Array) -> jax.Array:
    if kind == "xent":
        return optax.softmax_cross_entropy_with_integer_labels(f, y).mean()
    return 0.5 * jnp.mean((f - jax.nn.one_hot(y, f.shape[-1], dtype=f.dtype)) ** 2)


class LearnerState(NamedTuple):
    """State of a continual learner: its parameters and how many tasks it has seen."""

    params: Any
    tasks_seen: jax.Array


class TaskLog(NamedTuple):
    """What training on one task did (scalars).

    Attributes:
      train_accuracy: accuracy on the task's whole training set when training stopped.
      epochs: epochs run (at least 1).
      loss: mean minibatch loss of the last epoch.
    """

    train_accuracy: jax.Array
    epochs: jax.Array
    loss: jax.Array


class Learner(NamedTuple):
    """A continual learner as a pair of pure functions.

    Attributes:
      init: ``params -> LearnerState``.
      update: ``(state, x (n, ...), y (n,), head_offset, key, max_epochs,
        target_accuracy) -> (state, TaskLog)``: learns one task.
    """

    init: Callable[..., LearnerState]
    update: Callable[..., tuple[LearnerState, TaskLog]]


def fine_tuning(
    apply_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    head_size: int,
    batch_size: int | None = None,
    loss: str = "xent",
) -> Learner:
    """Plain sequential fine-tuning: ``optimizer`` on each task in turn, nothing else.

    On each task the optimizer state is reset and whole epochs are run (minibatches from a
    fresh permutation each epoch, a last partial batch dropped) until the training
    accuracy reaches ``target_accuracy`` or ``max_epochs`` epochs have run, at least one.
    Both limits are traced, so one compiled program serves every epochs setting; under
    ``vmap`` the loop runs until every member is done, finished members unchanged.

    Args:
      apply_fn: ``(params, x) -> (n, out_dim)``.
      optimizer: an optax transformation (``optax.sgd(lr)`` for SGD).
      head_size: outputs per head ``c``; a task uses outputs ``[offset, offset + c)``.
      batch_size: minibatch size (``None``: full batch, one step per epoch).
      loss: ``"xent"`` (softmax cross-entropy on the head) or ``"mse"``
        (``0.5·mean((f − onehot(y))²)`` on the head, neural-tangents' convention).

    Returns:
      The :class:`Learner`.
    """
    if loss not in ("xent", "mse"):
        raise ValueError(f"unknown loss {loss!r}; allowed: xent, mse")

    def objective(params, x, y, offset):
        return _task_loss(loss, _head(apply_fn(params, x), offset, head_size), y)

    def epoch(params, opt_state, x, y, offset, key):
        n = x.shape[0]
        b = n if batch_size is None else min(batch_size, n)
        batches = jax.random.permutation(key, n)[: (n // b) * b].reshape(-1, b)

        def step(carry, idx):
            params, opt_state = carry
            value, grads = jax.value_and_grad(objective)(params, x[idx], y[idx], offset)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, opt_state), values = jax.lax.scan(step, (params, opt_state), batches)
        return params, opt_state, jnp.mean(values)

    def update(state, x, y, offset, key, max_epochs, target_accuracy):
        def cond(carry):
            _, _, e, acc, _ = carry
            return (e < 1) | ((e < max_epochs) & (acc < target_accuracy))

        def body(carry):
            params, opt_state, e, _, _ = carry
            params, opt_state, value = epoch(
                params, opt_state, x, y, offset, jax.random.fold_in(key, e)
            )
            acc = _accuracy(_head(apply_fn(params, x), offset, head_size), y)
            return params, opt_state, e + 1, acc, value

        zero = jnp.zeros((), jnp.float32)
        init = (state.params, optimizer.init(state.params), jnp.zeros((), jnp.int32), zero, zero)
        params, _, e, acc, value = jax.lax.while_loop(cond, body, init)
        return LearnerState(params, state.tasks_seen + 1), TaskLog(acc, e, value)

    return Learner(lambda params: LearnerState(params, jnp.zeros((), jnp.int32)), update)


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


def _evaluate(apply_fn, params, stream: TaskArrays, head_size: int) -> jax.Array:
    """``(T,)`` test accuracy of ``params`` on every task, each on its own head."""
    t, m = stream.y_test.shape
    f = apply_fn(params, stream.x_test.reshape(t * m, *stream.x_test.shape[2:]))
    f = f.reshape(t, m, -1)
    heads = jax.vmap(lambda fj, o: _head(fj, o, head_size))(f, stream.head_offset)
    return jax.vmap(_accuracy)(heads, stream.y_test)


def sequential_train(
    apply_fn: Callable,
    optimizer: optax.GradientTransformation,
    *,
    head_size: int,
    batch_size: int | None = None,
    loss: str = "xent",
    linearized: bool = False,
    kernel_fn: Callable | None = None,
) -> Callable:
    """Returns ``run(params, stream, key, max_epochs, target_accuracy) -> (params, result)``.

    ``run`` fine-tunes (:func:`fine_tuning`) on each task of ``stream`` in order inside one
    ``lax.scan`` and scores every task after each; jit it and ``vmap`` it over seeds
    (``in_axes=(0, None, 0, None, None)``).

    Args:
      apply_fn: ``(params, x) -> (n, out_dim)``.
      optimizer: optax transformation.
      head_size: outputs per head.
      batch_size: minibatch size (``None``: full batch).
      loss: ``"xent"`` or ``"mse"``.
      linearized: train the network linearised at the initial ``params``
        (:func:`ntk_limits.linearize.linearize`) instead of the network itself.
      kernel_fn: ``params -> (p, p)`` kernel whose drift per task is recorded, e.g.
        ``lambda p: empirical_ntk_fn(apply_fn)(probe, None, p)`` (``None``: not recorded).

    Returns:
      ``run``; ``max_epochs`` (int) and ``target_accuracy`` (float, > 1 for a fixed number
      of epochs) may be traced. It returns the final parameters and a
      :class:`SequentialResult`.

    Example:
      >>> ntk = empirical_ntk_fn(arch.apply_fn)
      >>> run = sequential_train(arch.apply_fn, optax.sgd(0.1), head_size=10, batch_size=32,
      ...                        kernel_fn=lambda p: ntk(probe, None, p))
      >>> _, res = jax.jit(jax.vmap(run, (0, None, 0, None, None)))(params, stream, keys, 1, 2.)
      >>> res.accuracy.shape                                   # (seeds, T, T)
    """

    def run(params, stream: TaskArrays, key, max_epochs, target_accuracy):
        f = linearize(apply_fn, params) if linearized else apply_fn
        learner = fine_tuning(f, optimizer, head_size=head_size, batch_size=batch_size, loss=loss)
        kernel = kernel_fn if kernel_fn is not None else (lambda p: jnp.zeros(()))

        def task(carry, xs):
            state, k_before = carry
            x, y, offset, k = xs
            state, log = learner.update(state, x, y, offset, k, max_epochs, target_accuracy)
            k_after = kernel(state.params)
            drift = kernel_change(k_before, k_after) if kernel_fn is not None else jnp.nan
            acc = _evaluate(f, state.params, stream, head_size)
            return (state, k_after), (acc, log, drift)

        keys = jax.random.split(key, stream.y_train.shape[0])
        xs = (stream.x_train, stream.y_train, stream.head_offset, keys)
        (state, _), (acc, log, drift) = jax.lax.scan(
            task, (learner.init(params), kernel(params)), xs
        )
        result = SequentialResult(
            acc, log.train_accuracy, log.epochs, log.loss, drift * jnp.ones_like(log.loss)
        )
        return state.params, result

    return run


def stream_inputs(stream: TaskArrays) -> jax.Array:
    """All inputs of a stream, ``(T·n + T·m, ...)``: every task's train set, then every test set."""
    t, n = stream.y_train.shape
    m = stream.y_test.shape[1]
    x_train = stream.x_train.reshape(t * n, *stream.x_train.shape[2:])
    return jnp.concatenate([x_train, stream.x_test.reshape(t * m, *stream.x_test.shape[2:])])


def sequential_kernel_regression(
    k_inputs_train: jax.Array,
    stream: TaskArrays,
    times: jax.Array,
    *,
    head_size: int,
    out_dim: int,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    discrete: bool = False,
    f0: jax.Array | None = None,
) -> tuple[jax.Array, SequentialResult]:
    """Kernel-regime sequential training: MSE kernel gradient descent task by task, closed form.

    On task ``k`` with train inputs ``X_k``, targets ``Y_k = onehot(y_k)`` ``(n, c)`` and
    the previous function ``f_{k−1}``, the head's outputs at any input ``x`` move as
    ``f_k(x) = f_{k−1}(x) + Θ(x, X_k) Θ_kk⁻¹ (I − e^{−η Θ_kk t / (n c)}) (Y_k − f_{k−1}(X_k))``
    (gradient flow on ``‖f − Y‖² / (2 n c)``; ``discrete=True``: ``t`` GD steps,
    ``(I − η Θ_kk / (n c))^t``), via :func:`ntk_limits.linearize.gradient_descent_mse`.
    The kernel is diagonal in the outputs, so other heads' outputs do not move.

    Args:
      k_inputs_train: ``(N, T·n)`` kernel between :func:`stream_inputs` (``N = T·n + T·m``)
        and all training inputs in task order.
      stream: the tasks.
      times: ``(n_t,)`` training times per task (``jnp.inf``: converged), one run each.
      head_size: outputs per head ``c``.
      out_dim: total outputs.
      learning_rate: ``η``.
      diag_reg: ridge, relative to the mean diagonal of ``Θ_kk``.
      discrete: gradient descent with ``t`` steps instead of gradient flow.
      f0: ``(N, out_dim)`` initial outputs (``None``: zeros, the infinite-width mean).

    Returns:
      ``(f, result)``: final outputs ``(n_t, N, out_dim)`` on :func:`stream_inputs` and a
      :class:`SequentialResult` whose fields have a leading ``n_t`` axis (``epochs`` holds
      ``t``; ``kernel_drift`` is 0, the kernel being fixed).
    """
    t_tasks, n = stream.y_train.shape
    m = stream.y_test.shape[1]
    n_all = k_inputs_train.shape[0]
    times = jnp.asarray(times, k_inputs_train.dtype)
    f0 = jnp.zeros((n_all, out_dim), k_inputs_train.dtype) if f0 is None else f0
    f = jnp.broadcast_to(f0, (times.shape[0], *f0.shape))

    def task(f, xs):
        k, y, offset = xs
        k_z = jax.lax.dynamic_slice_in_dim(k_inputs_train, k * n, n, axis=1)  # (N, n)
        k_kk = jax.lax.dynamic_slice_in_dim(k_z, k * n, n, axis=0)
        targets = jax.nn.one_hot(y, head_size, dtype=f.dtype)
        predict = gradient_descent_mse(
            k_kk, targets, learning_rate, diag_reg=diag_reg, discrete=discrete
        )

        def one(t, f_t):
            head = _head(f_t, offset, head_size)
            train0 = jax.lax.dynamic_slice_in_dim(head, k * n, n, axis=0)
            train, moved = predict(t, train0, head, k_z)
            f_t = jax.lax.dynamic_update_slice_in_dim(f_t, moved, offset, axis=1)
            return f_t, _accuracy(train, y), 0.5 * jnp.mean((train - targets) ** 2)

        f, train_acc, loss = jax.vmap(one)(times, f)
        tests = f[:, t_tasks * n :].reshape(times.shape[0], t_tasks, m, out_dim)
        heads = jax.vmap(lambda fj, o: _head(fj, o, head_size), (1, 0), 1)(
            tests, stream.head_offset
        )
        acc = jax.vmap(jax.vmap(_accuracy), (0, None))(heads, stream.y_test)
        return f, (acc, train_acc, loss)

    xs = (jnp.arange(t_tasks), stream.y_train, stream.head_offset)
    f, (acc, train_acc, loss) = jax.lax.scan(task, f, xs)
    swap = lambda a: jnp.moveaxis(a, 0, 1)
    epochs = jnp.broadcast_to(times[:, None], (times.shape[0], t_tasks))
    result = SequentialResult(
        swap(acc), swap(train_acc), epochs, swap(loss), jnp.zeros_like(epochs)
    )
    return f, result
