"""Shared helpers: timing, isolated child processes, peak memory, result records.

A benchmark result is one JSON object ``{name, value, unit, baseline, ratio, goal, met}``
(the format ``experiments/report.py`` renders) plus optional extra keys. Heavy
measurements run in a child process (``python -m benchmarks.<module> --child JSON``)
so that their memory is isolated and their peak resident set size (VmHWM) is their own.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

GIB = 1024**3
_MARK = "BENCH-RESULT "


def record(
    name: str,
    value: float | None,
    unit: str,
    *,
    baseline: float | None = None,
    ratio: float | None = None,
    goal: str = "",
    met: bool | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One result row; ``ratio`` is computed by the caller (its direction is in ``goal``)."""
    return {
        "name": name,
        "value": value,
        "unit": unit,
        "baseline": baseline,
        "ratio": ratio,
        "goal": goal,
        "met": met,
        **extra,
    }


def skipped(name: str, reason: str, goal: str = "") -> dict[str, Any]:
    """A row for a measurement that did not run, with the reason."""
    print(f"  skip {name}: {reason}", flush=True)
    return record(name, None, "", goal=goal, met=None, skipped=reason)


def block(x):
    """Waits for JAX arrays (any pytree); other values pass through."""
    import jax

    return jax.block_until_ready(x)


def time_calls(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall-clock seconds of ``repeats`` calls of ``fn`` after ``warmup`` calls."""
    for _ in range(warmup):
        block(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        block(fn())
        times.append(time.perf_counter() - start)
    return times


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Times several functions in alternation (one warm-up each), so load drift hits all.

    The order is reversed every other round (A B, B A, ...) so that neither function
    always runs first.
    """
    for fn in fns.values():
        block(fn())
    times: dict[str, list[float]] = {k: [] for k in fns}
    for i in range(repeats):
        for name, fn in list(fns.items())[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - start)
    return times


def median(xs: list[float]) -> float:
    """Median of a non-empty list."""
    return float(statistics.median(xs))


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (VmHWM), in bytes."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB


def current_rss_bytes() -> int:
    """Current resident set size (VmRSS), in bytes."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def available_memory_bytes() -> int:
    """MemAvailable from /proc/meminfo (a large number if it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 1 << 60


def emit(result: Any) -> None:
    """Child side: prints the result (JSON) on a marked line for :func:`run_child`."""
    print(_MARK + json.dumps(result), flush=True)


def run_child(module: str, args: dict[str, Any], timeout: float = 900) -> dict[str, Any]:
    """Runs ``python -m benchmarks.<module> --child JSON`` and returns what it emitted.

    Returns ``{"error": "..."}`` if the child failed, timed out or emitted nothing.
    """
    cmd = [sys.executable, "-m", f"benchmarks.{module}", "--child", json.dumps(args)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK) :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}


def child_main(measure: Callable[[dict[str, Any]], Any]) -> None:
    """Entry point of a benchmark module run as a child: ``--child JSON``."""
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        emit(measure(json.loads(sys.argv[2])))
    else:
        raise SystemExit(f"usage: python -m {sys.argv[0]} --child JSON (called by benchmarks.run)")
