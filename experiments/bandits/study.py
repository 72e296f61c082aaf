"""Study 2 (issue 6, claim C3): theory γ_t vs tuned / evidence exploration in neural bandits.

One spec (:class:`~ntk_limits_experiments.bandits.config.Run`) = one agent on one data set
at one network, all seeds inside. Agents that differ only in their exploration (theory /
fixed γ / evidence, UCB / TS) or their λ share one compiled program: the program takes the
exploration as arrays (:meth:`ntk_limits.bandits.Exploration.as_arrays`) and λ as a traced
argument, so consecutive specs reuse the compilation.
"""

import contextlib
import dataclasses
import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import bandits, data, models
from ntk_limits_experiments import common, memory
from ntk_limits_experiments.bandits import analysis, plots, verdict
from ntk_limits_experiments.bandits.config import (
    BASELINES,
    PROFILES,
    SWEPT,
    Agent,
    BanditsConfig,
    Run,
    Training,
    Tuning,
)
from ntk_limits_experiments.study import Diverged, Study, Summary

__all__ = ["STUDY", "curve_index", "execute", "expand", "memory_bytes", "summarize"]


def _run(config: BanditsConfig, dataset: str, agent: Agent, network=None) -> Run:
    """The spec of ``agent`` on ``dataset``, with the blocks its family uses."""
    posterior, neural = agent.family != "random", agent.family == "neural"
    return Run(
        dataset, agent, config.rounds_of(dataset), config.seeds, config.curve_points,
        network=network if agent.family in ("ntkgp", "neural") else None,
        prior_precision=config.prior_precision if posterior else None,
        theory=config.theory if posterior else None,
        tuning=config.tuning if posterior else None,
        training=config.training if neural else None,
        fast_compile=config.fast_compile,
        x64=config.x64,
        data_dir=config.data_dir,
    )  # fmt: skip


def _base_runs(config: BanditsConfig, dataset: str) -> list[Run]:
    """Baselines, then NeuralUCB/TS (Zhou's γ_t, kernel-limit γ_t at each λ, evidence, fixed γ)."""
    agents = [BASELINES[name] for name in config.baselines]
    agents = [a for a in agents if a.posterior != "diag" or dataset in config.diag_datasets]
    agents += [Agent("neural", m, exploration="zhou") for m in config.methods]
    lams = (None, *config.kernel_limit_prior_precisions)
    agents += [Agent("neural", m, exploration="kernel-limit", prior_precision=lam)
               for m in config.kernel_limit_methods for lam in lams]  # fmt: skip
    agents += [Agent("neural", m, exploration="evidence") for m in config.methods]
    for i, method in enumerate(config.fixed_methods):
        for g in config.fixed_gammas:
            if g > 0.0 or i == 0:  # γ = 0 is the same greedy agent for UCB and TS
                agents.append(Agent("neural", method, exploration="fixed", gamma=g))
    return [_run(config, dataset, a, config.network_of(a)) for a in agents]


def expand(config: BanditsConfig) -> list[Run]:
    """Specs: baselines and every NeuralUCB/TS variant at the base width, then the sweep."""
    runs = [run for ds in config.datasets for run in _base_runs(config, ds)]
    for ds in config.sweep_datasets:
        for network in config.sweep_networks:
            if ds in config.datasets and network == config.base_network:
                continue  # already run above
            runs += [_run(config, ds, a, network) for a in SWEPT]
    return runs


@dataclasses.dataclass(frozen=True)
class _Key:
    """What one compiled program is specialised to (the exploration and λ are traced)."""

    family: str
    posterior: str
    network: models.Network | None
    rounds: int
    tuning: Tuning | None
    training: Training | None
    static: bandits.Exploration | None  # compiled in: the diagonal (reference) posterior
    fast_compile: bool
    x64: bool

    @classmethod
    def of(cls, run: Run) -> "_Key":
        """The program ``run`` needs."""
        a = run.agent
        static = _exploration(run) if a.posterior == "diag" else None
        fields = (a.family, a.posterior, run.network, run.rounds, run.tuning, run.training)
        return cls(*fields, static, run.fast_compile, run.x64)


def _make_agent(key: _Key, exploration: bandits.Exploration, lam) -> bandits.Agent:
    """The library agent of ``key`` (built inside the jitted program)."""
    rounds = key.rounds
    if key.family == "random":
        return bandits.random_agent()
    tuning = key.tuning
    grid = bandits.ridge_grid(tuning.ridge_low, tuning.ridge_high, tuning.ridge_num)
    gp_kwargs = dict(
        exploration=exploration, prior_precision=lam, tune_every=tuning.tune_every,
        log_ridge_grid=grid,
    )  # fmt: skip
    if key.family == "linucb":
        return bandits.linucb(rounds, **gp_kwargs)
    arch = models.build(key.network)
    if key.family == "ntkgp":
        return bandits.ntk_gp_agent(arch, rounds, **gp_kwargs)
    return bandits.neural_agent(
        arch, rounds, posterior=key.posterior, exploration=exploration,
        schedule=key.training.schedule(tuning.tune_every), prior_precision=lam,
        log_ridge_grid=grid, ntk_algorithm="factors",
    )  # fmt: skip


