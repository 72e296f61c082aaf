"""Floating-point work of a jitted program, counted without running it.

:func:`program_cost` traces a function on abstract arguments (``jax.ShapeDtypeStruct``),
lowers it for CUDA (``lowering_platforms=("cuda",)``: no GPU is needed to lower, and the
HLO is the one an H200 would compile) and asks XLA's HLO cost analysis
(``Lowered.cost_analysis()``, before any optimisation or fusion) for its flops, bytes
accessed and transcendentals. Nothing is compiled or executed. Two things XLA's count
gets wrong are then corrected by walking the program's jaxpr:

* **Loops are counted once.** XLA's cost of a ``while`` (which ``lax.scan``, ``lax.map``
  and ``fori_loop`` become) is that of one trip through its body (checked in
  ``tests/test_bench_flops.py``). A ``scan`` of length ``L`` therefore adds
  ``(L - 1)`` more bodies; a ``while`` whose trip count is data-dependent (a
  ``fori_loop`` with traced bounds, a ``while_loop``) takes its trip count from the
  caller (``while_trips``) and is recorded as such; loops nest (an inner body's
  correction is multiplied by the outer trip count).
* **Dense linear algebra is a library call.** Cholesky and ``eigh`` lower to cuSOLVER
  custom calls, which XLA counts as zero flops; ``triangular_solve`` is an HLO op that
  XLA counts as ``2 m² n`` flops. Each such equation's XLA count is replaced by the
  textbook count (:data:`LINALG_FLOPS`, Golub & Van Loan, *Matrix Computations*, 4th
  ed.): Cholesky ``n³/3``, triangular solve ``m² n``, LU ``m n² − n³/3``, Householder QR
  ``2 m n² − 2 n³/3``, symmetric eigendecomposition with eigenvectors ``9 n³`` (the
  symmetric QR algorithm; divide and conquer often does less).

A ``cond`` is counted by XLA as its most expensive branch; :func:`program_cost` does the
same unless ``cond_weights`` gives each branch's share of the executions (e.g. a re-tuning
branch taken every 500th round), for every ``cond`` or for those a function picks.

Bytes accessed are those of the unfused HLO: every operation reads its operands and
writes its result in memory, so they over-count the traffic of the fused program a GPU
runs (XLA fuses element-wise chains); they are an upper bound on memory traffic.
"""

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
from jax.extend import core as jex_core

__all__ = [
    "LINALG_FLOPS",
    "Cost",
    "ProgramCost",
    "abstract",
    "innermost_caller",
    "program_cost",
    "program_costs",
]

_KEYS = {"flops": "flops", "bytes": "bytes accessed", "transcendentals": "transcendentals"}


class Cost(NamedTuple):
    """Flops, bytes accessed and transcendental operations of a program (floats)."""

    flops: float = 0.0
    bytes: float = 0.0
    transcendentals: float = 0.0

    def __add__(self, other):  # noqa: D105
        return Cost(*(a + b for a, b in zip(self, other, strict=True)))

    def __sub__(self, other):  # noqa: D105
        return Cost(*(a - b for a, b in zip(self, other, strict=True)))

    def scale(self, factor: float) -> "Cost":
        """Every field times ``factor``."""
        return Cost(*(factor * a for a in self))


def _batch(shape) -> int:
    return math.prod(shape[:-2])


