"""Continual learners: sequential fine-tuning as ``(init, update)`` over immutable state.

A learner meets tasks one at a time: :func:`fine_tuning` trains on each task in turn with
an optax optimizer and nothing else (no continual-learning method).
:func:`sequential_train` runs a learner over a whole :class:`TaskArrays` stream inside one
``lax.scan`` and scores every task after each, giving the accuracy matrix ``a[k, j]`` (rows:
after training task ``k``; columns: test set of task ``j``) as a :class:`SequentialResult`;
optionally it trains the linearised network and records the empirical NTK's drift per task.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntk_limits.continual._streams import SequentialResult, TaskArrays, accuracy, head_outputs
from ntk_limits.kernels import kernel_change
from ntk_limits.linearize import linearize

__all__ = ["Learner", "LearnerState", "TaskLog", "fine_tuning", "sequential_train"]


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


def _task_loss(kind: str, f: jax.Array, y: jax.Array) -> jax.Array:
    if kind == "xent":
        return optax.softmax_cross_entropy_with_integer_labels(f, y).mean()
    return 0.5 * jnp.mean((f - jax.nn.one_hot(y, f.shape[-1], dtype=f.dtype)) ** 2)


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
        return _task_loss(loss, head_outputs(apply_fn(params, x), offset, head_size), y)

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
            acc = accuracy(head_outputs(apply_fn(params, x), offset, head_size), y)
            return params, opt_state, e + 1, acc, value

        zero = jnp.zeros((), jnp.float32)
        init = (state.params, optimizer.init(state.params), jnp.zeros((), jnp.int32), zero, zero)
        params, _, e, acc, value = jax.lax.while_loop(cond, body, init)
        return LearnerState(params, state.tasks_seen + 1), TaskLog(acc, e, value)

    return Learner(lambda params: LearnerState(params, jnp.zeros((), jnp.int32)), update)


def _evaluate(apply_fn, params, stream: TaskArrays, head_size: int) -> jax.Array:
    """``(T,)`` test accuracy of ``params`` on every task, each on its own head."""
    t, m = stream.y_test.shape
    f = apply_fn(params, stream.x_test.reshape(t * m, *stream.x_test.shape[2:]))
    f = f.reshape(t, m, -1)
    heads = jax.vmap(lambda fj, o: head_outputs(fj, o, head_size))(f, stream.head_offset)
    return jax.vmap(accuracy)(heads, stream.y_test)


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
