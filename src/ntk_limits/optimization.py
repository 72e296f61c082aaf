"""Full-batch optimizers of the MSE training loss, and their compiled trajectories.

Natural-gradient descent (NGD) for the squared loss is, in function space, the damped
Gauss–Newton step (Zhang, Martens & Grosse 2019, "Fast convergence of natural gradient
descent for over-parameterized neural networks")::

    Δθ = −η Jᵀ (J Jᵀ + ε I)⁻¹ (f(θ) − y),

with ``J = ∂f/∂θ`` on the training inputs flattened to ``(n·k) × P`` (output ``a`` of
example ``i`` is row ``i·k + a``), ``K = J Jᵀ`` the full ``(n·k) × (n·k)`` Gram and
``ε ≥ 0`` an absolute damping. In the kernel regime (``J`` constant) the residual
contracts as ``r ← (I − η K (K + ε I)⁻¹) r``, i.e. by ``(1 − η)`` per step as ``ε → 0``,
so the loss falls as ``(1 − η)^{2t}``. ``J`` is never formed: the solved residual is
pulled back by one VJP. The Gram is either formed (neural-tangents' structured
derivatives) and Cholesky-factored, or never formed: conjugate gradients on
NTK-vector products (one JVP and one VJP each).

GD and Adam are optax transformations applied to the gradient of the MSE loss
``L = ‖f − y‖² / (2·n·k)`` (:func:`ntk_limits.training.mse_loss`). Every optimizer is an
``(init, update)`` pair; :func:`make_trajectory_fn` runs one for ``num_steps`` full-batch
steps in a single ``lax.scan`` and keeps the parameters at chosen checkpoints.

Example:
  >>> opt = ngd(arch.apply_fn, learning_rate=1.0, damping=1e-4)
  >>> run = make_trajectory_fn(arch.apply_fn, opt, num_steps=10, checkpoints=(1, 10))
  >>> traj = run(params, x, y)     # x: (n, ...), y: (n, k)
  >>> traj.losses.shape            # loss before step t, t = 0..10
  (11,)
"""

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ntk_limits.kernels import empirical_ntk_fn, ntk_vp_fn
from ntk_limits.training import mse_loss

__all__ = [
    "SOLVERS",
    "Optimizer",
    "Trajectory",
    "first_order",
    "full_gram",
    "make_trajectory_fn",
    "ngd",
    "ngd_direction",
]

SOLVERS = ("cholesky", "cg")


class Optimizer(NamedTuple):
    """A full-batch optimizer of the MSE loss as a pair of pure functions.

    Attributes:
      init: ``params -> state``.
      update: ``(params, state, x, y) -> (params, state, loss)``, one step; ``loss`` is
        the MSE loss before the step.
    """

    init: Callable[[Any], Any]
    update: Callable[..., tuple[Any, Any, jax.Array]]


class Trajectory(NamedTuple):
    """The result of :func:`make_trajectory_fn`.

    Attributes:
      params: parameters after ``num_steps`` steps.
      losses: ``(num_steps + 1,)``; ``losses[t]`` is the training loss after ``t`` steps.
      snapshots: parameters after each checkpoint step, every leaf with a leading
        ``(len(checkpoints),)`` axis.
    """

    params: Any
    losses: jax.Array
    snapshots: Any


def full_gram(apply_fn, params, x: jax.Array, *, algorithm: str = "structured") -> jax.Array:
    """Full Gram ``K = J Jᵀ`` over all outputs of all inputs.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params: parameters.
      x: ``(n, ...)``.
      algorithm: empirical-NTK algorithm (see :func:`ntk_limits.kernels.empirical_ntk_fn`).

    Returns:
      ``(n·k, n·k)``; row ``i·k + a`` is output ``a`` of example ``i`` (the order of
      ``f.reshape(-1)``). Its ``k × k`` diagonal blocks averaged give the output-averaged
      NTK ``Θ`` of shape ``(n, n)``.
    """
    k4 = empirical_ntk_fn(apply_fn, algorithm=algorithm, trace=False)(x, None, params)
    n, _, k, _ = k4.shape
    return k4.transpose(0, 2, 1, 3).reshape(n * k, n * k)


def _solve_cholesky(apply_fn, params, x, r, damping, algorithm):
    g = full_gram(apply_fn, params, x, algorithm=algorithm)
    g = g + damping * jnp.eye(g.shape[0], dtype=g.dtype)
    chol = jax.scipy.linalg.cho_factor(g, lower=True)
    return jax.scipy.linalg.cho_solve(chol, r.reshape(-1)).reshape(r.shape)


def _solve_cg(apply_fn, params, x, r, damping, maxiter):
    vp = ntk_vp_fn(apply_fn, params, x)
    matvec = lambda v: vp(v) + damping * v
    alpha, _ = jax.scipy.sparse.linalg.cg(matvec, r, tol=0.0, atol=0.0, maxiter=maxiter)
    return alpha


