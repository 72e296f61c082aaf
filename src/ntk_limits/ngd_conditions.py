"""The two conditions for fast NGD convergence, and kernel-regime loss predictions.

Zhang, Martens & Grosse (2019) prove that NGD on the squared loss converges at the
kernel-regime rate if

1. the Gram at initialisation ``K₀ = J₀ J₀ᵀ`` (full, ``(n·k) × (n·k)``; see
   :func:`ntk_limits.optimization.full_gram`) has ``λ_min(K₀) > 0``, and
2. the Jacobian is stable: ``‖J(θ) − J(θ₀)‖₂ ≤ (C/3) √λ_min(K₀)`` with ``C < 1/2``.

Along an observed trajectory ``θ_t`` the smallest constant that makes (2) hold at step
``t`` is ``C′(t) = 3 ‖J(θ_t) − J(θ₀)‖₂ / √λ_min(K₀)``; condition 2 holds along the
trajectory iff ``max_t C′(t) < 1/2``. Zhang et al. state condition 2 for every ``θ`` in the
ball ``‖θ − θ₀‖₂ ≤ R = 3‖y − u₀‖₂/√λ_min(K₀)`` (``u₀``: the outputs at ``θ₀`` on the training
set, flattened to ``n·k``), the ball that the NGD iterates provably stay in
(:func:`stability_radius`); a ``C′(t) ≥ 1/2`` at a ``θ_t`` inside it shows that the condition
fails, one outside it does not speak to the condition.

Their loss is ``½‖u − y‖²``; ours is ``‖f − y‖²/(2·n·k)``. Neither the NGD step (a
Gauss–Newton step, invariant to the loss's scale) nor ``R`` and ``C′`` depend on that
factor: ``R`` and ``C′`` use the raw ``y − u₀`` and the Gram of the raw outputs, and scaling
the outputs by ``c`` scales ``‖y − u₀‖``, ``‖ΔJ‖₂`` and ``√λ_min`` alike.

Here ``J`` is the Jacobian of the raw outputs (no ``1/√(nk)``): the condition compares
``‖ΔJ‖₂²`` with an eigenvalue of ``J Jᵀ``, so both use the same ``J``. In the infinite-width
limit ``K₀ → Θ∞ ⊗ I_k`` with ``Θ∞`` the output-averaged ``(n, n)`` NTK of
``Architecture.kernel_fn``, so ``λ_min(K₀) → λ_min(Θ∞)``.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits.kernels import jacobian_difference_fn, ntk_vp_fn
from ntk_limits.optimization import full_gram
from ntk_limits.training import mse_loss

__all__ = [
    "JacobianStability",
    "LambdaMin",
    "c_prime",
    "jacobian_change_norm",
    "jacobian_difference_gram",
    "jacobian_stability",
    "ngd_mse_prediction",
    "parameter_distance",
    "predicted_loss_curve",
    "resolve_lambda_min",
    "stability_radius",
    "steps_to_threshold",
    "top_eigenvalue",
    "top_eigenvalue_lanczos",
]


class JacobianStability(NamedTuple):
    """How far the Jacobian and the Gram moved between ``θ₀`` and ``θ``.

    Attributes:
      spectral: ``‖J(θ) − J(θ₀)‖₂``: square root of the top eigenvalue of the exact
        ``ΔJ ΔJᵀ``: exact up to round-off with ``method="eigh"``, a lower bound with
        ``method="power"`` (:func:`top_eigenvalue`).
      frobenius: ``‖J(θ) − J(θ₀)‖_F``.
      spectral_relative: ``spectral / ‖J(θ₀)‖₂``.
      kernel_change: ``‖K(θ) − K(θ₀)‖_F / ‖K(θ₀)‖_F`` for the full Gram.
      gram: the full Gram ``K(θ)``, ``(n·k, n·k)``.
    """

    spectral: jax.Array
    frobenius: jax.Array
    spectral_relative: jax.Array
    kernel_change: jax.Array
    gram: jax.Array


def jacobian_difference_gram(
    apply_fn, params0, params, x: jax.Array, *, algorithm: str = "structured"
) -> jax.Array:
    """``ΔJ ΔJᵀ`` with ``ΔJ = J(params) − J(params0)``, without forming ``ΔJ``.

    ``ΔJ`` is the Jacobian at ``δ = 0`` of ``h(δ) = f(params + δ) − f(params0 + δ)``, so
    ``ΔJ ΔJᵀ`` is the empirical NTK of ``h``; it is exact (no power iteration) and costs
    about two Gram computations.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params0: reference parameters.
      params: parameters (same structure).
      x: ``(n, ...)``.
      algorithm: empirical-NTK algorithm.

    Returns:
      ``(n·k, n·k)``, ordered as :func:`ntk_limits.optimization.full_gram`.
    """
    h = jacobian_difference_fn(apply_fn, params0, params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return full_gram(h, zeros, x, algorithm=algorithm)


def _start_vector(size: int, dtype) -> jax.Array:
    """A fixed generic start vector for eigen-iterations, ``(size,)``.

    No PRNG (threefry is slow to compile on CPU); it is orthogonal to the top eigenvector
    only on a set of measure zero.
    """
    return 1.0 + jnp.cos(2.399963 * jnp.arange(size, dtype=dtype))


def top_eigenvalue(matrix: jax.Array, *, num_iters: int = 200) -> jax.Array:
    """Largest eigenvalue of a symmetric PSD ``matrix: (m, m)`` by power iteration.

    Matrix-vector products only (no LAPACK call, so it is cheap and predictable inside
    ``jit`` on CPU). The Rayleigh quotient converges from below: once the components
    along eigenvalues below ``λ₂`` have decayed (like ``(λ₃/λ₁)^{2t}``), its error is at
    most ``λ₁ − λ₂``, and it goes to 0 like ``(λ₂/λ₁)^{2t}``. So it is accurate both for a
    well-separated top eigenvalue and for nearly equal top eigenvalues (where the error is
    at most their small gap).

    Args:
      matrix: ``(m, m)``, symmetric positive semi-definite.
      num_iters: power iterations.

    Returns:
      A scalar, ``≥ 0``.
    """
    v = _start_vector(matrix.shape[0], matrix.dtype)

    def body(_, v):
        w = matrix @ v
        return w / jnp.maximum(jnp.linalg.norm(w), jnp.finfo(matrix.dtype).tiny)

    v = jax.lax.fori_loop(0, num_iters, body, v / jnp.linalg.norm(v))
    return jnp.clip(v @ (matrix @ v), 0.0)


def top_eigenvalue_lanczos(matvec, v0: jax.Array, *, num_iters: int = 20) -> jax.Array:
    """Largest eigenvalue of a symmetric PSD operator by Lanczos (matrix-free).

    ``num_iters`` Lanczos steps from ``v0`` with full re-orthogonalisation; the answer is the
    top eigenvalue of the tridiagonal ``T`` (the top Ritz value). By Cauchy interlacing it
    never exceeds the true top eigenvalue, and it is exact (up to round-off) once
    ``num_iters`` reaches the dimension of the Krylov space spanned from ``v0``. For a top
    eigenvalue separated from the rest it converges much faster than power iteration
    (error ``~ exp(−4 t √gap)`` against ``~ (λ₂/λ₁)^{2t}``).

    Args:
      matvec: ``v ↦ A v`` for vectors shaped like ``v0``.
      v0: a start vector (any shape; not orthogonal to the top eigenvector).
      num_iters: Lanczos steps ``m`` (``m`` matrix-vector products).

    Returns:
      A scalar ``≥ 0``, a lower bound on ``λ_max(A)``.
    """
    shape, dtype = v0.shape, v0.dtype
    m = min(num_iters, v0.size)
    q = v0.reshape(-1) / jnp.linalg.norm(v0)
    basis = jnp.zeros((m + 1, v0.size), dtype).at[0].set(q)  # rows past i are 0
    tiny = jnp.finfo(dtype).tiny

    def body(i, carry):
        basis, alphas, betas = carry
        w = matvec(basis[i].reshape(shape)).reshape(-1)
        alpha = basis[i] @ w
        w = w - basis.T @ (basis @ w)  # full re-orthogonalisation (twice: round-off)
        w = w - basis.T @ (basis @ w)
        beta = jnp.linalg.norm(w)  # 0 once the Krylov space is exhausted: later steps add 0s
        basis = basis.at[i + 1].set(jnp.where(beta > tiny, w / jnp.maximum(beta, tiny), 0.0))
        return basis, alphas.at[i].set(alpha), betas.at[i].set(beta)

    zeros = jnp.zeros((m,), dtype)
    _, alphas, betas = jax.lax.fori_loop(0, m, body, (basis, zeros, zeros))
    tri = jnp.diag(alphas) + jnp.diag(betas[:-1], 1) + jnp.diag(betas[:-1], -1)
    return jnp.clip(jnp.linalg.eigvalsh(tri)[-1], 0.0)


def jacobian_change_norm(apply_fn, params0, params, x: jax.Array, *, num_iters: int = 20):
    """``‖J(θ) − J(θ₀)‖₂`` matrix-free: Lanczos on ``ΔJ ΔJᵀ`` (``(n·k)`` space).

    Each step is one NTK-vector product of ``h(δ) = f(θ + δ) − f(θ₀ + δ)`` (one VJP and one
    JVP of ``h``, i.e. of the network at ``θ`` and at ``θ₀``); neither ``ΔJ`` nor
    ``ΔJ ΔJᵀ`` is formed, so memory is that of a few backward passes. The result is a lower
    bound (:func:`top_eigenvalue_lanczos`), exact once ``num_iters ≥ n·k``; at
    ``n·k = 2560`` forming ``ΔJ ΔJᵀ`` (:func:`jacobian_difference_gram`) costs several
    Gram computations plus an ``O((n·k)³)`` eigensolver.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params0: ``θ₀``.
      params: ``θ`` (same structure).
      x: ``(n, ...)``.
      num_iters: Lanczos steps.

    Returns:
      A scalar, ``≤ ‖ΔJ‖₂`` (equal up to round-off when converged).
    """
    h = jacobian_difference_fn(apply_fn, params0, params)
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    vp = ntk_vp_fn(h, zeros, x)
    out = jax.eval_shape(h, zeros, x)
    v0 = _start_vector(out.size, out.dtype).reshape(out.shape)
    return jnp.sqrt(top_eigenvalue_lanczos(vp, v0, num_iters=num_iters))


def jacobian_stability(
    apply_fn,
    params0,
    params,
    x: jax.Array,
    gram0: jax.Array,
    *,
    algorithm: str = "structured",
    method: str = "eigh",
    num_iters: int = 200,
) -> JacobianStability:
    """Jacobian and Gram change between ``params0`` and ``params`` (see the class).

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params0: initial parameters ``θ₀``.
      params: parameters ``θ``.
      x: ``(n, ...)``.
      gram0: ``K(θ₀)``, ``(n·k, n·k)`` (from :func:`ntk_limits.optimization.full_gram`).
      algorithm: empirical-NTK algorithm.
      method: how the top eigenvalues of ``ΔJ ΔJᵀ`` and ``K₀`` are found: ``"eigh"``
        (a dense symmetric eigensolver: exact up to round-off, ``O((n·k)³)``) or
        ``"power"`` (:func:`top_eigenvalue`: matrix-vector products only, a lower bound).
      num_iters: power iterations (``method="power"``).

    Returns:
      :class:`JacobianStability`.
    """
    if method not in ("eigh", "power"):
        raise ValueError(f"unknown method {method!r}; allowed: eigh, power")
    top = (
        (lambda m: jnp.clip(jnp.linalg.eigvalsh(m)[-1], 0.0))
        if method == "eigh"
        else (lambda m: top_eigenvalue(m, num_iters=num_iters))
    )
    d = jacobian_difference_gram(apply_fn, params0, params, x, algorithm=algorithm)
    gram = full_gram(apply_fn, params, x, algorithm=algorithm)
    spectral = jnp.sqrt(top(d))
    frobenius = jnp.sqrt(jnp.clip(jnp.trace(d), 0.0))
    relative = spectral / jnp.sqrt(top(gram0))
    change = jnp.linalg.norm(gram - gram0) / jnp.linalg.norm(gram0)
    return JacobianStability(spectral, frobenius, relative, change, gram)


class LambdaMin(NamedTuple):
    """``λ_min(K₀)`` as far as a computed spectrum resolves it (:func:`resolve_lambda_min`).

    Attributes:
      value: the resolved ``λ_min``: the computed one above the floor, ``0`` by rank, NaN
        where unresolved.
      upper: ``value`` where exact, else the upper bound ``max(λ̂, 0) + floor``.
      exact: whether ``value`` is exact (up to round-off).
      floor: the resolution floor that was used.
    """

    value: np.ndarray
    upper: np.ndarray
    exact: np.ndarray
    floor: np.ndarray


def resolve_lambda_min(lambda_hat, floor, num_params: int, nk: int) -> LambdaMin:
    """What a computed ``λ̂_min`` of the Gram says about the true ``λ_min(K₀)``.

    A symmetric eigensolver in precision ``eps`` on an ``(n·k)²`` Gram returns every
    eigenvalue to within ``floor = n·k·eps·λ_max`` (numpy's rank tolerance; Weyl's
    inequality for the rounding of ``K₀``). So ``λ̂ > floor`` is exact to round-off; a
    Gram with fewer parameters than rows (``P < n·k``) has ``λ_min = 0`` exactly by rank;
    otherwise ``λ_min`` is unresolved and ``max(λ̂, 0) + floor`` bounds it above, which
    makes ``C′`` and ``R`` computed with it lower bounds.

    Args:
      lambda_hat: computed smallest eigenvalue(s), any shape.
      floor: resolution floor(s), broadcastable to ``lambda_hat``.
      num_params: ``P``.
      nk: rows of the Gram ``n·k``.

    Returns:
      :class:`LambdaMin` of numpy arrays (float64; ``exact`` bool).
    """
    lam = np.asarray(lambda_hat, np.float64)
    floor = np.broadcast_to(np.asarray(floor, np.float64), lam.shape)
    resolved = lam > floor
    by_rank = num_params < nk
    exact = resolved | by_rank
    value = np.where(resolved, lam, 0.0 if by_rank else np.nan)
    upper = np.where(exact, value, np.maximum(lam, 0.0) + floor)
    return LambdaMin(value, upper, exact, floor)


def c_prime(jacobian_change_spectral, lambda_min0):
    """``C′ = 3 ‖J(θ) − J(θ₀)‖₂ / √λ_min(K₀)`` (``inf`` where ``λ_min(K₀) <= 0``).

    Works on numbers, numpy or JAX arrays (broadcasting).
    """
    lam = jnp.asarray(lambda_min0)
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, 3.0 * jnp.asarray(jacobian_change_spectral) / jnp.sqrt(safe), jnp.inf)


def stability_radius(residual0, lambda_min0):
    """``R = 3‖y − u₀‖₂/√λ_min(K₀)``: the ball of Zhang et al.'s stable-Jacobian condition.

    Works on numbers, numpy or JAX arrays: ``residual0`` of shape ``(..., n, k)`` (the raw
    ``u₀ − y``, not normalised), ``lambda_min0`` of shape ``(...)``. ``inf`` where
    ``λ_min(K₀) <= 0``.
    """
    r = jnp.asarray(residual0)
    norm = jnp.sqrt(jnp.sum(r**2, axis=(-2, -1)))
    lam = jnp.asarray(lambda_min0)
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, 3.0 * norm / jnp.sqrt(safe), jnp.inf)


def parameter_distance(params0, params) -> jax.Array:
    """``‖θ − θ₀‖₂`` over every leaf of two parameter pytrees of the same structure."""
    sq = jax.tree_util.tree_map(lambda a, b: jnp.sum((a - b) ** 2), params, params0)
    return jnp.sqrt(sum(jax.tree_util.tree_leaves(sq)))


def ngd_mse_prediction(k_train_train: jax.Array, y_train: jax.Array, learning_rate, damping):
    """Kernel-regime outputs of damped NGD on MSE (Gram fixed at ``Θ ⊗ I_k``).

    With ``Θ = V diag(λ) Vᵀ``, each step maps the residual ``r = f − y`` to
    ``V diag(1 − η λ / (λ + ε)) Vᵀ r``; for ``ε = 0`` and ``λ > 0`` this is
    ``(1 − η) r``, so the loss is ``(1 − η)^{2t}`` times its initial value.

    Args:
      k_train_train: ``Θ``, ``(n, n)`` (output-averaged NTK; the full Gram is ``Θ ⊗ I_k``).
      y_train: targets ``(n, k)``.
      learning_rate: ``η``.
      damping: ``ε`` (absolute, as in :func:`ntk_limits.optimization.ngd`).

    Returns:
      ``predict(t, fx_train_0) -> (n, k)``, the training outputs after ``t`` steps
      (``t`` may be an array of shape ``()``; ``vmap`` over it for curves).
    """
    lam, v = jnp.linalg.eigh((k_train_train + k_train_train.T) / 2)
    lam = jnp.clip(lam, 0.0)
    factor = 1.0 - learning_rate * lam / jnp.where(lam + damping > 0, lam + damping, 1.0)

    def predict(t, fx_train_0):
        r = v.T @ (fx_train_0 - y_train)
        return y_train + v @ (factor[:, None] ** jnp.asarray(t, lam.dtype) * r)

    return predict


def predicted_loss_curve(predict, fx_train_0: jax.Array, y_train: jax.Array, num_steps: int):
    """MSE loss ``‖f_t − y‖² / (2·n·k)`` of a closed-form prediction at ``t = 0..num_steps``.

    Args:
      predict: ``predict(t, fx_train_0) -> (n, k)``, e.g. from :func:`ngd_mse_prediction` or
        :func:`ntk_limits.linearize.gradient_descent_mse` (``discrete=True``).
      fx_train_0: outputs at initialisation, ``(n, k)``.
      y_train: targets ``(n, k)``.
      num_steps: last step.

    Returns:
      ``(num_steps + 1,)``.
    """
    ts = jnp.arange(num_steps + 1)
    return jax.vmap(lambda t: mse_loss(predict(t, fx_train_0), y_train))(ts)


def steps_to_threshold(losses: jax.Array, threshold) -> jax.Array:
    """First index ``t`` with ``losses[t] <= threshold``, or ``-1`` if none.

    Args:
      losses: ``(T,)``.
      threshold: scalar.

    Returns:
      An integer scalar.
    """
    below = jnp.asarray(losses) <= threshold
    return jnp.where(jnp.any(below), jnp.argmax(below), -1)
