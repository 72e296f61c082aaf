"""Does the neural tangent kernel describe this network? One call that answers for any model.

:func:`diagnose` takes a model as ``apply_fn(params, x) -> (n, k)`` (plain JAX, stax, a
flax Linen or NNX module, an equinox module: see the adapters below), a batch of training
data and a short training procedure, trains the model itself (one ``lax.scan``), and
measures along the way the quantities by which NTK theory's promises stand or fall:

* **The Gram at initialisation** ``K₀ = J₀ J₀ᵀ`` over all ``n·k`` outputs, in float64 by
  default: its spectrum (``λ_min``, ``λ_max``, condition number, effective rank) and the
  resolution floor ``n·k·eps·λ_max`` below which an eigenvalue is round-off
  (:func:`ntk_limits.ngd_conditions.resolve_lambda_min`).
* **Zhang et al.'s stable-Jacobian constant** ``C′(t) = 3‖J(θ_t) − J(θ₀)‖₂/√λ_min(K₀)`` at
  checkpoints, each with the radius condition ``‖θ_t − θ₀‖₂ ≤ R = 3‖y − u₀‖₂/√λ_min(K₀)``
  (:mod:`ntk_limits.ngd_conditions`); ``‖ΔJ‖₂`` by matrix-free Lanczos.
* **Laziness:** the relative Jacobian change ``‖ΔJ‖₂/‖J₀‖₂``, the kernel change
  ``‖K_t − K₀‖_F/‖K₀‖_F``, the alignment of ``K_T`` with ``K₀``, and the linearisation error
  ``‖f − f_lin‖/‖f − f₀‖`` on held-out inputs (:mod:`ntk_limits.kernels`).
* **The infinite-width limit** (when a ``kernel_fn`` is given, e.g.
  ``models.mlp(...).kernel_fn``): ``‖K̄₀ − Θ∞‖_F/‖Θ∞‖_F`` (``K̄₀`` the output-averaged
  empirical NTK) and the gap between the trained network's held-out predictions and the
  kernel-regime prediction of the same training (closed forms for GD and NGD).

A verdict (``"kernel regime"``, ``"outside the kernel regime"`` or ``"inconclusive"``) and
a one-paragraph summary are derived from these numbers by stated thresholds
(:class:`Thresholds`); they never replace the numbers, which the result holds in full.

The rule. Each of four checks is ``True``, ``False`` or ``None`` (not decided):

1. ``full_rank``: ``λ_min(K₀)`` resolved above its floor (``True``); ``0`` because the
   model has fewer parameters than ``n·k`` outputs (``False``); unresolved (``None``).
2. ``stable_jacobian``: ``C′(t) ≥ c_prime`` at a checkpoint inside the radius
   (``False``; sound even where ``λ_min`` is unresolved, since ``C′`` and ``R`` are then
   lower bounds); otherwise ``True`` if ``λ_min`` is resolved and at least one checkpoint
   lies inside the radius, else ``None``.
3. ``lazy_kernel``: the largest kernel change below ``kernel_change``.
4. ``linear``: the largest linearisation error below ``linearization_error`` (``None``
   where the function did not move).

The verdict is ``"kernel regime"`` if all four are ``True``, ``"outside the kernel
regime"`` if any is ``False``, else ``"inconclusive"``.

Adapters (``apply_fn(params, x)`` from common model libraries)::

    # flax Linen, no mutable state:
    apply_fn = lambda p, x: module.apply({"params": p}, x); params = variables["params"]
    # flax Linen with BatchNorm: regime.from_linen(module, variables, train=True/False)
    # flax NNX:
    apply_fn, params = regime.from_nnx(model)
    # equinox (`eqx.partition` splits arrays from the rest):
    params, static = eqx.partition(model, eqx.is_inexact_array)
    apply_fn = lambda p, x: jax.vmap(eqx.combine(p, static))(x)

Example:
  >>> arch = models.mlp(width=1024, depth=2, out_dim=10)
  >>> _, params = arch.init_fn(key, (-1, 784))
  >>> d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(1.0, 100),
  ...                     x_test=x_test, kernel_fn=arch.kernel_fn)
  >>> d.verdict, d.c_prime.shape           # C′ at each of the checkpoints
  ('outside the kernel regime', (5,))
  >>> print(d.summary)
"""

import collections
import functools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits.kernels import (
    blocked_kernel_fn,
    empirical_ntk_fn,
    examples_coupled,
    kernel_alignment,
    linearization_error,
)
from ntk_limits.kernels import gram_spectrum as _gram_spectrum
from ntk_limits.linearize import gradient_descent_mse
from ntk_limits.ngd_conditions import (
    c_prime,
    jacobian_change_norm,
    parameter_distance,
    resolve_lambda_min,
    stability_radius,
)
from ntk_limits.optimization import first_order, full_gram, make_trajectory_fn
from ntk_limits.optimization import ngd as _ngd_optimizer

__all__ = [
    "VERDICTS",
    "Diagnosis",
    "DiagnosisTooLarge",
    "Estimate",
    "Thresholds",
    "Training",
    "diagnose",
    "estimate",
    "from_linen",
    "from_nnx",
    "gd",
    "ngd",
    "ngd_kernel_prediction",
    "optax_training",
]

VERDICTS = ("kernel regime", "outside the kernel regime", "inconclusive")


class DiagnosisTooLarge(MemoryError):
    """The diagnosis cannot fit the memory budget (the message proposes a smaller batch)."""


class Thresholds(NamedTuple):
    """The thresholds of the verdict (see the module doc for the rule).

    Attributes:
      c_prime: Zhang et al.'s bound on ``C′`` (theory's own number: ``C < 1/2``).
      kernel_change: the largest relative kernel change ``‖K_t − K₀‖_F/‖K₀‖_F`` still called
        lazy (10 %: a convention, not a theorem; change it to your tolerance).
      linearization_error: the largest ``‖f − f_lin‖/‖f − f₀‖`` on held-out inputs still
        called linear (10 %, likewise a convention).
    """

    c_prime: float = 0.5
    kernel_change: float = 0.1
    linearization_error: float = 0.1


