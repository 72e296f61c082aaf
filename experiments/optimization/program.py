"""One compiled program per run: initial Grams, NGD / GD / Adam trajectories, diagnostics.

On CPU most of a run's cost at small widths is XLA compilation, and it is mostly a fixed
cost per program, so everything a run needs is traced into a single ``jit``: seeds and
step sizes are ``vmap``-ed, training loops are ``lax.scan``-s
(:func:`ntk_limits.optimization.make_trajectory_fn`), and the Jacobian diagnostics
(:func:`ntk_limits.ngd_conditions.jacobian_stability`) are a ``lax.map`` over snapshots.
"""

import jax
import jax.numpy as jnp
import optax

from ntk_limits.ngd_conditions import jacobian_stability, parameter_distance, top_eigenvalue
from ntk_limits.optimization import first_order, full_gram, make_trajectory_fn, ngd
from ntk_limits_experiments.optimization.config import OptimizationRun

__all__ = ["build_program"]


def _ngd_runs(apply_fn, x, y, spec: OptimizationRun, params0, eps):
    def one(p, lr, e):
        opt = ngd(apply_fn, lr, e, solver=spec.ngd_solver, cg_maxiter=spec.cg_maxiter)
        return make_trajectory_fn(apply_fn, opt, spec.ngd_steps, spec.ngd_checkpoints)(p, x, y)

    lrs = jnp.asarray(spec.ngd_lrs, jnp.float32)
    return jax.vmap(jax.vmap(one, in_axes=(None, 0, None)), in_axes=(0, None, 0))(params0, lrs, eps)


def _first_order_runs(apply_fn, x, y, spec: OptimizationRun, params0, gd_lrs):
    def run(p, tx):
        opt = first_order(apply_fn, tx)
        return make_trajectory_fn(apply_fn, opt, spec.gd_steps, spec.gd_checkpoints)(p, x, y)

    gd = jax.vmap(jax.vmap(lambda p, lr: run(p, optax.sgd(lr)), in_axes=(None, 0)))
    adam = jax.vmap(lambda p: run(p, optax.adam(spec.adam_lr)))
    return gd(params0, gd_lrs), adam(params0)


def _pick(tree, index):
    """``tree[s, index[s]]`` for every leaf with leading ``(S, F)``."""
    take = jax.vmap(lambda a, i: a[i])
    return jax.tree_util.tree_map(lambda a: take(a, index), tree)


def _diagnose(apply_fn, x, params0, grams0, snapshots):
    """``(5, S, R, C)``: ‖ΔJ‖₂, ‖ΔJ‖_F, ‖ΔJ‖₂/‖J₀‖₂, kernel change, ‖θ − θ₀‖₂ per snapshot.

    ‖ΔJ‖₂ and ‖J₀‖₂ are exact (a dense eigensolver on the ``(nk, nk)`` ``ΔJΔJᵀ`` and ``K₀``,
    :func:`ntk_limits.ngd_conditions.jacobian_stability` with ``method="eigh"``).

    One snapshot at a time (``lax.map``): the two Grams per snapshot dominate the cost
    and batching them buys nothing on CPU.
    """
    lead = jax.tree_util.tree_leaves(snapshots)[0].shape[:3]  # (S, R, C)
    per_seed = lead[1] * lead[2]
    flat = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[3:]), snapshots)

    def one(i):
        s = i // per_seed
        p0, p = (
            jax.tree_util.tree_map(lambda a, j=j: a[j], t) for t, j in ((params0, s), (flat, i))
        )
        stab = jacobian_stability(apply_fn, p0, p, x, grams0[s], method="eigh")
        return jnp.stack([*stab[:4], parameter_distance(p0, p)])

    out = jax.lax.map(one, jnp.arange(lead[0] * per_seed))  # (S*R*C, 5)
    return out.T.reshape(5, *lead)


def build_program(apply_fn, x: jax.Array, y: jax.Array, spec: OptimizationRun):
    """Returns ``program(params0) -> dict`` for parameters with a leading seed axis ``S``.

    Args:
      apply_fn: the network, ``(params, x) -> (n, k)``.
      x: training inputs, ``(n, ...)``.
      y: one-hot targets, ``(n, k)``.
      spec: the run: step sizes, damping, solver, steps and checkpoints of each optimizer
        (``L = len(spec.ngd_lrs)``, ``F = len(spec.gd_lr_fractions)``,
        ``C = spec.num_checkpoints``).

    The dict holds ``grams0 (S, nk, nk)``, ``f0 (S, n, k)``, ``damping (S,)``,
    ``gd_lrs (S, F)``, ``ngd_losses (S, L, T_ngd+1)``, ``gd_losses (S, F, T_gd+1)``,
    ``adam_losses (S, T_gd+1)``, ``gd_best (S,)`` (index of the GD step size with the lowest
    final loss) and ``diagnostics (5, S, L+2, C)`` for the NGD runs, the best GD run and
    Adam (rows: ‖ΔJ‖₂, ‖ΔJ‖_F, ‖ΔJ‖₂/‖J₀‖₂, ``‖K_t − K₀‖_F/‖K₀‖_F``, ``‖θ_t − θ₀‖₂``).
    Not jitted.
    """
    nk = y.size

    def program(params0):
        grams0 = jax.vmap(lambda p: full_gram(apply_fn, p, x))(params0)
        f0 = jax.vmap(apply_fn, in_axes=(0, None))(params0, x)
        lam_max = jax.vmap(top_eigenvalue)(grams0)
        eps = spec.ngd_damping * jnp.trace(grams0, axis1=1, axis2=2) / nk
        gd_lrs = jnp.asarray(spec.gd_lr_fractions, jnp.float32)[None] * (2 * nk / lam_max)[:, None]
        ngd_t = _ngd_runs(apply_fn, x, y, spec, params0, eps)
        gd_t, adam_t = _first_order_runs(apply_fn, x, y, spec, params0, gd_lrs)
        final = gd_t.losses[:, :, -1]
        best = jnp.argmin(jnp.where(jnp.isfinite(final), final, jnp.inf), axis=1)
        gd_snaps = _pick(gd_t.snapshots, best)
        add_axis = lambda t: jax.tree_util.tree_map(lambda a: a[:, None], t)
        snaps = jax.tree_util.tree_map(
            lambda a, b, c: jnp.concatenate([a, b, c], axis=1),
            ngd_t.snapshots, add_axis(gd_snaps), add_axis(adam_t.snapshots),
        )  # fmt: skip
        return {
            "grams0": grams0,
            "f0": f0,
            "damping": eps,
            "gd_lrs": gd_lrs,
            "ngd_losses": ngd_t.losses,
            "gd_losses": gd_t.losses,
            "adam_losses": adam_t.losses,
            "gd_best": best,
            "diagnostics": _diagnose(apply_fn, x, params0, grams0, snaps),
        }

    return program
