"""The C3 verdict: Zhou et al.'s γ_t against tuned or evidence exploration, paired by seed.

:func:`collect` turns the grouped records into *cases* (plain data: per-seed final regrets
of the theory agents and the alternatives of one data set × method × network);
:func:`decide_c3` applies the rule (:data:`RULE`) to them with every choice as a keyword,
so that :func:`verdict_c3` can recompute it under the robustness alternatives. Pairing:
every run plays the seeds of the config in order, and seed ``s`` fixes the data order
(``data.make_bandit(..., seed=s)``) and the key of the agent (``jax.random.key(s)``, whose
first split initialises the network), so agents at one network share data order and
``θ₀`` seed by seed; per-seed differences remove both.
"""

import math

import numpy as np

from ntk_limits_experiments import claims, common, robustness, stats
from ntk_limits_experiments.bandits.config import Agent, BanditsConfig
from ntk_limits_experiments.study import Verdict

__all__ = [
    "RULE",
    "base_choices",
    "case_outcome",
    "collect",
    "decide_c3",
    "evidence_c3",
    "rule_text",
    "verdict_c3",
    "verdict_table",
]

RULE = (
    "C3. Cases: each data set × method at the base network (width {width}, {par}), and "
    "each network of the width sweep (NTP {widths}, SP {swidths}) on {sweep} (UCB). In a "
    "case the theory agents are the full-posterior NeuralUCB/TS agents with Zhou et al. "
    "(2020)'s γ_t (C₁ = C₂ = C₃ = 1, optimisation term dropped: the smallest γ_t the "
    "formula allows) at the run's λ = {lam} (the kernel-limit agents of the robustness "
    "check also at λ ∈ {lams}); the alternatives are those of the same "
    "method with a fixed γ ({gammas}; 0 is the greedy network) or evidence-tuned λ, σ². "
    "Effect: per-seed log((regret_theory + 1) / (regret_alternative + 1)) over {n} seeds, "
    "paired by seed (same data order and initialisation). A case supports the claim if "
    "every theory agent is beaten by some alternative: the Student-t (1 − α/k) interval of "
    "the mean effect lies above 0 and the effect is not shown to lie within the margin, "
    "Bonferroni over the case's k alternatives, so the best alternative is not chosen "
    "after the fact (α = {alpha}); it contradicts the claim if "
    "some theory agent, against every alternative, is better (1 − α interval below 0) or "
    "equivalent (TOST at α, margin ±log {margin}: regrets within a factor {margin}, the "
    "smallest difference worth switching exploration for). C3 holds if every case "
    "supports it (NTP and SP, every width: 'alike'), fails if any case contradicts it, "
    "and is inconclusive otherwise (the undecided cases and why are in the evidence)."
)


def _finals(groups: dict, ds: str, agent: Agent, network) -> list[float] | None:
    m = groups.get((ds, agent, network))
    return None if m is None else [float(v) for v in m["final_regret"]]


def _greedy(groups: dict, ds: str, network) -> list[float] | None:
    found = [m for (d, a, n), m in groups.items() if d == ds and n == network and a.is_greedy]
    return [float(v) for v in found[0]["final_regret"]] if found else None


def _case(config, groups, ds, method, network, lams, gammas) -> dict | None:
    """One case: per-seed finals of both theory kinds and of the alternatives (names)."""
    theories = {}
    for mode in ("zhou", "kernel-limit"):
        agents = [Agent("neural", method, exploration=mode, prior_precision=lam) for lam in lams]
        found = {a.name: _finals(groups, ds, a, network) for a in agents}
        theories[mode] = {k: v for k, v in found.items() if v is not None}
    alts = {}
    for g in gammas:
        if g == 0.0:
            alts["greedy"] = _greedy(groups, ds, network)
        else:
            a = Agent("neural", method, exploration="fixed", gamma=g)
            alts[a.name] = _finals(groups, ds, a, network)
    evidence = Agent("neural", method, exploration="evidence")
    alts[evidence.name] = _finals(groups, ds, evidence, network)
    alts = {k: v for k, v in alts.items() if v is not None}
    if not alts or not any(theories.values()):
        return None
    label = f"{ds}/{method}/{network.parameterization}-{network.width}"
    return {
        "label": label, "dataset": ds, "method": method, "width": network.width,
        "parameterization": network.parameterization, "seeds": list(config.seeds),
        "theories": theories, "alternatives": alts,
    }  # fmt: skip


