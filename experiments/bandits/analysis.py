"""Aggregation, tables and the C3 verdict of the bandit study (pure numpy on records).

Records are grouped by the typed values of their spec, ``(data set, Agent, Network)``
(:meth:`Run.from_json`); agents are selected by their fields and shown by their derived
names.
"""

import math
from dataclasses import replace

import numpy as np

from ntk_limits import bandits
from ntk_limits_experiments import claims, common
from ntk_limits_experiments.bandits.config import Agent, BanditsConfig, Run
from ntk_limits_experiments.study import Verdict

__all__ = [
    "agent_order",
    "base_bonus",
    "base_curves",
    "final_table",
    "group_records",
    "sweep_finals",
    "sweep_table",
    "summary_text",
    "verdict_c3",
    "verdict_table",
]

_FAMILIES = ("neural", "ntkgp", "linucb", "random")


def agent_order(agent: Agent) -> tuple:
    """Sort key of tables and legends: neural, NTK-GP, LinUCB, random, then by fields.

    Within a family: full before diagonal posterior, UCB before TS, exploration (theory,
    fixed, evidence), γ, λ (the config's first).
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


_SWEPT = tuple(Agent("neural", "ucb", exploration=e) for e in ("theory", "evidence"))


def sweep_finals(config: BanditsConfig, groups: dict) -> dict:
    """``{(dataset, Agent, parameterization): (widths (W,), final (S, W))}`` of the sweep."""
    out = {}
    for ds in config.sweep_datasets:
        for agent in _SWEPT:
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


def _theories(config: BanditsConfig, base: dict, ds: str, method: str) -> dict:
    """The full-posterior theory-γ_t agents of ``method`` on ``ds``.

    Ordered (ties go to the first): the config's λ, then ``theory_prior_precisions``.
    """
    lams = (None, *config.theory_prior_precisions)
    theory = Agent("neural", method)  # at the config's λ; the others differ in λ only
    found = {
        a: m
        for (d, a), m in base.items()
        if d == ds and a.prior_precision in lams and replace(a, prior_precision=None) == theory
    }
    return dict(sorted(found.items(), key=lambda am: lams.index(am[0].prior_precision)))


def _alternatives(config: BanditsConfig, base: dict, ds: str, method: str) -> dict:
    """The alternatives to theory γ_t: full-posterior agents of ``method`` on ``ds``.

    Ordered (ties go to the first): each fixed γ of ``fixed_gammas`` in config order (the
    greedy agent, γ = 0, serves both methods), then evidence tuning.
    """

    def rank(a: Agent) -> int | None:
        if (a.family, a.posterior, a.prior_precision) != ("neural", "full", None):
            return None
        if a.exploration == "fixed" and (a.is_greedy or a.method == method):
            return config.fixed_gammas.index(a.gamma) if a.gamma in config.fixed_gammas else None
        if a.exploration == "evidence" and a.method == method:
            return len(config.fixed_gammas)
        return None

    found = {a: m for (d, a), m in base.items() if d == ds and rank(a) is not None}
    return dict(sorted(found.items(), key=lambda am: rank(am[0])))


def _case(config: BanditsConfig, base: dict, ds: str, method: str) -> dict | None:
    theories = _theories(config, base, ds, method)
    alts = _alternatives(config, base, ds, method)
    if not theories or not alts:
        return None
    best_theory = min(theories, key=lambda a: _stats(theories[a]["final_regret"])[0])
    theory = theories[best_theory]
    t_mean, t_se = _stats(theory["final_regret"])
    best = min(alts, key=lambda a: _stats(alts[a]["final_regret"])[0])
    b_mean, b_se = _stats(alts[best]["final_regret"])
    gap = (t_mean - b_mean) / max(math.hypot(t_se, b_se), 1e-12)
    ev = alts.get(Agent("neural", method, exploration="evidence"))
    ev_mean = _stats(ev["final_regret"])[0] if ev else float("nan")
    return {
        "dataset": ds, "method": method, "theory_agent": best_theory.name, "theory": t_mean,
        "theory_se": t_se,
        "best": best.name, "best_mean": b_mean, "best_se": b_se,
        "ratio": t_mean / max(b_mean, 1e-12), "gap_sigmas": gap,
        "evidence_ratio": t_mean / max(ev_mean, 1e-12),
        "theory_gamma_final": _stats(theory["gamma_final"])[0],
        "theory_prior_precision": _stats(theory.get("prior_precision_final", [math.nan]))[0],
    }  # fmt: skip


def verdict_c3(config: BanditsConfig, groups: dict) -> tuple[Verdict, list[dict]]:
    """C3 from the base-width runs: theory γ_t against the best alternative per data set."""
    base = _base(config, groups)
    cases = [
        c for ds in config.datasets for m in config.methods if (c := _case(config, base, ds, m))
    ]
    thr, sig = config.ratio_threshold, config.sigmas
    rule = (
        f"per data set and method (width {config.width}, {config.base_parameterization}): "
        f"ratio = mean final regret of the best theory-γ_t agent (λ ∈ "
        f"{[config.prior_precision, *config.theory_prior_precisions]}) / of the best "
        f"alternative (fixed γ ∈ "
        f"{list(config.fixed_gammas)}, γ=0 greedy, or evidence-tuned); holds if every ratio ≥ "
        f"{thr} and the gap exceeds {sig} combined seed SEs; fails if any ratio ≤ 1; "
        "inconclusive otherwise"
    )
    if not cases:
        return claims.verdict("C3", "not run", rule, {}), []
    if all(c["ratio"] >= thr and c["gap_sigmas"] > sig for c in cases):
        decision = "holds"
    elif any(c["ratio"] <= 1.0 for c in cases):
        decision = "fails"
    else:
        decision = "inconclusive"
    evidence = {
        f"{c['dataset']}/{c['method']}": {
            k: (round(v, 4) if isinstance(v, float) else v)
            for k, v in c.items()
            if k not in ("dataset", "method")
        }
        for c in cases
    }
    return claims.verdict("C3", decision, rule, evidence), cases


def verdict_table(cases: list[dict]) -> str:
    """Markdown: the numbers the C3 rule is applied to."""
    header = [
        "data set", "method", "best theory agent", "its regret", "γ_T", "best alternative",
        "its regret", "ratio", "gap (SE)", "theory / evidence",
    ]  # fmt: skip
    rows = [
        [
            c["dataset"],
            c["method"],
            c["theory_agent"],
            f"{c['theory']:.1f} ± {c['theory_se']:.1f}",
            f"{c['theory_gamma_final']:.2f}",
            c["best"],
            f"{c['best_mean']:.1f} ± {c['best_se']:.1f}",
            f"{c['ratio']:.2f}",
            f"{c['gap_sigmas']:.1f}",
            f"{c['evidence_ratio']:.2f}",
        ]  # fmt: skip
        for c in cases
    ]
    return common.markdown_table(header, rows)


def _zhou(config: BanditsConfig, gamma_final: float, lam: float) -> float:
    """Zhou et al.'s full γ_T at the base width from the theory agent's final log det."""
    nu = config.nu
    ratio = ((gamma_final - math.sqrt(lam) * config.norm_bound) / nu) ** 2
    ratio += 2.0 * math.log(config.delta)
    e = bandits.Exploration("theory", nu=nu, delta=config.delta, norm_bound=config.norm_bound)
    # Training term taken as converged (η m λ = 1): the approximation terms remain.
    return bandits.zhou_gamma(
        float(config.rounds), ratio, width=config.width, depth=2, prior_precision=lam,
        learning_rate=1.0 / (config.width * lam), steps=config.train_steps, exploration=e,
    )  # fmt: skip


def summary_text(config: BanditsConfig, cases: list[dict], records: list[dict]) -> str:
    """A short markdown paragraph: what ran, what was seen, how long it took."""
    seconds = sum(sum(r["metrics"].get("seconds", [])) for r in records if r["status"] == "ok")
    failed = [Run.from_json(r["spec"]).agent.name for r in records if r["status"] != "ok"]
    parts = [
        f"{len(config.datasets)} data sets × {len(config.seeds)} seeds, T = "
        f"{config.rounds} rounds, width {config.width} "
        f"({config.base_parameterization}), λ = {config.prior_precision}, ν = "
        f"{config.nu}, δ = {config.delta}, S = {config.norm_bound}; width sweep "
        f"NTP {list(config.widths)}, SP {list(config.standard_widths)} on "
        f"{list(config.sweep_datasets)}. "
        f"Agent time {seconds:.0f} s (first call of each program includes compilation)."
    ]
    for c in cases:
        parts.append(
            f"{c['dataset']}/{c['method']}: {c['theory_agent']} (λ = "
            f"{c['theory_prior_precision']:g}) γ_T ≈ {c['theory_gamma_final']:.1f}, regret "
            f"{c['theory']:.1f} vs {c['best']} {c['best_mean']:.1f} (ratio {c['ratio']:.2f}); "
            f"Zhou et al.'s full finite-width γ_T would be "
            f"{_zhou(config, c['theory_gamma_final'], c['theory_prior_precision']):.3g}."
        )
    if failed:
        parts.append(f"Runs not ok: {', '.join(failed)}.")
    return " ".join(parts)
