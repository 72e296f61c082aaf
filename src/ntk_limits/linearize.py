"""Linearised networks and closed-form kernel-regime predictions.

Convention (neural-tangents'): the MSE loss is ``L = ‖f(X) − Y‖² / (2m)`` with
``m = Y.size = n·k``, so gradient flow with learning rate ``η`` on the linearised
network moves the training outputs as ``df/dt = −(η/m) Θ (f − Y)``, where ``Θ`` is the
``(n, n)`` output-averaged NTK, applied to each output column. Gradient descent is the
same with ``exp(−(η/m) Θ t)`` replaced by ``(I − (η/m) Θ)^t``.
"""

import jax
import jax.numpy as jnp

__all__ = ["linearize", "gradient_descent_mse", "ntk_gp_ensemble", "gp_regression"]


def linearize(apply_fn, params0):
    """First-order Taylor expansion of ``apply_fn`` around ``params0``.

    Args:
      apply_fn: ``(params, x) -> f``.
      params0: expansion point.

    Returns:
      ``f_lin(params, x) = f(params0, x) + J(params0, x) (params − params0)``, same
      shapes as ``apply_fn``; one JVP per call.
    """

    def f_lin(params, x):
        delta = jax.tree_util.tree_map(jnp.subtract, params, params0)
        f0, df = jax.jvp(lambda p: apply_fn(p, x), (params0,), (delta,))
        return f0 + df

    return f_lin


def _eig(k, diag_reg):
    k = (k + k.T) / 2 + diag_reg * jnp.trace(k) / k.shape[0] * jnp.eye(k.shape[0], dtype=k.dtype)
    lam, v = jnp.linalg.eigh(k)
    return jnp.clip(lam, 0.0), v


def _decay(lam, c, t, discrete: bool):
    """``exp(−c λ t)`` or ``(1 − c λ)^t``, with ``t = inf`` giving 0 where λ > 0."""
    if discrete:
        return jnp.where(jnp.isinf(t), jnp.where(lam > 0, 0.0, 1.0), (1 - c * lam) ** t)
    return jnp.exp(-c * lam * t)


def _one_minus_decay_over_lam(lam, c, t, discrete: bool):
    """``(1 − decay) / λ`` with its limit ``c·t`` at λ = 0."""
    safe = jnp.where(lam > 0, lam, 1.0)
    return jnp.where(lam > 0, (1 - _decay(lam, c, t, discrete)) / safe, c * t)


def gradient_descent_mse(
    k_train_train, y_train, learning_rate: float = 1.0, *, diag_reg=0.0, discrete: bool = False
):
    """Closed-form outputs of a linearised network trained on MSE (kernel regime).

    Args:
      k_train_train: NTK on the training inputs, ``(n, n)``.
      y_train: targets, ``(n, k)``.
      learning_rate: ``η``.
      diag_reg: ridge added as ``diag_reg · mean(diag Θ) · I``.
      discrete: gradient descent with ``t`` steps instead of gradient flow for time ``t``.

    Returns:
      ``predict(t, fx_train_0, fx_test_0=None, k_test_train=None)`` giving the training
      outputs ``(n, k)`` at time ``t`` (``jnp.inf`` for convergence), or
      ``(train, test)`` outputs if ``k_test_train: (m, n)`` and ``fx_test_0: (m, k)`` are
      given. Jittable and differentiable in ``t``.
    """
    lam, v = _eig(k_train_train, diag_reg)
    c = learning_rate / y_train.size

    def predict(t, fx_train_0, fx_test_0=None, k_test_train=None):
        t = jnp.asarray(t, lam.dtype)
        r = v.T @ (fx_train_0 - y_train)
        fx_train = y_train + v @ (_decay(lam, c, t, discrete)[:, None] * r)
        if k_test_train is None:
            return fx_train
        coef = v @ (_one_minus_decay_over_lam(lam, c, t, discrete)[:, None] * -r)
        return fx_train, fx_test_0 + k_test_train @ coef

    return predict


def ntk_gp_ensemble(
    ntk_dd,
    ntk_td,
    nngp_dd,
    nngp_td,
    nngp_tt,
    y_train,
    *,
    t=jnp.inf,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
):
    """Mean and covariance over initialisations of infinitely wide nets trained by MSE flow.

    Lee et al. (2019), "Wide neural networks of any depth evolve as linear models",
    eq. (16): with ``M = Θ⁻¹(I − e^{−ηΘt/m})``,
    ``μ(x) = Θ_xX M Y`` and
    ``Σ(x, x') = K_xx' + Θ_xX M K_XX Mᵀ Θ_Xx' − (Θ_xX M K_Xx' + K_xX Mᵀ Θ_Xx')``.

    Args:
      ntk_dd: NTK train-train ``(n, n)``.
      ntk_td: NTK test-train ``(m, n)``.
      nngp_dd: NNGP train-train ``(n, n)``.
      nngp_td: NNGP test-train ``(m, n)``.
      nngp_tt: NNGP test-test ``(m, m)``.
      y_train: ``(n, k)``.
      t: training time (``inf``: converged).
      learning_rate: ``η``.
      diag_reg: ridge on ``Θ`` as in :func:`gradient_descent_mse`.

    Returns:
      ``(mean (m, k), cov (m, m))``; the covariance is shared by the ``k`` outputs.
    """
    lam, v = _eig(ntk_dd, diag_reg)
    c = learning_rate / y_train.size
    m_mat = v @ (_one_minus_decay_over_lam(lam, c, t, False)[:, None] * v.T)
    a = ntk_td @ m_mat
    cross = a @ nngp_td.T
    cov = nngp_tt + a @ nngp_dd @ a.T - cross - cross.T
    return a @ y_train, cov


def gp_regression(k_dd, k_td, k_tt, y_train, noise: float):
    """Gaussian-process posterior with kernel ``k`` and observation noise variance.

    Used with the empirical NTK as prior covariance this is the linearised Laplace
    (empirical-NTK GP) predictive around the current parameters.

    Args:
      k_dd: ``(n, n)``.
      k_td: ``(m, n)``.
      k_tt: ``(m, m)``.
      y_train: ``(n, k)`` (residual targets, e.g. ``y − f(θ*)`` for a Laplace update).
      noise: observation noise variance (positive).

    Returns:
      ``(mean (m, k), cov (m, m))``.
    """
    chol = jax.scipy.linalg.cho_factor(k_dd + noise * jnp.eye(k_dd.shape[0], dtype=k_dd.dtype))
    mean = k_td @ jax.scipy.linalg.cho_solve(chol, y_train)
    cov = k_tt - k_td @ jax.scipy.linalg.cho_solve(chol, k_td.T)
    return mean, cov
