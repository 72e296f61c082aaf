"""The paper-profile programs of the sequential studies: bandit rounds and task streams.

Both studies loop over data-dependent counts inside their programs (a bandit's
retraining schedule; continual training until a target accuracy), so their programs are
counted in parts or at the loops' extreme trip counts; see each function. Shared
conventions: :mod:`benchmarks.paper_programs`.
"""

import math
from collections.abc import Callable
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flops import Cost, abstract, innermost_caller, program_cost, program_costs
from benchmarks.paper_programs import Work, paper_config, sds
from ntk_limits import continual, data, models
from ntk_limits.data import _standin
from ntk_limits_experiments import common
from ntk_limits_experiments.bandits import study as bs
from ntk_limits_experiments.continual import networks
from ntk_limits_experiments.continual.config import KernelRun

__all__ = ["bandits_work", "continual_work"]


# --- bandits ---------------------------------------------------------------------------


def _bandit_components(key, dims: tuple[int, int], dtype):
    """``{name: (fn, abstract args)}`` of one agent program's parts (see :func:`bandits_work`).

    The agent is built by the study's ``_make_agent`` inside each function from traced
    exploration arrays and λ, as the study's program builds it.
    """

    arms, features = dims
    static = key.static  # the reference exploration is compiled in, as the study does
    agent_of = lambda expl, lam: bs._make_agent(key, expl if static is None else static, lam)
    expl = abstract(bs.bandits.Exploration("zhou").as_arrays())
    lam, rng = sds((), dtype), jax.eval_shape(jax.random.key, 0)
    ctx, rew, t = sds((arms, arms * features), dtype), sds((arms,), dtype), sds((), jnp.int32)
    init = lambda e, lam, rng, ctx0: agent_of(e, lam).init(rng, ctx0)
    state = jax.eval_shape(init, expl, lam, rng, ctx)

    def one_round(e, lam, state, ctx, rew, rng, t):
        agent = agent_of(e, lam)
        arm, info = agent.select(state, ctx, rng)
        step = agent.observe if agent.refresh_after is not None else agent.update
        return step(state, ctx[arm], rew[arm], t), arm, info

    refresh = lambda e, lam, state, t: agent_of(e, lam).refresh(state, t)
    parts = {"init": (init, (expl, lam, rng, ctx)),
             "round": (one_round, (expl, lam, state, ctx, rew, rng, t))}  # fmt: skip
    if agent_of(expl, lam).refresh_after is not None:
        parts["refresh"] = (refresh, (expl, lam, state, t))
    return parts, agent_of


def _refresh_schedule(agent, rounds: int) -> list[int]:
    """Observation counts at each refresh (``run_bandit``'s segment ends)."""
    ends = [t + 1 for t in range(rounds) if agent.refresh_after(t)]
    return ends if ends and ends[-1] == rounds else [*ends, rounds]


def bandits_work() -> list[Work]:
    """Per seed of a run: the agent's ``init``, ``T`` rounds and its refreshes (retrainings).

    The study runs ``T`` rounds in one program (``run_bandit``); its parts are lowered
    separately at the run's shapes and multiplied by how often they run, which the
    schedule fixes: a round (``select`` then ``observe``/``update``) ``T`` times, a
    neural agent's refresh (``_run_segments``: after each of the first ``train_first``
    rounds and every ``train_every`` after, and at the end) once per segment. Inside a
    refresh, ``fit_network`` loops over ``ceil(n/64)`` blocks of the ``n`` observations so
    far (a data-dependent ``fori_loop``): its trip count is the mean over the refreshes,
    which makes the total exact. Evidence re-tuning is a ``cond``: taken at the refreshes
    whose count is a multiple of ``tune_every`` for evidence agents only (the other
    agents compile it and never take it); for LinUCB and the NTK-GP at every
    ``tune_every``-th round whatever the exploration (their re-tuning branch refactors the
    posterior even when it keeps λ and ρ). UCB and TS, and every γ, share a program and
    are counted alike (TS draws ``K`` normals more per round). The per-round bookkeeping
    of ``run_bandit`` (writing the outputs) is left out.
    """

    study, config = paper_config("bandits")
    cache, out = {}, []
    for run in study.expand(config):
        key = bs._Key.of(run)
        evidence = run.agent.exploration == "evidence"
        memo = (key, run.dataset, evidence and run.agent.family == "neural")
        if memo not in cache:
            cache[memo] = _bandit_run_cost(key, run, evidence)
        per_seed, dtype, note = cache[memo]
        label = f"{run.dataset}: {run.agent.name}" + (
            f" ({run.network.name})" if run.network else ""
        )
        out.append(Work("bandits", label, len(run.seeds), per_seed, dtype, note=note))
    return out


