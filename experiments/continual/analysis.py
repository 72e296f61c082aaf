"""From run records to a long table, forgetting-vs-width slopes, markdown tables and C4.

Average forgetting (``ntk_limits.continual.average_forgetting``), with tasks ``0..T-1``:
``F = mean_{j<T-1} (max_{k<T-1} a[k, j] − a[T-1, j])``. The slope of ``F`` against
``log2(width)`` is fitted per seed (least squares over widths); its mean, seed standard
deviation and standard error ``SE = std/sqrt(seeds)`` are tabulated; the C4 rule is in
``verdict.py``.
"""

import math

import numpy as np
import pandas as pd

from ntk_limits_experiments import common, stats
from ntk_limits_experiments.continual import verdict as c4
from ntk_limits_experiments.continual.config import ContinualConfig
from ntk_limits_experiments.study import Verdict

__all__ = [
    "frame",
    "regime_table",
    "setting_label",
    "slope_table",
    "slopes",
    "text",
    "time_label",
    "verdict",
    "verdict_choices",
    "width_table",
]

_SCALARS = ("forgetting", "average_accuracy", "learning_accuracy")


def setting_label(max_epochs: int, target: float) -> str:
    """``"1 epoch"``, ``"3 epochs"`` or ``"≥99% train (≤30 ep)"``."""
    if target > 1:
        return f"{max_epochs} epoch" + ("s" if max_epochs > 1 else "")
    return f"≥{target:.0%} train (≤{max_epochs} ep)"


def time_label(t: float) -> str:
    """``"t=100"`` or ``"t=∞"`` for a kernel training time."""
    return "t=∞" if math.isinf(t) else f"t={t:g}"


def _network_rows(rec: dict) -> list[dict]:
    spec, m = rec["spec"], rec["metrics"]
    # every setting is measured against the train-until target (NaN: no such setting)
    goals = [s["target_accuracy"] for s in spec["settings"] if s["target_accuracy"] <= 1]
    goal = max(goals) if goals else np.nan
    rows = []
    for par, d in m["parameterizations"].items():
        for i, label in enumerate(m["settings"]):
            for s, seed in enumerate(spec["seeds"]):
                train = np.asarray(d["train_accuracy"][i][s])
                drift = np.mean(d["kernel_drift"][i][s]) if "kernel_drift" in d else np.nan
                rows.append({
                    "kind": spec["kind"], "benchmark": spec["stream"]["benchmark"],
                    "parameterization": par, "setting": label, "setting_index": i,
                    "width": spec["network"]["width"], "seed": seed,
                    **{k: d[k][i][s] for k in _SCALARS},
                    "train_accuracy": float(train.mean()), "min_train_accuracy": float(train.min()),
                    "reached_target": float(np.mean(train >= goal)) if goals else np.nan,
                    "epochs": float(np.mean(d["epochs"][i][s])), "kernel_drift": float(drift),
                })  # fmt: skip
    return rows


def _infinite_rows(rec: dict) -> list[dict]:
    spec, m = rec["spec"], rec["metrics"]
    return [
        {"kind": "infinite", "benchmark": spec["stream"]["benchmark"], "parameterization": "ntk",
         "setting": label, "setting_index": i, "width": np.inf, "seed": 0,
         **{k: m[k][i] for k in _SCALARS},
         "train_accuracy": float(np.mean(m["train_accuracy"][i])),
         "min_train_accuracy": float(np.min(m["train_accuracy"][i])),
         "reached_target": np.nan, "epochs": np.nan, "kernel_drift": 0.0,
         "float32_accuracy_change": m.get("float32_accuracy_change", [np.nan] * (i + 1))[i]}
        for i, label in enumerate(m["labels"])
    ]  # fmt: skip


