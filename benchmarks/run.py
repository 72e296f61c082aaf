"""Runs the speed and memory benchmarks and writes them to one JSON file.

Usage::

    python -m benchmarks.run --out results/bench.json          # make bench (< 10 min, 2 cores)
    python -m benchmarks.run --quick --out tmp/bench.json      # tiny sizes, a sanity check
    python -m benchmarks.run --reproduce --out results/bench.json   # + make reproduce-all twice
    JAX_PLATFORMS= python -m benchmarks.run --gpu --out results/bench-gpu.json   # make bench-gpu

The output is a JSON list of rows ``{name, value, unit, baseline, ratio, goal, met, ...}``
(rendered by ``ntk-limits report``); each ratio compares two measurements taken in the
same run. Every row also carries the 1-minute load average when its benchmark started and
ended (``loadavg``), since timings on a shared machine depend on it. Benchmarks:

* ``ntk``: empirical NTK, every algorithm, our wrapper vs nt directly, torch.func.
* ``ensemble``: 8 seeds in one vmapped program vs 8 sequential runs.
* ``bandit``: bandit posterior per round vs t, incremental vs dense.
* ``memory``: peak RSS of ``jacobian_change`` at 10^6 and 10^7 parameters.
* ``diagnose``: ``regime.diagnose`` of a 1M-parameter MLP (256 inputs, 100 steps) vs the
  same quantities assembled by hand from neural-tangents.
* ``reproduce`` (only with ``--reproduce``): wall time of ``make reproduce-all``, twice.
* ``paper-smoke`` (only with ``--gpu``): the paper profile for 5 minutes on the GPU.
"""

import argparse
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import bandit_posterior, common, diagnose, ensemble, jacobian_memory, ntk, studies

BENCHMARKS = {
    "ntk": ntk.run,
    "ensemble": ensemble.run,
    "bandit": bandit_posterior.run,
    "memory": jacobian_memory.run,
    "diagnose": diagnose.run,
}


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text(encoding="ascii").split()[:3])
    except OSError:
        return "unknown"


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


def _backend() -> str:
    code = "import jax; print(jax.default_backend(), jax.device_count())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return proc.stdout.strip() or f"unavailable: {proc.stderr.strip()[-200:]}"


def _run_one(name: str, fn, **kwargs) -> list[dict[str, Any]]:
    print(f"[{name}] load average {_loadavg()}", flush=True)
    start, load_start = time.perf_counter(), _loadavg()
    try:
        rows = fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - one broken benchmark must not lose the others
        rows = [common.skipped(f"{name} benchmark", f"{type(exc).__name__}: {exc}")]
    for row in rows:
        row.setdefault("benchmark", name)
        row["loadavg"] = {"start": load_start, "end": _loadavg()}
    print(f"[{name}] {time.perf_counter() - start:.0f} s", flush=True)
    return rows


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def _print_table(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        cells = [
            r["name"],
            f"{_fmt(r['value'])} {r['unit']}",
            f"base {_fmt(r['baseline'])}",
            f"ratio {_fmt(r['ratio'])}",
            f"goal {r['goal']}",
            f"met {_fmt(r['met'])}",
        ]
        print(" | ".join(cells))


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="results/bench.json", help="output JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a sanity check)")
    parser.add_argument("--gpu", action="store_true", help="require a GPU; add the paper smoke")
    parser.add_argument("--reproduce", action="store_true", help="also time make reproduce-all")
    parser.add_argument(
        "--only",
        default=",".join(BENCHMARKS),
        help=f"comma-separated subset of {','.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    only = [b for b in args.only.split(",") if b]
    unknown = sorted(set(only) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; allowed: {', '.join(BENCHMARKS)}")
    backend = _backend()
    print(
        f"benchmarks: python {platform.python_version()}, jax {_version('jax')}, "
        f"backend {backend}, {os.cpu_count()} CPUs, torch {_version('torch')}",
        flush=True,
    )
    if args.gpu and not backend.startswith("gpu"):
        print(
            f"bench-gpu: JAX sees no GPU (backend: {backend}); nothing was run. On a GPU "
            "host, build .venv over its CUDA jax with `make clean env-over` (see README).",
            file=sys.stderr,
        )
        return 2
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    jobs = [(name, BENCHMARKS[name], {"quick": args.quick}) for name in only]
    if args.reproduce:
        jobs.append(("reproduce", studies.reproduce, {}))
    if args.gpu:
        smoke_dir = Path(args.out).parent / "paper-smoke"
        jobs.append(("paper-smoke", studies.paper_smoke, {"outdir": smoke_dir}))
    for name, fn, kwargs in jobs:
        new = _run_one(name, fn, **kwargs)
        for row in new:
            row["backend"] = row.get("backend") or backend
        rows += new
        _write(Path(args.out), rows)  # after every benchmark: an interrupted run keeps its rows
    _print_table(rows)
    print(
        f"wrote {args.out} ({len(rows)} rows) in {time.perf_counter() - start:.0f} s; "
        f"load average now {_loadavg()}",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
