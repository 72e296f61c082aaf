"""Figures of the bandit study (matplotlib, Agg backend)."""

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_bonus", "plot_regret_curves", "plot_width_sweep"]

_COLORS = {  # ordered: the first key contained in an agent's name wins
    "random": "0.6",
    "greedy": "0.2",
    "linucb": "tab:brown",
    "ntkgp-ucb-theory": "tab:pink",
    "ntkgp": "tab:purple",
    "diag": "tab:orange",
    "theory-lam": "salmon",
    "theory": "tab:red",
    "evidence": "tab:blue",
}
_FIXED = ("tab:green", "tab:olive", "tab:cyan", "yellowgreen")


def _style(agent: str) -> dict:
    """Colour by exploration (fixed γ: one green per value), dashed for Thompson sampling."""
    ls = "--" if ("-ts-" in agent or agent.startswith("neuralts")) else "-"
    ls = ":" if agent == "random" else ls
    if "fixed" in agent:
        gamma = float(agent.rsplit("-", 1)[1])
        rank = int(round(math.log10(gamma))) + 3 if gamma > 0 else 0
        return dict(color=_FIXED[rank % len(_FIXED)], ls=ls)
    for key, color in _COLORS.items():
        if key in agent:
            return dict(color=color, ls=ls)
    return dict(ls=ls)


def _mean_se(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.asarray(rows, float)
    se = rows.std(0, ddof=1) / np.sqrt(len(rows)) if len(rows) > 1 else np.zeros(rows.shape[1:])
    return rows.mean(0), se


def plot_regret_curves(curves: dict, datasets: list[str], path: Path, title: str) -> Path:
    """Cumulative regret vs round, one panel per data set, mean ± 1 SE over seeds.

    Args:
      curves: ``{(dataset, agent): (rounds (R,), cum_regret (S, R))}``.
      datasets: panel order.
      path: PNG to write.
      title: figure title.

    Returns:
      ``path``.
    """
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for (d, agent), (rounds, rows) in sorted(curves.items()):
            if d != ds:
                continue
            mean, se = _mean_se(rows)
            line = ax.plot(rounds, mean, label=agent, lw=1.4, **_style(agent))[0]
            ax.fill_between(rounds, mean - se, mean + se, color=line.get_color(), alpha=0.15)
        ax.set(title=ds, xlabel="round", ylabel="cumulative regret")
        ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_width_sweep(finals: dict, datasets: list[str], path: Path) -> Path:
    """Final regret vs width, per exploration and parametrisation (mean ± 1 SE).

    Args:
      finals: ``{(dataset, agent, parameterization): (widths (W,), final (S, W))}``.
      datasets: panel order.
      path: PNG to write.

    Returns:
      ``path``.
    """
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for (d, agent, par), (widths, rows) in sorted(finals.items()):
            if d != ds:
                continue
            mean, se = _mean_se(rows)
            style = _style(agent)
            style["ls"] = "-" if par == "ntk" else "--"
            ax.errorbar(
                widths, mean, yerr=se, marker="o", capsize=3, label=f"{agent} ({par})", **style
            )
        ax.set(title=ds, xlabel="width", ylabel="final cumulative regret", xscale="log")
        ticks = sorted({int(w) for (d, *_), (ws, _) in finals.items() if d == ds for w in ws})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_bonus(bonus: dict, datasets: list[str], path: Path) -> Path:
    """Exploration bonus ``γ_t σ_t`` of the chosen arm vs round (log scale), mean over seeds.

    Args:
      bonus: ``{(dataset, agent): (rounds (R,), bonus (S, R))}``.
      datasets: panel order.
      path: PNG to write.

    Returns:
      ``path``.
    """
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.2 * len(datasets), 4), squeeze=False)
    for ax, ds in zip(axes[0], datasets, strict=True):
        for (d, agent), (rounds, rows) in sorted(bonus.items()):
            if d == ds:
                ax.plot(rounds, np.maximum(np.mean(rows, 0), 1e-6), label=agent, **_style(agent))
        ax.axhline(1.0, color="k", lw=0.8, alpha=0.5)  # the reward range
        ax.set(title=ds, xlabel="round", ylabel="γ σ(x) of the chosen arm", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
