"""Retraining the bandit network: schedule, curvature-safe step size, (Nesterov) GD.

The loss after ``n`` observations is ``[½ Σ_i (f(θ, x_i) − r_i)² + ½ wd ‖θ − θ₀‖²] / n``
on a fixed-size buffer (rows ``≥ n`` masked), minimised by a fixed number of full-batch
gradient steps from the current parameters (the protocol of uclaml/NeuralUCB, with full
batches instead of single-example SGD).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from ntk_limits.bandits.posterior import buffer_mask

__all__ = ["Schedule", "fit_network", "kernel_diagonal", "safe_step_size", "should_retrain"]


class Schedule(NamedTuple):
    """When and how the network is retrained (static configuration).

    Attributes:
      train_first: retrain after each of the first ``train_first`` observations.
      train_every: then after every ``train_every``-th observation.
      steps: full-batch GD steps per retraining (from the current parameters).
      learning_rate: relative GD step in ``(0, 2)``: the raw step is
        ``lr · c / (max_i k(x_i, x_i) + ρ/n)`` (:func:`safe_step_size`), stable for the
        linearised loss.
      momentum: Nesterov momentum of the GD steps (``0``: plain GD). ``0.9`` speeds up
        the ill-conditioned directions of the NTK about 3× at a fixed step budget.
      tune_every: evidence re-tuning at retraining rounds whose observation count is a
        multiple of ``tune_every``.
    """

    train_first: int = 100
    train_every: int = 10
    steps: int = 50
    learning_rate: float = 1.0
    momentum: float = 0.9
    tune_every: int = 100


def should_retrain(count: jax.Array, schedule: Schedule) -> jax.Array:
    """Whether to retrain after the ``count``-th observation (``() bool``).

    Agents call it with the round index ``t + 1`` (unbatched), not the state's count.
    """
    return (count <= schedule.train_first) | (count % schedule.train_every == 0)


def kernel_diagonal(apply_fn: Callable, params, x: jax.Array, chunk: int = 128) -> jax.Array:
    """``‖∂f(x_i)/∂θ‖²`` for every row of ``x``, in chunks of ``chunk`` rows.

    Args:
      apply_fn: ``(params, x) -> (n, 1)``.
      params: parameters.
      x: ``(n, D)``.
      chunk: rows per vmapped batch (memory ``chunk × P``).

    Returns:
      ``(n,)`` the diagonal of the (unnormalised) empirical NTK.
    """
    flat, unravel = ravel_pytree(params)
    grad = jax.grad(lambda p, xi: apply_fn(unravel(p), xi[None])[0, 0])
    return jax.lax.map(lambda xi: jnp.sum(grad(flat, xi) ** 2), x, batch_size=chunk)


def fit_network(
    apply_fn: Callable,
    params,
    params0,
    x: jax.Array,
    y: jax.Array,
    count: jax.Array,
    weight_decay: jax.Array,
    learning_rate: jax.Array,
    steps: int,
    momentum: float = 0.0,
    block_rows: int = 64,
):
    """``steps`` full-batch (Nesterov-momentum) GD steps on the masked regularised loss.

    Args:
      apply_fn: ``(params, x) -> (n, 1)``.
      params: starting parameters.
      params0: regularisation centre ``θ₀``.
      x: ``(T, D)`` buffer; rows ``≥ count`` are ignored.
      y: ``(T,)``.
      count: ``()`` number of observed rows ``n``.
      weight_decay: ``()`` coefficient of ``½‖θ − θ₀‖²``.
      learning_rate: ``()`` raw GD step size.
      steps: number of steps.
      momentum: Nesterov momentum ``β`` (``0`` is plain GD); the velocity starts at zero.
      block_rows: rows per block of the data term's gradient (only the blocks holding
        observed rows are computed).

    Returns:
      The parameters after ``steps`` steps on
      ``[½ Σ_{i<n} (f(θ, x_i) − y_i)² + ½ wd ‖θ − θ₀‖²] / n``.
    """
    tmap = jax.tree_util.tree_map
    scale = 1.0 / jnp.maximum(count, 1).astype(x.dtype)
    # The data term is summed over blocks of ``block`` rows up to the last observed one (a
    # loop with a traced trip count): the cost grows with n, not with the buffer size T,
    # so the early retrainings of a large buffer are nearly free.
    block = min(block_rows, x.shape[0])
    pad = -x.shape[0] % block
    x = jnp.concatenate([x, jnp.zeros((pad, *x.shape[1:]), x.dtype)])
    y = jnp.concatenate([y, jnp.zeros(pad, y.dtype)])
    mask = buffer_mask(x.shape[0], count, x.dtype)
    num_blocks = (jnp.asarray(count, jnp.int32) + block - 1) // block

    def data_grad(p):
        def add_block(b, g):
            rows = lambda a: jax.lax.dynamic_slice_in_dim(a, b * block, block)
            xb, yb, mb = rows(x), rows(y), rows(mask)
            gb = jax.grad(lambda q: 0.5 * jnp.sum(mb * (apply_fn(q, xb)[:, 0] - yb) ** 2))(p)
            return tmap(jnp.add, g, gb)

        return jax.lax.fori_loop(0, num_blocks, add_block, tmap(jnp.zeros_like, p))

    def grad(p):
        g = data_grad(p)
        return tmap(lambda gi, a, b: scale * (gi + weight_decay * (a - b)), g, p, params0)

    def step(carry, _):
        p, v = carry
        g = grad(tmap(lambda a, b: a + momentum * b, p, v))
        v = tmap(lambda b, gi: momentum * b - learning_rate * gi, v, g)
        return (tmap(jnp.add, p, v), v), None

    velocity = tmap(jnp.zeros_like, params)
    return jax.lax.scan(step, (params, velocity), None, length=steps)[0][0]


def safe_step_size(
    apply_fn: Callable,
    params,
    x: jax.Array,
    count: jax.Array,
    ridge: jax.Array,
    scale: float,
    *,
    diagonal: jax.Array | None = None,
) -> jax.Array:
    """``1 / (max_i c‖g(x_i)‖² + ρ/n)``: the inverse of a bound on the loss curvature.

    The Gauss-Newton curvature of ``[½Σ r² + ½(ρ/c)‖θ − θ₀‖²]/n`` in the normalised units of
    :func:`fit_network` (raw step ``η c``) is at most ``λ_max(K_n)/n + ρ/n ≤ max_i k_ii +
    ρ/n``, so raw steps ``η c`` with ``η = lr · safe_step_size``, ``lr < 2``, are stable.

    Args:
      apply_fn: ``(params, x) -> (n, 1)``.
      params: parameters.
      x: ``(T, D)`` buffer (rows ``≥ count`` ignored).
      count: ``()`` ``n``.
      ridge: ``()`` ``ρ``.
      scale: kernel normalisation ``c``.
      diagonal: ``(T,)`` the unnormalised kernel diagonal ``‖g(x_i)‖²`` of the buffer if
        the caller has it (e.g. from :func:`ntk_limits.kernels.factor_kernel_diagonal`);
        else computed by :func:`kernel_diagonal`.

    Returns:
      ``()`` the normalised step bound.
    """
    mask = buffer_mask(x.shape[0], count, x.dtype)
    if diagonal is None:
        diagonal = kernel_diagonal(apply_fn, params, x)
    k_max = scale * jnp.max(diagonal * mask)
    return 1.0 / (k_max + ridge / jnp.maximum(count, 1).astype(x.dtype))
