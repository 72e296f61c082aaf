"""Study 1 — optimization: the conditions for fast NGD convergence, measured vs width.

One run = one architecture × width × parametrization, with all seeds batched by ``vmap``
and all NGD step sizes (and GD step sizes) batched likewise. See
:mod:`ntk_limits_experiments.optimization.config` for the command, runtime and expected result, and
:mod:`ntk_limits.ngd_conditions` for the definitions of ``K₀``, ``λ_min`` and ``C′``.
"""

import contextlib
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import data, models
from ntk_limits_experiments.optimization import config as cfg
from ntk_limits_experiments.optimization import measure
from ntk_limits_experiments.optimization.program import Plan, build_program
from ntk_limits_experiments.optimization.summary import summarize
from ntk_limits_experiments.study import Diverged, Study

__all__ = ["STUDY", "expand", "execute", "load_data"]

_RUN_KEYS = (
    "seeds", "n_train", "pool", "data_dir", "ngd_lrs", "ngd_damping", "ngd_solver", "cg_maxiter",
    "ngd_steps", "gd_steps", "gd_lr_fractions", "adam_lr", "num_checkpoints", "loss_threshold",
)  # fmt: skip


def expand(config: dict) -> list[dict]:
    """One spec per architecture × width × parametrization (seeds batched inside)."""
    shared = {k: config[k] for k in _RUN_KEYS}
    mlp = (config["mlp_dataset"], config["mlp_parameterizations"])
    conv = (config["conv_dataset"], config["conv_parameterizations"])
    families = [("mlp", d, *mlp, config["mlp_widths"]) for d in config["mlp_depths"]]
    families += [("cnn", config["cnn_depth"], *conv, config["cnn_widths"])]
    families += [("wrn", config["wrn_depth"], *conv, config["wrn_ks"])]
    return [
        {"arch": arch, "depth": depth, "width": w, "parameterization": p, "dataset": ds, **shared}
        for arch, depth, ds, params, widths in families
        for p in params
        for w in widths
    ]


@functools.lru_cache(maxsize=8)
def load_data(dataset: str, data_dir, n_train: int, pool: int):
    """Training images ``x: (n, H/pool, W/pool, C)``, one-hot ``y: (n, k)``, and a name."""
    ds = data.load(dataset, split="train", data_dir=data_dir, n=n_train, seed=0)
    x = data.pool_images(np.asarray(ds.x, np.float32), pool)
    y = np.eye(ds.num_classes, dtype=np.float32)[ds.y]
    pooled = f", {pool}x{pool}-average-pooled to {x.shape[1]}x{x.shape[2]}" if pool > 1 else ""
    return x, y, f"{ds.name}: {n_train} class-balanced training images{pooled}"


def _architecture(spec: dict, out_dim: int) -> models.Architecture:
    p, w = spec["parameterization"], spec["width"]
    if spec["arch"] == "mlp":
        return models.mlp(w, depth=spec["depth"], out_dim=out_dim, parameterization=p)
    if spec["arch"] == "cnn":
        return models.cnn(w, depth=spec["depth"], out_dim=out_dim, parameterization=p)
    return models.wide_resnet(depth=spec["depth"], k=w, out_dim=out_dim, parameterization=p)


def _compiler_options(arch: str) -> dict:
    """XLA:CPU options: LLVM at -O0 for MLPs, -O1 for convolutional networks.

    Compilation dominates small runs on CPU. -O0 compiles ~3x faster than the default
    -O2 and costs MLPs nothing (their time is in library matmuls), but makes small
    convolutions ~7x slower; -O1 compiles ~2x faster and runs them as fast as -O2.
    """
    if jax.default_backend() != "cpu":
        return {}
    return {"xla_backend_optimization_level": 0 if arch == "mlp" else 1}


def _timed(fn, options, *args):
    """Compiles ``fn`` ahead of time, runs it; returns (result, compile_s, run_s)."""
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile(compiler_options=options)
    mid = time.perf_counter()
    out = jax.block_until_ready(compiled(*args))
    return out, mid - start, time.perf_counter() - mid


