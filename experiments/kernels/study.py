"""Study 0 — kernels: the empirical NTK against the infinite-width NTK, as width grows.

One run = one architecture × parametrization × width, with all seeds batched by ``vmap``
inside one compiled program (draw the parameters, take the empirical NTK). See
:mod:`ntk_limits_experiments.kernels.config` for the command, runtime and expected result.

Parameters are drawn by :func:`ntk_limits_experiments.kernels.params.draw_params` (the distribution
of stax's ``init_fn`` from one random op, which compiles in a fraction of the time).
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import data, models
from ntk_limits.kernels import blocked_kernel_fn, empirical_ntk_fn
from ntk_limits_experiments.kernels import config as cfg
from ntk_limits_experiments.kernels.params import compile_jit, draw_params
from ntk_limits_experiments.kernels.plots import summarize
from ntk_limits_experiments.study import Study

__all__ = [
    "STUDY",
    "empirical_ntks",
    "execute",
    "expand",
    "infinite_ntk",
    "kernel_metrics",
    "load_inputs",
]

_SHARED = ("seeds", "activation", "W_std", "b_std", "kernel_block", "data_dir")


def expand(config: dict) -> list[dict]:
    """One spec per architecture × parametrization × width (seeds batched inside)."""
    shared = {k: config[k] for k in _SHARED}
    mlp = {"dataset": config["mlp_dataset"], "n": config["mlp_n"], "pool": config["mlp_pool"]}
    conv = {"dataset": config["conv_dataset"], "n": config["conv_n"], "pool": config["conv_pool"]}
    families = [
        ("mlp", config["mlp_depth"], mlp, config["mlp_widths"]),
        ("cnn", config["cnn_depth"], conv, config["cnn_widths"]),
        ("wrn", config["wrn_depth"], conv, config["wrn_ks"]),
    ]
    return [
        {"arch": arch, "depth": depth, "width": w, "parameterization": p, **inputs, **shared}
        for arch, depth, inputs, widths in families
        for p in config["parameterizations"]
        for w in widths
    ]


@functools.lru_cache(maxsize=4)
def load_inputs(dataset: str, data_dir, n: int, pool: int, flatten: bool):
    """Inputs ``(n, H/pool, W/pool, C)`` (or flattened ``(n, d)``) and their description."""
    ds = data.load(dataset, split="train", data_dir=data_dir, n=n, seed=0)
    x = data.pool_images(np.asarray(ds.x, np.float32), pool)
    shape = "x".join(map(str, x.shape[1:]))
    desc = f"{ds.name}: {n} class-balanced training images"
    desc += f", {pool}x{pool}-average-pooled to {shape}" if pool > 1 else f" of {shape}"
    if flatten:
        x = x.reshape(n, -1)
        desc += ", flattened"
    return x, desc


def architecture(spec: dict) -> models.Architecture:
    """The scalar-output network of a spec (``width`` is the WRN multiplier ``k`` for wrn)."""
    p, w, act = spec["parameterization"], spec["width"], spec["activation"]
    kw = dict(activation=act, parameterization=p, W_std=spec["W_std"], b_std=spec["b_std"])
    if spec["arch"] == "mlp":
        return models.mlp(w, depth=spec["depth"], out_dim=1, **kw)
    if spec["arch"] == "cnn":
        return models.cnn(w, depth=spec["depth"], out_dim=1, **kw)
    return models.wide_resnet(depth=spec["depth"], k=w, out_dim=1, parameterization=p)


def _wrn_stds(spec: dict) -> tuple[float, float]:
    return (1.0, 0.0) if spec["arch"] == "wrn" else (spec["W_std"], spec["b_std"])


def empirical_ntks(arch: models.Architecture, x, seeds, w_std: float, b_std: float):
    """Empirical NTKs at initialisation, one per seed: ``(S, n, n)`` float32.

    Args:
      arch: the network.
      x: inputs ``(n, ...)``.
      seeds: ``S`` ints; seed ``s`` draws its parameters from ``jax.random.key(s)``.
      w_std: ``W_std`` of ``arch`` (for the standard-parametrization init).
      b_std: ``b_std`` of ``arch``.

    Returns:
      ``(S, n, n)`` numpy array, computed by one compiled program (seeds by ``vmap``).
    """
    draw = draw_params(arch, (-1, *x.shape[1:]), w_std, b_std)
    ntk = empirical_ntk_fn(arch.apply_fn, algorithm="structured")
    kernels = lambda keys, x: jax.vmap(lambda k: ntk(x, None, draw(k)))(keys)
    keys = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
    x = jnp.asarray(x)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, *x.shape[1:]))[1], jax.random.key(0))
    cost = x.shape[0] * models.num_params(shapes) * math.prod(x.shape[1:-1])
    return np.asarray(compile_jit(kernels, (keys, x), cost)(keys, x))


@functools.lru_cache(maxsize=16)
def _infinite_ntk(arch_items: tuple, x_key: tuple, block: int) -> np.ndarray:
    x, _ = load_inputs(*x_key)
    kernel = blocked_kernel_fn(
        architecture(dict(arch_items)).kernel_fn, block=min(block, x.shape[0])
    )
    return np.asarray(kernel(jnp.asarray(x), None, "ntk"), np.float64)


def infinite_ntk(spec: dict) -> np.ndarray:
    """``K_inf (n, n)`` float64: width-free in NTK parametrization, per width in standard."""
    keys = ("arch", "depth", "parameterization", "activation", "W_std", "b_std", "width")
    arch_spec = {k: spec[k] for k in keys}
    if spec["parameterization"] == "ntk":
        arch_spec["width"] = 1  # the NTK-parametrization limit does not depend on width
    return _infinite_ntk(tuple(sorted(arch_spec.items())), _x_key(spec), spec["kernel_block"])


def _x_key(spec: dict) -> tuple:
    return (spec["dataset"], spec["data_dir"], spec["n"], spec["pool"], spec["arch"] == "mlp")


def kernel_metrics(k_emp: np.ndarray, k_inf: np.ndarray) -> dict:
    """Relative Frobenius error, alignment and λ_min ratio of each ``k_emp (S, n, n)``.

    Returns:
      ``rel_error``, ``alignment``, ``lambda_min_ratio`` (lists of ``S`` floats), and the
      scalars ``lambda_min_inf``, ``lambda_max_inf``, ``norm_inf`` of ``k_inf (n, n)``.
    """
    k_emp = np.asarray(k_emp, np.float64)
    k_emp = (k_emp + np.swapaxes(k_emp, 1, 2)) / 2
    k_inf = (np.asarray(k_inf, np.float64) + np.asarray(k_inf, np.float64).T) / 2
    norm_inf = np.linalg.norm(k_inf)
    diff = np.linalg.norm(k_emp - k_inf, axis=(1, 2))
    inner = np.einsum("sij,ij->s", k_emp, k_inf)
    eig_inf = np.linalg.eigvalsh(k_inf)
    lam_emp = np.linalg.eigvalsh(k_emp)[:, 0]
    return {
        "rel_error": (diff / norm_inf).tolist(),
        "alignment": (inner / (np.linalg.norm(k_emp, axis=(1, 2)) * norm_inf)).tolist(),
        "lambda_min_ratio": (lam_emp / eig_inf[0]).tolist(),
        "lambda_min_inf": float(eig_inf[0]),
        "lambda_max_inf": float(eig_inf[-1]),
        "norm_inf": float(norm_inf),
    }


def execute(spec: dict, progress) -> dict:
    """Empirical NTKs of every seed against ``K_inf``; see :func:`kernel_metrics`."""
    x, desc = load_inputs(*_x_key(spec))
    arch = architecture(spec)
    k_inf = infinite_ntk(spec)
    progress(1, 2)
    k_emp = empirical_ntks(arch, x, spec["seeds"], *_wrn_stds(spec))
    progress(2, 2)
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, (-1, *x.shape[1:]))[1], jax.random.key(0))
    return {
        **kernel_metrics(k_emp, k_inf),
        "hidden_width": arch.network.hidden_width,
        "num_params": models.num_params(shapes),
        "data": desc,
    }


STUDY = Study(
    name="kernels",
    claims=("C5",),
    get_config=cfg.get_config,
    validate=cfg.validate,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
