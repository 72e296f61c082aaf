"""Type-II marginal likelihood (evidence) of a linearised network = a GP with its NTK.

The linearised model at the trained parameters ``θ̂`` is
``f_lin(x; θ) = f(θ̂, x) + g(x)ᵀ(θ − θ̂)`` with ``g = ∂f/∂θ``. With the prior
``θ ~ N(θ₀, (c/λ) I)`` (``c`` the kernel normalisation, see
:mod:`ntk_limits.bandits.neural`) and Gaussian noise of variance ``σ²``, the observations
are a GP: ``y ~ N(f_lin(X; θ₀), K/λ + σ² I)`` with ``K = c·G Gᵀ`` the (normalised)
empirical NTK of the observed points. Writing ``ρ = λσ²`` (the ridge) and
``A = K + ρ I``, with residual targets ``ỹ = y − f_lin(X; θ₀)``::

    log p(y | λ, ρ) = −½ λ ỹᵀA⁻¹ỹ − ½ log det A + ½ n log λ − ½ n log 2π.

For fixed ``ρ`` the maximising prior precision is closed-form, ``λ* = n / ỹᵀA⁻¹ỹ``, so the
search is one-dimensional in ``ρ``. One eigendecomposition ``K = U diag(μ) Uᵀ`` makes every
grid point ``O(n)``: ``log det A = Σ log(μ_i + ρ)``, ``ỹᵀA⁻¹ỹ = Σ (Uᵀỹ)_i² / (μ_i + ρ)``.
This is the GP (exact linear-model) form of the evidence; for a ``θ̂`` that minimises the
regularised loss it equals the linearised-Laplace evidence of Immer et al. (2021).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntk_limits.bandits.posterior import buffer_mask

__all__ = [
    "EvidenceFit",
    "linearized_targets",
    "log_evidence",
    "profile_log_evidence",
    "evidence_spectrum",
    "tune_evidence",
]

_LOG_2PI = math.log(2.0 * math.pi)


class EvidenceFit(NamedTuple):
    """Result of :func:`tune_evidence`.

    Attributes:
      log_prior_precision: ``()`` ``log λ*`` at the best ridge.
      log_ridge: ``()`` the best ``log ρ`` on the grid.
      log_evidence: ``()`` the evidence there.
      curve: ``(G,)`` the profile evidence on the grid.
    """

    log_prior_precision: jax.Array
    log_ridge: jax.Array
    log_evidence: jax.Array
    curve: jax.Array


def linearized_targets(
    apply_fn: Callable, params, params0, x: jax.Array, y: jax.Array
) -> jax.Array:
    """Residual targets ``ỹ = y − f_lin(X; θ₀) = y − f(θ̂, X) + g(X)ᵀ(θ̂ − θ₀)``.

    Args:
      apply_fn: ``(params, x) -> (n, 1)``.
      params: ``θ̂``, the linearisation point.
      params0: ``θ₀``, the prior mean.
      x: ``(n, D)`` inputs.
      y: ``(n,)`` observations.

    Returns:
      ``(n,)``; one forward pass and one JVP.
    """
    delta = jax.tree_util.tree_map(lambda a, b: a - b, params, params0)
    f, jvp = jax.jvp(lambda p: apply_fn(p, x)[:, 0], (params,), (delta,))
    return y - f + jvp


def log_evidence(
    gram: jax.Array,
    targets: jax.Array,
    count: jax.Array,
    prior_precision: jax.Array,
    ridge: jax.Array,
) -> jax.Array:
    """Dense evidence ``log N(ỹ; 0, (K_n + ρI)/λ)`` by Cholesky, masked to ``n`` points.

    Args:
      gram: ``(T, T)`` kernel ``K`` of the buffer (rows/columns ``≥ count`` ignored).
      targets: ``(T,)`` residual targets ``ỹ`` (entries ``≥ count`` ignored).
      count: ``()`` ``n``.
      prior_precision: ``()`` ``λ``.
      ridge: ``()`` ``ρ = λσ²``.

    Returns:
      ``()`` the log marginal likelihood.
    """
    mask = buffer_mask(gram.shape[0], count, gram.dtype)
    a = gram * mask[:, None] * mask[None, :] + jnp.diag(ridge * mask + (1.0 - mask))
    chol = jnp.linalg.cholesky(a)
    z = jax.scipy.linalg.solve_triangular(chol, targets * mask, lower=True)
    n = jnp.sum(mask)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diag(chol)))  # padded diagonal is 1: adds 0
    quad = prior_precision * (z @ z)
    return -0.5 * (quad + log_det - n * jnp.log(prior_precision) + n * _LOG_2PI)


def evidence_spectrum(gram: jax.Array, targets: jax.Array, count: jax.Array):
    """Eigenvalues ``μ`` and projected targets ``Uᵀỹ`` of the masked Gram, ``O(T³)``.

    Args:
      gram: ``(T, T)``; rows/columns ``≥ count`` are zeroed.
      targets: ``(T,)``; entries ``≥ count`` are zeroed.
      count: ``()`` ``n``.

    Returns:
      ``(mu, beta)``, both ``(T,)``; ``mu ≥ 0`` (rounding clipped). The ``T − n`` padded
      directions have ``μ = 0`` and ``β = 0`` (see :func:`profile_log_evidence`).
    """
    mask = buffer_mask(gram.shape[0], count, gram.dtype)
    mu, vecs = jnp.linalg.eigh(gram * mask[:, None] * mask[None, :])
    return jnp.maximum(mu, 0.0), vecs.T @ (targets * mask)


def profile_log_evidence(
    mu: jax.Array,
    beta: jax.Array,
    count: jax.Array,
    log_ridge: jax.Array,
    log_precision_bounds: tuple[float, float] = (-13.8, 13.8),
):
    """Evidence maximised over ``λ`` at one ridge, from the spectrum, ``O(T)``.

    Args:
      mu: ``(T,)`` eigenvalues of the masked Gram.
      beta: ``(T,)`` projected targets.
      count: ``()`` ``n`` (the ``T − n`` padding directions are removed exactly).
      log_ridge: ``()`` ``log ρ``.
      log_precision_bounds: ``λ*`` is clipped to ``[e^lo, e^hi]``; the evidence is
        concave in ``λ``, so the clipped value is the constrained optimum.

    Returns:
      ``(log_evidence, log_prior_precision)``, both ``()``.
    """
    ridge = jnp.exp(log_ridge)
    n = jnp.asarray(count, mu.dtype)
    log_det = jnp.sum(jnp.log(mu + ridge)) - (mu.shape[0] - n) * log_ridge
    quad = jnp.sum(beta**2 / (mu + ridge))
    log_lam = jnp.log(jnp.maximum(n, 1.0)) - jnp.log(jnp.maximum(quad, 1e-30))
    log_lam = jnp.clip(log_lam, *log_precision_bounds)
    value = -0.5 * (jnp.exp(log_lam) * quad + log_det - n * log_lam + n * _LOG_2PI)
    return value, log_lam


def tune_evidence(
    gram: jax.Array,
    targets: jax.Array,
    count: jax.Array,
    log_ridge_grid: jax.Array,
    log_precision_bounds: tuple[float, float] = (-13.8, 13.8),
) -> EvidenceFit:
    """Maximises the evidence over a grid of ridges (``λ`` in closed form).

    Args:
      gram: ``(T, T)`` kernel of the buffer.
      targets: ``(T,)`` residual targets ``ỹ``.
      count: ``()`` ``n``.
      log_ridge_grid: ``(G,)`` candidate ``log ρ``.
      log_precision_bounds: see :func:`profile_log_evidence`.

    Returns:
      The :class:`EvidenceFit` in the dtype of ``gram``, computed in float64; one
      ``eigh`` plus ``O(G T)``.
    """
    dtype = gram.dtype
    # In float64 whatever the agent's dtype: the grid reaches ρ = 1e-4, below float32's
    # resolution of the eigenvalues of K (≈ 1e-7 λ_max(K), λ_max ≈ n), so float32 would
    # get log(μ + ρ) and 1/(μ + ρ) of the small directions wrong. One O(T³) eigh per
    # re-tuning, locally enabled (the rest of the program keeps its dtype).
    with jax.enable_x64(True):
        f64 = jnp.float64
        mu, beta = evidence_spectrum(gram.astype(f64), targets.astype(f64), count)
        grid = jnp.asarray(log_ridge_grid).astype(f64)
        curve, log_lams = jax.vmap(
            lambda r: profile_log_evidence(mu, beta, count, r, log_precision_bounds)
        )(grid)
        is_best = curve == jnp.max(curve)  # (argmax's variadic reduce fails here under jit)
    best = jnp.argmax(is_best)  # the first maximum, as argmax
    fit = EvidenceFit(log_lams[best], grid[best], curve[best], curve)
    return EvidenceFit(*(v.astype(dtype) for v in fit))