def _triangular_solve(eqn) -> float:
    a, b = (v.aval.shape for v in eqn.invars)
    m = a[-1]
    return _batch(a) * m * m * (math.prod(b[-2:]) // m)


def _lu_like(m: int, n: int) -> float:
    k = min(m, n)
    return max(m, n) * k * k - k**3 / 3


def _qr_like(m: int, n: int) -> float:
    k = min(m, n)
    return 2 * max(m, n) * k * k - 2 * k**3 / 3


def _square(eqn, per_matrix: Callable[[int, int], float]) -> float:
    shape = eqn.invars[0].aval.shape
    return _batch(shape) * per_matrix(shape[-2], shape[-1])


LINALG_FLOPS: dict[str, Callable[[Any], float]] = {
    "cholesky": lambda e: _square(e, lambda m, n: n**3 / 3),
    "triangular_solve": _triangular_solve,
    "lu": lambda e: _square(e, _lu_like),
    "geqrf": lambda e: _square(e, _qr_like),
    "qr": lambda e: _square(e, _qr_like),
    "householder_product": lambda e: _square(e, _qr_like),
    "eigh": lambda e: _square(e, lambda m, n: 9 * n**3),
    "svd": lambda e: _square(e, lambda m, n: 4 * max(m, n) * min(m, n) ** 2 + 8 * min(m, n) ** 3),
}
"""Textbook flop counts of the dense linear-algebra primitives (per equation, batched)."""

_LINALG_UNCOUNTED = ("eig", "schur", "tridiagonal", "tridiagonal_solve", "hessenberg")


@dataclasses.dataclass
class ProgramCost:
    """What :func:`program_cost` found.

    Attributes:
      cost: the corrected total (:class:`Cost`).
      xla: XLA's own count of the whole program (each loop body once).
      linalg: ``(primitive, flops of one execution)`` of every linear-algebra equation met.
      loops: ``(kind, trips)`` of every loop met, in the order met (nested ones once).
      hinted_whiles: data-dependent ``while`` loops whose trip count came from the caller.
      conds: ``cond`` equations met.
      weighted_conds: those counted with ``cond_weights`` (the rest: most expensive branch).
      uncounted: linear-algebra primitives without a textbook count (counted as XLA does).
    """

    cost: Cost
    xla: Cost
    linalg: list = dataclasses.field(default_factory=list)
    loops: list = dataclasses.field(default_factory=list)
    hinted_whiles: int = 0
    conds: int = 0
    weighted_conds: int = 0
    uncounted: list = dataclasses.field(default_factory=list)


def abstract(tree):
    """``jax.ShapeDtypeStruct`` of every array leaf of ``tree`` (other leaves unchanged)."""

    def one(a):
        if hasattr(a, "shape") and hasattr(a, "dtype"):
            return jax.ShapeDtypeStruct(a.shape, a.dtype)
        return a

    return jax.tree_util.tree_map(one, tree)


def _xla(fn, args) -> Cost:
    lowered = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",))
    analysis = lowered.cost_analysis() or {}
    cost = Cost(*(float(analysis.get(k, 0.0)) for k in _KEYS.values()))
    if min(cost) < 0:
        raise RuntimeError(f"XLA's cost analysis failed (returned {cost})")
    return cost


def _sds(avals) -> list:
    return [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals]


class _Walker:
    """Corrections of XLA's count, equation by equation (see the module docstring)."""

    def __init__(self, while_trips, cond_weights, report: ProgramCost, cache: dict):
        self.while_trips, self.cond_weights, self.report = while_trips, cond_weights, report
        self._cache = cache  # XLA's cost of each sub-jaxpr, by id (shared between walks)

    def xla(self, closed) -> Cost:
        key = id(closed)
        if key not in self._cache:
            self._cache[key] = _xla(jex_core.jaxpr_as_fun(closed), _sds(closed.in_avals))
        return self._cache[key]

    def eqn_xla(self, eqn) -> Cost:
        prim, params = eqn.primitive, eqn.params
        fn = lambda *args: prim.bind(*args, **params)
        return _xla(fn, _sds([v.aval for v in eqn.invars]))

    def correction(self, jaxpr) -> Cost:
        total = Cost()
        for eqn in jaxpr.eqns:
            total = total + self.eqn(eqn)
        return total

    def true(self, closed) -> Cost:
        return self.xla(closed) + self.correction(closed.jaxpr)

    def eqn(self, eqn) -> Cost:
        name, params = eqn.primitive.name, eqn.params
        if name == "scan":
            length = params["length"]
            self.report.loops.append(("scan", length))
            body = params["jaxpr"]
            return self.xla(body).scale(length - 1) + self.correction(body.jaxpr).scale(length)
        if name == "while":
            return self.while_(params)
        if name == "cond":
            return self.cond(eqn)
        if name in LINALG_FLOPS:
            flops = LINALG_FLOPS[name](eqn)
            self.report.linalg.append((name, flops))
            return Cost(flops=flops - self.eqn_xla(eqn).flops)
        if name in _LINALG_UNCOUNTED:
            self.report.uncounted.append(name)
        return sum((self.correction(sub) for sub in _subjaxprs(params)), Cost())

    def while_(self, params) -> Cost:
        if self.while_trips is None:
            raise ValueError("a while loop with a data-dependent trip count; pass while_trips")
        trips = self.while_trips
        self.report.loops.append(("while", trips))
        self.report.hinted_whiles += 1
        body, cond = params["body_jaxpr"], params["cond_jaxpr"]
        return (
            self.xla(body).scale(trips - 1)
            + self.correction(body.jaxpr).scale(trips)
            + self.true(cond).scale(trips)
        )

    def cond(self, eqn) -> Cost:
        branches = eqn.params["branches"]
        self.report.conds += 1
        true = [self.true(b) for b in branches]
        counted = Cost(*(max(c) for c in zip(*(self.xla(b) for b in branches), strict=True)))
        weights = self.cond_weights(eqn) if callable(self.cond_weights) else self.cond_weights
        if weights is None:
            return max(true, key=lambda c: c.flops) - counted
        self.report.weighted_conds += 1
        if len(weights) != len(branches):
            raise ValueError(f"cond_weights {weights} for a cond of {len(branches)} branches")
        expected = sum((c.scale(w) for c, w in zip(true, weights, strict=True)), Cost())
        return expected - counted


def innermost_caller(eqn) -> tuple[str, str]:
    """``(file, function)`` of the innermost frame outside JAX that built ``eqn``."""
    frames = eqn.source_info.traceback.frames if eqn.source_info.traceback else []
    for frame in frames:
        parts = frame.file_name.replace("\\", "/").split("/")
        if not {"jax", "jaxlib"} & set(parts):
            return frame.file_name, frame.function_name
    return "", ""


def _subjaxprs(params) -> list:
    """Open jaxprs of the sub-programs a (non-loop) equation calls: jit, custom_jvp, remat."""
    out = []
    for value in params.values():
        for item in value if isinstance(value, list | tuple) else (value,):
            if isinstance(item, jex_core.ClosedJaxpr):
                out.append(item.jaxpr)
            elif isinstance(item, jex_core.Jaxpr):
                out.append(item)
    return out


def program_cost(
    fn: Callable,
    *args,
    while_trips: float | None = None,
    cond_weights: Sequence[float] | Callable[[Any], Sequence[float] | None] | None = None,
) -> ProgramCost:
    """Counts the work of ``jax.jit(fn)(*args)`` without compiling or running it.

    Args:
      fn: a traceable function.
      *args: its arguments; arrays may be ``jax.ShapeDtypeStruct`` (see :func:`abstract`).
        Trace under ``jax.enable_x64(True)`` for float64 programs.
      while_trips: trip count used for every data-dependent ``while`` loop (``None``:
        such a loop is an error). A mean over the loop's executions gives the exact total
        when its body's cost does not depend on the iteration.
      cond_weights: each branch's share of the executions of every ``cond``, or a
        function of the ``cond`` equation giving them (``None``: its most expensive branch
        every time, as XLA counts it). See :func:`innermost_caller` to pick a ``cond``.

    Returns:
      A :class:`ProgramCost`.
    """
    return program_costs(fn, *args, while_trips=(while_trips,), cond_weights=cond_weights)[0]


def program_costs(
    fn: Callable,
    *args,
    while_trips: Sequence[float | None],
    cond_weights: Sequence[float] | Callable[[Any], Sequence[float] | None] | None = None,
) -> list[ProgramCost]:
    """:func:`program_cost` at each of several ``while_trips``, lowering each part once."""
    closed = jax.make_jaxpr(fn)(*args)
    xla, cache, out = _xla(fn, args), {}, []
    for trips in while_trips:
        report = ProgramCost(Cost(), xla)
        walker = _Walker(trips, cond_weights, report, cache)
        report.cost = xla + walker.correction(closed.jaxpr)
        out.append(report)
    return out
