"""Aggregation and tables of the bandit study (pure numpy on records; C3: ``verdict.py``).

Records are grouped by the typed values of their spec, ``(data set, Agent, Network)``
(:meth:`Run.from_json`); agents are selected by their fields and shown by their derived
names.
"""

import math

import numpy as np

from ntk_limits import bandits
from ntk_limits_experiments import common
from ntk_limits_experiments.bandits.config import SWEPT, Agent, BanditsConfig, Run

__all__ = [
    "agent_order",
    "base_bonus",
    "base_curves",
    "final_table",
    "group_records",
    "sweep_finals",
    "sweep_table",
    "summary_text",
]

_FAMILIES = ("neural", "ntkgp", "linucb", "random")


def agent_order(agent: Agent) -> tuple:
    """Sort key of tables and legends: neural, NTK-GP, LinUCB, random, then by fields.

    Within a family: full before diagonal posterior, UCB before TS, exploration (Zhou,
    kernel-limit, fixed, evidence, reference), γ, λ (the config's first).
    """
    return (
        _FAMILIES.index(agent.family), agent.posterior != "full", agent.method != "ucb",
        bandits.EXPLORATIONS.index(agent.exploration), agent.gamma, agent.prior_precision or 0.0,
    )  # fmt: skip


def group_records(records: list[dict]) -> dict:
    """``{(dataset, Agent, Network | None): metrics}`` of the finished runs."""
    groups = {}
    for r in records:
        if r["status"] == "ok":
            run = Run.from_json(r["spec"])
            groups[(run.dataset, run.agent, run.network)] = r["metrics"]
    return groups


def _base(config: BanditsConfig, groups: dict) -> dict:
    """``{(dataset, Agent): metrics}`` of the runs at each agent's base network."""
    return {
        (ds, agent): m
        for (ds, agent, network), m in groups.items()
        if ds in config.datasets and network == config.network_of(agent)
    }


def _sorted(items: dict) -> dict:
    return dict(sorted(items.items(), key=lambda kv: (kv[0][0], agent_order(kv[0][1]))))


def base_curves(config: BanditsConfig, groups: dict) -> dict:
    """``{(dataset, Agent): (rounds (R,), cum_regret (S, R))}`` at the base width."""
    return _sorted(
        {
            k: (np.asarray(m["curve_rounds"]), np.asarray(m["regret_curve"]))
            for k, m in _base(config, groups).items()
        }
    )


def base_bonus(config: BanditsConfig, groups: dict) -> dict:
    """``{(dataset, Agent): (rounds (R,), γσ (S, R))}`` of the UCB agents with a posterior."""
    return _sorted(
        {
            (ds, a): (np.asarray(m["curve_rounds"]), np.asarray(m["bonus_curve"]))
            for (ds, a), m in _base(config, groups).items()
            if a.method == "ucb" and a.family != "random" and not a.is_greedy
        }
    )


def sweep_finals(config: BanditsConfig, groups: dict) -> dict:
    """``{(dataset, Agent, parameterization): (widths (W,), final (S, W))}`` of the sweep."""
    out = {}
    for ds in config.sweep_datasets:
        for agent in SWEPT:
            for par in ("ntk", "standard"):
                networks = [
                    n
                    for n in config.sweep_networks
                    if n.parameterization == par and (ds, agent, n) in groups
                ]
                if networks:
                    rows = [groups[(ds, agent, n)]["final_regret"] for n in networks]
                    widths = np.asarray([n.width for n in networks])
                    out[(ds, agent, par)] = (widths, np.asarray(rows).T)
    return out


def _stats(values) -> tuple[float, float]:
    v = np.asarray(values, float)
    se = v.std(ddof=1) / math.sqrt(v.size) if v.size > 1 else 0.0
    return float(v.mean()), float(se)


def _fmt(values) -> str:
    mean, se = _stats(values)
    return f"{mean:.1f} ± {se:.1f}"