def _tree_index(tree, *idx):
    return jax.tree_util.tree_map(lambda a: a[idx], tree)


def _init(arch, x, seeds):
    """Parameters for every seed (leading axis) from one compiled call.

    Eager stax init compiles a threefry sampler per parameter shape (~1 s each on this
    CPU); one program at -O0 takes ~2 s for a whole network.
    """
    init = jax.vmap(lambda seed: arch.init_fn(jax.random.key(seed), (-1, *x.shape[1:]))[1])
    seeds = jnp.asarray(seeds)
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else {}
    return jax.jit(init).lower(seeds).compile(compiler_options=options)(seeds)


def _plan(spec: dict) -> Plan:
    return Plan(
        ngd_lrs=tuple(spec["ngd_lrs"]),
        damping=spec["ngd_damping"],
        solver=spec["ngd_solver"],
        cg_maxiter=spec["cg_maxiter"],
        ngd_steps=spec["ngd_steps"],
        ngd_checkpoints=tuple(cfg.checkpoints(spec["ngd_steps"], spec["num_checkpoints"])),
        gd_steps=spec["gd_steps"],
        gd_checkpoints=tuple(cfg.checkpoints(spec["gd_steps"], spec["num_checkpoints"])),
        gd_fractions=tuple(spec["gd_lr_fractions"]),
        adam_lr=spec["adam_lr"],
    )


def _one_blas_thread():
    """Limits OpenBLAS (behind JAX's CPU LAPACK calls) to one thread while a run executes.

    On a busy CPU, two spinning OpenBLAS threads make each Cholesky inside ``jit`` up to
    50x slower than one thread does (measured: 320x320, 0.28 s vs 0.005 s).
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # scikit-learn's dependency; without it, run as is
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def _run(arch, spec, x, y):
    plan = _plan(spec)
    params0 = _init(arch, x, spec["seeds"])
    with _one_blas_thread():
        program = build_program(arch.apply_fn, x, y, plan)
        out, compile_s, run_s = _timed(program, _compiler_options(spec["arch"]), params0)
    out = jax.tree_util.tree_map(np.asarray, out)
    out["num_params"] = models.num_params(_tree_index(params0, 0))
    return plan, out, {"compile": compile_s, "run": run_s}


def _infinite_ntk(arch, x) -> np.ndarray:
    """``Θ∞`` on the training inputs, ``(n, n)`` float64 (jitted: eager stax is slow)."""
    kernel_fn = jax.jit(lambda a: arch.kernel_fn(a, None, "ntk"))
    return np.asarray(kernel_fn(jnp.asarray(x)), np.float64)


def execute(spec: dict, progress) -> dict:
    """Runs one architecture × width × parametrization for all seeds (see module doc)."""
    x, y, data_name = load_data(spec["dataset"], spec["data_dir"], spec["n_train"], spec["pool"])
    x = x.reshape(x.shape[0], -1) if spec["arch"] == "mlp" else x
    arch = _architecture(spec, y.shape[1])
    start = time.perf_counter()
    theta_inf = _infinite_ntk(arch, x)
    inf_s = time.perf_counter() - start
    progress(1, 3)
    plan, out, times = _run(arch, spec, jnp.asarray(x), jnp.asarray(y))
    progress(2, 3)
    if not measure.any_finite_run(out):
        raise Diverged(f"{arch.name}: every NGD, GD and Adam run has a non-finite loss")
    with _one_blas_thread():
        metrics = measure.assemble(spec, plan, out, theta_inf, y)
    progress(3, 3)
    time_s = {"infinite_kernel": inf_s, **times}
    return {"name": arch.name, "data": data_name, **metrics, "time_s": time_s}


STUDY = Study(
    name="optimization",
    claims=("C1", "C2"),
    get_config=cfg.get_config,
    validate=cfg.validate,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