def _retune(weights):
    """Branch weights for the agents' re-tuning ``cond`` only (others: as XLA counts them)."""

    def pick(eqn):
        path, function = innermost_caller(eqn)
        agent = path.endswith(("bandits/kernel_agents.py", "bandits/neural.py"))
        return weights if agent and function.split(".")[-1] in ("update", "retrain") else None

    return pick


def _one_cond(report) -> Cost:
    """The cost, after checking that the weights went to exactly one ``cond``."""
    if report.weighted_conds != 1:
        raise RuntimeError(f"re-tuning weights reached {report.weighted_conds} conds, not 1")
    return report.cost


def _bandit_run_cost(key, run, evidence: bool) -> tuple[Cost, str, str]:
    """One seed's cost of ``run``: ``(cost, dtype, note)``."""

    dims = bs._arms_and_features(run.dataset, run.data_dir)
    dtype = jnp.float64 if run.x64 else jnp.float32
    rounds, tune = run.rounds, run.tuning.tune_every if run.tuning else None
    with jax.enable_x64(run.x64):
        parts, agent_of = _bandit_components(key, dims, dtype)
        fn, args = parts["init"]
        total = program_cost(fn, *args).cost
        weights = None
        if key.family in ("linucb", "ntkgp"):
            taken = (rounds // tune) / rounds
            weights = (1.0 - taken, taken)
        fn, args = parts["round"]
        report = program_cost(fn, *args, cond_weights=weights and _retune(weights))
        total = total + (_one_cond(report) if weights else report.cost).scale(rounds)
        note = f"T={rounds}"
        if "refresh" in parts:
            agent = agent_of(*args[:2])
            counts = _refresh_schedule(agent, rounds)
            blocks = float(np.mean([math.ceil(n / min(64, rounds)) for n in counts]))
            tuned = sum(n % tune == 0 for n in counts) if evidence else 0
            fn, args = parts["refresh"]
            weights = (1.0 - tuned / len(counts), tuned / len(counts))
            report = program_cost(fn, *args, while_trips=blocks, cond_weights=_retune(weights))
            cost = _one_cond(report) if key.posterior == "full" else report.cost
            total = total + cost.scale(len(counts))
            note += f", {len(counts)} refreshes (mean {blocks:.1f} blocks), {tuned} re-tunings"
    return total, ("float64" if run.x64 else "float32"), note


# --- continual ------------------------------------------------------------------------


def _stream_shapes(spec, flatten: bool):
    """Abstract ``TaskArrays`` of ``spec``'s stream at the stand-in's (= paper set's) sizes.

    Split streams get ``n_train / T`` and ``n_test / T`` examples per task (the classes of
    a stand-in are drawn at random, so its tasks are cut to the smallest one, a few
    examples fewer). Nothing is loaded.
    """

    stream = spec.stream
    dataset = data.STREAMS[stream.benchmark][0]
    sizes = _standin.IMAGES[_standin.real_name(dataset)]
    tasks = data.stream_heads(stream.benchmark)[0]
    n, m = sizes.n_train, sizes.n_test
    n, m = stream.n_train or n, stream.n_test or m
    if stream.split:
        n, m = n // tasks, m // tasks
    shape = (math.prod(sizes.shape),) if flatten else sizes.shape
    head, _ = networks.stream_heads(stream, None)
    int32 = lambda *s: sds(s, jnp.int32)
    x_train, x_test = sds((tasks, n, *shape)), sds((tasks, m, *shape))
    arrays = continual.TaskArrays(x_train, int32(tasks, n), x_test, int32(tasks, m), int32(tasks))
    return arrays, head


def _record_compiles(module, call: Callable[[], object]) -> list:
    """Every ``(fn, args)`` that ``call`` compiles through ``module.compile_jit``.

    The stand-in returns the program's abstract outputs (``jax.eval_shape``), so ``call``
    goes on as far as it only passes results on.
    """
    seen = []

    def fake(fn, args, *rest, **kwargs):
        seen.append((fn, args))
        return lambda *a: jax.eval_shape(fn, *abstract(a))

    with mock.patch.object(module, "compile_jit", fake):
        call()
    return seen


def _network_run(spec) -> list[Work]:
    """A finite or linearised network run: init, then one program per epochs setting.

    The program trains every member on each task in a ``while`` loop over epochs: exact
    for the fixed settings, and between 1 epoch and ``max_epochs`` for train-until-target
    (``cost`` and ``cost_high``). Its cost is linear in the epochs: lowered at 1 and 2.
    """

    flatten = spec.network.kind == "mlp"
    stream, head = _stream_shapes(spec, flatten)
    archs = networks.both_parameterizations(spec.network)
    probe = sds((max(spec.probe_size, 1), *stream.x_test.shape[2:]))

    def build():
        members = networks.init_members(archs["standard"], spec, stream)
        networks.sequential_program(archs, members, stream, probe, head_size=head,
                                    batch_size=spec.batch_size,
                                    linearized=spec.kind == "linearized")  # fmt: skip

    (init_fn, init_args), (fn, args) = _record_compiles(common, build)
    name = f"{spec.stream.benchmark} {spec.kind} {spec.network.name}"
    out = [Work("continual", f"{name}: init", 1, program_cost(init_fn, *abstract(init_args)).cost)]
    one, two = (c.cost for c in program_costs(fn, *abstract(args), while_trips=(1, 2)))
    at = lambda epochs: one + (two - one).scale(epochs - 1)
    members = len(spec.parameterizations) * len(spec.seeds)
    for setting in spec.settings:
        fixed = setting.target_accuracy > 1
        label = f"{name}: {members} members, " + (
            f"{setting.max_epochs} epochs per task" if fixed
            else f"until {setting.target_accuracy:g} accuracy, <= {setting.max_epochs} epochs"
        )  # fmt: skip
        high = None if fixed else at(setting.max_epochs)
        note = "" if fixed else "cost: 1 epoch per task; cost_high: every task at max_epochs"
        out.append(Work("continual", label, 1, at(setting.max_epochs if fixed else 1),
                        note=note, cost_high=high))  # fmt: skip
    return out


def _kernel_run(spec) -> list[Work]:
    """The infinite-width NTK run: the blocked kernel's tiles, the regressions (f64, f32)."""

    stream, head = _stream_shapes(spec, flatten=spec.network.kind == "mlp")
    t, n = stream.y_train.shape
    n = min(n, spec.max_train or n)
    stream = stream._replace(x_train=sds((t, n, *stream.x_train.shape[2:])),
                             y_train=sds((t, n), jnp.int32))  # fmt: skip
    rows, cols, feature = t * (n + stream.y_test.shape[1]), t * n, stream.x_train.shape[2:]
    tiles = math.ceil(rows / spec.block) * math.ceil(cols / spec.block)
    kernel_fn = models.build(spec.network).kernel_fn
    tile = lambda a, b: kernel_fn(a, b, "ntk")
    block = sds((spec.block, *feature))
    name = f"{spec.stream.benchmark} infinite NTK"
    out = [Work("continual", f"{name}: {tiles} tiles of {spec.block}", tiles,
                program_cost(tile, block, block).cost)]  # fmt: skip
    regression = lambda k, s, times: continual.sequential_kernel_regression(
        k, s, times, head_size=head, out_dim=spec.network.out_dim, learning_rate=spec.lr,
        diag_reg=spec.diag_reg)  # fmt: skip
    for dtype, x64 in (("float64", True), ("float32", False)):
        cast = lambda a, d=jnp.dtype(dtype): sds(a.shape, d if a.dtype == jnp.float32 else a.dtype)
        with jax.enable_x64(x64):
            args = (sds((rows, cols), dtype), jax.tree_util.tree_map(cast, stream),
                    sds((len(spec.all_times),), dtype))  # fmt: skip
            cost = program_cost(regression, *args).cost
        out.append(Work("continual", f"{name}: regression ({dtype})", 1, cost, dtype))
    return out


def continual_work() -> list[Work]:
    """Every network run (:func:`_network_run`) and kernel run (:func:`_kernel_run`)."""

    study, config = paper_config("continual")
    out = []
    for spec in study.expand(config):
        out += _kernel_run(spec) if isinstance(spec, KernelRun) else _network_run(spec)
    return out