def collect(config: BanditsConfig, groups: dict) -> list[dict]:
    """The cases of the rule (see :data:`RULE`), base network first, then the sweep."""
    base = config.base_network
    lams = (None, *config.kernel_limit_prior_precisions)
    cases = [
        _case(config, groups, ds, m, base, lams, config.fixed_gammas)
        for ds in config.datasets
        for m in config.methods
    ]
    for ds in config.sweep_datasets:
        for network in config.sweep_networks:
            if not (ds in config.datasets and network == base):  # else a base case
                cases.append(_case(config, groups, ds, "ucb", network, (None,), ()))
    return [c for c in cases if c is not None]


def _effects(theory: list[float], alt: list[float], idx: list[int]) -> np.ndarray:
    """Per-seed log((theory + 1) / (alternative + 1)) on the seeds ``idx``."""
    t, a = np.asarray(theory, float)[idx], np.asarray(alt, float)[idx]
    return np.log((t + 1.0) / (a + 1.0))


def case_outcome(case: dict, *, seeds, theory: str, margin_ratio: float, alpha: float) -> dict:
    """``{"outcome": "supports" | "contradicts" | "undecided", ...}`` of one case.

    Args:
      case: one entry of :func:`collect`.
      seeds: the seeds to use (a subset of ``case["seeds"]``).
      theory: ``"zhou"`` or ``"kernel-limit"``: which γ_t the theory agents use.
      margin_ratio: equivalence margin as a ratio of regrets (``> 1``).
      alpha: the test level.

    Returns:
      The outcome, and per theory agent its best alternative (largest mean effect), the
      ratio ``exp(mean effect)`` with its ``1 − α/k`` interval, the calls and ``n``.
    """
    idx = [case["seeds"].index(s) for s in seeds if s in case["seeds"]]
    alts, margin = case["alternatives"], math.log(margin_ratio)
    per_theory, beaten, matched = {}, [], []
    for name, finals in case["theories"].get(theory, {}).items():
        effects = {a: _effects(finals, v, idx) for a, v in alts.items()}
        strict = {a: stats.call(e, margin, alpha / len(alts)) for a, e in effects.items()}
        plain = {a: stats.call(e, margin, alpha)[0] for a, e in effects.items()}
        best = max(strict, key=lambda a: strict[a][1]["estimate"])
        info = strict[best][1]
        beaten.append(any(c == "positive" for c, _ in strict.values()))
        matched.append(all(c in ("negative", "equivalent") for c in plain.values()))
        per_theory[name] = {
            "best_alternative": best, "ratio": math.exp(info["estimate"]),
            "ratio_ci": [math.exp(v) for v in info["ci"]], "level": 1 - alpha / len(alts),
            "n": info["n"], "calls": {a: c for a, (c, _) in strict.items()},
        }  # fmt: skip
    if not per_theory:
        outcome = "undecided"
    elif any(matched):
        outcome = "contradicts"
    elif all(beaten):
        outcome = "supports"
    else:
        outcome = "undecided"
    return {"outcome": outcome, "theories": per_theory, "alternatives": len(alts)}


def _kept(cases, parameterizations, exclude_widths, theory) -> list[dict]:
    """The cases the choices keep: parametrisation, width, and a ``theory`` agent run."""
    return [
        c
        for c in cases
        if c["parameterization"] in parameterizations
        and c["width"] not in exclude_widths
        and c["theories"].get(theory)
    ]


def evidence_c3(
    cases, *, seeds, theory="zhou", margin_ratio=1.25, alpha=0.05,
    parameterizations=("ntk", "standard"), exclude_widths=(),
) -> dict:  # fmt: skip
    """Every kept case's outcome (:func:`case_outcome`), and the reason if inconclusive.

    Args:
      cases: from :func:`collect`.
      seeds: the seeds used (the robustness check leaves each out in turn).
      theory: ``"zhou"`` (the rule) or ``"kernel-limit"``.
      margin_ratio: equivalence margin, a ratio of regrets.
      alpha: the test level.
      parameterizations: the cases kept by parametrisation.
      exclude_widths: widths whose cases are left out.

    Returns:
      ``{"cases": {label: outcome dict}, "inconclusive_reason": str | None}``.
    """
    kept = _kept(cases, parameterizations, exclude_widths, theory)
    kw = dict(seeds=seeds, theory=theory, margin_ratio=margin_ratio, alpha=alpha)
    out = {c["label"]: case_outcome(c, **kw) for c in kept}
    undecided = [k for k, v in out.items() if v["outcome"] == "undecided"]
    if not out:
        reason = "no case"
    elif len(seeds) < 3:
        reason = f"{len(seeds)} seeds"
    else:
        reason = f"intervals include 0 or the margin in {', '.join(undecided)}"
    return {"cases": out, "inconclusive_reason": reason if undecided or not out else None}


