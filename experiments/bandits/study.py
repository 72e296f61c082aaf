"""Study 2 (issue 6, claim C3): theory γ_t vs tuned / evidence exploration in neural bandits.

One spec = one agent on one data set at one (width, parametrisation), all seeds inside.
Agents that differ only in their exploration (theory / fixed γ / evidence, UCB / TS) share
one compiled program: the exploration is a traced argument (see
:class:`ntk_limits.bandits.Exploration`), so consecutive specs reuse the compilation.
"""

import contextlib
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import bandits, data, models
from ntk_limits_experiments.bandits import analysis, plots
from ntk_limits_experiments.bandits.analysis import neural_name
from ntk_limits_experiments.bandits.config import get_config, sweep_widths, validate
from ntk_limits_experiments.study import Diverged, Study, Summary

__all__ = ["STUDY", "expand", "execute", "summarize"]

_MODES = {"theory": 0, "fixed": 1, "evidence": 2}
_GP_KEYS = ("prior_precision", "nu", "delta", "norm_bound", "tune_every")
_GRID_KEYS = ("ridge_low", "ridge_high", "ridge_num")
_NEURAL_KEYS = ("train_first", "train_every", "train_steps", "learning_rate", "momentum")
_BASELINE_FIELDS = {  # agent -> (family, method, exploration)
    "random": ("random", "ucb", "theory"),
    "linucb": ("linucb", "ucb", "theory"),
    "ntkgp-ucb-theory": ("gp", "ucb", "theory"),
    "ntkgp-ucb-evidence": ("gp", "ucb", "evidence"),
    "ntkgp-ts-evidence": ("gp", "ts", "evidence"),
    "neuralucb-diag-theory": ("diag", "ucb", "theory"),
}


def _spec(config, dataset, agent, family, method, exploration, gamma, width, par) -> dict:
    spec = {
        "dataset": dataset,
        "agent": agent,
        "family": family,
        "method": method,
        "exploration": exploration,
        "gamma": float(gamma),
        "width": width,
        "parameterization": par,
        "rounds": config["rounds"],
        "seeds": list(config["seeds"]),
        "curve_points": config["curve_points"],
        "data_dir": config["data_dir"],
    }
    keys = {"random": (), "linucb": _GP_KEYS + _GRID_KEYS, "gp": _GP_KEYS + _GRID_KEYS}
    spec.update({k: config[k] for k in keys.get(family, _GP_KEYS + _GRID_KEYS + _NEURAL_KEYS)})
    return spec


def _neural_specs(config, dataset, width, par, explorations, methods) -> list[dict]:
    specs = []
    for method in methods:
        for exploration in explorations:
            name = neural_name(method, exploration)
            specs.append(
                _spec(config, dataset, name, "neural", method, exploration, 1.0, width, par)
            )
    return specs


def expand(config: dict) -> list[dict]:
    """Specs: baselines and every NeuralUCB/TS variant at the base width, then the sweep."""
    width, par = config["width"], config["base_parameterization"]
    specs = []
    for ds in config["datasets"]:
        for agent in config["baselines"]:
            family, method, exploration = _BASELINE_FIELDS[agent]
            if family == "diag" and ds not in config["diag_datasets"]:
                continue
            w, p = (None, None) if family in ("random", "linucb") else (width, par)
            p = "ntk" if family == "gp" else p  # the infinite-width NTK of the NTP network
            specs.append(_spec(config, ds, agent, family, method, exploration, 1.0, w, p))
        specs += _neural_specs(config, ds, width, par, ("theory", "evidence"), config["methods"])
        for method in config["methods"]:
            for lam in config["theory_prior_precisions"]:
                name = neural_name(method, "theory", lam=lam)
                spec = _spec(config, ds, name, "neural", method, "theory", 1.0, width, par)
                specs.append({**spec, "prior_precision": float(lam)})
        for i, method in enumerate(config["fixed_methods"]):
            for g in config["fixed_gammas"]:
                if g == 0.0 and i > 0:  # γ = 0 is the same greedy agent for UCB and TS
                    continue
                name = neural_name(method, "fixed", g)
                specs.append(_spec(config, ds, name, "neural", method, "fixed", g, width, par))
    for ds in config["sweep_datasets"]:
        for p, ws in sweep_widths(config).items():
            for w in ws:
                if ds in config["datasets"] and (w, p) == (width, par):
                    continue  # already run above
                specs += _neural_specs(config, ds, w, p, ("theory", "evidence"), ["ucb"])
    return specs


def _make_agent(family, width, par, rounds, hyper, exploration, lam):
    if family == "random":
        return bandits.random_agent()
    grid = bandits.ridge_grid(hyper["ridge_low"], hyper["ridge_high"], hyper["ridge_num"])
    gp_kwargs = dict(
        exploration=exploration, prior_precision=lam, tune_every=hyper["tune_every"],
        log_ridge_grid=grid,
    )  # fmt: skip
    if family == "linucb":
        return bandits.linucb(rounds, **gp_kwargs)
    arch = models.mlp(width, 1, 1, parameterization=par)
    if family == "gp":
        return bandits.ntk_gp_agent(arch, rounds, **gp_kwargs)
    schedule = bandits.Schedule(
        hyper["train_first"], hyper["train_every"], hyper["train_steps"],
        hyper["learning_rate"], hyper["momentum"], hyper["tune_every"],
    )  # fmt: skip
    return bandits.neural_agent(
        arch, rounds, posterior="full" if family == "neural" else "diag",
        exploration=exploration, schedule=schedule, prior_precision=lam,
        log_ridge_grid=grid,
    )  # fmt: skip


