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

from ntk_limits.ngd_conditions import (
    jacobian_change_norm,
    jacobian_stability,
    parameter_distance,
    top_eigenvalue,
)
from ntk_limits.optimization import first_order, full_gram, make_trajectory_fn, ngd
from ntk_limits_experiments.optimization.config import OptimizationRun

__all__ = ["build_ngd_program", "build_program"]


def _one_at_a_time(fn, params0, *arrays):
    """``fn(params0[s], *(a[s, v] for a in arrays))`` for every ``s < S``, ``v < V``.

    Each array has leading axes ``(S, V)``; so has every leaf of the result. The calls run
    one after another (``lax.map``), not batched by ``vmap``: on a CPU the batched matmuls
    run slower per example than single ones (measured: a GD step of a 4096-wide MLP on
    256 images, 0.073 s vmapped over 3 seeds × 2 step sizes vs 0.028 s alone), and memory
    stays that of one trajectory.
    """
    num_seeds, num_values = arrays[0].shape[:2]

    def one(i):
        s, v = i // num_values, i % num_values
        p = jax.tree_util.tree_map(lambda a: a[s], params0)
        return fn(p, *(a[s, v] for a in arrays))

    out = jax.lax.map(one, jnp.arange(num_seeds * num_values))
    return jax.tree_util.tree_map(lambda a: a.reshape(num_seeds, num_values, *a.shape[1:]), out)


def _ngd_runs(apply_fn, x, y, spec: OptimizationRun, params0, eps):
    def one(p, lr, e):
        opt = ngd(apply_fn, lr, e, solver=spec.ngd_solver, cg_maxiter=spec.cg_maxiter)
        return make_trajectory_fn(apply_fn, opt, spec.ngd_steps, spec.ngd_checkpoints)(p, x, y)

    shape = (eps.shape[0], len(spec.ngd_lrs))
    lrs = jnp.broadcast_to(jnp.asarray(spec.ngd_lrs, jnp.float32), shape)
    return _one_at_a_time(one, params0, lrs, jnp.broadcast_to(eps[:, None], shape))


def _first_order_runs(apply_fn, x, y, spec: OptimizationRun, params0, gd_lrs):
    def run(p, tx, steps, checkpoints):
        opt = first_order(apply_fn, tx)
        return make_trajectory_fn(apply_fn, opt, steps, checkpoints)(p, x, y)

    gd_run = lambda p, lr: run(p, optax.sgd(lr), spec.gd_steps, spec.gd_checkpoints)
    adam_run = lambda p, _: run(p, optax.adam(spec.adam_lr), spec.adam_steps, spec.adam_checkpoints)
    adam = _one_at_a_time(adam_run, params0, jnp.zeros((gd_lrs.shape[0], 1), gd_lrs.dtype))
    return _one_at_a_time(gd_run, params0, gd_lrs), jax.tree_util.tree_map(lambda a: a[:, 0], adam)


def _pick(tree, index):
    """``tree[s, index[s]]`` for every leaf with leading ``(S, F)``."""
    take = jax.vmap(lambda a, i: a[i])
    return jax.tree_util.tree_map(lambda a: take(a, index), tree)


def _diagnose(apply_fn, x, params0, grams0, lam_max0, snapshots, spec: OptimizationRun):
    """``(5, S, R, C)``: ‖ΔJ‖₂, ‖ΔJ‖_F, ‖ΔJ‖₂/‖J₀‖₂, kernel change, ‖θ − θ₀‖₂ per snapshot.

    ``spec.jacobian_norm == "dense"``: ‖ΔJ‖₂ and ‖ΔJ‖_F exact (a dense eigensolver on the
    formed ``(nk, nk)`` ``ΔJΔJᵀ``, :func:`ntk_limits.ngd_conditions.jacobian_stability`);
    ``"lanczos"``: ‖ΔJ‖₂ from ``spec.lanczos_iters`` matrix-free Lanczos steps (a lower
    bound, :func:`ntk_limits.ngd_conditions.jacobian_change_norm`), ‖ΔJ‖_F not computed
    (NaN) and ‖J₀‖₂ = √λ_max(K₀) from ``lam_max0``. The kernel change needs the Gram at
    ``θ_t``; the report reads it at the last checkpoint of the NGD and GD runs only, so it
    is computed there only (NaN elsewhere) unless the Gram is formed anyway (dense).

    One snapshot at a time (``lax.map``): batching them buys nothing on CPU.
    """
    lead = jax.tree_util.tree_leaves(snapshots)[0].shape[:3]  # (S, R, C)
    per_seed = lead[1] * lead[2]
    flat = jax.tree_util.tree_map(lambda a: a.reshape(-1, *a.shape[3:]), snapshots)
    seed_params = lambda s: jax.tree_util.tree_map(lambda a: a[s], params0)
    dense = spec.jacobian_norm == "dense"

    def one(i):
        s = i // per_seed
        p0, p = seed_params(s), jax.tree_util.tree_map(lambda a: a[i], flat)
        if dense:
            stab = jacobian_stability(apply_fn, p0, p, x, grams0[s], method="eigh")
            spectral, frobenius, relative, change = stab[:4]
        else:
            spectral = jacobian_change_norm(apply_fn, p0, p, x, num_iters=spec.lanczos_iters)
            frobenius = change = jnp.full((), jnp.nan, spectral.dtype)
            relative = spectral / jnp.sqrt(lam_max0[s])
        return jnp.stack([spectral, frobenius, relative, change, parameter_distance(p0, p)])

    out = jax.lax.map(one, jnp.arange(lead[0] * per_seed)).T.reshape(5, *lead)
    if dense:
        return out

    num_seeds, num_runs = lead[0], lead[1] - 1  # NGD runs and GD: the report's columns

    def last_change(i):  # snapshot (s, r) at the last checkpoint
        s = i // num_runs
        p = jax.tree_util.tree_map(lambda a: a[s, i % num_runs, -1], snapshots)
        gram = full_gram(apply_fn, p, x)
        return jnp.linalg.norm(gram - grams0[s]) / jnp.linalg.norm(grams0[s])

    change = jax.lax.map(last_change, jnp.arange(num_seeds * num_runs))
    return out.at[3, :, :num_runs, -1].set(change.reshape(num_seeds, num_runs))


