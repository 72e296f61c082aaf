"""Figures of the bandit study: styles come from an agent's fields, labels from its name."""

import math
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ntk_limits_experiments import common
from ntk_limits_experiments.bandits.config import Agent

__all__ = ["plot_bonus", "plot_regret_curves", "plot_width_sweep"]

_FIXED = ("tab:green", "tab:olive", "tab:cyan", "yellowgreen")  # fixed γ, by decade


def _color(agent: Agent) -> str:
    """Grey for random/greedy/reference, a colour per baseline, red/orange/blue by γ kind.

    Red: Zhou et al.'s γ_t; orange: its kernel limit; blue: evidence; greens: fixed γ.
    """
    if agent.family == "random":
        return "0.6"
    if agent.family == "linucb":
        return "tab:brown"
    if agent.family == "ntkgp":
        return "tab:pink" if agent.exploration == "kernel-limit" else "tab:purple"
    if agent.posterior == "diag":
        return "tab:gray"
    if agent.exploration == "fixed":
        if agent.is_greedy:
            return "0.2"
        return _FIXED[(int(round(math.log10(agent.gamma))) + 3) % len(_FIXED)]
    if agent.exploration == "zhou":
        return "salmon" if agent.prior_precision is not None else "tab:red"
    if agent.exploration == "kernel-limit":
        return "navajowhite" if agent.prior_precision is not None else "tab:orange"
    return "tab:blue"


def _style(agent: Agent) -> dict:
    """Colour by exploration (fixed γ: one green per decade), dashed for Thompson sampling."""
    ls = ":" if agent.family == "random" else "--" if agent.method == "ts" else "-"
    return dict(color=_color(agent), ls=ls)


def _mean_se(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, float)
    se = rows.std(0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else np.zeros(rows.shape[1:])
    return rows.mean(0), se


def _panels(datasets) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(5.2 * len(datasets), 4))
    return fig, fig.subplots(1, len(datasets), squeeze=False)[0]


def plot_regret_curves(curves: dict, datasets, path: Path, title: str) -> Path:
    """Cumulative regret vs round, one panel per data set, mean ± 1 SE over seeds.

    Args:
      curves: ``{(dataset, Agent): (rounds (R,), cum_regret (S, R))}``, in legend order.
      datasets: panel order.
      path: PNG to write.
      title: figure title.

    Returns:
      ``path``.
    """
    fig, axes = _panels(datasets)
    for ax, ds in zip(axes, datasets, strict=True):
        for (d, agent), (rounds, rows) in curves.items():
            if d == ds:
                mean, se = _mean_se(rows)
                line = ax.plot(rounds, mean, label=agent.name, lw=1.4, **_style(agent))[0]
                ax.fill_between(rounds, mean - se, mean + se, color=line.get_color(), alpha=0.15)
        ax.set(title=ds, xlabel="round", ylabel="cumulative regret")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    return common.save_figure(fig, path)


def plot_width_sweep(finals: dict, datasets, path: Path) -> Path:
    """Final regret vs width, per exploration and parametrisation (mean ± 1 SE).

    Args:
      finals: ``{(dataset, Agent, parameterization): (widths (W,), final (S, W))}``.
      datasets: panel order.
      path: PNG to write.

    Returns:
      ``path``.
    """
    fig, axes = _panels(datasets)
    for ax, ds in zip(axes, datasets, strict=True):
        ticks = set()
        for (d, agent, par), (widths, rows) in finals.items():
            if d != ds:
                continue
            mean, se = _mean_se(rows)
            style = {**_style(agent), "ls": "-" if par == "ntk" else "--"}
            label = f"{agent.name} ({par})"
            ax.errorbar(widths, mean, yerr=se, marker="o", capsize=3, label=label, **style)
            ticks |= {int(w) for w in widths}
        ax.set(title=ds, xlabel="width", ylabel="final cumulative regret", xscale="log")
        ax.set_xticks(sorted(ticks), [str(t) for t in sorted(ticks)])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, path)


def plot_bonus(bonus: dict, datasets, path: Path) -> Path:
    """Exploration bonus ``γ_t σ_t`` of the chosen arm vs round (log scale), mean over seeds.

    Args:
      bonus: ``{(dataset, Agent): (rounds (R,), bonus (S, R))}``, in legend order.
      datasets: panel order.
      path: PNG to write.

    Returns:
      ``path``.
    """
    fig, axes = _panels(datasets)
    for ax, ds in zip(axes, datasets, strict=True):
        for (d, agent), (rounds, rows) in bonus.items():
            if d == ds:
                mean = np.maximum(np.mean(rows, 0), 1e-6)
                ax.plot(rounds, mean, label=agent.name, **_style(agent))
        ax.axhline(1.0, color="k", lw=0.8, alpha=0.5)  # the reward range
        ax.set(title=ds, xlabel="round", ylabel="γ σ(x) of the chosen arm", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return common.save_figure(fig, path)
