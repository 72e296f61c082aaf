"""Teaser — linearised-Laplace bands of finite MLPs beside the infinite-width NTK-GP.

One run = one network (a :class:`ntk_limits.models.Network`) with all seeds batched by
``vmap`` (train, then the empirical-NTK GP around the trained parameters), or the
infinite-width reference of the same architecture (``infinite=True``). See
:mod:`ntk_limits_experiments.teaser.config` for the recipe, command, runtime and expected
result.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ntk_limits import models, training
from ntk_limits.kernels import empirical_ntk_fn
from ntk_limits.linearize import gp_regression, gradient_descent_mse
from ntk_limits_experiments import memory
from ntk_limits_experiments.common import compile_jit
from ntk_limits_experiments.config import Config, field
from ntk_limits_experiments.study import Diverged, Study, Summary
from ntk_limits_experiments.teaser import analysis, plots
from ntk_limits_experiments.teaser.config import PROFILES, Problem, TeaserConfig

__all__ = [
    "STUDY",
    "TeaserSpec",
    "execute",
    "expand",
    "fit_noise",
    "laplace_predictive",
    "load_data",
    "memory_bytes",
    "summarize",
]

_NOISE_GRID = np.geomspace(1e-3, 10.0, 161)


@dataclasses.dataclass(frozen=True)
class TeaserSpec(Config):
    """One run: a centred MLP at one width (all seeds), or its infinite-width reference.

    Attributes:
      network: the MLP; for the infinite reference its width is irrelevant (kept at 1).
      problem: data and training recipe.
      seeds: parameter seeds (empty for the infinite reference).
      infinite: the infinite-width NTK-GP instead of finite networks.
    """

    network: models.Network
    problem: Problem
    seeds: tuple[int, ...] = field((), ge=0)
    infinite: bool = False


def expand(config: TeaserConfig) -> list[TeaserSpec]:
    """The infinite-width reference, then one spec per width (seeds batched inside)."""
    c = config
    net = lambda w: models.Network("mlp", w, c.depth, 1, "ntk", c.activation, c.W_std, c.b_std)
    specs = [TeaserSpec(net(1), c.problem, (), infinite=True)]
    return specs + [TeaserSpec(net(w), c.problem, c.seeds) for w in c.widths]


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


def _data(problem: Problem):
    return load_data(problem.n_train, problem.data_seed, problem.num_grid, problem.margin)


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
def _infinite(network: models.Network, problem: Problem):
    """``(Θ_inf on [X; grid], infinite mean, sd, noise, lr)`` of an architecture and problem."""
    x, y, grid = _data(problem)
    x_all = np.concatenate([x, grid])
    kernel_fn = jax.jit(models.build(network).kernel_fn, static_argnames="get")
    theta = np.asarray(kernel_fn(x_all, None, get="ntk"))
    n = x.shape[0]
    noise = problem.noise_var or fit_noise(theta[:n, :n], y)
    lam_max = float(np.linalg.eigvalsh(np.asarray(theta[:n, :n], np.float64))[-1])
    lr = problem.lr_fraction * 2 * y.size / lam_max

    @jax.jit
    def predict(theta, y):
        predict_fn = gradient_descent_mse(theta[:n, :n], y, lr, discrete=True)
        zeros = jnp.zeros((theta.shape[0] - n, 1), theta.dtype)
        g_train, g_grid = predict_fn(problem.steps, jnp.zeros_like(y), zeros, theta[n:, :n])
        return laplace_predictive(theta, jnp.concatenate([g_train, g_grid]), y, noise)

    mean, sd = predict(jnp.asarray(theta), jnp.asarray(y))
    return theta, np.asarray(mean), np.asarray(sd), noise, lr


def _finite(spec: TeaserSpec, theta: np.ndarray, noise: float, lr: float):
    """Trained centred networks and their Laplace predictive, seeds by ``vmap``, one program."""
    x, y, grid = _data(spec.problem)
    arch = models.build(spec.network)
    draw = models.init_sampler(arch, (-1, 1))
    train = training.make_train(arch.apply_fn, optax.sgd(lr), spec.problem.steps)
    ntk = empirical_ntk_fn(arch.apply_fn)
    x_all, n = jnp.concatenate([x, grid]), y.shape[0]
    theta_dd = jnp.asarray(theta[:n, :n])

    def one_seed(key):
        params0 = draw(key)
        params, losses = train(params0, x, y + arch.apply_fn(params0, x), key)  # full batch
        g_all = arch.apply_fn(params, x_all) - arch.apply_fn(params0, x_all)
        k_star = ntk(x_all, None, params)
        mean, sd = laplace_predictive(k_star, g_all, y, noise)
        rel = jnp.linalg.norm(k_star[:n, :n] - theta_dd) / jnp.linalg.norm(theta_dd)
        return mean, sd, rel, losses

    keys = jax.vmap(jax.random.key)(jnp.asarray(spec.seeds, jnp.uint32))
    cost = spec.problem.steps * x_all.shape[0] * models.num_params(jax.eval_shape(draw, keys[0]))
    out = compile_jit(jax.vmap(one_seed), (keys,), cost)(keys)
    return tuple(np.asarray(a) for a in out)


_OVERHEAD = 512 * 2**20  # XLA compilation and buffers independent of the sizes


def memory_bytes(spec: TeaserSpec) -> int:
    """An upper bound on the memory one run adds to the process, from the spec alone.

    With ``S`` seeds, ``P`` parameters per network, ``N = n_train + num_grid`` points and
    hidden width ``w`` over ``depth`` layers, float32: ``4 (8 S P + 12 S N w depth +
    2 S N²)`` bytes plus 512 MiB; the infinite reference ``8 · 8 N²`` plus 160 MiB
    (measured 0.09 GB of growth at N = 264, bound 0.17 GB). Measured peak-RSS growth
    against the bound (N = 264 unless said): width 4096 depth 1, 16 seeds 0.69 / 1.38 GB;
    the same at N = 1064 2.22 / 4.03 GB; width 1024 depth 1, 16 seeds 0.32 / 0.76 GB;
    width 1024 depth 2, 8 seeds 0.51 / 1.02 GB; width 2048 depth 2, 4 seeds 0.76 / 1.29 GB
    (ratios 1.7-2.4; tested in
    ``tests/experiments/test_memory.py``).
    """
    n_points = spec.problem.n_train + spec.problem.num_grid
    if spec.infinite:
        return 8 * 8 * n_points**2 + 160 * 2**20  # measured 0.09 GB (N = 264): compiling
    p, s, w = memory.num_params(spec.network, (1,)), len(spec.seeds), spec.network.hidden_width
    floats = 8 * s * p + 12 * s * n_points * w * spec.network.depth + 2 * s * n_points**2
    return 4 * floats + _OVERHEAD


def _rms(a: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean(np.square(a), axis=-1))


def execute(spec: TeaserSpec, progress) -> dict:
    """Infinite-width predictive (``infinite``) or one width's predictives and distances."""
    reference = dataclasses.replace(spec.network, width=1)  # Θ_inf is width-free in NTP
    theta, mean_inf, sd_inf, noise, lr = _infinite(reference, spec.problem)
    common = {"noise_var": noise, "lr": lr}
    if spec.infinite:
        return {"mean": mean_inf, "sd": sd_inf, **common}
    progress(1, 2)
    mean, sd, rel, losses = _finite(spec, theta, noise, lr)
    progress(2, 2)
    if not np.all(np.isfinite(losses)) or not np.all(np.isfinite(mean)):
        raise Diverged(f"non-finite loss or prediction at {spec.network.name} (lr {lr:.3g})")
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


def summarize(config: TeaserConfig, records: list[dict], outdir) -> Summary:
    """Predictive-band panels, distance-vs-width figure and table; no claim verdict."""
    inf, finite = analysis.split_records(records)
    figures = plots.figures(_data(config.problem), inf, finite, outdir)
    table = {"distance to infinite width": analysis.distance_table(finite)}
    return Summary(figures, table, [], analysis.text(config, inf, finite))


STUDY = Study(
    name="teaser",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
    memory=memory_bytes,
)