class Training(NamedTuple):
    """A full-batch training procedure of the MSE loss ``‖f − y‖²/(2·n·k)``.

    Build one with :func:`gd`, :func:`ngd` or :func:`optax_training`.

    Attributes:
      kind: ``"gd"``, ``"ngd"`` or ``"optax"``.
      num_steps: full-batch steps.
      learning_rate: ``η`` (``gd``, ``ngd``; ``None`` for ``optax``, and for ``gd`` meaning
        ``η = n·k/λ_max(K₀)``).
      damping: NGD's relative damping: ``ε = damping · tr(K₀)/(n·k)``.
      transform: the optax transformation (``optax`` only; GD builds ``optax.sgd(η)``).
    """

    kind: str
    num_steps: int
    learning_rate: float | None
    damping: float
    transform: optax.GradientTransformation | None


def _check_steps(num_steps) -> int:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int | np.integer) or num_steps < 1:
        raise ValueError(f"num_steps must be a positive integer, got {num_steps!r}")
    return int(num_steps)


def _check_rate(learning_rate) -> float:
    if not (isinstance(learning_rate, int | float) and math.isfinite(learning_rate)) or (
        learning_rate <= 0
    ):
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    return float(learning_rate)


def gd(learning_rate: float | None, num_steps: int) -> Training:
    """Gradient descent, ``θ ← θ − η ∇L`` (its kernel-regime prediction has a closed form).

    ``learning_rate=None`` picks ``η = n·k/λ_max(K₀)``: half the largest step at which GD
    on the linearised network (loss ``‖f − y‖²/(2·n·k)``) is stable, ``2·n·k/λ_max``.
    """
    lr = None if learning_rate is None else _check_rate(learning_rate)
    return Training("gd", _check_steps(num_steps), lr, 0.0, None)


