"""Kernel-regime diagnostics: is this network close to its linearisation?

All functions are pure. Those that touch the Jacobian never form it: they use JVPs,
VJPs and neural-tangents' structured derivatives, so they run at 10^7 parameters
(1 GiB peak at 10^7 parameters and 64 inputs, ``make bench``). Definitions
(``J = ∂f/∂θ`` on the given inputs, flattened to ``(n·k) × P``):

* Gram spectrum of ``K = J Jᵀ``: ``λ_min``, ``λ_max``, condition number
  ``λ_max / λ_min``, effective rank ``exp(H(p))`` with ``p = λ / Σλ`` (Roy & Vetterli).
* Jacobian change ``‖J(θ) − J(θ₀)‖`` in spectral norm (power iteration on
  ``DᵀD``, ``D = J(θ) − J(θ₀)``) and Frobenius norm (exact: the trace of ``D Dᵀ``, the
  empirical NTK of :func:`jacobian_difference_fn`, by structured derivatives per example;
  or one VJP per output), relative to the same norm of ``J(θ₀)``.
* Kernel change ``‖K_t − K_0‖_F / ‖K_0‖_F``; kernel alignment
  ``⟨K_1, K_2⟩_F / (‖K_1‖_F ‖K_2‖_F)``.
* Linearisation error ``‖f(θ) − f_lin(θ)‖ / ‖f(θ) − f(θ₀)‖`` on given inputs.
"""

import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ntk_limits.kernels import _nt
from ntk_limits.kernels.empirical import couple_examples, examples_coupled

__all__ = [
    "FROBENIUS_METHODS",
    "GramSpectrum",
    "JacobianChange",
    "gram_spectrum",
    "jacobian_difference_fn",
    "jacobian_spectral_norm",
    "jacobian_change",
    "kernel_change",
    "kernel_alignment",
    "linearization_error",
]


class GramSpectrum(NamedTuple):
    """Spectrum of a kernel Gram matrix.

    Attributes:
      eigenvalues: ``(n,)`` ascending.
      lambda_min: smallest eigenvalue.
      lambda_max: largest eigenvalue.
      condition_number: ``λ_max / λ_min`` (``inf`` if ``λ_min <= 0``).
      effective_rank: ``exp`` of the entropy of the normalised (clipped at 0) spectrum.
    """

    eigenvalues: jax.Array
    lambda_min: jax.Array
    lambda_max: jax.Array
    condition_number: jax.Array
    effective_rank: jax.Array


def gram_spectrum(k: jax.Array) -> GramSpectrum:
    """Spectrum of a symmetric PSD Gram matrix ``k: (n, n)``."""
    eig = jnp.linalg.eigvalsh((k + k.T) / 2)
    lo, hi = eig[0], eig[-1]
    cond = jnp.where(lo > 0, hi / jnp.where(lo > 0, lo, 1.0), jnp.inf)
    p = jnp.clip(eig, 0.0) / jnp.sum(jnp.clip(eig, 0.0))
    entropy = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0))
    return GramSpectrum(eig, lo, hi, cond, jnp.exp(entropy))


class JacobianChange(NamedTuple):
    """How far the Jacobian moved from initialisation.

    Attributes:
      spectral: ``‖J(θ) − J(θ₀)‖₂``.
      frobenius: ``‖J(θ) − J(θ₀)‖_F``.
      spectral_relative: ``spectral / ‖J(θ₀)‖₂``.
      frobenius_relative: ``frobenius / ‖J(θ₀)‖_F``.
    """

    spectral: jax.Array
    frobenius: jax.Array
    spectral_relative: jax.Array
    frobenius_relative: jax.Array


def _tree_norm(t) -> jax.Array:
    return jnp.sqrt(sum(jnp.vdot(a, a).real for a in jax.tree_util.tree_leaves(t)))


def _tree_scale(t, s):
    return jax.tree_util.tree_map(lambda a: a * s.astype(a.dtype), t)


def _operator(apply_fn, params, params0, x):
    """Matvec and rmatvec of ``D = J(params) − J(params0)`` (or ``J(params)`` alone)."""
    f = lambda p: apply_fn(p, x)
    _, vjp = jax.vjp(f, params)
    vjp0 = jax.vjp(f, params0)[1] if params0 is not None else None

    def mv(v):
        out = jax.jvp(f, (params,), (v,))[1]
        return out if params0 is None else out - jax.jvp(f, (params0,), (v,))[1]

    def rmv(u):
        (g,) = vjp(u)
        if vjp0 is None:
            return g
        return jax.tree_util.tree_map(jnp.subtract, g, vjp0(u)[0])

    return mv, rmv


def _spectral(mv, rmv, params, key, num_iters: int) -> jax.Array:
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    v = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, leaves, strict=True)]
    v = jax.tree_util.tree_unflatten(tree, v)

    def body(_, v):
        w = rmv(mv(v))
        return _tree_scale(w, 1.0 / jnp.maximum(_tree_norm(w), 1e-30))

    v = jax.lax.fori_loop(0, num_iters, body, _tree_scale(v, 1.0 / _tree_norm(v)))
    return _tree_norm(mv(v))


FROBENIUS_METHODS = ("structured", "vjp")


def jacobian_difference_fn(apply_fn, params0, params):
    """``h(δ, x) = f(params + δ, x) − f(params0 + δ, x)``, whose Jacobian at ``δ = 0`` is ``ΔJ``.

    ``ΔJ = J(params) − J(params0)``, so any NTK routine applied to ``h`` at ``δ = 0`` (a
    pytree of zeros shaped like ``params``) gives ``ΔJ ΔJᵀ`` without forming ``ΔJ``.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params0: reference parameters.
      params: parameters (same structure).

    Returns:
      ``h(delta, x) -> (n, k)``.
    """
    shift = lambda p, d: jax.tree_util.tree_map(jnp.add, p, d)
    h = lambda d, x: apply_fn(shift(params, d), x) - apply_fn(shift(params0, d), x)
    return couple_examples(h) if examples_coupled(apply_fn) else h