def final_table(config: BanditsConfig, groups: dict) -> str:
    """Markdown: final cumulative regret (mean ± SE over seeds) per agent and data set."""
    base = _base(config, groups)
    agents = sorted({a for _, a in base}, key=agent_order)
    rows = [
        [a.name]
        + [_fmt(base[(d, a)]["final_regret"]) if (d, a) in base else "—" for d in config.datasets]
        for a in agents
    ]
    return common.markdown_table(["agent", *config.datasets], rows)


def sweep_table(config: BanditsConfig, sweep: dict) -> str:
    """Markdown: final regret vs width per data set, agent and parametrisation."""
    widths = sorted(set(config.widths) | set(config.standard_widths))
    rows = []
    for (ds, agent, par), (ws, finals) in sorted(
        sweep.items(), key=lambda kv: (kv[0][0], agent_order(kv[0][1]), kv[0][2])
    ):
        cells = {int(w): _fmt(finals[:, i]) for i, w in enumerate(ws)}
        rows.append([ds, agent.name, par] + [cells.get(w, "—") for w in widths])
    return common.markdown_table(["data set", "agent", "param"] + [f"w={w}" for w in widths], rows)


def summary_text(config: BanditsConfig, records: list[dict]) -> str:
    """A short markdown paragraph: what ran, γ_T of the theory agents, repairs, time."""
    seconds = sum(sum(r["metrics"].get("seconds", [])) for r in records if r["status"] == "ok")
    failed = [Run.from_json(r["spec"]).agent.name for r in records if r["status"] != "ok"]
    parts = [
        f"{len(config.datasets)} data sets × {len(config.seeds)} seeds, T = "
        + ", ".join(f"{config.rounds_of(ds)} ({ds})" for ds in config.datasets)
        + f" rounds, width {config.width} "
        f"({config.base_parameterization}), λ = {config.prior_precision}, ν = "
        f"{config.nu}, δ = {config.delta}, S = {config.norm_bound}; width sweep "
        f"NTP {list(config.widths)}, SP {list(config.standard_widths)} on "
        f"{list(config.sweep_datasets)}. "
        f"Agent time {seconds:.0f} s (first call of each program includes compilation)."
    ]
    base = _base(config, group_records(records))
    for (ds, agent), m in sorted(base.items(), key=lambda kv: (kv[0][0], agent_order(kv[0][1]))):
        if agent.exploration in ("zhou", "kernel-limit") and agent.family == "neural":
            parts.append(
                f"{ds}/{agent.name}: γ_T ≈ {_stats(m['gamma_final'])[0]:.3g}, regret "
                f"{_fmt(m['final_regret'])}."
            )
    clamped = {
        Run.from_json(r["spec"]).agent.name: sum(r["metrics"].get("clamps", [0]))
        for r in records
        if r["status"] == "ok" and sum(r["metrics"].get("clamps", [0]))
    }
    ridges = [
        (lam * noise, Run.from_json(r["spec"]).tuning.ridge_low)
        for r in records
        if r["status"] == "ok" and Run.from_json(r["spec"]).agent.exploration == "evidence"
        for lam, noise in zip(
            r["metrics"]["prior_precision_final"], r["metrics"]["noise_variance_final"], strict=True
        )
    ]
    if ridges:
        floor = sum(rho <= low * (1 + 1e-3) for rho, low in ridges)
        parts.append(
            f"Evidence-tuned agents end at the grid's smallest ridge ρ in {floor} of "
            f"{len(ridges)} seed runs (the evidence prefers noise-free fits)."
        )
    parts.append(
        "Posterior updates clamped to ρ (Schur complement rounded below it): "
        + (", ".join(f"{k} {v}" for k, v in clamped.items()) if clamped else "none")
        + "."
    )
    if failed:
        parts.append(f"Runs not ok: {', '.join(failed)}.")
    return " ".join(parts)
