"""Function-space Gaussian-process posterior over a fixed-size buffer of observations.

A bandit that has seen ``n`` of at most ``T`` points keeps its kernel posterior in a
``(T, T)`` buffer so that one compiled program serves every round. The factor stored is
the *inverse* Cholesky factor ``W = L⁻¹`` of ``A = K_n + ρ I_n`` (``K_n`` the Gram of the
observed points, ``ρ`` the ridge), padded with the identity beyond ``n``. Everything a
round needs is then a matrix-vector product:

* predictive variance ``k(x, x) − k_xᵀ A⁻¹ k_x = k(x, x) − ‖W k_x‖²``,
* predictive mean ``k_xᵀ A⁻¹ y = (W k_x)ᵀ (W y)``,
* ``log det A = −2 Σ log W_ii``.

Cost model (``n`` observed points, ``T`` buffer, ``m`` query points):

* :func:`incremental_posterior_update` (one new point, same kernel): two ``T × T``
  matrix-vector products, ``O(T²)``; writes one row.
* :func:`dense_posterior` (fresh factor, e.g. after a retrain changes the empirical NTK
  or after the ridge is re-tuned): Cholesky + triangular inverse, ``O(T³)``.
* :func:`posterior_reduction` / :func:`posterior_mean`: ``O(m T²)``.

The bordered update: with ``l = W k_new`` and ``d² = k_new,new + ρ − ‖l‖²`` (the Schur
complement, ``≥ ρ``), the new inverse factor is ``[[W, 0], [−lᵀW/d, 1/d]]``. Rounding can
bring the computed ``d²`` below ``ρ`` (in float32 once ``ρ`` is below ``~10⁻⁷ ‖l‖²``); it
is then clamped to ``ρ`` and counted in :attr:`GramFactor.clamps`, so that a run can
report how often its posterior was repaired (the count survives a fresh factor).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "GramFactor",
    "buffer_mask",
    "dense_posterior",
    "empty_posterior",
    "incremental_posterior_update",
    "posterior_log_det",
    "posterior_mean",
    "posterior_moments",
    "posterior_reduction",
    "solve",
]


class GramFactor(NamedTuple):
    """Inverse Cholesky factor of ``K_n + ρ I`` in a ``(T, T)`` buffer.

    Attributes:
      winv: ``(T, T)`` lower triangular; ``winv[:n, :n] = L⁻¹`` with
        ``L Lᵀ = K_n + ρ I_n``; identity beyond ``n``.
      count: ``()`` int32, the number ``n`` of observed points (rows ``0..n-1``).
      ridge: ``()`` the ridge ``ρ`` (noise variance times prior precision).
      clamps: ``()`` int32, incremental updates so far whose Schur complement rounded
        below ``ρ`` and was clamped to it (carried over by :func:`dense_posterior`).
    """

    winv: jax.Array
    count: jax.Array
    ridge: jax.Array
    clamps: jax.Array


def buffer_mask(size: int, count, dtype) -> jax.Array:
    """``(size,)`` ones on the first ``count`` entries, zeros after, in ``dtype``."""
    return (jnp.arange(size, dtype=jnp.int32) < jnp.asarray(count, jnp.int32)).astype(dtype)


def empty_posterior(size: int, ridge: float | jax.Array, dtype=jnp.float32) -> GramFactor:
    """The factor with no observations: ``W = I_T``, ``n = 0``.

    Args:
      size: buffer size ``T`` (the horizon).
      ridge: ``ρ > 0``.
      dtype: floating dtype of the buffer.

    Returns:
      A :class:`GramFactor` with ``winv: (T, T)``.
    """
    zero = jnp.zeros((), jnp.int32)
    return GramFactor(jnp.eye(size, dtype=dtype), zero, jnp.asarray(ridge, dtype), zero)


def dense_posterior(
    gram: jax.Array, count: jax.Array, ridge: jax.Array, clamps: jax.Array | int = 0
) -> GramFactor:
    """Fresh factor of ``K_n + ρ I`` from the Gram of the buffer, ``O(T³)``.

    Args:
      gram: ``(T, T)`` kernel of the buffer; entries of rows/columns ``≥ count`` are
        ignored (masked), so the buffer may hold garbage there.
      count: ``()`` number ``n`` of observed points.
      ridge: ``()`` ``ρ > 0``.
      clamps: ``()`` the clamp count to carry over (see :attr:`GramFactor.clamps`).

    Returns:
      The :class:`GramFactor` (identity beyond ``n``).
    """
    size = gram.shape[0]
    mask = buffer_mask(size, count, gram.dtype)
    ridge = jnp.asarray(ridge, gram.dtype)
    a = gram * mask[:, None] * mask[None, :] + jnp.diag(ridge * mask + (1.0 - mask))
    chol = jnp.linalg.cholesky(a)
    eye = jnp.eye(size, dtype=gram.dtype)
    # W = (L⁻ᵀ)ᵀ: LAPACK writes L⁻ᵀ column-major, so W comes out row-major, the layout the
    # per-round products read; solving for L⁻¹ directly left the loop's W column-major
    # and XLA transposed all T² entries twice every round (measured: 10 ms at T = 1500).
    winv = jax.scipy.linalg.solve_triangular(chol, eye, lower=True, trans="T").T
    return GramFactor(winv, jnp.asarray(count, jnp.int32), ridge, jnp.asarray(clamps, jnp.int32))


def incremental_posterior_update(
    factor: GramFactor, k_row: jax.Array, k_self: jax.Array
) -> GramFactor:
    """Appends one observation at index ``n`` (same kernel, same ridge), ``O(T²)``.

    Args:
      factor: the factor of ``n < T`` points.
      k_row: ``(T,)`` kernel between the new point and the buffer; entries ``≥ n`` are
        ignored.
      k_self: ``()`` kernel of the new point with itself.

    Returns:
      The factor of ``n + 1`` points.
    """
    winv, n, ridge, clamps = factor
    k_row = k_row * buffer_mask(winv.shape[0], n, winv.dtype)
    proj = winv @ k_row  # l = L⁻¹ k, zero beyond n
    # The Schur complement is ≥ ρ in exact arithmetic; clamp rounding below it (counted).
    schur = k_self + ridge - proj @ proj
    d = jnp.sqrt(jnp.maximum(schur, ridge))
    # −lᵀ L⁻¹ / d, zero beyond n; a reduction over rows, not a dot: XLA would store W
    # column-major for the dot and transpose all T² entries every round.
    row = -jnp.sum(proj[:, None] * winv, axis=0) / d
    row = row.at[n].set(1.0 / d)
    clamps = clamps + (schur < ridge).astype(jnp.int32)
    return GramFactor(winv.at[n].set(row), n + 1, ridge, clamps)


def posterior_reduction(factor: GramFactor, k_cross: jax.Array) -> jax.Array:
    """Variance reduction ``k_xᵀ (K_n + ρI)⁻¹ k_x`` for each query point.

    Args:
      factor: the factor of ``n`` points.
      k_cross: ``(m, T)`` kernel between queries and the buffer (entries ``≥ n`` ignored).

    Returns:
      ``(m,)``; the posterior variance is ``k(x, x) − reduction`` (times the kernel scale).
    """
    proj = _project(factor, k_cross)
    return jnp.sum(proj**2, axis=0)


def posterior_mean(factor: GramFactor, k_cross: jax.Array, targets: jax.Array) -> jax.Array:
    """Posterior mean ``k_xᵀ (K_n + ρI)⁻¹ y`` for each query point.

    Args:
      factor: the factor of ``n`` points.
      k_cross: ``(m, T)`` kernel between queries and the buffer.
      targets: ``(T,)`` observed targets (entries ``≥ n`` ignored).

    Returns:
      ``(m,)``.
    """
    mask = buffer_mask(factor.winv.shape[0], factor.count, factor.winv.dtype)
    return _project(factor, k_cross).T @ (factor.winv @ (targets * mask))


def posterior_moments(factor: GramFactor, k_cross: jax.Array, targets: jax.Array):
    """Mean and variance reduction together (one projection), see the two functions above.

    Args:
      factor: the factor of ``n`` points.
      k_cross: ``(m, T)`` kernel between queries and the buffer.
      targets: ``(T,)`` observed targets.

    Returns:
      ``(mean (m,), reduction (m,))``.
    """
    mask = buffer_mask(factor.winv.shape[0], factor.count, factor.winv.dtype)
    proj = _project(factor, k_cross)
    return proj.T @ (factor.winv @ (targets * mask)), jnp.sum(proj**2, axis=0)


def solve(factor: GramFactor, v: jax.Array) -> jax.Array:
    """``(K_n + ρI)⁻¹ v`` on the first ``n`` entries (zero beyond), ``v: (T,)``."""
    mask = buffer_mask(factor.winv.shape[0], factor.count, factor.winv.dtype)
    return factor.winv.T @ (factor.winv @ (v * mask)) * mask


def posterior_log_det(factor: GramFactor) -> jax.Array:
    """``log det(K_n + ρ I_n)`` from the factor (``−2 Σ_{i<n} log W_ii``), ``()``."""
    return -2.0 * jnp.sum(jnp.log(jnp.diag(factor.winv)))


def _project(factor: GramFactor, k_cross: jax.Array) -> jax.Array:
    mask = buffer_mask(factor.winv.shape[0], factor.count, factor.winv.dtype)
    return factor.winv @ (k_cross * mask[None, :]).T  # (T, m)
