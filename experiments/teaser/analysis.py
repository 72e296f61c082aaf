"""Aggregation, the table and the text of the teaser (numpy on stored records)."""

import numpy as np

from ntk_limits_experiments.common import markdown_table
from ntk_limits_experiments.teaser.config import TeaserConfig

__all__ = ["distance_table", "slope", "split_records", "text"]


def split_records(records: list[dict]):
    """``(infinite metrics or None, [(width, metrics), ...] by width)`` of finished runs."""
    ok = [r for r in records if r["status"] == "ok"]
    inf = next((r["metrics"] for r in ok if r["spec"]["infinite"]), None)
    finite = sorted(
        (r["spec"]["network"]["width"], r["metrics"]) for r in ok if not r["spec"]["infinite"]
    )
    return inf, finite


def slope(w, d) -> float:
    """Least-squares log-log slope of ``d`` against ``w`` (NaN below two points)."""
    return float(np.polyfit(np.log(w), np.log(d), 1)[0]) if len(w) >= 2 else float("nan")


def distance_table(finite) -> str:
    """Per width: mean over seeds of the distances to infinite width, kernel error, loss."""
    header = [
        "width", "RMS(μ_w − μ_∞)", "RMS(σ_w − σ_∞)", "‖σ²_w − σ²_∞‖/‖σ²_∞‖",
        "‖K* − Θ‖/‖Θ‖ (train)", "train loss, last step",
    ]  # fmt: skip
    keys = ("mean_distance", "sd_distance", "var_rel_distance", "kernel_rel_error", "final_loss")
    rows = [[w, *(f"{np.mean(m[k]):.4f}" for k in keys)] for w, m in finite]
    return markdown_table(header, rows)


def text(config: TeaserConfig, inf, finite) -> str:
    """The teaser's paragraph for the report: the recipe and the fitted slopes."""
    w = [wi for wi, _ in finite]
    slopes = {
        k: slope(w, [np.mean(m[k]) for _, m in finite]) for k in ("mean_distance", "sd_distance")
    }
    noise = f"{inf['noise_var']:.3g}" if inf is not None else "n/a"
    return (
        f"Diabetes (scikit-learn's packaged copy): BMI -> disease progression, "
        f"{config.n_train} random patients, standardised. Centred one-hidden-layer "
        f"{config.activation} MLPs in NTK parametrization, widths {list(config.widths)}, "
        f"{len(config.seeds)} seeds, {config.steps} full-batch GD steps; "
        f"linearised-Laplace (empirical-NTK GP at the trained parameters) bands with noise "
        f"variance {noise} "
        + ("(fitted on the infinite NTK)" if config.noise_var is None else "(given)")
        + ", against the infinite-width NTK-GP built the same way. Log-log slopes of the "
        f"distance to infinite width: mean {slopes['mean_distance']:.2f}, standard deviation "
        f"{slopes['sd_distance']:.2f} (width^-1/2 would be -0.5)."
    )