def frame(records: list[dict]) -> pd.DataFrame:
    """One row per (run kind, benchmark, parametrization, setting, width, seed), ok runs only."""
    rows = []
    for rec in records:
        if rec["status"] != "ok":
            continue
        rows += _infinite_rows(rec) if rec["spec"]["kind"] == "infinite" else _network_rows(rec)
    return pd.DataFrame(rows)


def _slope_row(group: pd.DataFrame) -> dict:
    table = group.pivot(index="seed", columns="width", values="forgetting").dropna()
    x = np.log2(np.asarray(table.columns, float))
    fit = len(x) >= 2 and len(table)
    per_seed = stats.per_seed_slopes(x, table.to_numpy()) if fit else np.array([])
    n = len(per_seed)
    std = float(np.std(per_seed, ddof=1)) if n >= 2 else np.nan
    return {
        "slope": float(np.mean(per_seed)) if n else np.nan, "slope_std": std,
        "slope_se": std / math.sqrt(n) if n >= 2 else np.nan, "n_seeds": n,
        "n_widths": len(x), "train_accuracy": float(group["train_accuracy"].mean()),
        "min_train_accuracy": float(group["min_train_accuracy"].min()),
        "forgetting_narrow": float(table.iloc[:, 0].mean()) if n else np.nan,
        "forgetting_wide": float(table.iloc[:, -1].mean()) if n else np.nan,
    }  # fmt: skip


def slopes(df: pd.DataFrame) -> pd.DataFrame:
    """Per (kind, benchmark, parametrization, setting): slope of F vs log2 width over seeds."""
    keys = ["kind", "benchmark", "parameterization", "setting_index", "setting"]
    nets = df[df["kind"] != "infinite"] if len(df) else df
    if not len(nets):
        return pd.DataFrame(columns=[*keys, "slope", "slope_std", "slope_se"])
    rows = [
        {**dict(zip(keys, k, strict=True)), **_slope_row(g)}
        for k, g in nets.groupby(keys, sort=True)
    ]
    return pd.DataFrame(rows)


def verdict_choices(config: ContinualConfig) -> dict:
    """The C4 rule's choices (keywords of ``verdict.decide_c4``) as the config states them."""
    return {
        "parameterizations": tuple(config.parameterizations), "seeds": tuple(config.seeds),
        "margin_fraction": config.c4_margin_fraction,
        "reached_fraction": config.c4_reached_fraction, "alpha": config.c4_alpha,
        "drop_widest": False,
    }  # fmt: skip


def verdict(df: pd.DataFrame, config: ContinualConfig) -> Verdict:
    """C4 from the finite networks of ``df`` (:func:`frame`) by ``verdict.RULE``."""
    return c4.verdict_c4(df, verdict_choices(config))


def _pm(values: pd.Series) -> str:
    values = values.dropna()
    if len(values) > 1:
        return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"
    return f"{values.mean():.3f}" if len(values) else "–"


def width_table(df: pd.DataFrame, metric: str) -> str:
    """Finite networks: ``metric`` mean ± seed std per width (columns), one row per setting."""
    nets = df[df["kind"] == "finite"] if len(df) else df
    if not len(nets):
        return "no finished runs\n"
    widths = sorted(nets["width"].unique())
    keys = ["benchmark", "parameterization", "setting_index", "setting"]
    rows = []
    for (b, p, _, s), g in nets.groupby(keys, sort=True):
        train = g["train_accuracy"].mean()
        cells = [_pm(g[g["width"] == w][metric]) for w in widths]
        rows.append([b, p, s, f"{train:.3f}", *cells])
    header = ["benchmark", "param.", "epochs/task", "train acc", *[f"w={int(w)}" for w in widths]]
    return common.markdown_table(header, rows)


