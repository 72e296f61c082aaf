"""From the compiled program's arrays to a run's metrics: spectra, C′, predictions, steps.

Every array here is small (``(S, nk, nk)`` Grams at most) and handled in float64 numpy,
except the kernel-regime predictions, which are one jitted evaluation of
:func:`ntk_limits.ngd_conditions.ngd_mse_prediction` and
:func:`ntk_limits.linearize.gradient_descent_mse` on a grid of step counts.
"""

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits.linearize import gradient_descent_mse
from ntk_limits.ngd_conditions import (
    c_prime,
    ngd_mse_prediction,
    resolve_lambda_min,
    stability_radius,
)
from ntk_limits.training import mse_loss
from ntk_limits_experiments.optimization.config import OptimizationRun

__all__ = ["any_finite_run", "assemble", "clean", "gram_stats", "output_averaged"]


def clean(a):
    """Nested lists of floats with non-finite values as None (strict JSON)."""
    a = np.asarray(a, np.float64)
    obj = a.tolist()

    def fix(o):
        if isinstance(o, list):
            return [fix(v) for v in o]
        return o if np.isfinite(o) else None

    return fix(obj)


def output_averaged(grams: np.ndarray, n: int, k: int) -> np.ndarray:
    """``(S, n·k, n·k)`` full Grams -> ``(S, n, n)``: the traces of their ``k × k`` blocks / k."""
    return np.einsum("siaja->sij", np.asarray(grams).reshape(-1, n, k, n, k)) / k


def gram_stats(grams: np.ndarray, n: int, k: int, dtype=np.float32) -> dict:
    """Float64 spectra of the Grams ``(S, nk, nk)`` computed in ``dtype``.

    ``lambda_floor = n·k·eps·λ_max`` (numpy's rank tolerance, ``eps`` of ``dtype``):
    eigenvalues below it are round-off of a singular Gram.
    """
    g = np.asarray(grams, np.float64)
    g = (g + g.transpose(0, 2, 1)) / 2
    eig = np.linalg.eigvalsh(g)
    lo, hi = eig[:, 0], eig[:, -1]
    avg = output_averaged(g, n, k)
    return {
        "lambda_min": lo,
        "lambda_max": hi,
        "condition": np.where(lo > 0, hi / np.where(lo > 0, lo, 1.0), np.inf),
        "lambda_floor": n * k * np.finfo(dtype).eps * hi,
        "lambda_min_avg": np.linalg.eigvalsh(avg)[:, 0],
    }


def lambda_zero(lam64: np.ndarray, floor64: np.ndarray, num_params: int, nk: int) -> dict:
    """``λ₀ = λ_min(K₀)`` per seed from the float64 Gram's spectrum.

    The rule is the library's (:func:`ntk_limits.ngd_conditions.resolve_lambda_min`).

    Returns ``{"lambda_zero", "lambda_zero_upper", "lambda_zero_exact"}``.
    """
    lam = resolve_lambda_min(lam64, floor64, num_params, nk)
    return {
        "lambda_zero": lam.value,
        "lambda_zero_upper": lam.upper,
        "lambda_zero_exact": lam.exact,
    }


def _first_below(curve, threshold) -> int:
    below = np.flatnonzero(np.asarray(curve) <= threshold)
    return int(below[0]) if below.size else -1


# Steps at which predictions are evaluated: every integer to 2048, then 1% apart to 1e9.
_PREDICTION_GRID = np.unique(
    np.r_[np.arange(2049), np.round(np.geomspace(2048, 1e9, 1600))]
).astype(np.int64)


@jax.jit
def _predicted_losses(ts, theta, y, f0, eps, gd_lr, ngd_lrs):
    """``(T, L+1, S)``: kernel-regime losses on ``Θ∞`` after each of ``ts`` steps.

    Rows ``0..L-1`` are NGD at each ``η`` (damping ``ε`` of the seed), row ``L`` is GD at
    the seed's best step size (:func:`ntk_limits.linearize.gradient_descent_mse`). Jitted
    once per process for a profile (all its runs share the shapes).
    """

    def at(t, f, e, g):
        ngd_at = lambda lr: mse_loss(ngd_mse_prediction(theta, y, lr, e)(t, f), y)
        gd = mse_loss(gradient_descent_mse(theta, y, g, discrete=True)(t, f), y)
        return jnp.append(jax.vmap(ngd_at)(ngd_lrs), gd)

    per_t = lambda t: jax.vmap(at, in_axes=(None, 0, 0, 0))(t, f0, eps, gd_lr).T
    return jax.vmap(per_t)(ts)