def ngd(learning_rate: float, num_steps: int, *, damping: float = 1e-4) -> Training:
    """Exact natural-gradient descent (damped Gauss–Newton, :func:`ntk_limits.optimization.ngd`).

    ``ε = damping · tr(K₀)/(n·k)`` (fixed). The Gram is solved by Cholesky when
    ``n·k ≤ 4096``, else by 100 conjugate-gradient steps on NTK-vector products.
    """
    if not (isinstance(damping, int | float) and math.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a non-negative number, got {damping!r}")
    return Training(
        "ngd", _check_steps(num_steps), _check_rate(learning_rate), float(damping), None
    )


def optax_training(transform: optax.GradientTransformation, num_steps: int) -> Training:
    """Any optax transformation (Adam, momentum, …) on the full-batch MSE loss.

    No closed-form kernel-regime prediction exists for a general optimizer, so the
    infinite-width prediction gap is not computed for it.
    """
    if not isinstance(transform, optax.GradientTransformation):
        raise TypeError(f"transform must be an optax.GradientTransformation, got {transform!r}")
    return Training("optax", _check_steps(num_steps), None, 0.0, transform)


class Estimate(NamedTuple):
    """Up-front cost of a diagnosis, from XLA's analysis of the compiled programs.

    Attributes:
      peak_bytes: the largest program's arguments + outputs + temporaries, plus the host
        copies of the Grams and the eigensolver's workspace.
      gram_bytes: one ``(n·k)²`` Gram in the spectrum's precision.
      block: inputs per tile of the Gram (``n``: not blocked).
      programs: ``{name: bytes}`` per compiled program.
    """

    peak_bytes: int
    gram_bytes: int
    block: int
    programs: dict[str, int]


class Diagnosis(NamedTuple):
    """The result of :func:`diagnose` (host numpy arrays and Python numbers).

    Attributes:
      verdict: one of :data:`VERDICTS`.
      summary: plain-language paragraph derived from the numbers and thresholds.
      checks: ``{"full_rank", "stable_jacobian", "lazy_kernel", "linear": True/False/None}``.
      thresholds: the :class:`Thresholds` used.
      n: training inputs.
      outputs: outputs per input ``k``.
      num_params: parameters ``P``.
      precision: dtype of the Gram ``K₀`` and its spectrum (``"float64"`` or ``"float32"``).
      eigenvalues: ``(n·k,)`` ascending spectrum of ``K₀``.
      lambda_min: ``λ̂_min(K₀)`` as computed.
      lambda_max: ``λ_max(K₀)``.
      condition_number: ``λ_max/λ_min`` (``inf`` if ``λ_min ≤ 0``).
      effective_rank: ``exp`` of the spectral entropy.
      lambda_floor: ``n·k·eps·λ_max``: eigenvalues below it are round-off.
      lambda_min_resolved: ``λ_min`` is exact (above the floor, or ``0`` by rank).
      lambda_zero: ``λ_min`` used for ``C′`` and ``R``: the resolved value, or where
        unresolved its upper bound ``λ̂⁺ + floor`` (then ``C′`` and ``R`` are lower bounds).
      steps: ``(C,)`` checkpoint steps.
      losses: ``(T + 1,)`` training loss before each step and after the last.
      c_prime: ``(C,)`` ``C′(t)`` (a lower bound: Lanczos gives ``‖ΔJ‖₂`` from below).
      radius: ``R``.
      param_distance: ``(C,)`` ``‖θ_t − θ₀‖₂``.
      inside_radius: ``(C,)`` ``‖θ_t − θ₀‖₂ ≤ R``.
      jacobian_change: ``(C,)`` ``‖ΔJ‖₂/‖J₀‖₂`` (``‖J₀‖₂ = √λ_max(K₀)``).
      kernel_change: ``(C,)`` ``‖K_t − K₀‖_F/‖K₀‖_F`` (full ``(n·k)²`` Grams).
      kernel_alignment: ``⟨K_T, K₀⟩_F/(‖K_T‖_F‖K₀‖_F)`` at the last checkpoint.
      linearization_error: ``(C,)`` ``‖f − f_lin‖/‖f − f₀‖`` on :attr:`evaluated_on`.
      evaluated_on: ``"held-out inputs"`` or ``"training inputs"`` (no ``x_test`` given).
      infinite_kernel_distance: ``‖K̄₀ − Θ∞‖_F/‖Θ∞‖_F`` or ``None`` (no ``kernel_fn``).
      infinite_prediction_gap: ``‖f_T − f_Θ∞‖/‖f_T − f₀‖`` on :attr:`evaluated_on`, the
        trained network against the kernel-regime prediction of the same training with
        ``Θ∞`` from the same ``f₀``; ``None`` without ``kernel_fn`` or for ``optax``.
      diverged_at: the first step whose training loss is not finite, or ``None``
        (checkpoints after it are NaN and skipped by the checks).
      final_params: the parameters after training (in the params' dtype).
      notes: what the numbers rest on (methods, modes, blocks).
      seconds: wall time of the diagnosis.
    """

    verdict: str
    summary: str
    checks: dict[str, bool | None]
    thresholds: Thresholds
    n: int
    outputs: int
    num_params: int
    precision: str
    eigenvalues: np.ndarray
    lambda_min: float
    lambda_max: float
    condition_number: float
    effective_rank: float
    lambda_floor: float
    lambda_min_resolved: bool
    lambda_zero: float
    steps: np.ndarray
    losses: np.ndarray
    c_prime: np.ndarray
    radius: float
    param_distance: np.ndarray
    inside_radius: np.ndarray
    jacobian_change: np.ndarray
    kernel_change: np.ndarray
    kernel_alignment: float
    linearization_error: np.ndarray
    evaluated_on: str
    infinite_kernel_distance: float | None
    infinite_prediction_gap: float | None
    diverged_at: int | None
    final_params: Any
    notes: tuple[str, ...]
    seconds: float


# ---------------------------------------------------------------------------- adapters


def from_linen(module, variables, *, train: bool = False, **apply_kwargs):
    """``(apply_fn, params)`` for a flax Linen module, BatchNorm state included.

    Only ``variables["params"]`` are differentiated and trained; every other collection
    (``batch_stats``) is held fixed at its given value. With ``train=False`` BatchNorm uses
    those running statistics: examples are independent. With ``train=True`` it normalises
    by the batch's own statistics (the mode the network trains in): the output of one
    example then depends on the whole batch, so the function is marked
    (:func:`ntk_limits.kernels.couple_examples`) and every kernel is taken on the batch as
    a whole; the running statistics are not updated.

    Args:
      module: a ``flax.linen.Module``.
      variables: ``module.init(...)``'s result (``{"params": ..., "batch_stats": ...}``).
      train: BatchNorm mode; passed as ``train=`` to ``module.__call__`` when the module
        has state beyond ``params``.
      **apply_kwargs: further keyword arguments of ``module.__call__``.

    Returns:
      ``(apply_fn, params)`` with ``apply_fn(params, x) -> (n, k)``.
    """
    from ntk_limits.kernels import couple_examples

    params = variables["params"]
    state = {name: v for name, v in variables.items() if name != "params"}
    if not state:
        return (lambda p, x: module.apply({"params": p}, x, **apply_kwargs)), params
    mutable = list(state) if train else False

    def apply_fn(p, x):
        # The state follows the parameters' precision (a float64 diagnosis casts both).
        dtype = jnp.result_type(*jax.tree_util.tree_leaves(p))
        state_p = jax.tree_util.tree_map(
            lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a, state
        )
        out = module.apply(
            {"params": p, **state_p}, x, train=train, mutable=mutable, **apply_kwargs
        )
        return out[0] if train else out

    return (couple_examples(apply_fn) if train else apply_fn), params


def from_nnx(model):
    """``(apply_fn, params)`` for a flax NNX module: its ``nnx.Param`` s are the parameters.

    Other state (e.g. BatchNorm's running statistics) is held fixed; put the model in the
    mode you want first (``model.eval()`` uses running statistics; in ``model.train()``
    mode the statistics would be updated on a copy only and the function is not marked as
    coupling examples, so prefer ``eval`` or the Linen adapter for batch statistics).
    """
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return (lambda p, x: nnx.merge(graphdef, p, rest)(x)), params


# ------------------------------------------------------------------------------ helpers


def _float_cast(tree, dtype):
    """Floating leaves cast to ``dtype`` in one compiled program (eager casts compile each)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    leaves = [jnp.asarray(a) for a in leaves]
    if all(a.dtype == dtype or not jnp.issubdtype(a.dtype, jnp.floating) for a in leaves):
        return jax.tree_util.tree_unflatten(treedef, leaves)
    return jax.tree_util.tree_unflatten(treedef, _cast_leaves(leaves, jnp.dtype(dtype)))


@functools.partial(jax.jit, static_argnums=1)
def _cast_leaves(leaves, dtype):
    return [a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in leaves]


def _num_params(params) -> int:
    return sum(int(np.prod(np.shape(a))) for a in jax.tree_util.tree_leaves(params))


def _program_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    if m is None:  # a backend without the analysis: count nothing rather than guess
        return 0
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def _targets(y, n: int, k: int, dtype) -> jax.Array:
    y = jnp.asarray(y)
    if y.ndim == 1 and jnp.issubdtype(y.dtype, jnp.integer):
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(
                f"integer labels must lie in 0..{k - 1} for {k} outputs, "
                f"got {int(y.min())}..{int(y.max())}"
            )
        y = jax.nn.one_hot(y, k)
    if y.shape != (n, k):
        raise ValueError(
            f"y must be (n, k) = ({n}, {k}) targets or (n,) integer labels, "
            f"got shape {tuple(y.shape)}"
        )
    return y.astype(dtype)


def _output_shape(apply_fn, params, x) -> tuple[int, int]:
    try:
        out = jax.eval_shape(apply_fn, params, x)
    except Exception as e:  # noqa: BLE001 - any failure of the user's function is theirs
        raise ValueError(
            f"apply_fn(params, x) failed on x of shape {tuple(x.shape)}: {type(e).__name__}: {e}"
        ) from e
    if not hasattr(out, "shape") or len(out.shape) != 2 or out.shape[0] != x.shape[0]:
        shape = getattr(out, "shape", type(out).__name__)
        raise ValueError(
            f"apply_fn(params, x) must return (n, k) = ({x.shape[0]}, k) outputs "
            f"for x of shape {tuple(x.shape)}, got {shape}"
        )
    if not jnp.issubdtype(out.dtype, jnp.floating):
        raise ValueError(f"apply_fn must return floating outputs, got {out.dtype}")
    return int(out.shape[0]), int(out.shape[1])


def ngd_kernel_prediction(theta, y, learning_rate, damping):
    """Kernel-regime outputs of damped NGD with a fixed kernel, on training and test inputs.

    With ``Θ = V diag(λ) Vᵀ`` (output-averaged; the full Gram is ``Θ ⊗ I_k``) each step maps
    the training residual ``r = f − y`` to ``V diag(a) Vᵀ r`` with ``a = 1 − ηλ/(λ+ε)`` and
    moves test outputs by ``−η Θ_tX (Θ + εI)⁻¹ r``. Summing the geometric series,
    ``f_test(T) = f_test(0) − Θ_tX V diag((1 − a^T)/λ) Vᵀ r₀`` (limit ``ηT/ε`` at ``λ = 0``).

    Args:
      theta: ``Θ`` on the training inputs, ``(n, n)``.
      y: targets ``(n, k)``.
      learning_rate: ``η``.
      damping: ``ε`` (absolute).

    Returns:
      ``predict(t, f_train_0, f_test_0, theta_test_train) -> (train (n, k), test (m, k))``.
    """
    lam, v = jnp.linalg.eigh((theta + theta.T) / 2)
    lam = jnp.clip(lam, 0.0)
    rate = learning_rate * lam / jnp.where(lam + damping > 0, lam + damping, 1.0)
    a = 1.0 - rate

    def predict(t, f_train_0, f_test_0, theta_test_train):
        r = v.T @ (f_train_0 - y)
        t = jnp.asarray(t, lam.dtype)
        decay = a**t
        safe = jnp.where(lam > 0, lam, 1.0)
        limit = jnp.where(
            damping > 0, learning_rate * t / jnp.where(damping > 0, damping, 1.0), 0.0
        )
        coef = jnp.where(lam > 0, (1 - decay) / safe, limit)
        return y + v @ (decay[:, None] * r), f_test_0 - theta_test_train @ (v @ (coef[:, None] * r))

    return predict


def _gram_fn(apply_fn, algorithm: str):
    return lambda p, x: full_gram(apply_fn, p, x, algorithm=algorithm)


_CHEAP_FLOPS = 2e8  # below this, an unoptimised XLA:CPU program is faster overall


_COMPILED: collections.OrderedDict = collections.OrderedDict()  # key -> executable
_COMPILED_MAX = 16


def _compile(key: tuple, fn, *args, repeats: int = 1):
    """``jax.jit(fn)`` compiled for ``args`` (arrays or shapes), cached by ``key``.

    ``key`` names what ``fn`` computes (the user's ``apply_fn`` and every option the
    program closes over; numbers passed as arguments are not part of it); with the
    arguments' shapes and dtypes and the tracing configuration it keys a small LRU cache,
    as ``jax.jit`` keys its own, so :func:`estimate` then :func:`diagnose`, or diagnoses
    that differ only in learning rate, damping or data values, compile once.

    On a CPU, level 1 compiles about twice as fast as the default 2 and runs these programs
    about as fast (measured: 1-million-parameter MLP 12.4 s vs 10.7 s in all; a BatchNorm
    ResNet 17 s vs 27 s). Level 0 compiles faster still but makes convolutions over 10x
    slower (248 s for that ResNet), so it is taken only for programs whose HLO cost
    analysis, times ``repeats`` (the trips of loops the analysis counts once), is below
    ``_CHEAP_FLOPS``: tiny programs, where compilation is all of the time. Elsewhere
    XLA's defaults.
    """
    leaves, treedef = jax.tree_util.tree_flatten(args)
    config = jax.config
    full_key = (
        key,
        treedef,
        tuple((tuple(a.shape), jnp.dtype(a.dtype)) for a in leaves),
        jax.default_backend(),
        config.jax_enable_x64,
        config.jax_numpy_dtype_promotion,
        config.jax_numpy_rank_promotion,
    )
    try:
        hash(full_key)
    except TypeError:  # an unhashable option (e.g. a transform holding arrays): no caching
        full_key = None
    if full_key in _COMPILED:
        _COMPILED.move_to_end(full_key)
        return _COMPILED[full_key]
    lowered = jax.jit(fn).lower(*args)
    if jax.default_backend() != "cpu":
        compiled = lowered.compile()
    else:
        cost = lowered.cost_analysis() or {}
        cost = cost[0] if isinstance(cost, list) else cost
        flops = float(cost.get("flops", math.inf)) * repeats
        level = 0 if flops < _CHEAP_FLOPS else 1
        compiled = lowered.compile({"xla_backend_optimization_level": level})
    if full_key is not None:
        _COMPILED[full_key] = compiled
    while len(_COMPILED) > _COMPILED_MAX:
        _COMPILED.popitem(last=False)
    return compiled


class _GramPlan(NamedTuple):
    compute: Callable[..., np.ndarray]
    block: int
    bytes: int


def _plan_gram(apply_fn, params, x, budget: int | None, algorithm: str) -> _GramPlan:
    """The Gram's program, blocked over inputs when the whole one does not fit."""
    n = x.shape[0]
    whole = _compile(("gram", apply_fn, algorithm), _gram_fn(apply_fn, algorithm), params, x)
    need = _program_bytes(whole)
    if budget is None or need <= budget or examples_coupled(apply_fn):
        return _GramPlan(lambda p, xs: np.asarray(whole(p, xs)), n, need)
    kernel = empirical_ntk_fn(apply_fn, algorithm=algorithm, trace=False)
    block = n
    while block > 1:
        block = max(block // 2, 1)
        tile = _compile(
            ("tile", apply_fn, algorithm),
            lambda p, a, b: kernel(a, b, p),
            params,
            x[:block],
            x[:block],
        )
        need = _program_bytes(tile)
        if need <= budget:
            break
    blocked = blocked_kernel_fn(lambda a, b, p: kernel(a, b, p), block=block)

    def compute(p, xs):
        k4 = blocked(xs, None, p)  # (n, n, k, k)
        m, _, k, _ = k4.shape
        return k4.transpose(0, 2, 1, 3).reshape(m * k, m * k)

    return _GramPlan(compute, block, need)


def _gib(b: float) -> str:
    return f"{b / 2**30:.3g} GiB"


def _largest_fitting_n(fits: Callable[[int], bool], n: int) -> int:
    """The largest ``m`` in ``n/2, n/4, …, 1`` with ``fits(m)``, else 0."""
    m = n // 2
    while m >= 1:
        if fits(m):
            return m
        m //= 2
    return 0


def estimate(
    apply_fn,
    params,
    x,
    y,
    *,
    train: Training,
    x_test: jax.Array | None = None,
    precision: str = "float64",
    max_bytes: int | None = None,
    algorithm: str = "structured",
    lanczos_iters: int = 20,
    checkpoints: int | Sequence[int] = 5,
) -> Estimate:
    """Memory of :func:`diagnose` before anything runs (XLA's analysis of its programs).

    Compiles (does not run) the Gram, training and per-checkpoint programs and reads their
    buffer sizes from ``memory_analysis``; adds the host Grams and the eigensolver.

    Args: as :func:`diagnose`.

    Raises:
      DiagnosisTooLarge: if ``max_bytes`` is given and the diagnosis cannot fit it even
        with the Gram blocked over inputs; the message proposes a number of inputs.
    """
    options = dict(
        precision=precision,
        max_bytes=max_bytes,
        algorithm=algorithm,
        lanczos_iters=lanczos_iters,
        checkpoints=checkpoints,
    )
    return _prepare(apply_fn, params, x, y, x_test, train, **options).estimate


class _Prepared(NamedTuple):
    estimate: Estimate
    gram0: _GramPlan
    train_dtype: Any
    spectrum_dtype: Any
    trajectory: Any
    per_checkpoint: Any
    checkpoints: tuple[int, ...]
    n: int
    k: int
    num_params: int


def _checkpoints(num_steps: int, checkpoints) -> tuple[int, ...]:
    """Evenly spaced steps ending at ``num_steps`` (a count), or the given steps, checked."""
    if isinstance(checkpoints, int | np.integer) and not isinstance(checkpoints, bool):
        if checkpoints < 1:
            raise ValueError(f"checkpoints must be a positive count or steps, got {checkpoints}")
        num = int(checkpoints)
        return tuple(sorted({max(1, round(num_steps * (i + 1) / num)) for i in range(num)}))
    steps = tuple(int(c) for c in checkpoints)
    if not steps or any(c < 1 or c > num_steps for c in steps) or len(set(steps)) != len(steps):
        raise ValueError(
            f"checkpoints must be distinct steps in 1..{num_steps} (or a count), got {checkpoints}"
        )
    return tuple(sorted(steps))


def _trajectory_fn(apply_fn, train: Training, checkpoints: tuple[int, ...], nk: int):
    """``run(params, x, y, lr, damping) -> Trajectory`` (``damping``: NGD's ε)."""

    def run(params, x, y, lr, damping):
        if train.kind == "ngd":
            solver = "cholesky" if nk <= 4096 else "cg"
            opt = _ngd_optimizer(apply_fn, lr, damping, solver=solver)
        elif train.kind == "gd":
            opt = first_order(apply_fn, optax.sgd(lr))
        else:
            opt = first_order(apply_fn, train.transform)
        return make_trajectory_fn(apply_fn, opt, train.num_steps, checkpoints)(params, x, y)

    return run


def _per_checkpoint_fn(apply_fn, lanczos_iters: int, algorithm: str, with_gram: bool):
    """``(θ₀, snapshots, x, x_eval, K₀) -> (5, C)``: ‖ΔJ‖₂, ‖θ−θ₀‖, lin. error, ΔK, align.

    Without ``with_gram`` (the Gram is blocked over inputs on the host) the last two rows
    are NaN and filled in afterwards.
    """

    def one(p0, p, x, x_eval, gram0):
        spectral = jacobian_change_norm(apply_fn, p0, p, x, num_iters=lanczos_iters)
        lin = linearization_error(apply_fn, p0, p, x_eval)
        if with_gram:
            gram = full_gram(apply_fn, p, x, algorithm=algorithm)
            change = jnp.linalg.norm(gram - gram0) / jnp.linalg.norm(gram0)
            align = kernel_alignment(gram, gram0)
        else:
            change = align = jnp.full((), jnp.nan, spectral.dtype)
        return jnp.stack([spectral, parameter_distance(p0, p), lin, change, align])

    def run(p0, snapshots, x, x_eval, gram0):
        return jax.lax.map(lambda p: one(p0, p, x, x_eval, gram0), snapshots).T

    return run


def _prepare(
    apply_fn,
    params,
    x,
    y,
    x_test,
    train,
    *,
    precision,
    max_bytes,
    algorithm,
    lanczos_iters,
    checkpoints,
) -> _Prepared:
    """Checks the arguments and compiles every program (nothing runs): see :func:`estimate`."""
    if not isinstance(train, Training):
        raise TypeError(
            "train must be a regime.Training (regime.gd, regime.ngd or "
            f"regime.optax_training), got {type(train).__name__}"
        )
    if precision not in ("float64", "float32"):
        raise ValueError(f"unknown precision {precision!r}; allowed: float64, float32")
    x = jnp.asarray(x)
    n, k = _output_shape(apply_fn, params, x)
    x_eval = x if x_test is None else jnp.asarray(x_test)
    if x_test is not None and _output_shape(apply_fn, params, x_eval)[1] != k:
        raise ValueError(f"x_test gives outputs of another width than x's; allowed: {k}")
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves or not all(jnp.issubdtype(jnp.asarray(a).dtype, jnp.floating) for a in leaves):
        raise ValueError("params must be a non-empty pytree of floating arrays")
    train_dtype = jnp.result_type(*leaves)
    spectrum_dtype = jnp.float64 if precision == "float64" else jnp.float32
    ckpts = _checkpoints(train.num_steps, checkpoints)
    nk, num_params = n * k, _num_params(params)
    with jax.enable_x64(precision == "float64" or train_dtype == jnp.float64):
        p_s, x_s = _float_cast(params, spectrum_dtype), x.astype(spectrum_dtype)
        gram0 = _plan_gram(apply_fn, p_s, x_s, max_bytes, algorithm)
        # NGD's solve needs the Gram's precision (float32 resolves only n·k·eps₃₂·λ_max).
        t_dtype = spectrum_dtype if train.kind == "ngd" else train_dtype
        p_t, x_t = _float_cast(params, t_dtype), x.astype(t_dtype)
        y_t = _targets(y, n, k, t_dtype)
        run = _trajectory_fn(apply_fn, train, ckpts, nk)
        scalar = jnp.zeros((), t_dtype)
        program = (
            "training",
            apply_fn,
            train._replace(learning_rate=None, damping=None),
            ckpts,
            nk,
        )
        trajectory = _compile(program, run, p_t, x_t, y_t, scalar, scalar, repeats=train.num_steps)
        snaps = jax.tree_util.tree_map(
            lambda a: jax.ShapeDtypeStruct((len(ckpts), *a.shape), train_dtype), params
        )
        p32, x32 = _float_cast(params, train_dtype), x.astype(train_dtype)
        xe32 = x_eval.astype(train_dtype)
        g32 = jax.ShapeDtypeStruct((nk, nk), train_dtype)
        with_gram = gram0.block == n
        per_ckpt = _compile(
            ("checkpoints", apply_fn, lanczos_iters, algorithm, with_gram),
            _per_checkpoint_fn(apply_fn, lanczos_iters, algorithm, with_gram),
            p32, snaps, x32, xe32, g32, repeats=len(ckpts) * lanczos_iters,
        )  # fmt: skip
    itemsize = jnp.dtype(spectrum_dtype).itemsize
    gram_bytes = nk * nk * itemsize
    programs = {
        "gram": gram0.bytes,
        "training": _program_bytes(trajectory),
        "checkpoints": _program_bytes(per_ckpt),
    }
    # Host: K₀ (spectrum precision) and its float32/train copy, eigh's copy and workspace.
    host = 4 * gram_bytes
    peak = max(programs.values()) + host
    est = Estimate(int(peak), int(gram_bytes), gram0.block, programs)
    if max_bytes is not None and peak > max_bytes:
        # Propose a batch that XLA's analysis says fits (halving n; each try compiles).
        retry = dict(
            precision=precision,
            max_bytes=None,
            algorithm=algorithm,
            lanczos_iters=lanczos_iters,
            checkpoints=checkpoints,
        )
        y_all = jnp.asarray(y)
        fits = lambda m: (
            _prepare(
                apply_fn,
                params,
                x[:m],
                y_all[:m],
                None if x_test is None else x_eval[:m],
                train,
                **retry,
            ).estimate.peak_bytes
            <= max_bytes
        )
        m = _largest_fitting_n(fits, n)
        proposal = f"try n <= {m} inputs" if m else "it does not fit even for one input"
        raise DiagnosisTooLarge(
            f"diagnosis of n={n} inputs x k={k} outputs needs {_gib(peak)} (the (n·k)² Grams "
            f"{_gib(host)} of it, the largest program {_gib(max(programs.values()))}); budget "
            f"{_gib(max_bytes)}: {proposal}"
        )
    return _Prepared(
        est, gram0, t_dtype, spectrum_dtype, trajectory, per_ckpt, ckpts, n, k, num_params
    )


def _checks(lam, cp, inside, change, lin, th: Thresholds) -> dict[str, bool | None]:
    """The four checks of the module doc; checkpoints with non-finite numbers are skipped."""
    ok = np.isfinite(cp) & np.isfinite(change)
    fails = bool(np.any(ok & inside & (cp >= th.c_prime)))
    resolved = bool(lam.exact and lam.value > 0)
    stable = False if fails else (True if resolved and np.any(ok & inside) else None)
    lin_ok = np.isfinite(lin)
    return {
        "full_rank": True if resolved else (False if lam.exact else None),
        "stable_jacobian": stable,
        "lazy_kernel": bool(change[ok].max() < th.kernel_change) if ok.any() else None,
        "linear": bool(lin[lin_ok].max() < th.linearization_error) if lin_ok.any() else None,
    }


def _check(value: bool | None) -> str:
    return {True: "holds", False: "fails", None: "undecided"}[value]


def _verdict(checks: dict[str, bool | None]) -> str:
    values = list(checks.values())
    if all(v is True for v in values):
        return VERDICTS[0]
    if any(v is False for v in values):
        return VERDICTS[1]
    return VERDICTS[2]


def _fmt(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "∞" if v is not None and np.isinf(v) else "n/a"
    return f"{v:.3g}"


def _rank_text(checks, d: dict) -> str:
    lam = f"λ_min(K₀) = {_fmt(d['lambda_min'])} ({d['precision']}, floor {_fmt(d['lambda_floor'])})"
    if checks["full_rank"] is True:
        return f"full rank: {lam}"
    if checks["full_rank"] is False:
        nk = d["n"] * d["outputs"]
        return f"rank-deficient: P = {d['num_params']} < n·k = {nk}, so λ_min(K₀) = 0"
    return (
        f"λ_min(K₀) unresolved: computed {_fmt(d['lambda_min'])} is below the {d['precision']} "
        f"floor {_fmt(d['lambda_floor'])}; C′ and R are lower bounds"
    )


def _nanmax(a) -> float:
    a = np.asarray(a, np.float64)
    return float(a[np.isfinite(a)].max()) if np.isfinite(a).any() else float("nan")


def _stability_text(th: Thresholds, d: dict) -> str:
    cp, dist, radius = d["c_prime"], d["param_distance"], _fmt(d["radius"])
    inside = d["inside_radius"] & np.isfinite(cp)
    if not inside.any():
        return (
            f"no finite checkpoint lies inside the radius R = {radius} (‖θ−θ₀‖ up to "
            f"{_fmt(_nanmax(dist))}), where C′ (up to {_fmt(_nanmax(cp))}) does not test the "
            "condition"
        )
    worst = int(np.argmax(np.where(inside, cp, -np.inf)))
    return (
        f"C′ up to {_fmt(float(cp[worst]))} at step {int(d['steps'][worst])} inside the radius "
        f"R = {radius} (‖θ−θ₀‖ = {_fmt(float(dist[worst]))}); theory needs C′ < {th.c_prime:g}"
    )


def _summary(verdict, checks, th: Thresholds, d: dict) -> str:
    """One paragraph: the verdict, then each check with its number and threshold."""
    lin = d["linearization_error"]
    if np.isfinite(lin).any():
        lin_text = (
            f"linearisation error up to {_fmt(_nanmax(lin))} on {d['evaluated_on']} "
            f"(threshold {th.linearization_error:g})"
        )
    else:
        lin_text = "linearisation error undefined (outputs did not move, or training diverged)"
    losses = d["losses"]
    parts = [f"training diverged at step {d['diverged_at']}"] if d["diverged_at"] else []
    if not parts and losses[-1] > losses[0]:
        parts = [f"the loss grew from {_fmt(losses[0])} to {_fmt(losses[-1])} (step too large?)"]
    parts += [
        f"{_rank_text(checks, d)} [{_check(checks['full_rank'])}]",
        f"{_stability_text(th, d)} [{_check(checks['stable_jacobian'])}]",
        f"kernel moved {_fmt(100 * _nanmax(d['kernel_change']))} % (threshold "
        f"{100 * th.kernel_change:g} %; alignment of K_T with K₀ {_fmt(d['kernel_alignment'])}) "
        f"[{_check(checks['lazy_kernel'])}]",
        f"{lin_text} [{_check(checks['linear'])}]",
    ]
    if d["infinite_kernel_distance"] is not None:
        inf = f"empirical NTK {_fmt(100 * d['infinite_kernel_distance'])} % from Θ∞"
        if d["infinite_prediction_gap"] is not None:
            gap = _fmt(100 * d["infinite_prediction_gap"])
            inf += f"; trained predictions {gap} % (of their own change) from the kernel regime's"
        parts.append(inf + " [not part of the verdict]")
    return f"{verdict}: " + "; ".join(parts) + "."


def diagnose(
    apply_fn: Callable[..., jax.Array],
    params,
    x: jax.Array,
    y: jax.Array,
    *,
    train: Training,
    x_test: jax.Array | None = None,
    kernel_fn: Callable | None = None,
    thresholds: Thresholds = Thresholds(),  # noqa: B008 - an immutable NamedTuple
    precision: str = "float64",
    checkpoints: int | Sequence[int] = 5,
    lanczos_iters: int = 20,
    algorithm: str = "structured",
    max_bytes: int | None = None,
) -> Diagnosis:
    """Trains ``apply_fn`` from ``params`` on ``(x, y)`` and says whether the NTK describes it.

    Args:
      apply_fn: ``(params, x) -> (n, k)``, any JAX function (see the module's adapters).
        Mark one whose examples interact (BatchNorm on batch statistics) with
        :func:`ntk_limits.kernels.couple_examples` (:func:`from_linen` does).
      params: the initial parameters ``θ₀`` (a pytree of floating arrays).
      x: training inputs ``(n, ...)``.
      y: targets ``(n, k)`` or integer labels ``(n,)`` (one-hot encoded).
      train: :func:`gd`, :func:`ngd` or :func:`optax_training`; the loss is the MSE
        ``‖f − y‖²/(2·n·k)``.
      x_test: held-out inputs ``(m, ...)`` for the linearisation error and the
        infinite-width prediction (``None``: the training inputs, and the result says so).
      kernel_fn: an infinite-width ``kernel_fn(x1, x2, "ntk")`` (neural-tangents
        convention, ``models.*().kernel_fn``) of the same network, or ``None``.
      thresholds: the verdict's :class:`Thresholds`.
      precision: dtype of ``K₀`` and its spectrum (and of NGD's training): ``"float64"``
        (resolves ``λ_min`` down to ``n·k·2e-16·λ_max``) or ``"float32"``. Training by GD
        or optax, the per-checkpoint Jacobian changes and later Grams use the params' dtype.
      checkpoints: how many checkpoints ``C``, evenly spaced up to ``train.num_steps``, or
        the steps themselves (distinct, in ``1..num_steps``).
      lanczos_iters: Lanczos steps for each ``‖ΔJ‖₂`` (a lower bound, exact at ``n·k``).
      algorithm: empirical-NTK algorithm of the formed Grams (``"structured"``: never
        forms ``J`` for standard layers; see :func:`ntk_limits.kernels.empirical_ntk_fn`).
      max_bytes: memory budget; the Gram is then blocked over inputs when it does not fit
        whole, and a diagnosis that cannot fit is refused before it runs
        (:class:`DiagnosisTooLarge`, with a proposed ``n``). ``None``: no check.

    Returns:
      :class:`Diagnosis`.
    """
    start = time.perf_counter()
    options = dict(
        precision=precision,
        max_bytes=max_bytes,
        algorithm=algorithm,
        lanczos_iters=lanczos_iters,
        checkpoints=checkpoints,
    )
    prep = _prepare(apply_fn, params, x, y, x_test, train, **options)
    n, k, nk = prep.n, prep.k, prep.n * prep.k
    x = jnp.asarray(x)
    x_eval = x if x_test is None else jnp.asarray(x_test)
    notes = []
    x64 = prep.spectrum_dtype == jnp.float64 or prep.train_dtype == jnp.float64
    with jax.enable_x64(x64), warnings.catch_warnings():
        warnings.filterwarnings("ignore", "No Jacobian rule found", UserWarning)
        p_s = _float_cast(params, prep.spectrum_dtype)
        gram0 = np.asarray(prep.gram0.compute(p_s, x.astype(prep.spectrum_dtype)), np.float64)
        gram0 = (gram0 + gram0.T) / 2
        spec = jax.jit(_gram_spectrum)(gram0)
        eig = np.asarray(spec.eigenvalues, np.float64)
        eps = float(jnp.finfo(prep.spectrum_dtype).eps)
        lam = resolve_lambda_min(eig[0], nk * eps * eig[-1], prep.num_params, nk)
        # Training: NGD in the spectrum's precision, first-order methods in the params'.
        t_dtype = prep.train_dtype
        p_t, x_t = _float_cast(params, t_dtype), x.astype(t_dtype)
        y_t = _targets(y, n, k, t_dtype)
        eps_abs = train.damping * float(np.trace(gram0)) / nk
        lr = train.learning_rate
        if lr is None and train.kind == "gd":
            lr = nk / float(eig[-1])
            notes.append(f"GD step η = n·k/λ_max(K₀) = {lr:.3g} (half the linear stability limit)")
            train = train._replace(learning_rate=lr)
        scalar = lambda v: jnp.asarray(0.0 if v is None else v, t_dtype)
        traj = prep.trajectory(p_t, x_t, y_t, scalar(lr), scalar(eps_abs))
        if train.kind == "ngd":
            notes.append(f"NGD in {jnp.dtype(t_dtype).name}, damping ε = {eps_abs:.3g}")
        f_dtype = jnp.result_type(*jax.tree_util.tree_leaves(params))
        p0 = _float_cast(params, f_dtype)
        snaps = _float_cast(traj.snapshots, f_dtype)
        xf, xe = x.astype(f_dtype), x_eval.astype(f_dtype)
        g_f = jnp.asarray(gram0, f_dtype)
        rows = np.asarray(prep.per_checkpoint(p0, snaps, xf, xe, g_f), np.float64)
        if prep.gram0.block < n:  # the Grams along the way in the same tiles, on the host
            for c in range(len(prep.checkpoints)):
                p_c = jax.tree_util.tree_map(lambda a, c=c: a[c], snaps)
                gram = np.asarray(prep.gram0.compute(p_c, xf), np.float64)
                rows[3, c] = np.linalg.norm(gram - gram0) / np.linalg.norm(gram0)
                rows[4, c] = np.vdot(gram, gram0) / (np.linalg.norm(gram) * np.linalg.norm(gram0))
        losses = np.asarray(traj.losses, np.float64)
        final, f0_eval, fT_eval, f0_train = _end_outputs(apply_fn, p0, snaps, xf, xe)
        f0_eval, fT_eval, f0_train = (
            np.asarray(f, np.float64) for f in (f0_eval, fT_eval, f0_train)
        )
        inf_dist = inf_gap = None
        if kernel_fn is not None:
            inf_dist, inf_gap, note = _infinite(
                kernel_fn, gram0, x, x_eval, y_t, train, f0_train, f0_eval, fT_eval, n, k
            )
            notes.append(note)
    spectral, dist, lin, change, align = rows
    residual0 = f0_train - np.asarray(y_t, np.float64)
    with jax.enable_x64(True):  # λ_min may be far below float32's range
        cp = np.asarray(jax.jit(c_prime)(spectral, lam.upper), np.float64)
        radius = float(jax.jit(stability_radius)(residual0, lam.upper))
    inside = dist <= radius
    th = thresholds
    checks = _checks(lam, cp, inside, change, lin, th)
    verdict = _verdict(checks)
    bad = np.flatnonzero(~np.isfinite(losses))
    diverged_at = int(bad[0]) if bad.size else None
    jac_rel = spectral / math.sqrt(max(eig[-1], np.finfo(np.float64).tiny))
    if prep.gram0.block < n:
        notes.append(f"K₀ formed in {prep.gram0.block}-input tiles (memory budget)")
    if examples_coupled(apply_fn):
        notes.append("examples coupled (BatchNorm on batch statistics): kernels of the whole batch")
    notes.append(
        f"‖ΔJ‖₂ by {lanczos_iters} Lanczos steps (a lower bound); Grams by the "
        f"{algorithm!r} algorithm"
    )
    d = {
        "n": n,
        "outputs": k,
        "num_params": prep.num_params,
        "precision": jnp.dtype(prep.spectrum_dtype).name,
        "eigenvalues": eig,
        "lambda_min": float(eig[0]),
        "lambda_max": float(eig[-1]),
        "condition_number": float(spec.condition_number),
        "effective_rank": float(spec.effective_rank),
        "lambda_floor": float(lam.floor),
        "lambda_min_resolved": bool(lam.exact),
        "lambda_zero": float(lam.upper),
        "steps": np.asarray(prep.checkpoints),
        "losses": losses,
        "c_prime": cp,
        "radius": radius,
        "param_distance": dist,
        "inside_radius": inside,
        "jacobian_change": jac_rel,
        "kernel_change": change,
        "kernel_alignment": float(align[-1]),
        "linearization_error": lin,
        "evaluated_on": "training inputs" if x_test is None else "held-out inputs",
        "infinite_kernel_distance": inf_dist,
        "infinite_prediction_gap": inf_gap,
        "diverged_at": diverged_at,
        "final_params": final,
    }
    summary = _summary(verdict, checks, th, d)
    return Diagnosis(
        verdict=verdict,
        summary=summary,
        checks=checks,
        thresholds=th,
        notes=tuple(notes),
        seconds=time.perf_counter() - start,
        **d,
    )


@functools.partial(jax.jit, static_argnums=0)
def _end_outputs(apply_fn, p0, snapshots, x, x_eval):
    """The last snapshot and ``f₀(x_eval), f_T(x_eval), f₀(x)`` in one compiled program."""
    final = jax.tree_util.tree_map(lambda a: a[-1], snapshots)
    return final, apply_fn(p0, x_eval), apply_fn(final, x_eval), apply_fn(p0, x)


def _infinite(kernel_fn, gram0, x, x_eval, y, train, f0_train, f0_eval, fT_eval, n, k):
    """``‖K̄₀ − Θ∞‖/‖Θ∞‖``, the kernel-regime prediction gap (float64) and a note.

    The kernel-regime prediction starts from the network's own ``f₀`` (Θ∞ replaces only
    the kernel). GD on ``Θ∞`` diverges where ``η·λ_max(Θ∞)/(n·k) ≥ 2``; the gap is then
    not a distance between two trainings and is not computed.
    """
    with jax.enable_x64(True):
        x64, xe64 = jnp.asarray(x, jnp.float64), jnp.asarray(x_eval, jnp.float64)
        theta = np.asarray(jax.jit(lambda a: kernel_fn(a, None, "ntk"))(x64), np.float64)
        avg = np.einsum("iaja->ij", gram0.reshape(n, k, n, k)) / k
        dist = float(np.linalg.norm(avg - theta) / np.linalg.norm(theta))
        if train.kind == "optax":
            return dist, None, "no kernel-regime prediction for a general optax optimizer"
        if train.kind == "gd":
            rate = train.learning_rate * float(np.linalg.eigvalsh(theta)[-1]) / (n * k)
            if rate >= 2:
                note = f"GD on Θ∞ diverges at this step (η·λ_max(Θ∞)/(n·k) = {rate:.3g} ≥ 2)"
                return dist, None, note
            predict = gradient_descent_mse(
                jnp.asarray(theta), jnp.asarray(y, jnp.float64), train.learning_rate, discrete=True
            )
        else:
            eps_abs = train.damping * float(np.trace(gram0)) / (n * k)
            predict = ngd_kernel_prediction(
                jnp.asarray(theta), jnp.asarray(y, jnp.float64), train.learning_rate, eps_abs
            )
        theta_te = np.asarray(jax.jit(lambda a, b: kernel_fn(a, b, "ntk"))(xe64, x64), np.float64)
        _, pred = predict(train.num_steps, f0_train, f0_eval, theta_te)
        moved = np.linalg.norm(fT_eval - f0_eval)
        gap = float(np.linalg.norm(fT_eval - np.asarray(pred)) / moved) if moved > 0 else None
    return dist, gap, f"kernel-regime prediction: {train.kind} on Θ∞ from the network's own f₀"