def build_ngd_program(apply_fn, spec: OptimizationRun):
    """Returns ``ngd_program(params0, x, y) -> dict``: the initial Grams and NGD runs.

    Traced in the dtype of its arguments: float64 (under ``jax.enable_x64``) when
    ``spec.ngd_float64``. NGD solves ``(K + εI) α = r``; float32 represents ``K``'s
    eigenvalues only to ``n·k·eps₃₂·λ_max`` (~3e-4·λ_max at ``n·k = 2560``), above
    ``λ_min(K₀)`` of most networks there, so a float32 solve is round-off along the
    directions NGD is meant to accelerate. The dict holds ``grams0 (S, nk, nk)``,
    ``damping (S,)``, ``ngd_losses (S, L, T_ngd+1)`` and ``ngd_snapshots`` (parameters,
    leading ``(S, L, C)``).
    """

    def ngd_program(params0, x, y):
        grams0 = jax.lax.map(lambda p: full_gram(apply_fn, p, x), params0)
        eps = spec.ngd_damping * jnp.trace(grams0, axis1=1, axis2=2) / y.size
        ngd_t = _ngd_runs(apply_fn, x, y, spec, params0, eps)
        return {
            "grams0": grams0,
            "damping": eps,
            "ngd_losses": ngd_t.losses,
            "ngd_snapshots": ngd_t.snapshots,
        }

    return ngd_program


def build_program(apply_fn, x: jax.Array, y: jax.Array, spec: OptimizationRun):
    """Returns ``program(params0, x, y, grams0, ngd_snapshots) -> dict`` (leading axis ``S``).

    ``grams0`` (the initial Grams ``(S, nk, nk)``) and ``ngd_snapshots`` (the NGD runs'
    checkpointed parameters) come from :func:`build_ngd_program`, cast to the program's
    dtype; GD and Adam run here, and every trajectory is diagnosed.

    ``x`` and ``y`` are arguments, not constants of the program: XLA would otherwise fold
    products of them at compile time (measured: 1.6 s for one 256 × 256 input Gram).

    Args:
      apply_fn: the network, ``(params, x) -> (n, k)``.
      x: training inputs, ``(n, ...)``.
      y: one-hot targets, ``(n, k)``.
      spec: the run: step sizes, damping, solver, steps and checkpoints of each optimizer
        (``L = len(spec.ngd_lrs)``, ``F = len(spec.gd_lr_fractions)``,
        ``C = spec.num_checkpoints``).

    The dict holds ``f0 (S, n, k)``,
    ``gd_lrs (S, F)``, ``gd_losses (S, F, T_gd+1)``,
    ``adam_losses (S, T_adam+1)``, ``gd_best (S,)`` (index of the GD step size with the lowest
    final loss) and ``diagnostics (5, S, L+2, C)`` for the NGD runs, the best GD run and
    Adam (rows: ‖ΔJ‖₂, ‖ΔJ‖_F, ‖ΔJ‖₂/‖J₀‖₂, ``‖K_t − K₀‖_F/‖K₀‖_F``, ``‖θ_t − θ₀‖₂``).
    Not jitted.
    """
    nk = y.size

    def program(params0, x, y, grams0, ngd_snapshots):
        f0 = jax.vmap(apply_fn, in_axes=(0, None))(params0, x)
        lam_max = jax.vmap(top_eigenvalue)(grams0)
        gd_lrs = jnp.asarray(spec.gd_lr_fractions, jnp.float32)[None] * (2 * nk / lam_max)[:, None]
        gd_t, adam_t = _first_order_runs(apply_fn, x, y, spec, params0, gd_lrs)
        final = gd_t.losses[:, :, -1]
        best = jnp.argmin(jnp.where(jnp.isfinite(final), final, jnp.inf), axis=1)
        gd_snaps = _pick(gd_t.snapshots, best)
        add_axis = lambda t: jax.tree_util.tree_map(lambda a: a[:, None], t)
        snaps = jax.tree_util.tree_map(
            lambda a, b, c: jnp.concatenate([a, b, c], axis=1),
            ngd_snapshots, add_axis(gd_snaps), add_axis(adam_t.snapshots),
        )  # fmt: skip
        return {
            "f0": f0,
            "gd_lrs": gd_lrs,
            "gd_losses": gd_t.losses,
            "adam_losses": adam_t.losses,
            "gd_best": best,
            "diagnostics": _diagnose(apply_fn, x, params0, grams0, lam_max, snaps, spec),
        }

    return program