def _predictions(spec: OptimizationRun, theta_inf, y, f0, eps, gd_lr, loss0):
    """Kernel-regime loss curves and steps-to-threshold (``-1``: beyond 1e9) per seed."""
    longest = max(spec.ngd_steps, spec.gd_steps)
    ts = np.unique(np.r_[_PREDICTION_GRID, np.arange(longest + 1)])
    f32 = lambda a: jnp.asarray(a, jnp.float32)
    args = (theta_inf, y, f0, eps, gd_lr, spec.ngd_lrs)
    grid = np.asarray(_predicted_losses(f32(ts), *map(f32, args)), np.float64)  # (G, L+1, S)
    steps = {}
    for tau in spec.thresholds:
        below = grid <= tau * loss0[None, None, :]
        steps[tau] = np.where(below.any(axis=0), ts[np.argmax(below, axis=0)], -1)
    return {  # ts[t] == t for t <= longest
        "ngd_loss": grid[: spec.ngd_steps + 1, :-1].transpose(1, 2, 0),
        "ngd_steps": {tau: v[:-1] for tau, v in steps.items()},
        "gd_loss": grid[: spec.gd_steps + 1, -1].T,
        "gd_steps": {tau: v[-1] for tau, v in steps.items()},
    }


def _measured(losses, loss0, threshold) -> list:
    """Steps to reach ``threshold · loss0`` along each row of ``losses`` (-1: not reached)."""
    losses = np.asarray(losses, np.float64)
    flat = losses.reshape(-1, losses.shape[-1])
    ref = np.broadcast_to(np.asarray(loss0), losses.shape[:-1]).reshape(-1)
    steps = [_first_below(c, threshold * r) for c, r in zip(flat, ref, strict=True)]
    return np.asarray(steps).reshape(losses.shape[:-1]).tolist()


def _diagnostics(diag: np.ndarray, lam_min: np.ndarray) -> dict:
    """``(5, ..., C)`` program diagnostics -> named arrays, C′ from the float64 ``λ₀``.

    ``λ₀``'s upper bound where it is unresolved (:func:`lambda_zero`); ``inf`` where ``λ₀ = 0``.
    """
    lam = lam_min.reshape((-1,) + (1,) * (diag.ndim - 2))
    return {
        "c_prime": np.asarray(c_prime(diag[0], lam), np.float64),
        "jacobian_change_spectral": diag[0],
        "jacobian_change_relative": diag[2],
        "jacobian_change_frobenius": diag[1],
        "kernel_change": diag[3],
        "param_distance": diag[4],
    }


def _section(losses, ckpts, diag, loss0, taus, pred_loss=None, pred_steps=None) -> dict:
    """One optimizer's metrics; ``steps`` at ``taus[0]``, ``steps_at`` at every threshold."""
    steps = {f"{tau:g}": _measured(losses, loss0, tau) for tau in taus}
    out = {"checkpoints": list(ckpts), "loss": clean(losses), "steps": steps[f"{taus[0]:g}"],
           "steps_at": steps}  # fmt: skip
    out |= {k: clean(v) for k, v in diag.items()}
    if pred_loss is not None:
        pred = {f"{tau:g}": np.asarray(v).tolist() for tau, v in pred_steps.items()}
        out |= {"pred_loss": clean(pred_loss), "pred_steps": pred[f"{taus[0]:g}"],
                "pred_steps_at": pred}  # fmt: skip
    return out


def _best(a, best):
    return a[np.arange(best.size), best]


def any_finite_run(out: dict) -> bool:
    """Whether at least one NGD, GD or Adam trajectory kept a finite loss throughout."""
    gd = _best(out["gd_losses"], out["gd_best"])
    runs = [*out["ngd_losses"].reshape(-1, out["ngd_losses"].shape[-1]), *gd, *out["adam_losses"]]
    return any(np.all(np.isfinite(r)) for r in runs)


