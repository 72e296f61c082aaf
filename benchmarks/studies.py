"""Whole-study timings through the command line, each in a subprocess.

* :func:`reproduce`: wall time of ``make reproduce-all`` (``ntk-limits run all --profile
  embedded`` then ``ntk-limits report``) in a fresh temporary workdir, first run and rerun
  (the rerun finds every run stored and only re-summarises). Not part of the default
  ``make bench`` (the first run alone is budgeted at ~10 minutes on 2 cores); run it with
  ``python -m benchmarks.run --reproduce``.
* :func:`paper_smoke`: the ``paper`` profile on a GPU for a fixed wall-clock budget
  (default 5 minutes, all studies together): every run that finishes in that time is
  stored (runs resume), then the report is written from what finished. Figures and
  REPORT.md stay in the workdir; the row lists them with each study's exit code and
  number of finished runs. The paper data must be prepared first (``ntk-limits datasets
  --fetch mnist`` etc., with network); a study whose data is missing exits 2 and is
  listed as such.
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


def paper_smoke(outdir: Path, budget: float = PAPER_SMOKE_S) -> list[dict[str, Any]]:
    """Runs each study's paper profile in ``outdir`` within ``budget`` seconds in all.

    Studies run one after another, each with the time the previous ones left; a study
    whose data is missing (exit 2) does not stop the others. The report is then written
    from whatever finished.
    """
    from ntk_limits_experiments import registry

    outdir.mkdir(parents=True, exist_ok=True)
    print(f"  paper-profile smoke: {budget:.0f} s budget, workdir {outdir}", flush=True)
    start, per_study = time.perf_counter(), {}
    for name in registry.STUDIES:
        left = budget - (time.perf_counter() - start)
        if left < 5:
            per_study[name] = {"exit_code": None, "note": "no time left"}
            continue
        cmd = _cli("run", name, "--profile", "paper", "--workdir", str(outdir))
        seconds, code, tail = _timed([cmd], left)
        per_study[name] = {"seconds": seconds, "exit_code": code, "log_tail": tail[-600:]}
    seconds = time.perf_counter() - start
    _, report_code, _ = _timed([_cli("report", "--workdir", str(outdir))], 120)
    runs = _runs_per_study(outdir)
    report = outdir / "REPORT.md"
    ok = all(s.get("exit_code") == 0 for s in per_study.values())
    return [
        common.record(
            f"paper-profile smoke on GPU ({budget:.0f} s budget)",
            seconds,
            "s",
            goal=f"every study's paper runs finish within {budget:.0f} s",
            met=ok and report_code == 0,
            studies=per_study,
            runs_per_study=runs,
            figures=sorted(str(p) for p in outdir.rglob("*.png")),
            report=str(report) if report.exists() else None,
        )
    ]