def decide_c3(cases, **choices) -> str:
    """``"holds"`` / ``"fails"`` / ``"inconclusive"`` by :data:`RULE`.

    Args:
      cases: from :func:`collect`.
      **choices: the rule's choices, keywords of :func:`evidence_c3`.
    """
    outcomes = [v["outcome"] for v in evidence_c3(cases, **choices)["cases"].values()]
    if not outcomes:
        return "inconclusive"
    if "contradicts" in outcomes:
        return "fails"
    return "holds" if all(o == "supports" for o in outcomes) else "inconclusive"


def _variants(config: BanditsConfig, cases: list[dict]) -> list[tuple[str, dict]]:
    """The robustness alternatives a reviewer would ask for (see the module doc)."""
    out = [(label, {"seeds": s}) for label, s in robustness.leave_one_out(config.seeds)]
    pars = sorted({c["parameterization"] for c in cases})
    if len(pars) > 1:
        out += [(f"{p} cases only", {"parameterizations": (p,)}) for p in pars]
    r, a = config.c3_margin_ratio, config.c3_alpha
    out += [
        (f"margin ratio {m:g}", {"margin_ratio": m}) for m in (1 + (r - 1) / 2, 1 + 2 * (r - 1))
    ]
    out += [(f"alpha {x:g}", {"alpha": x}) for x in (a / 5, 2 * a)]
    widths = sorted({c["width"] for c in cases})
    if len(widths) > 1:
        out.append((f"widest width ({widths[-1]}) dropped", {"exclude_widths": (widths[-1],)}))
    out.append(
        ("kernel-limit γ_t instead of Zhou's (cases where it ran)", {"theory": "kernel-limit"})
    )
    return out


def rule_text(config: BanditsConfig) -> str:
    """:data:`RULE` with the config's values."""
    return RULE.format(
        width=config.width, par=config.base_parameterization, widths=list(config.widths),
        swidths=list(config.standard_widths), sweep=list(config.sweep_datasets),
        lam=config.prior_precision, lams=list(config.kernel_limit_prior_precisions),
        gammas=list(config.fixed_gammas), n=len(config.seeds), alpha=config.c3_alpha,
        margin=config.c3_margin_ratio,
    )  # fmt: skip


def base_choices(config: BanditsConfig) -> dict:
    """The rule's stated choices (keywords of :func:`decide_c3`)."""
    return dict(
        seeds=tuple(config.seeds), theory="zhou", margin_ratio=config.c3_margin_ratio,
        alpha=config.c3_alpha, parameterizations=("ntk", "standard"), exclude_widths=(),
    )  # fmt: skip


def verdict_c3(config: BanditsConfig, groups: dict) -> tuple[Verdict, list[dict], dict]:
    """The C3 verdict with its robustness; also the cases and the evidence behind it."""
    cases = collect(config, groups)
    rule = rule_text(config)
    if not cases:
        return claims.verdict("C3", "not run", rule, {}), [], {}
    base = base_choices(config)
    decision = decide_c3(cases, **base)
    full = evidence_c3(cases, **base)
    alternatives = robustness.recompute(
        lambda **kw: decide_c3(cases, **kw), base, _variants(config, cases)
    )
    evidence = {
        label: f"{v['outcome']}: " + "; ".join(
            f"{t} / {d['best_alternative']} = {d['ratio']:.2f} "
            f"[{d['ratio_ci'][0]:.2f}, {d['ratio_ci'][1]:.2f}]"
            for t, d in v["theories"].items()
        )
        for label, v in full["cases"].items()
    }  # fmt: skip
    if full["inconclusive_reason"] and decision == "inconclusive":
        evidence["inconclusive_reason"] = full["inconclusive_reason"]
    verdict = claims.verdict(
        "C3", decision, rule, evidence, robustness.assess(decision, alternatives)
    )
    return verdict, cases, full


def verdict_table(full: dict) -> str:
    """Markdown: per case and theory agent, the paired effect the rule is applied to."""
    rows = [
        [
            label,
            v["outcome"],
            theory,
            d["best_alternative"],
            f"{d['ratio']:.2f}",
            f"[{d['ratio_ci'][0]:.2f}, {d['ratio_ci'][1]:.2f}] ({d['level']:.4g})",
            str(d["n"]),
            ", ".join(f"{a}: {c}" for a, c in d["calls"].items()),
        ]  # fmt: skip
        for label, v in full.get("cases", {}).items()
        for theory, d in v["theories"].items()
    ]
    header = [
        "case", "outcome", "theory agent", "best alternative", "regret ratio",
        "interval (level)", "seeds", "call vs each alternative",
    ]  # fmt: skip
    return common.markdown_table(header, rows)
