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

    def train(params, x, y, key):
        n = x.shape[0]
        b = n if batch_size is None else min(batch_size, n)
        per_epoch = n // b
        epochs = -(-num_steps // per_epoch)
        keys = jax.random.split(key, epochs)
        order = jax.vmap(lambda k: jax.random.permutation(k, n)[: per_epoch * b])(keys)
        batches = order.reshape(-1, b)[:num_steps]

        def step(carry, idx):
            params, opt_state = carry
            value, grads = jax.value_and_grad(objective)(params, x[idx], y[idx])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), value

        (params, _), losses = jax.lax.scan(step, (params, optimizer.init(params)), batches)
        return params, losses

    return jax.jit(train)