@functools.cache
def _program(family: str, width, par, rounds: int, hyper: tuple, static_mode: str | None):
    """One jitted ``(contexts, rewards, key, mode, gamma, thompson, λ) -> (regret, info)``."""
    h = dict(hyper)

    def run(contexts, rewards, key, mode, gamma, thompson, lam):
        mode = static_mode if static_mode is not None else mode
        e = bandits.Exploration(mode, gamma, thompson, h["nu"], h["delta"], h["norm_bound"])
        agent = _make_agent(family, width, par, rounds, h, e, lam)
        traj = bandits.run_bandit(agent, contexts, rewards, key)
        return traj.regret, traj.info

    # Skipping LLVM's expensive passes cuts XLA CPU compile time by ~20% (11.0 -> 8.6 s
    # CPU for the NeuralUCB program) at ~+10% run time; compilation dominates this study.
    return jax.jit(run, compiler_options={"xla_llvm_disable_expensive_passes": True})


def _hyper(spec: dict) -> tuple:
    keys = tuple(k for k in _GP_KEYS + _GRID_KEYS + _NEURAL_KEYS if k != "prior_precision")
    return tuple(sorted((k, spec.get(k, 1.0)) for k in keys))


def curve_index(rounds: int, points: int) -> np.ndarray:
    """``≤ points`` round indices from the first to the last (for stored curves)."""
    return np.unique(np.round(np.linspace(0, rounds - 1, min(points, rounds))).astype(int))


def _single_threaded_blas():
    """Limits OpenBLAS to one thread while the agents run.

    jaxlib's CPU Cholesky/eigh call scipy's OpenBLAS, whose spinning worker threads make
    them 100-500× slower when the cores are oversubscribed (measured: a 400×400 Cholesky
    1.3 ms alone, 0.7 s median on a loaded 2-core machine). The libraries must be loaded
    before their thread count can be set.
    """
    try:
        import scipy.linalg  # noqa: F401 - loads scipy's OpenBLAS
        import threadpoolctl
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return contextlib.nullcontext()
    return threadpoolctl.threadpool_limits(limits=1, user_api="blas")


def execute(spec: dict, progress) -> dict:
    """Runs one agent on one data set for every seed; returns regret curves and scales."""
    with _single_threaded_blas():
        return _execute(spec, progress)


def _execute(spec: dict, progress) -> dict:
    static_mode = spec["exploration"] if spec["family"] == "diag" else None
    program = _program(
        spec["family"], spec["width"], spec["parameterization"], spec["rounds"],
        _hyper(spec), static_mode,
    )  # fmt: skip
    args = (
        jnp.int32(_MODES[spec["exploration"]]),
        jnp.float32(spec["gamma"]),
        jnp.bool_(spec["method"] == "ts"),
        jnp.float32(spec.get("prior_precision", 1.0)),
    )
    index = curve_index(spec["rounds"], spec["curve_points"])
    out = {k: [] for k in ("final_regret", "regret_curve", "bonus_curve", "gamma_final")}
    out.update({k: [] for k in ("prior_precision_final", "noise_variance_final", "seconds")})
    for i, seed in enumerate(spec["seeds"]):
        env = data.make_bandit(
            spec["dataset"], data_dir=spec["data_dir"], num_rounds=spec["rounds"], seed=seed
        )
        start = time.perf_counter()
        regret, info = jax.block_until_ready(
            program(env.contexts, env.rewards, jax.random.key(seed), *args)
        )
        out["seconds"].append(time.perf_counter() - start)
        info = {k: np.asarray(v, np.float64) for k, v in info.items()}
        if not all(np.isfinite(v).all() for v in info.values()):
            raise Diverged(f"non-finite posterior or scale for {spec['agent']} seed {seed}")
        cum = np.cumsum(np.asarray(regret, np.float64))
        out["final_regret"].append(cum[-1])
        out["regret_curve"].append(cum[index].tolist())
        out["bonus_curve"].append((info["gamma"] * info["sd"])[index].tolist())
        out["gamma_final"].append(info["gamma"][-1])
        out["prior_precision_final"].append(info["prior_precision"][-1])
        out["noise_variance_final"].append(info["noise_variance"][-1])
        progress(i + 1, len(spec["seeds"]))
    return {**out, "curve_rounds": (index + 1).tolist()}


def summarize(config: dict, records: list[dict], outdir) -> Summary:
    """Figures (regret curves, width sweep, exploration bonus), tables and the C3 verdict."""
    outdir = Path(outdir)
    groups = analysis.group_records(config, records)
    base = analysis.base_curves(config, groups)
    figures = [
        plots.plot_regret_curves(
            base,
            config["datasets"],
            outdir / "bandits_regret.png",
            f"cumulative regret, width {config['width']} ({config['base_parameterization']})",
        ),  # fmt: skip
        plots.plot_bonus(
            analysis.base_bonus(config, groups), config["datasets"], outdir / "bandits_bonus.png"
        ),
    ]
    sweep = analysis.sweep_finals(config, groups)
    if sweep:
        figures.append(
            plots.plot_width_sweep(sweep, config["sweep_datasets"], outdir / "bandits_width.png")
        )
    verdict, cases = analysis.verdict_c3(config, groups)
    tables = {
        "bandits_final_regret": analysis.final_table(config, groups),
        "bandits_width_sweep": analysis.sweep_table(config, sweep),
        "bandits_c3": analysis.verdict_table(cases),
    }
    text = analysis.summary_text(config, groups, cases, records)
    return Summary(figures, tables, [verdict], text)


STUDY = Study(
    name="bandits",
    claims=("C3",),
    get_config=get_config,
    validate=validate,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