@functools.cache
def _program(key: _Key):
    """One jitted ``(contexts, rewards, rng, exploration arrays, λ) -> (regret, info)``."""

    def run(contexts, rewards, rng, exploration, lam):
        exploration = exploration if key.static is None else key.static
        agent = _make_agent(key, exploration, lam)
        traj = bandits.run_bandit(agent, contexts, rewards, rng)
        return traj.regret, traj.info

    # Skipping LLVM's expensive passes cuts XLA CPU compile time by ~20% (11.0 -> 8.6 s
    # CPU for the NeuralUCB program) at ~+10% run time; compilation dominates this study.
    # Skipping all of its optimisation (fast_compile, the smoke profile) compiles ~2× faster.
    options = {"xla_llvm_disable_expensive_passes": True}
    return jax.jit(
        run, compiler_options=common.cpu_compile_options() if key.fast_compile else options
    )


def _exploration(run: Run) -> bandits.Exploration:
    """The library's exploration of ``run``'s agent (mode, UCB or TS, γ, and ν, δ, S)."""
    agent, theory = run.agent, run.theory
    if theory is None:  # random: unused
        return bandits.Exploration()
    return bandits.Exploration(
        agent.exploration, agent.gamma, agent.method == "ts",
        theory.nu, theory.delta, theory.norm_bound,
    )  # fmt: skip


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


def execute(run: Run, progress) -> dict:
    """Runs one agent on one data set for every seed; returns regret curves and scales."""
    with _single_threaded_blas():
        return _execute(run, progress)


def _execute(run: Run, progress) -> dict:
    if not run.x64:
        return _execute_in(run, progress, jnp.float32)
    with jax.enable_x64(True):  # traced and run in float64 (this run only)
        return _execute_in(run, progress, jnp.float64)


def _execute_in(run: Run, progress, dtype) -> dict:
    program = _program(_Key.of(run))
    args = (_exploration(run).as_arrays(), jnp.asarray(run.lam, dtype))
    index = curve_index(run.rounds, run.curve_points)
    out = {k: [] for k in ("final_regret", "regret_curve", "bonus_curve", "gamma_final")}
    out.update({k: [] for k in ("prior_precision_final", "noise_variance_final", "seconds")})
    out["clamps"] = []  # posterior updates whose Schur complement was clamped to ρ
    for i, seed in enumerate(run.seeds):
        env = data.make_bandit(run.dataset, data_dir=run.data_dir, num_rounds=run.rounds, seed=seed)
        start = time.perf_counter()
        regret, info = jax.block_until_ready(
            program(
                jnp.asarray(env.contexts, dtype),
                jnp.asarray(env.rewards, dtype),
                jax.random.key(seed),
                *args,
            )  # fmt: skip
        )
        out["seconds"].append(time.perf_counter() - start)
        info = {k: np.asarray(v, np.float64) for k, v in info.items()}
        if not all(np.isfinite(v).all() for v in info.values()):
            raise Diverged(f"non-finite posterior or scale for {run.agent.name} seed {seed}")
        cum = np.cumsum(np.asarray(regret, np.float64))
        out["final_regret"].append(cum[-1])
        out["regret_curve"].append(cum[index].tolist())
        out["bonus_curve"].append((info["gamma"] * info["sd"])[index].tolist())
        out["gamma_final"].append(info["gamma"][-1])
        out["prior_precision_final"].append(info["prior_precision"][-1])
        out["noise_variance_final"].append(info["noise_variance"][-1])
        out["clamps"].append(int(info["clamps"][-1]))
        progress(i + 1, len(run.seeds))
    return {**out, "curve_rounds": (index + 1).tolist()}


@functools.cache
def _arms_and_features(dataset: str, data_dir: str | None) -> tuple[int, int]:
    """``(K, d)``: classes and features of ``dataset`` (loaded once per process)."""
    ds = data.load(dataset, split="all", data_dir=data_dir)
    return ds.num_classes, math.prod(ds.x.shape[1:])


_OVERHEAD = 480 * 2**20  # XLA compiling an agent's program, and the runtime
_RANDOM_OVERHEAD = 160 * 2**20  # the random agent's program is a few operations


