"""Whole-study timings through the command line, each in a subprocess.

* :func:`reproduce`: wall time of ``make reproduce-all`` (``ntk-limits run all --profile
  embedded`` then ``ntk-limits report``) in a fresh temporary workdir, first run and rerun
  (the rerun finds every run stored and only re-summarises). Not part of the default
  ``make bench`` (the first run alone is budgeted at ~10 minutes on 2 cores); run it with
  ``python -m benchmarks.run --reproduce``.
* :func:`paper_smoke`: the ``paper`` profile on a GPU for a fixed wall-clock budget
  (default 5 minutes, an equal share per study): every run that finishes in that time is
  stored (runs resume), then the report is written from what finished. Figures and
  REPORT.md stay in the workdir; the row lists each study's exit code, finished runs out
  of its total, and its whole-profile time extrapolated from that fraction. Paper data
  sets that are not prepared run on their packaged stand-ins (``--stand-in``).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common

REPRODUCE_GOAL_S = 600.0
PAPER_SMOKE_S = 300.0


def _cli(*args: str) -> list[str]:
    exe = shutil.which("ntk-limits", path=os.path.dirname(sys.executable))
    return [exe, *args] if exe else [sys.executable, "-m", "ntk_limits_experiments", *args]


def _timed(cmds: list[list[str]], timeout: float) -> tuple[float, int, str]:
    """Runs commands in sequence; returns (seconds, first non-zero exit code, log tail)."""
    start, log = time.perf_counter(), []
    for cmd in cmds:
        left = timeout - (time.perf_counter() - start)
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1))
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
            return time.perf_counter() - start, 124, (out + "\n[timed out]")[-2000:]
        log.append(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            return time.perf_counter() - start, proc.returncode, "".join(log)[-2000:]
    return time.perf_counter() - start, 0, "".join(log)[-2000:]


def _runs_per_study(workdir: Path) -> dict[str, int]:
    return {p.name: len(list((p / "runs").glob("*.json"))) for p in workdir.iterdir() if p.is_dir()}


def reproduce(timeout: float = 3600.0) -> list[dict[str, Any]]:
    """Times ``make reproduce-all`` (embedded profile) twice in one fresh workdir."""
    rows, first = [], None
    with tempfile.TemporaryDirectory(prefix="ntk-limits-reproduce-") as workdir:
        cmds = [
            _cli("run", "all", "--profile", "embedded", "--workdir", workdir),
            _cli("report", "--workdir", workdir),
        ]
        for attempt in ("first run", "rerun"):
            print(f"  reproduce-all (embedded), {attempt}", flush=True)
            seconds, code, tail = _timed(cmds, timeout)
            runs = _runs_per_study(Path(workdir))
            name = f"make reproduce-all (embedded), {attempt}"
            if attempt == "first run":
                first = seconds
                goal, met, ratio, base = (
                    f"< {REPRODUCE_GOAL_S:.0f} s",
                    seconds < REPRODUCE_GOAL_S,
                    None,
                    None,
                )
            else:
                goal, base = "< 0.1 x first run", first
                ratio = seconds / first if first else None
                met = ratio is not None and ratio < 0.1
            rows.append(
                common.record(
                    name,
                    seconds,
                    "s",
                    baseline=base,
                    ratio=ratio,
                    goal=goal,
                    met=met and code == 0,
                    exit_code=code,
                    runs_per_study=runs,
                    log_tail=tail if code else tail[-300:],
                )
            )
    return rows


def _paper_run_counts(data_dir: str) -> dict[str, int]:
    """Runs of each study's paper profile (stand-ins for absent sets), from ``expand``."""
    from ntk_limits_experiments import registry, runner

    counts = {}
    for name in registry.STUDIES:
        study = registry.load(name)
        config = runner.prepare_config(study, "paper", data_dir=data_dir)
        counts[name] = len(study.expand(runner.use_stand_ins(config)[0]))
    return counts


def paper_smoke(outdir: Path, budget: float = PAPER_SMOKE_S) -> list[dict[str, Any]]:
    """Runs each study's paper profile in ``outdir`` for an equal share of ``budget`` seconds.

    Absent paper data sets run on their packaged stand-ins at the same sizes
    (``--stand-in``; the report marks them), so the timing is at the paper's sizes
    anywhere. Per study: the seconds, the runs finished out of the profile's runs (the
    fraction), and the whole profile's time extrapolated as seconds / fraction (a rough
    estimate: runs differ in cost, and ``expand`` orders them by family and width). The
    report is then written from whatever finished.
    """
    from ntk_limits_experiments import registry

    outdir.mkdir(parents=True, exist_ok=True)
    data_dir = os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")
    totals = _paper_run_counts(data_dir)
    share = budget / len(registry.STUDIES)
    print(f"  paper-profile smoke: {share:.0f} s per study, workdir {outdir}", flush=True)
    start, per_study = time.perf_counter(), {}
    for name in registry.STUDIES:
        cmd = _cli("run", name, "--profile", "paper", "--stand-in", "--workdir", str(outdir),
                   "--data-dir", data_dir)  # fmt: skip
        seconds, code, tail = _timed([cmd], share)
        done = _runs_per_study(outdir).get(name, 0)
        fraction = done / totals[name] if totals[name] else None
        per_study[name] = {
            "seconds": round(seconds, 1), "exit_code": code, "runs_done": done,
            "runs_total": totals[name], "fraction": fraction,
            "extrapolated_s": round(seconds / fraction, 1) if fraction else None,
            "log_tail": tail[-600:],
        }  # fmt: skip
    seconds = time.perf_counter() - start
    _, report_code, _ = _timed([_cli("report", "--workdir", str(outdir))], 120)
    runs = _runs_per_study(outdir)
    report = outdir / "REPORT.md"
    finished = all(s["exit_code"] == 0 for s in per_study.values())
    extrapolated = [s["extrapolated_s"] for s in per_study.values()]
    whole = sum(extrapolated) if all(e is not None for e in extrapolated) else None
    return [
        common.record(
            f"paper-profile smoke on GPU ({budget:.0f} s budget)",
            seconds,
            "s",
            goal="whole paper profile <= 3600 s on one GPU (extrapolated from the fractions)",
            met=whole is not None and whole <= 3600 and report_code == 0,
            studies=per_study,
            finished_every_study=finished,
            paper_profile_extrapolated_s=whole,
            runs_per_study=runs,
            figures=sorted(str(p) for p in outdir.rglob("*.png")),
            report=str(report) if report.exists() else None,
        )
    ]
