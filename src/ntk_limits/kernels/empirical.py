"""Empirical (finite-width) neural tangent kernels.

The empirical NTK of ``f(θ, x) ∈ R^k`` is ``Θ(x1, x2) = J(x1) J(x2)ᵀ`` with
``J = ∂f/∂θ``. :func:`empirical_ntk_fn` computes it with any of neural-tangents'
three algorithms or with an independent pure-JAX reference that forms the Jacobian
explicitly; :func:`ntk_vp_fn` gives the matrix-free product ``v ↦ J(x1) J(x2)ᵀ v``.

Output convention (neural-tangents'): with ``trace=True`` the ``k × k`` output block
is averaged over its diagonal, giving ``(n1, n2)``; with ``trace=False`` the full
``(n1, n2, k, k)`` kernel is returned.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ntk_limits.kernels import _nt

__all__ = [
    "ALGORITHMS",
    "couple_examples",
    "empirical_ntk_fn",
    "examples_coupled",
    "jacobian",
    "ntk_vp_fn",
]

ALGORITHMS = ("structured", "jacobian", "ntvp", "auto", "reference")
_NT_IMPLEMENTATION = {
    "jacobian": _nt.NtkImplementation.JACOBIAN_CONTRACTION,
    "ntvp": _nt.NtkImplementation.NTK_VECTOR_PRODUCTS,
    "structured": _nt.NtkImplementation.STRUCTURED_DERIVATIVES,
    "auto": _nt.NtkImplementation.AUTO,
}

ApplyFn = Callable[..., jax.Array]
KernelFn = Callable[[jax.Array, jax.Array | None, object], jax.Array]


def couple_examples(apply_fn: ApplyFn) -> ApplyFn:
    """``apply_fn`` marked as one whose output for an example depends on the others.

    BatchNorm in training mode (batch statistics) is the usual case. The NTK routines here
    then differentiate the whole batch at once instead of one example at a time
    (neural-tangents' ``vmap_axes=None`` instead of ``0``); matrix-free products
    (:func:`ntk_vp_fn`) are whole-batch anyway.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.

    Returns:
      The same function, marked (see :func:`examples_coupled`).
    """

    def coupled(params, x):
        return apply_fn(params, x)

    coupled.examples_coupled = True
    return coupled


def examples_coupled(apply_fn: ApplyFn) -> bool:
    """Whether ``apply_fn`` was marked by :func:`couple_examples`."""
    return bool(getattr(apply_fn, "examples_coupled", False))


def jacobian(apply_fn: ApplyFn, params, x: jax.Array) -> jax.Array:
    """Dense Jacobian of the flattened outputs with respect to the flattened parameters.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params: parameter pytree with ``P`` scalars in total.
      x: inputs, ``(n, ...)``.

    Returns:
      ``(n, k, P)``, parameters in ``jax.flatten_util.ravel_pytree`` order (for an
      ``apply_fn`` returning a pytree of ``(n, k_i)`` arrays, that pytree of Jacobians).
    """
    flat, unravel = ravel_pytree(params)
    return jax.jacrev(lambda p: apply_fn(unravel(p), x))(flat)


def _reference_ntk_fn(apply_fn: ApplyFn, trace: bool) -> KernelFn:
    def one(j1, j2):  # one output leaf: Jacobians (n1, k, P), (n2, k, P)
        full = jnp.einsum("iap,jbp->ijab", j1, j2)
        return jnp.einsum("ijaa->ij", full) / full.shape[-1] if trace else full

    def ntk(x1, x2, params):
        j1 = jacobian(apply_fn, params, x1)
        j2 = j1 if x2 is None else jacobian(apply_fn, params, x2)
        return jax.tree.map(one, j1, j2)  # one kernel per output leaf, as neural-tangents

    return ntk


def empirical_ntk_fn(
    apply_fn: ApplyFn, *, algorithm: str = "structured", trace: bool = True
) -> KernelFn:
    """Returns ``ntk(x1, x2, params)``, the empirical NTK of ``apply_fn``.

    Args:
      apply_fn: ``(params, x) -> (n, k)``; any JAX function (stax, flax ``module.apply``
        with variables as ``params``, plain JAX).
      algorithm: ``"structured"`` (neural-tangents' structured derivatives, the fastest
        and leanest for standard layers), ``"jacobian"`` (Jacobian contraction),
        ``"ntvp"`` (NTK-vector products), ``"auto"`` (neural-tangents picks by FLOPs),
        or ``"reference"`` (explicit dense Jacobian, pure JAX: slow, independent).
      trace: average over the output dimension (``(n1, n2)``) or keep it
        (``(n1, n2, k, k)``).

    An ``apply_fn`` returning a pytree of ``(n, k_i)`` arrays (a tuple or dict of
    outputs) gets the same pytree of kernels, one per output, with every algorithm.

    For a function marked by :func:`couple_examples` (BatchNorm in training mode) the
    kernel is taken on each batch as a whole: ``x1`` and ``x2`` are then the batches the
    network sees (pass ``x2=None`` for the Gram of one batch).

    Returns:
      ``ntk(x1, x2, params)`` with ``x1: (n1, ...)``, ``x2: (n2, ...)`` or ``None``
      (meaning ``x2 = x1``). Not jitted: wrap in ``jax.jit`` as usual.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown NTK algorithm {algorithm!r}; allowed: {', '.join(ALGORITHMS)}")
    if algorithm == "reference":
        return _reference_ntk_fn(apply_fn, trace)
    return _nt.empirical_ntk_fn(
        apply_fn,
        trace_axes=(-1,) if trace else (),
        vmap_axes=None if examples_coupled(apply_fn) else 0,
        implementation=_NT_IMPLEMENTATION[algorithm],
    )


def ntk_vp_fn(apply_fn: ApplyFn, params, x1: jax.Array, x2: jax.Array | None = None):
    """Matrix-free NTK-vector product ``v ↦ J(x1) J(x2)ᵀ v`` (one VJP and one JVP).

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params: parameters at which the kernel is taken.
      x1: ``(n1, ...)``.
      x2: ``(n2, ...)`` or ``None`` for ``x1``.

    Returns:
      ``vp(v)`` mapping ``v: (n2, k)`` to ``(n1, k)``; the ``(n1·k) × (n2·k)`` kernel is
      never formed.
    """
    x2 = x1 if x2 is None else x2
    f1 = lambda p: apply_fn(p, x1)
    _, vjp2 = jax.vjp(lambda p: apply_fn(p, x2), params)

    def vp(v: jax.Array) -> jax.Array:
        (cotangent,) = vjp2(v)
        return jax.jvp(f1, (params,), (cotangent,))[1]

    return vp
