"""The one module that imports neural-tangents, with its compatibility layer.

neural-tangents 0.6.5 (Dec 2023, the only release) was written against jax 0.4.2x.
On the current JAX line (0.10, 0.11) its import fails and several code paths break.
This module makes it work without touching the installed package:

1. ``neural_tangents.experimental`` (the NTK of TensorFlow models, which imports
   TensorFlow) is replaced by an empty placeholder module, so TensorFlow is never needed.
2. Names that moved or disappeared from ``jax.core``, ``jax.util`` and
   ``jax.interpreters.ad`` are added back *only where absent*, pointing at their current
   homes (or at inert placeholders for removed features: dynamic shapes, ``zeros_like_p``).
3. The STRUCTURED_DERIVATIVES algorithm's private ``_get_primals_out_and_pullback``
   (which called the internal ``ad.linearize`` whose signature changed) is replaced by
   one built on the public ``jax.linearize`` and ``jax.make_jaxpr``.
4. The FLOP counter behind ``NtkImplementation.AUTO`` is replaced by one that accepts
   the dict that ``cost_analysis()`` returns today, and the parameter-dtype helper by one
   that does not call ``jnp.dtype`` on arrays, and the pytree-unravelling helper (used by
   the basis and by NTK-vector products of functions with several outputs) by one that
   reads sizes from shapes (all DeprecationWarnings today, errors in a future JAX). The
   ``impl=…, flops=…`` lines AUTO prints for every new shape are discarded: a library
   must not write to a notebook's output.
5. The per-equation VJP of the structured pass falls back to ``jax.vjp`` for linear
   primitives whose transpose JAX moved to ``ad.fancy_transposes`` (``slice``,
   ``dynamic_slice``, single-output ``cond`` and ``scan``): without it any function that
   slices its parameters fails with "Transpose rule ... not implemented".

Everything is checked by ``tests/kernels/test_nt_adapter.py``: every neural-tangents
entry point the project uses is compared against an independent pure-JAX reference,
so a silent break on a future JAX release fails a test rather than a study.

Only the names re-exported at the bottom are used elsewhere in ``ntk_limits``.
"""

import functools
import math
import sys
import types

import jax
import jax._src.core as _jcore
import jax._src.interpreters.ad as _jad
import jax._src.source_info_util as _source_info_util
import jax.extend.core as _ecore
import numpy as np
from jax.interpreters import ad as _ad


def _add_missing(module: types.ModuleType, **names) -> None:
    for name, value in names.items():
        if not hasattr(module, name):
            setattr(module, name, value)


class _DShapedArrayPlaceholder:
    """Dynamic shapes were removed from JAX; nothing is ever of this type."""


def _safe_map(f, *args):
    n = len(args[0])
    if any(len(a) != n for a in args[1:]):
        raise ValueError(f"safe_map: length mismatch {[len(a) for a in args]}")
    return list(map(f, *args))


def _safe_zip(*args):
    n = len(args[0])
    if any(len(a) != n for a in args[1:]):
        raise ValueError(f"safe_zip: length mismatch {[len(a) for a in args]}")
    return list(zip(*args, strict=True))


def _install_jax_shims() -> None:
    """Adds back the JAX names neural-tangents 0.6.5 imports (only where absent)."""
    _add_missing(
        jax.core,
        Jaxpr=_ecore.Jaxpr,
        JaxprEqn=_ecore.JaxprEqn,
        Literal=_ecore.Literal,
        Var=_ecore.Var,
        Primitive=_ecore.Primitive,
        DShapedArray=_DShapedArrayPlaceholder,
        get_aval=jax.typeof,
    )
    if "jax.util" not in sys.modules:
        util = types.ModuleType("jax.util")
        util.safe_map, util.safe_zip = _safe_map, _safe_zip
        sys.modules["jax.util"] = util
    _add_missing(
        _ad,
        zeros_like_p=_ecore.Primitive("ntk_limits_removed_zeros_like"),
        reducing_transposes=_jad.reducing_transposes,
        source_info_util=_source_info_util,
        config=jax.config,
    )
    if not hasattr(_jcore.Primitive, "map_primitive"):
        _jcore.Primitive.map_primitive = False
    if "neural_tangents.experimental" not in sys.modules:
        placeholder = types.ModuleType("neural_tangents.experimental")
        placeholder.__doc__ = "Placeholder: the TF-model NTK is not available in ntk-limits."
        sys.modules["neural_tangents.experimental"] = placeholder


_install_jax_shims()

INSTALL = "pip install --no-deps neural-tangents==0.6.5"

try:
    import neural_tangents as nt
except ModuleNotFoundError as e:  # one line that says what to run
    if e.name != "neural_tangents":
        raise
    raise ModuleNotFoundError(
        f"ntk-limits needs neural-tangents 0.6.5, installed without its dependencies "
        f"(they pull in TensorFlow, which ntk-limits does not use); run: {INSTALL}",
        name="neural_tangents",
    ) from None
from neural_tangents._src import empirical as _nt_empirical  # noqa: E402


def _get_primals_out_and_pullback(fn, mode, _j_rules, _s_rules, _fwd, *primals_in):
    """Public-API replacement for neural-tangents' linearise-and-transpose helper.

    Linearises ``fn`` with ``jax.linearize``, traces the linear map to a jaxpr with
    ``jax.make_jaxpr`` and hands that jaxpr to neural-tangents' own ``_backward_pass``.
    """
    with jax.disable_jit():
        primals_out, f_jvp = jax.linearize(fn, *primals_in)
        closed = jax.make_jaxpr(f_jvp)(*primals_in)
    jaxpr, consts = closed.jaxpr, closed.consts
    in_tree = jax.tree_util.tree_structure(primals_in)

    def pullback_fn(*cts_in):
        cts_in = tuple(jax.tree_util.tree_leaves(cts_in))
        dummy_args = [_ad.UndefinedPrimal(v.aval) for v in jaxpr.invars]
        cts_out = _nt_empirical._backward_pass(
            jaxpr,
            mode=mode,
            consts=consts,
            primals_in=dummy_args,
            cotangents_in=cts_in,
            _j_rules=_j_rules,
            _s_rules=_s_rules,
            _fwd=_fwd,
        )
        return jax.tree_util.tree_unflatten(in_tree, cts_out)

    return primals_out, pullback_fn