def regime_table(df: pd.DataFrame) -> str:
    """Forgetting of finite NTP nets, their linearisations, and the infinite-width NTK."""
    if not len(df):
        return "no finished runs\n"
    sel = df[(df["parameterization"] == "ntk") | (df["kind"] == "infinite")]
    keys = ["benchmark", "kind", "setting_index", "setting", "width"]
    rows = []
    for (b, kind, _, s, w), g in sel.groupby(keys, sort=True):
        width = "∞" if not np.isfinite(w) else str(int(w))
        rows.append([b, kind, width, s, f"{g['train_accuracy'].mean():.3f}",
                     _pm(g["forgetting"]), _pm(g["average_accuracy"]),
                     _pm(g["kernel_drift"]) if kind == "finite" else "0 (fixed)"])  # fmt: skip
    header = ["benchmark", "network", "width", "training", "train acc", "forgetting F",
              "average acc A", "NTK drift/task"]  # fmt: skip
    return common.markdown_table(header, rows)


def slope_table(slope_df: pd.DataFrame) -> str:
    """Slopes of forgetting vs log2 width, mean ± seed std (SE), per setting."""
    if not len(slope_df):
        return "no finished runs\n"
    rows = [
        [r["benchmark"], r["kind"], r["parameterization"], r["setting"],
         f"{r['slope']:+.4f}", f"{r['slope_std']:.4f}", f"{r['slope_se']:.4f}",
         f"{r['forgetting_narrow']:.3f} → {r['forgetting_wide']:.3f}", f"{r['train_accuracy']:.3f}"]
        for _, r in slope_df.iterrows()
    ]  # fmt: skip
    header = ["benchmark", "network", "param.", "epochs/task", "slope dF/dlog2w", "seed std",
              "SE", "F narrow → wide", "train acc"]  # fmt: skip
    return common.markdown_table(header, rows)


def _benchmark_text(benchmark: str, par: str, e: dict) -> str:
    def one(name):
        d = e[name]
        lo, hi = d.get("ci", [math.nan, math.nan])
        return (f"{d['estimate']:+.4f} [{lo:+.4f}, {hi:+.4f}] ({d['setting']}, "
                f"{d['reached_target']:.0%} of runs at the target: {d['call']})")  # fmt: skip

    why = f" ({e['inconclusive_reason']})" if e["inconclusive_reason"] else ""
    return (
        f"{benchmark}, {par}: slope of F per width doubling (95 % interval) {one('undertrained')} "
        f"vs {one('trained')}; margin δ = {e['margin']:.4f}: {e['outcome']}{why}."
    )


def text(df: pd.DataFrame, slope_df: pd.DataFrame, v: Verdict, config: ContinualConfig) -> str:
    """A short markdown paragraph: what was run and what was seen."""
    if not len(df):
        return "No continual-learning run finished."
    benches = ", ".join(config.benchmarks)
    ev = v.evidence
    parts = [
        f"Sequential fine-tuning (SGD, cross-entropy, no CL method) on {benches}; widths "
        f"{list(config.widths)} (MLP, depth {config.depth}), {len(config.seeds)} seeds vmapped, "
        f"parametrizations {', '.join(config.parameterizations)}; "
        f"{config.n_train or 'all'} class-balanced training images before tasks, batch "
        f"{config.batch_size}, SGD lr {config.lr_standard:g} (SP) / {config.lr_ntk:g} (NTP); "
        f"linearised at widths {list(config.linearized_widths)}. Forgetting "
        "F = mean_{j<T-1}(max_{k<T-1} a[k,j] − a[T-1,j])."
    ]
    for b in config.benchmarks:
        for p in config.parameterizations:
            e = ev.get(b, {}).get(p)
            if e:
                parts.append(_benchmark_text(b, p, e))
    inf = df[df["kind"] == "infinite"]
    if len(inf) and inf["float32_accuracy_change"].notna().any():
        parts.append(
            "Infinite-width kernel regression solved in float64; a float32 solve would change "
            f"its test accuracies by at most {inf['float32_accuracy_change'].max():.4f}."
        )
    parts.append(f"C4 verdict: **{v.verdict}**.")
    return " ".join(parts)