def _frobenius_vjp(rmv, out_shape, dtype, chunk: int) -> jax.Array:
    m = math.prod(out_shape)  # static: jacobian_change must work under jit
    basis = jnp.eye(m, dtype=dtype).reshape(m, *out_shape)
    sq = jax.lax.map(lambda e: _tree_norm(rmv(e)) ** 2, basis, batch_size=chunk)
    return jnp.sqrt(jnp.sum(sq))


def _frobenius_structured(apply_fn, params, x) -> jax.Array:
    """``‖J(params)‖_F`` on ``x``: ``sqrt(Σ_i tr(J_i J_iᵀ))`` over examples ``i``.

    neural-tangents' structured derivatives give the per-example, output-averaged
    kernel ``tr(J_i J_iᵀ) / k`` without forming ``J_i`` (for a dense layer it is a
    product of an input norm and a cotangent norm).
    """
    ntk = _nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,),
        diagonal_axes=(0,),
        vmap_axes=0,
        implementation=_nt.NtkImplementation.STRUCTURED_DERIVATIVES,
    )
    with warnings.catch_warnings():
        # For a primitive without a structured rule (e.g. ``slice``) neural-tangents uses
        # that primitive's plain Jacobian: exact, only less structured. Not worth a warning
        # in a diagnostic.
        warnings.filterwarnings("ignore", "No Jacobian rule found", UserWarning)
        diag = ntk(x, None, params)
    k = jax.eval_shape(apply_fn, params, x).shape[-1]
    return jnp.sqrt(jnp.clip(k * jnp.sum(diag), 0.0))


def jacobian_spectral_norm(apply_fn, params, x, *, key, num_iters: int = 50) -> jax.Array:
    """``‖J(θ)‖₂`` on inputs ``x`` by power iteration on ``JᵀJ`` (matrix-free)."""
    mv, rmv = _operator(apply_fn, params, None, x)
    return _spectral(mv, rmv, params, key, num_iters)


def jacobian_change(
    apply_fn,
    params0,
    params,
    x,
    *,
    key,
    num_iters: int = 50,
    frobenius: str = "structured",
    chunk: int = 64,
) -> JacobianChange:
    """Change of the Jacobian between ``params0`` and ``params`` on inputs ``x``.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params0: reference parameters (initialisation).
      params: current parameters (same structure).
      x: ``(n, ...)``.
      key: PRNG key for the power iteration's start vector.
      num_iters: power iterations (each one JVP and one VJP per parameter set).
      frobenius: ``"structured"`` (default: the trace of ``ΔJ ΔJᵀ`` per example by
        neural-tangents' structured derivatives; assumes, like every empirical NTK here,
        that examples do not interact, i.e. no batch statistics) or ``"vjp"`` (one VJP
        per output, ``n·k`` in all; no assumption, ~``n`` times more work).
      chunk: VJPs batched together for ``frobenius="vjp"`` (memory knob).

    Returns:
      :class:`JacobianChange`. The spectral norm is a lower bound that converges from
      below (a power-iteration estimate); the Frobenius norm is exact.
    """
    if frobenius not in FROBENIUS_METHODS:
        raise ValueError(
            f"unknown frobenius method {frobenius!r}; allowed: {', '.join(FROBENIUS_METHODS)}"
        )
    k1, k2 = jax.random.split(key)
    mv, rmv = _operator(apply_fn, params, params0, x)
    mv0, rmv0 = _operator(apply_fn, params0, None, x)
    spec = _spectral(mv, rmv, params, k1, num_iters)
    spec0 = _spectral(mv0, rmv0, params0, k2, num_iters)
    if frobenius == "structured":
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        h = jacobian_difference_fn(apply_fn, params0, params)
        frob = _frobenius_structured(h, zeros, x)
        frob0 = _frobenius_structured(apply_fn, params0, x)
    else:
        out = jax.eval_shape(apply_fn, params, x)
        frob = _frobenius_vjp(rmv, out.shape, out.dtype, chunk)
        frob0 = _frobenius_vjp(rmv0, out.shape, out.dtype, chunk)
    return JacobianChange(spec, frob, spec / spec0, frob / frob0)


def kernel_change(k0: jax.Array, kt: jax.Array) -> jax.Array:
    """Relative kernel change ``‖kt − k0‖_F / ‖k0‖_F``."""
    return jnp.linalg.norm(kt - k0) / jnp.linalg.norm(k0)


def kernel_alignment(k1: jax.Array, k2: jax.Array) -> jax.Array:
    """Kernel alignment ``⟨k1, k2⟩_F / (‖k1‖_F ‖k2‖_F)``, 1 for proportional kernels."""
    return jnp.vdot(k1, k2) / (jnp.linalg.norm(k1) * jnp.linalg.norm(k2))


def linearization_error(apply_fn, params0, params, x) -> jax.Array:
    """``‖f(θ) − f_lin(θ)‖ / ‖f(θ) − f(θ₀)‖`` on ``x`` (0 for a linear model)."""
    delta = jax.tree_util.tree_map(jnp.subtract, params, params0)
    f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
    f = apply_fn(params, x)
    return jnp.linalg.norm(f - f0 - df) / jnp.linalg.norm(f - f0)
