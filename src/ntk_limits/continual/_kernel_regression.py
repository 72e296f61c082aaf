"""The kernel regime of a continual stream: kernel regression task by task, in closed form.

:func:`sequential_kernel_regression` trains a kernel machine (the infinite-width NTK, or any
fixed kernel) on a :class:`TaskArrays` stream by MSE on one-hot targets, each task starting
from the previous task's function, and records the same :class:`SequentialResult` as the
learners of :mod:`ntk_limits.continual` (accuracy matrix, training accuracy, loss).
"""

import jax
import jax.numpy as jnp

from ntk_limits.continual._streams import SequentialResult, TaskArrays, accuracy, head_outputs
from ntk_limits.linearize import gradient_descent_mse

__all__ = ["sequential_kernel_regression"]


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
            head = head_outputs(f_t, offset, head_size)
            train0 = jax.lax.dynamic_slice_in_dim(head, k * n, n, axis=0)
            train, moved = predict(t, train0, head, k_z)
            f_t = jax.lax.dynamic_update_slice_in_dim(f_t, moved, offset, axis=1)
            return f_t, accuracy(train, y), 0.5 * jnp.mean((train - targets) ** 2)

        f, train_acc, loss = jax.vmap(one)(times, f)
        tests = f[:, t_tasks * n :].reshape(times.shape[0], t_tasks, m, out_dim)
        heads = jax.vmap(lambda fj, o: head_outputs(fj, o, head_size), (1, 0), 1)(
            tests, stream.head_offset
        )
        acc = jax.vmap(jax.vmap(accuracy), (0, None))(heads, stream.y_test)
        return f, (acc, train_acc, loss)

    xs = (jnp.arange(t_tasks), stream.y_train, stream.head_offset)
    f, (acc, train_acc, loss) = jax.lax.scan(task, f, xs)
    swap = lambda a: jnp.moveaxis(a, 0, 1)
    epochs = jnp.broadcast_to(times[:, None], (times.shape[0], t_tasks))
    result = SequentialResult(
        swap(acc), swap(train_acc), epochs, swap(loss), jnp.zeros_like(epochs)
    )
    return f, result