def _get_flops(f, optimize, *a, **kw) -> float:
    """FLOP count of ``f``; ``cost_analysis()`` returns a dict (older JAX: a list)."""
    lowered = jax.jit(f).lower(*a, **kw)
    analysis = lowered.compile().cost_analysis() if optimize else lowered.cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return float(analysis["flops"])


def _get_fx_axis_and_dtype(fx, fx_axis, params):
    """As neural-tangents', without ``jnp.dtype(array)`` (deprecated in current JAX)."""
    if fx_axis is None:
        fx_axis = jax.tree_util.tree_map(lambda x: None, fx)
    dtypes = [jax.numpy.result_type(x) for x in jax.tree_util.tree_leaves(params)]
    dtype = functools.reduce(jax.numpy.promote_types, dtypes) if dtypes else None
    return fx_axis, dtype


def _std_basis(pytree):
    """As neural-tangents', reading sizes from shapes, not ``jnp.size``.

    ``jnp.size`` of a ``ShapeDtypeStruct`` is deprecated in current JAX.
    """
    leaves = jax.tree_util.tree_leaves(pytree)
    ndim = sum(math.prod(np.shape(leaf)) for leaf in leaves)
    dtype = jax.dtypes.result_type(*leaves)
    flat_basis = jax.numpy.eye(ndim, dtype=dtype)
    return _unravel_array_into_pytree(pytree, 1, flat_basis)


def _unravel_array_into_pytree(pytree, axis: int, arr):
    """As neural-tangents': splits ``arr`` along ``axis`` into ``pytree``'s leaf shapes.

    Sizes come from ``np.shape`` (``jnp.size`` of a ``ShapeDtypeStruct`` is deprecated).
    """
    leaves, treedef = jax.tree_util.tree_flatten(pytree)
    if arr.ndim > 0:
        axis %= arr.ndim
    shapes = [arr.shape[:axis] + np.shape(leaf) + arr.shape[axis + 1 :] for leaf in leaves]
    sizes = [math.prod(np.shape(leaf)) for leaf in leaves[:-1]]
    parts = jax.numpy.split(arr, np.cumsum(sizes).tolist(), axis)
    return jax.tree_util.tree_unflatten(
        treedef, [jax.numpy.reshape(x, shape) for x, shape in zip(parts, shapes, strict=True)]
    )


_nt_eqn_vjp_fn = _nt_empirical._eqn_vjp_fn


def _eqn_vjp_fn(eqn, cts_in, *invals):
    """As neural-tangents', also for primitives whose transpose JAX has moved.

    JAX now registers the transposes of some linear primitives (``slice``,
    ``dynamic_slice``, ``cond``, ``scan``, ...) only in ``ad.fancy_transposes``, under a
    different calling convention, so neural-tangents' lookup fails for them. For those,
    the cotangents come from ``jax.vjp`` of the primitive with zeros in place of the
    undefined (linear) inputs: the equation is linear in them, so this is exact.
    """
    prim = None if eqn is None else eqn.primitive
    if (
        prim is None
        or prim in _jad.primitive_transposes
        or prim in _jad.reducing_transposes
        or prim.call_primitive
        or prim.map_primitive
    ):
        return _nt_eqn_vjp_fn(eqn, cts_in, *invals)
    linear = [i for i, v in enumerate(invals) if isinstance(v, _ad.UndefinedPrimal)]
    if isinstance(cts_in, _ad.Zero):
        return tuple(_ad.Zero(invals[i].aval) if i in linear else None for i in range(len(invals)))
    args = [
        jax.numpy.zeros(v.aval.shape, v.aval.dtype) if isinstance(v, _ad.UndefinedPrimal) else v
        for v in invals
    ]

    def bind(*lin):
        full = list(args)
        for i, value in zip(linear, lin, strict=True):
            full[i] = value
        out = prim.bind(*full, **eqn.params)
        return out[0] if prim.multiple_results else out  # nt passes one output's cotangent

    _, vjp = jax.vjp(bind, *(args[i] for i in linear))
    cts = dict(zip(linear, vjp(cts_in), strict=True))
    return tuple(cts.get(i) for i in range(len(invals)))


_nt_empirical._eqn_vjp_fn = _eqn_vjp_fn
_nt_empirical._std_basis = _std_basis
_nt_empirical._get_primals_out_and_pullback = _get_primals_out_and_pullback
_nt_empirical._get_fx_axis_and_dtype = _get_fx_axis_and_dtype
_nt_empirical._get_flops = _get_flops
_nt_empirical._unravel_array_into_pytree = _unravel_array_into_pytree
# AUTO's only ``print``: a module global shadows the builtin for that module alone.
_nt_empirical.print = lambda *args, **kwargs: None

stax = nt.stax
predict = nt.predict
NtkImplementation = nt.NtkImplementation
empirical_ntk_fn = nt.empirical_ntk_fn
empirical_ntk_vp_fn = nt.empirical_ntk_vp_fn
empirical_nngp_fn = nt.empirical_nngp_fn
linearize = nt.linearize
batch = nt.batch
monte_carlo_kernel_fn = nt.monte_carlo_kernel_fn
__version__ = nt.__version__