def memory_bytes(run: Run) -> int:
    """An upper bound on the memory one run adds to the process, from the spec alone.

    ``T`` rounds of ``K`` arms whose contexts have ``D = K d`` numbers (``d`` features of
    the data set), ``s`` bytes a number (4, or 8 with ``x64``). The seeds run one after
    another through one program, so one seed's memory counts. Every run holds the
    contexts ``(T, K, D)`` three times (float32 as built, in ``s`` bytes on the host and
    on the device: ``4 + 2s`` bytes an entry). The agents with a function-space posterior
    (LinUCB, the NTK-GP, NeuralUCB/TS with the full posterior, greedy included; not the
    diagonal one) hold ``(T, T)`` buffers: the inverse Cholesky factor, the Gram, its
    Cholesky and triangular solve at each refresh, and the float64 ``eigh`` of evidence
    re-tuning with its LAPACK workspace (``2T²`` float64); XLA's ``memory_analysis`` of
    their programs gives ``2.9-4.8 s T² + 1.2-1.9 · 8 T²`` (``T = 3000``, both dtypes),
    the bound takes ``(6s + 32) T²``. A neural agent also holds its buffer's NTK factors
    ``(T, F)``, ``F = D + 2·Σ widths + 1`` (four copies), eight copies of its ``P``
    parameters (current, initial, velocity, gradients of retraining) and, with the
    diagonal posterior, three of the ``(K, P)`` per-arm gradients; a GP agent four copies
    of the ``(T, D)`` buffer. Plus 480 MiB (160 MiB for the random agent). No cheaper
    path: a run whose bound does not fit is refused.

    Measured peak-RSS growth of :func:`execute` on this machine (a fresh process that has
    expanded its config first, as the runner does), one seed, against the bound:

    ===================================================  ========  =======  =====
    run                                                  measured  bound    ratio
    ===================================================  ========  =======  =====
    smoke: random, iris, T=40                            0.11 GB   0.17 GB  1.6
    smoke: NeuralUCB, iris, width 16, T=40               0.38 GB   0.50 GB  1.3
    embedded: random, digits, T=300                      0.12 GB   0.19 GB  1.5
    embedded: LinUCB, digits, T=300                      0.25 GB   0.53 GB  2.1
    embedded: NTK-GP evidence, digits, T=300             0.25 GB   0.53 GB  2.2
    embedded: NeuralUCB evidence, digits, width 100      0.39 GB   0.54 GB  1.4
    embedded: NeuralUCB diagonal, wine, width 100        0.26 GB   0.51 GB  2.0
    embedded: NeuralUCB evidence, wine, SP width 1024    0.39 GB   0.52 GB  1.3
    NeuralUCB evidence, iris, width 100, T=1500, x64     0.56 GB   0.69 GB  1.2
    NeuralUCB evidence, iris, width 100, T=3000, x64     1.00 GB   1.25 GB  1.2
    NTK-GP evidence, iris, T=3000, x64                   0.93 GB   1.23 GB  1.3
    random, digits, T=2000, x64                          0.32 GB   0.42 GB  1.3
    NeuralUCB, digits, width 1024, T=2000, x64           0.83 GB   1.29 GB  1.6
    NeuralUCB diagonal, digits, width 1024, T=2000, x64  0.60 GB   1.13 GB  1.9
    ===================================================  ========  =======  =====

    At paper size (digits, width 4096, ``T = 10000``, float64; not run here) XLA's buffers
    alone are 6.3 GB for NeuralUCB and 6.2 GB for the NTK-GP against bounds of 12.8 and
    10.0 GB.

    Tested above the measured peak and within 3× of it
    (``tests/experiments/test_memory_continual_bandits.py``).
    """
    s = 8 if run.x64 else 4
    t = run.rounds
    k, d = _arms_and_features(run.dataset, run.data_dir)
    contexts = t * k * (k * d) * (4 + 2 * s)
    family = run.agent.family
    if family == "random":
        return int(_RANDOM_OVERHEAD + contexts)
    gram = (6 * s + 32) * t * t
    if family in ("linucb", "ntkgp"):
        return int(_OVERHEAD + contexts + gram + 4 * t * k * d * s)
    network = run.network
    p, _ = memory.network_sizes(network, (k * d,))
    features = k * d + 2 * network.depth * network.hidden_width + network.out_dim
    total = _OVERHEAD + contexts + 4 * t * features * s + 8 * p * s
    if run.agent.posterior == "diag":
        return int(total + 3 * k * p * s)
    return int(total + gram)


def summarize(config: BanditsConfig, records: list[dict], outdir) -> Summary:
    """Figures (regret curves, width sweep, exploration bonus), tables and the C3 verdict."""
    outdir = Path(outdir)
    groups = analysis.group_records(records)
    base = config.base_network
    title = f"cumulative regret, width {base.width} ({base.parameterization})"
    figures = [
        plots.plot_regret_curves(
            analysis.base_curves(config, groups),
            config.datasets,
            outdir / "bandits_regret.png",
            title,
        ),  # fmt: skip
        plots.plot_bonus(
            analysis.base_bonus(config, groups), config.datasets, outdir / "bandits_bonus.png"
        ),
    ]
    sweep = analysis.sweep_finals(config, groups)
    if sweep:
        figures.append(
            plots.plot_width_sweep(sweep, config.sweep_datasets, outdir / "bandits_width.png")
        )
    c3, _, full = verdict.verdict_c3(config, groups)
    tables = {
        "bandits_final_regret": analysis.final_table(config, groups),
        "bandits_width_sweep": analysis.sweep_table(config, sweep),
        "bandits_c3": verdict.verdict_table(full),
    }
    text = analysis.summary_text(config, records)
    return Summary(figures, tables, [c3], text)


STUDY = Study(
    name="bandits",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
    memory=memory_bytes,
)