def assemble(spec: OptimizationRun, out: dict, theta_inf: np.ndarray, y: np.ndarray) -> dict:
    """The run's metrics (JSON-ready) from the program output ``out`` (see ``program``)."""
    (n, k), thr = y.shape, spec.thresholds
    # One eigensolver per seed (the float64 Gram; ~1.5 s at n·k = 2560): the float32 Gram's
    # spectrum is judged by its true λ_min against float32's resolution n·k·eps₃₂·λ_max.
    s64 = gram_stats(out["grams0_f64"], n, k, np.float64)
    eps32 = n * k * float(np.finfo(np.float32).eps)
    stats = {**s64, "lambda_floor": eps32 * s64["lambda_max"]}
    lam0 = lambda_zero(s64["lambda_min"], s64["lambda_floor"], out["num_params"], n * k)
    eig_inf = np.linalg.eigvalsh((theta_inf + theta_inf.T) / 2)
    diag = _diagnostics(out["diagnostics"], lam0["lambda_zero_upper"])
    residual0 = out["f0"].astype(np.float64) - y
    radius = np.asarray(stability_radius(residual0, lam0["lambda_zero_upper"]), np.float64)
    num_lrs = len(spec.ngd_lrs)
    gd_lr = _best(out["gd_lrs"], out["gd_best"])
    loss0 = 0.5 * np.mean((out["f0"].astype(np.float64) - y) ** 2, axis=(1, 2))
    pred = _predictions(spec, theta_inf, y, out["f0"], out["damping"], gd_lr, loss0)
    rows = lambda r: {key: v[:, r] for key, v in diag.items()}
    ngd_diag = {key: np.moveaxis(v, 1, 0) for key, v in rows(slice(0, num_lrs)).items()}
    ngd_losses = np.moveaxis(out["ngd_losses"], 1, 0)
    gd_losses = _best(out["gd_losses"], out["gd_best"])
    ngd = _section(ngd_losses, spec.ngd_checkpoints, ngd_diag, loss0[None], thr,
                   pred["ngd_loss"], pred["ngd_steps"])  # fmt: skip
    gd = _section(gd_losses, spec.gd_checkpoints, rows(num_lrs), loss0, thr, pred["gd_loss"],
                  pred["gd_steps"])  # fmt: skip
    adam = _section(out["adam_losses"], spec.adam_checkpoints, rows(num_lrs + 1), loss0, thr)
    return {
        "num_params": out["num_params"],
        "jacobian_norm": spec.jacobian_norm,
        "ngd_float64": spec.ngd_float64,
        "n": n,
        "k": k,
        **{key: clean(v) for key, v in stats.items()},
        "lambda_min_f64": clean(s64["lambda_min"]),
        "lambda_floor_f64": clean(s64["lambda_floor"]),
        "lambda_zero": clean(lam0["lambda_zero"]),
        "lambda_zero_upper": clean(lam0["lambda_zero_upper"]),
        "lambda_zero_exact": lam0["lambda_zero_exact"].tolist(),
        "residual0_norm": clean(np.sqrt(np.sum(residual0**2, axis=(1, 2)))),
        "radius": clean(radius),  # None where λ₀ = 0 (R = ∞); a lower bound where not exact
        "damping": clean(out["damping"]),
        "loss0": clean(loss0),
        "lambda_min_inf": float(eig_inf[0]),
        "lambda_max_inf": float(eig_inf[-1]),
        "condition_inf": float(eig_inf[-1] / eig_inf[0]) if eig_inf[0] > 0 else None,
        "ngd": {"lrs": list(spec.ngd_lrs), **ngd},
        "gd": {
            "lr": clean(gd_lr),
            "lr_fraction": clean(np.asarray(spec.gd_lr_fractions)[out["gd_best"]]),
            "final_loss_by_fraction": clean(out["gd_losses"][:, :, -1]),
            **gd,
        },
        "adam": {"lr": spec.adam_lr, **adam},
    }
