"""Losses and compiled training loops (``lax.scan`` inside ``jit``).

Loops take the full training set and run ``num_steps`` optimizer steps, full-batch or
on minibatches reshuffled each epoch from an explicit key. They are written for one
network; batch seeds or learning rates with ``jax.vmap`` over the arguments.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

__all__ = ["mse_loss", "cross_entropy_loss", "accuracy", "make_train", "LOSSES"]


def mse_loss(f: jax.Array, y: jax.Array) -> jax.Array:
    """``‖f − y‖² / (2 · f.size)`` (neural-tangents' convention, see :mod:`linearize`)."""
    return 0.5 * jnp.mean((f - y) ** 2)


def cross_entropy_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean softmax cross-entropy; ``logits: (n, k)``, integer ``labels: (n,)``."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of ``argmax(logits) == labels``."""
    return jnp.mean(jnp.argmax(logits, -1) == labels)


LOSSES = {"mse": mse_loss, "xent": cross_entropy_loss}


def make_train(
    apply_fn: Callable,
    optimizer: optax.GradientTransformation,
    num_steps: int,
    *,
    loss: str = "mse",
    batch_size: int | None = None,
) -> Callable:
    """Returns ``train(params, x, y, key) -> (params, losses)``, one compiled program.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      optimizer: an optax transformation (``optax.sgd(lr)`` for GD).
      num_steps: optimizer steps.
      loss: ``"mse"`` (targets ``(n, k)``) or ``"xent"`` (integer labels ``(n,)``).
      batch_size: minibatch size (``None``: full batch). Minibatches are drawn without
        replacement from a fresh permutation each epoch; a final partial batch is
        dropped.

    Returns:
      ``train`` (jitted). ``losses: (num_steps,)`` is the minibatch loss before each step.
    """
    loss_fn = LOSSES[loss]
    objective = lambda p, xb, yb: loss_fn(apply_fn(p, xb), yb)

    def batches(n, key):
        if batch_size is None or batch_size >= n:  # full batch: no gather, no permutation
            return None, num_steps
        per_epoch = n // batch_size
        keys = jax.random.split(key, -(-num_steps // per_epoch))
        order = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * batch_size])(keys)
        return order.reshape(-1, batch_size)[:num_steps], None

    def train(params, x, y, key):
        xs, length = batches(x.shape[0], key)

        def step(carry, idx):
            params, opt_state = carry
            xb, yb = (x, y) if idx is None else (x[idx], y[idx])
            value, grads = jax.value_and_grad(objective)(params, xb, yb)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        init = (params, optimizer.init(params))
        (params, _), losses = jax.lax.scan(step, init, xs, length=length)
        return params, losses

    return jax.jit(train)
