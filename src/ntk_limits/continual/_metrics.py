"""Summaries of an accuracy matrix: average accuracy, forgetting, learning accuracy.

``a[k, j]`` is the test accuracy on task ``j`` after training task ``k`` (``T`` tasks,
``0..T-1``). Metrics of Chaudhry et al. (2018) and Mirzadeh et al. (2022):

* average accuracy ``A = mean_j a[T-1, j]``;
* average forgetting ``F = mean_{j < T-1} (max_{k < T-1} a[k, j] − a[T-1, j])``, the best
  accuracy any earlier model had on task ``j`` minus the final one (rows ``k < j`` are the
  accuracy before task ``j`` was trained; they rarely attain the maximum);
* learning accuracy ``mean_j a[j, j]``, the accuracy on each task right after learning it.

Every function takes ``acc: (..., T, T)`` and returns ``(...)``: batch axes are kept.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ContinualMetrics",
    "average_accuracy",
    "average_forgetting",
    "continual_metrics",
    "learning_accuracy",
]


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