def ngd_direction(
    apply_fn,
    params,
    x: jax.Array,
    y: jax.Array,
    damping,
    *,
    solver: str = "cholesky",
    cg_maxiter: int = 100,
    algorithm: str = "structured",
):
    """The NGD direction ``d = Jᵀ (J Jᵀ + ε I)⁻¹ (f(θ) − y)`` and the loss; the step is ``−η d``.

    The Gram solve is exact with ``"cholesky"``; with ``"cg"`` it is exact once
    ``cg_maxiter ≥ n·k`` (in exact arithmetic), otherwise a truncated, matrix-free solve for
    networks whose Gram does not fit in memory.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      params: current parameters.
      x: ``(n, ...)``.
      y: targets ``(n, k)``.
      damping: ``ε`` (absolute, non-negative; may be a traced scalar).
      solver: ``"cholesky"`` (forms the ``(n·k)²`` Gram) or ``"cg"`` (matrix-free, a fixed
        ``cg_maxiter`` conjugate-gradient iterations on NTK-vector products).
      cg_maxiter: CG iterations (``solver="cg"``).
      algorithm: empirical-NTK algorithm for the Gram (``solver="cholesky"``).

    Returns:
      ``(direction, loss)``: a pytree like ``params`` and the MSE loss at ``params``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown NGD solver {solver!r}; allowed: {', '.join(SOLVERS)}")
    f, vjp = jax.vjp(lambda p: apply_fn(p, x), params)
    r = f - y
    if solver == "cholesky":
        alpha = _solve_cholesky(apply_fn, params, x, r, damping, algorithm)
    else:
        alpha = _solve_cg(apply_fn, params, x, r, damping, cg_maxiter)
    (direction,) = vjp(alpha.astype(f.dtype))
    return direction, mse_loss(f, y)


def ngd(
    apply_fn,
    learning_rate,
    damping,
    *,
    solver: str = "cholesky",
    cg_maxiter: int = 100,
    algorithm: str = "structured",
) -> Optimizer:
    """Exact natural-gradient descent for the MSE loss (damped Gauss–Newton).

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      learning_rate: ``η`` (``η = 1``, ``ε → 0``: one step to zero loss in the kernel
        regime); may be a traced scalar, so runs can be ``vmap``-ed over it.
      damping: ``ε`` added to the Gram's diagonal (absolute, fixed during training).
      solver: ``"cholesky"`` or ``"cg"`` (see :func:`ngd_direction`).
      cg_maxiter: CG iterations per step.
      algorithm: empirical-NTK algorithm for the Cholesky Gram.

    Returns:
      An :class:`Optimizer` whose state is ``optax.EmptyState()``.
    """
    if solver not in SOLVERS:
        raise ValueError(f"unknown NGD solver {solver!r}; allowed: {', '.join(SOLVERS)}")

    def update(params, state, x, y):
        direction, loss = ngd_direction(
            apply_fn, params, x, y, damping,
            solver=solver, cg_maxiter=cg_maxiter, algorithm=algorithm,
        )  # fmt: skip
        step = lambda p, d: p - jnp.asarray(learning_rate, p.dtype) * d
        return jax.tree_util.tree_map(step, params, direction), state, loss

    return Optimizer(lambda params: optax.EmptyState(), update)


def first_order(apply_fn, transform: optax.GradientTransformation) -> Optimizer:
    """A first-order optimizer of the MSE loss from an optax transformation.

    Args:
      apply_fn: ``(params, x) -> (n, k)``.
      transform: e.g. ``optax.sgd(lr)`` (gradient descent) or ``optax.adam(lr)``; the
        learning rate may be a traced scalar.

    Returns:
      An :class:`Optimizer` whose state is the transformation's state.
    """
    objective = lambda p, x, y: mse_loss(apply_fn(p, x), y)

    def update(params, state, x, y):
        loss, grads = jax.value_and_grad(objective)(params, x, y)
        # optax's transformations are written for standard dtype promotion (Adam's bias
        # correction raises a Python float to an int32 count); trace them under it so that
        # callers who run with strict promotion can still use them.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = transform.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    return Optimizer(transform.init, update)


def _check_checkpoints(checkpoints: Sequence[int], num_steps: int) -> tuple[int, ...]:
    ckpts = tuple(int(c) for c in checkpoints)
    if not ckpts or any(c < 1 or c > num_steps for c in ckpts) or len(set(ckpts)) != len(ckpts):
        raise ValueError(
            f"checkpoints must be distinct steps in 1..{num_steps}, got {list(checkpoints)}"
        )
    return ckpts


def make_trajectory_fn(
    apply_fn, optimizer: Optimizer, num_steps: int, checkpoints: Sequence[int]
) -> Callable[..., Trajectory]:
    """Returns ``run(params, x, y) -> Trajectory``: ``num_steps`` full-batch steps.

    Args:
      apply_fn: ``(params, x) -> (n, k)`` (for the loss after the last step).
      optimizer: an :class:`Optimizer`.
      num_steps: number of steps (positive).
      checkpoints: distinct steps in ``1..num_steps`` after which the parameters are kept.

    Returns:
      ``run`` (jitted; one ``lax.scan``). ``vmap`` it over seeds or learning rates.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be positive, got {num_steps}")
    ckpts = jnp.asarray(_check_checkpoints(checkpoints, num_steps))

    def keep(snaps, params, t):
        hit = ckpts == t

        def put(s, p):
            return jnp.where(hit.reshape((-1,) + (1,) * p.ndim), p[None], s)

        return jax.tree_util.tree_map(put, snaps, params)

    def run(params, x, y):
        def step(carry, t):
            params, state, snaps = carry
            params, state, loss = optimizer.update(params, state, x, y)
            return (params, state, keep(snaps, params, t + 1)), loss

        snaps = jax.tree_util.tree_map(lambda p: jnp.zeros((ckpts.size, *p.shape), p.dtype), params)
        carry = (params, optimizer.init(params), snaps)
        (params, _, snaps), losses = jax.lax.scan(step, carry, jnp.arange(num_steps))
        last = mse_loss(apply_fn(params, x), y)
        return Trajectory(params, jnp.append(losses, last), snaps)

    return jax.jit(run)
