"""Teaser — linearised-Laplace bands of finite MLPs beside the infinite-width NTK-GP.

One run = one width with all seeds batched by ``vmap`` (train, then the empirical-NTK GP
around the trained parameters), or the infinite-width reference (``width: None``). See
:mod:`ntk_limits_experiments.teaser.config` for the recipe, command, runtime and expected result.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import models
from ntk_limits.kernels import empirical_ntk_fn
from ntk_limits.linearize import gp_regression, gradient_descent_mse
from ntk_limits.training import mse_loss
from ntk_limits_experiments.kernels.params import compile_jit, draw_params
from ntk_limits_experiments.study import Diverged, Study, Summary
from ntk_limits_experiments.teaser import config as cfg
from ntk_limits_experiments.teaser import plots

__all__ = [
    "STUDY",
    "execute",
    "expand",
    "fit_noise",
    "gradient_descent",
    "laplace_predictive",
    "load_data",
    "summarize",
]

_RUN_KEYS = (
    "n_train", "data_seed", "num_grid", "margin", "depth", "activation", "W_std", "b_std",
    "steps", "lr_fraction", "noise_var",
)  # fmt: skip
_NOISE_GRID = np.geomspace(1e-3, 10.0, 161)


def expand(config: dict) -> list[dict]:
    """The infinite-width reference, then one spec per width (seeds batched inside)."""
    shared = {k: config[k] for k in _RUN_KEYS}
    specs = [{"width": None, "seeds": [], **shared}]
    return specs + [{"width": w, "seeds": config["seeds"], **shared} for w in config["widths"]]


@functools.lru_cache(maxsize=4)
def load_data(n_train: int, data_seed: int, num_grid: int, margin: float):
    """Standardised ``x_train (n, 1)``, ``y_train (n, 1)``, ``x_grid (G, 1)`` (float32)."""
    from sklearn.datasets import load_diabetes

    bunch = load_diabetes()
    x = bunch.data[:, bunch.feature_names.index("bmi")]
    y = bunch.target
    x, y = (x - x.mean()) / x.std(), (y - y.mean()) / y.std()
    idx = np.sort(np.random.default_rng(data_seed).choice(x.size, n_train, replace=False))
    grid = np.linspace(x.min() - margin, x.max() + margin, num_grid)
    as32 = lambda a: np.asarray(a, np.float32)[:, None]
    return as32(x[idx]), as32(y[idx]), as32(grid)


def _data(spec: dict):
    return load_data(spec["n_train"], spec["data_seed"], spec["num_grid"], spec["margin"])


def _arch(spec: dict, width: int) -> models.Architecture:
    return models.mlp(
        width, depth=spec["depth"], out_dim=1, activation=spec["activation"],
        parameterization="ntk", W_std=spec["W_std"], b_std=spec["b_std"],
    )  # fmt: skip


def fit_noise(k: np.ndarray, y: np.ndarray, grid=_NOISE_GRID) -> float:
    """Noise variance maximising ``log N(y | 0, k + σ² I)`` over ``grid`` (float64).

    Args:
      k: prior covariance ``(n, n)``.
      y: targets ``(n, 1)``.
      grid: candidate variances.

    Returns:
      The best candidate ``σ²``.
    """
    k, y = np.asarray(k, np.float64), np.asarray(y, np.float64)[:, 0]
    lam, v = np.linalg.eigh((k + k.T) / 2)
    proj = (v.T @ y) ** 2
    lml = [-0.5 * np.sum(proj / (lam + s) + np.log(lam + s)) for s in grid]
    return float(grid[int(np.argmax(lml))])


def laplace_predictive(k_all, g_all, y, noise):
    """Mean and standard deviation on the grid of the GP on residuals around ``g``.

    Args:
      k_all: prior covariance on ``[X; grid]``, ``(n + G, n + G)``.
      g_all: the network's (centred) outputs on ``[X; grid]``, ``(n + G, 1)``.
      y: targets ``(n, 1)``.
      noise: observation noise variance.

    Returns:
      ``mean (G,)`` = ``g(grid) + K_gX (K_XX + σ²I)⁻¹ (y − g(X))`` and ``sd (G,)``, the
      posterior standard deviation of the latent function.
    """
    n = y.shape[0]
    k_dd, k_td, k_tt = k_all[:n, :n], k_all[n:, :n], k_all[n:, n:]
    mean, cov = gp_regression(k_dd, k_td, k_tt, y - g_all[:n], noise)
    return (g_all[n:] + mean)[:, 0], jnp.sqrt(jnp.clip(jnp.diag(cov), 0.0))


@functools.lru_cache(maxsize=4)
def _infinite(spec_items: tuple):
    """``(Θ_inf on [X; grid], infinite mean, sd, noise, lr)`` of a spec (without width)."""
    spec = dict(spec_items)
    x, y, grid = _data(spec)
    x_all = np.concatenate([x, grid])
    theta = np.asarray(jax.jit(_arch(spec, 1).kernel_fn, static_argnames="get")(
        x_all, None, get="ntk"))  # fmt: skip
    n = x.shape[0]
    noise = spec["noise_var"] or fit_noise(theta[:n, :n], y)
    lam_max = float(np.linalg.eigvalsh(np.asarray(theta[:n, :n], np.float64))[-1])
    lr = spec["lr_fraction"] * 2 * y.size / lam_max

    @jax.jit
    def predict(theta, y):
        predict_fn = gradient_descent_mse(theta[:n, :n], y, lr, discrete=True)
        zeros = jnp.zeros((theta.shape[0] - n, 1), theta.dtype)
        g_train, g_grid = predict_fn(spec["steps"], jnp.zeros_like(y), zeros, theta[n:, :n])
        return laplace_predictive(theta, jnp.concatenate([g_train, g_grid]), y, noise)

    mean, sd = predict(jnp.asarray(theta), jnp.asarray(y))
    return theta, np.asarray(mean), np.asarray(sd), noise, lr


def gradient_descent(apply_fn, learning_rate: float, num_steps: int):
    """Returns ``train(params, x, y) -> (params, losses (num_steps,))``: full-batch GD on MSE.

    The loss is :func:`ntk_limits.training.mse_loss`. Same steps as
    ``ntk_limits.training.make_train(apply_fn, optax.sgd(lr), num_steps)``, without its
    minibatch permutations, whose compilation took ~10 s per width here (full batch
    needs none).
    """
    loss_fn = lambda p, x, y: mse_loss(apply_fn(p, x), y)

    def train(params, x, y):
        def step(p, _):
            loss, grads = jax.value_and_grad(loss_fn)(p, x, y)
            return jax.tree_util.tree_map(lambda a, g: a - learning_rate * g, p, grads), loss

        return jax.lax.scan(step, params, None, length=num_steps)

    return train


def _finite(spec: dict, theta: np.ndarray, noise: float, lr: float):
    """Trained centred networks and their Laplace predictive, seeds by ``vmap``, one program."""
    x, y, grid = _data(spec)
    arch = _arch(spec, spec["width"])
    draw = draw_params(arch, (-1, 1), spec["W_std"], spec["b_std"])
    train = gradient_descent(arch.apply_fn, lr, spec["steps"])
    ntk = empirical_ntk_fn(arch.apply_fn)
    x_all, n = jnp.concatenate([x, grid]), y.shape[0]
    theta_dd = jnp.asarray(theta[:n, :n])

    def one_seed(key):
        params0 = draw(key)
        params, losses = train(params0, x, y + arch.apply_fn(params0, x))
        g_all = arch.apply_fn(params, x_all) - arch.apply_fn(params0, x_all)
        k_star = ntk(x_all, None, params)
        mean, sd = laplace_predictive(k_star, g_all, y, noise)
        rel = jnp.linalg.norm(k_star[:n, :n] - theta_dd) / jnp.linalg.norm(theta_dd)
        return mean, sd, rel, losses

    keys = jax.vmap(jax.random.key)(jnp.asarray(spec["seeds"], jnp.uint32))
    cost = spec["steps"] * x_all.shape[0] * models.num_params(jax.eval_shape(draw, keys[0]))
    out = compile_jit(jax.vmap(one_seed), (keys,), cost)(keys)
    return tuple(np.asarray(a) for a in out)


def _rms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(a), axis=-1))


def execute(spec: dict, progress) -> dict:
    """Infinite-width predictive (``width`` None) or one width's predictives and distances."""
    items = tuple(sorted((k, spec[k]) for k in _RUN_KEYS))
    theta, mean_inf, sd_inf, noise, lr = _infinite(items)
    common = {"noise_var": noise, "lr": lr}
    if spec["width"] is None:
        return {"mean": mean_inf, "sd": sd_inf, **common}
    progress(1, 2)
    mean, sd, rel, losses = _finite(spec, theta, noise, lr)
    progress(2, 2)
    if not np.all(np.isfinite(losses)) or not np.all(np.isfinite(mean)):
        raise Diverged(f"non-finite loss or prediction at width {spec['width']} (lr {lr:.3g})")
    var, var_inf = sd**2, sd_inf**2
    return {
        "mean": mean,
        "sd": sd,
        "mean_distance": _rms(mean - mean_inf),
        "sd_distance": _rms(sd - sd_inf),
        "var_rel_distance": np.linalg.norm(var - var_inf, axis=1) / np.linalg.norm(var_inf),
        "kernel_rel_error": rel,
        "final_loss": losses[:, -1],
        **common,
    }


def summarize(config: dict, records: list[dict], outdir) -> Summary:
    """The figures and table of :func:`ntk_limits_experiments.teaser.plots.summarize`."""
    return plots.summarize(config, records, outdir, _data(config))


STUDY = Study(
    name="teaser",
    claims=(),
    get_config=cfg.get_config,
    validate=cfg.validate,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
