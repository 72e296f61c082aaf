"""A toy study for the runner, store, report and CLI tests (not part of the library).

Gradient descent on random-feature least squares: ``widths x seeds`` ordinary runs, one
run with a step size that diverges and one run that raises. The field ``sleep`` slows each
run down for the kill-and-resume test. Its specs are plain dicts (the runner takes those
too); its config is typed like every study's.
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from ntk_limits.data import DataUnavailableError
from ntk_limits_experiments.config import Config, field, profiles
from ntk_limits_experiments.study import Diverged, Study, Summary, Verdict


@dataclasses.dataclass(frozen=True)
class ToyConfig(Config):
    profile: str = "smoke"
    widths: tuple[int, ...] = field((2, 8), ge=1, nonempty=True)
    seeds: tuple[int, ...] = field((0, 1), ge=0, nonempty=True)
    steps: int = field(30, ge=1)
    lr: float = 0.1
    diverge_lr: float = 5.0
    sleep: float = field(0.0, ge=0)
    tag: str = "toy"
    require_data: bool = False
    data_dir: str | None = None

    def check(self):
        if self.require_data:
            raise DataUnavailableError("toy data not found; allowed: run ntk-limits datasets")


PROFILES = profiles(
    smoke=ToyConfig(),
    embedded=ToyConfig(profile="embedded", widths=(2, 4, 8), seeds=(0, 1, 2)),
    paper=ToyConfig(profile="paper", widths=(2, 4, 8, 16), seeds=(0, 1, 2, 3)),
)


def expand(config):
    base = {"steps": config.steps, "sleep": config.sleep, "fail": False}
    specs = [
        {**base, "width": w, "seed": s, "lr": config.lr}
        for w in config.widths
        for s in config.seeds
    ]
    specs.append({**base, "width": config.widths[0], "seed": 0, "lr": config.diverge_lr})
    specs.append({**base, "width": config.widths[-1], "seed": 0, "lr": config.lr, "fail": True})
    return specs


def execute(spec, progress):
    time.sleep(spec["sleep"])
    if spec["fail"]:
        raise RuntimeError("toy failure")
    rng = np.random.default_rng(spec["seed"])
    x = rng.normal(size=(16, spec["width"]))
    y = rng.normal(size=16)
    w = np.zeros(spec["width"])
    losses = []
    for t in range(spec["steps"]):
        residual = x @ w - y
        losses.append(float(0.5 * np.mean(residual**2)))
        if not losses[-1] < 1e8:
            raise Diverged(f"loss {losses[-1]:.3g} at step {t}")
        w = w - spec["lr"] * x.T @ residual / len(y)
        progress(t + 1, spec["steps"])
    return {"final_loss": losses[-1], "loss": losses, "width": np.int64(spec["width"])}


def _mean_by_width(records):
    by_width = {}
    for r in records:
        if r["status"] == "ok":
            by_width.setdefault(r["spec"]["width"], []).append(r["metrics"]["final_loss"])
    return {w: float(np.mean(v)) for w, v in sorted(by_width.items())}


def summarize(config, records, outdir):
    from matplotlib.figure import Figure

    means = _mean_by_width(records)
    fig = Figure(figsize=(3, 2))
    ax = fig.subplots()
    ax.plot(list(means), list(means.values()), marker="o")
    ax.set(xlabel="width", ylabel="final loss")
    path = Path(outdir) / "final_loss.png"
    fig.savefig(path)
    table = "| width | final loss |\n|---|---|\n" + "".join(
        f"| {w} | {v:.4f} |\n" for w, v in means.items()
    )
    first, last = means[min(means)], means[max(means)]
    verdict = Verdict(
        claim="T1",
        statement="Wider toy models reach a lower loss.",
        verdict="holds" if last < first else "fails",
        rule="holds if the mean final loss at the largest width is below that at the smallest",
        evidence={"loss_smallest_width": first, "loss_largest_width": last},
    )
    text = f"Ran {len(records)} toy runs over widths {sorted(means)}."
    return Summary(figures=[path], tables={"final loss": table}, verdicts=[verdict], text=text)


STUDY = Study(
    name="toy",
    profiles=PROFILES,
    expand=expand,
    execute=execute,
    summarize=summarize,
)
