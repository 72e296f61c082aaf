"""Estimated time of the whole ``paper`` profile on one H200, and how it was estimated.

No GPU is needed: nothing at paper size is executed. The estimate has three parts.

1. **Work.** Every program each study's paper-profile runs build is lowered on abstract
   arguments at the run's shapes (stand-ins of absent data sets have the paper sets'
   sizes) and its flops and bytes counted by XLA's HLO cost analysis, with loops
   multiplied by their trip counts and dense linear algebra by textbook counts
   (:mod:`benchmarks.flops`, :mod:`benchmarks.paper_programs`,
   :mod:`benchmarks.paper_streams`).
2. **Time model.** Per program ``t = flops / (peak × e) + bytes / (bandwidth × e)`` with
   the peak of its dtype, summed over executions, at efficiencies ``e`` = 0.5 and 0.1;
   host (NumPy) work at the rate measured on this CPU. The range runs from ``e`` = 0.5
   with data-dependent loops at their smallest (train-until-target at 1 epoch per task)
   to ``e`` = 0.1 with them at their largest (every task at ``max_epochs``).
3. **Anchor.** A few real paper-profile runs that fit this CPU are executed and timed;
   their counted flops over their measured run time (compilation excluded) is the rate
   achieved here, beside this CPU's nominal peak.

Command::

    python -m benchmarks.h200_estimate --out results/h200-estimate.json   # make h200-estimate
    python -m benchmarks.h200_estimate --studies teaser,kernels --no-anchor --out /tmp/e.json

Runtime (2 shared CPU cores, measured): about 5 minutes for the counting (lowering only,
optimization and continual take most of it) plus about 1 minute for the anchor.
"""

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import paper_programs, paper_streams
from benchmarks.flops import program_cost
from benchmarks.paper_programs import Work
from ntk_limits_experiments import store, timing
from ntk_limits_experiments.kernels import study as kernels

# NVIDIA H200 (SXM) datasheet, https://www.nvidia.com/en-us/data-center/h200/: FP64
# 34 TFLOP/s (67 on FP64 Tensor Cores), FP32 67 TFLOP/s (non-tensor; TF32 Tensor Cores,
# which JAX's default matmul precision may use for float32 dots, are far faster), HBM3e
# 4.8 TB/s, 141 GB. The model takes the non-tensor peaks: a conservative choice.
PEAK_FLOPS = {"float32": 67e12, "float64": 34e12}
HBM_BYTES_PER_S = 4.8e12
EFFICIENCIES = (0.5, 0.1)

STUDY_WORK: dict[str, Callable[[], list[Work]]] = {
    "kernels": paper_programs.kernels_work,
    "teaser": paper_programs.teaser_work,
    "optimization": paper_programs.optimization_work,
    "bandits": paper_streams.bandits_work,
    "continual": paper_streams.continual_work,
}

METHOD = [
    "Each study's paper-profile runs (stand-ins of absent data sets, at the paper sets' "
    "sizes) are expanded by the study's own expand(); every program a run builds is traced "
    "on abstract arguments (jax.ShapeDtypeStruct) and lowered for CUDA without compiling "
    "or running it.",
    "flops and bytes per program: XLA's HLO cost analysis of the lowered, unoptimised "
    "program (Lowered.cost_analysis()); bytes are unfused, an upper bound on memory "
    "traffic.",
    "XLA counts a while loop's body once (checked: see checks.loop_counted_once); "
    "lax.scan / lax.map / fori_loop bodies are multiplied by their trip counts by walking "
    "the jaxpr, nested loops included; data-dependent while loops take a stated trip "
    "count (bandits: mean fit_network blocks over the refreshes, exact in total; "
    "continual: 1 to max_epochs epochs).",
    "Cholesky and eigh are cuSOLVER calls XLA counts as 0 flops, triangular_solve as "
    "2m^2n: each is replaced by its textbook count (n^3/3, 9n^3 with eigenvectors, m^2n).",
    "Runs with the same shapes are lowered once and counted as many times as they run; "
    "the bandits' T = 10000-round programs are counted in parts (init, one round, one "
    "refresh) times how often the schedule runs each.",
    "Time per program: flops / (peak of its dtype x e) + bytes / (4.8 TB/s x e), e = 0.5 "
    "and 0.1 (no overlap of compute and memory traffic), H200 peaks FP32 67 and FP64 34 "
    "TFLOP/s (non-tensor); host NumPy work at the rate measured on this CPU.",
    "Not counted: XLA compilation time, host<->device transfers, data loading, Python "
    "between programs, and the small host-side work each study's docstring lists.",
]


def loop_check() -> dict:
    """XLA's count of a matmul in a length-16 scan against the closed form and our count."""
    m, n, k, trips = 32, 16, 8, 16
    a = jax.ShapeDtypeStruct((trips, m, k), jnp.float32)
    b = jax.ShapeDtypeStruct((k, n), jnp.float32)

    def scanned(a, b):
        return jax.lax.scan(lambda c, x: (c, x @ b), 0.0, a)[1]

    report = program_cost(scanned, a, b)
    return {
        "program": f"({m}x{k}) @ ({k}x{n}) in a lax.scan of length {trips}",
        "closed_form_flops": 2 * m * n * k * trips,
        "xla_flops": report.xla.flops,
        "counted_flops": report.cost.flops,
    }


def seconds(work: Work, efficiency: float, high: bool, host_rate: float) -> float:
    """Modelled seconds of all executions of ``work`` (``high``: its ``cost_high``)."""
    cost = work.cost_high if high and work.cost_high is not None else work.cost
    if work.where == "host":
        return work.count * cost.flops / host_rate
    compute = cost.flops / (PEAK_FLOPS[work.dtype] * efficiency)
    return work.count * (compute + cost.bytes / (HBM_BYTES_PER_S * efficiency))


def summarize(works: list[Work], host_rate: float) -> dict:
    """Flops by dtype and place (low and high), bytes, and the modelled seconds."""
    total = lambda pick: sum(w.count * pick(w) for w in works)
    flops = {}
    for where, dtype in (("device", "float32"), ("device", "float64"), ("host", "float64")):
        sel = lambda w, where=where, dtype=dtype: w.where == where and w.dtype == dtype
        low = total(lambda w, sel=sel: w.cost.flops if sel(w) else 0.0)
        high = total(lambda w, sel=sel: (w.cost_high or w.cost).flops if sel(w) else 0.0)
        flops[f"{where}_{dtype}"] = {"low": low, "high": high}
    device = [w for w in works if w.where == "device"]
    byte_total = {
        "low": sum(w.count * w.cost.bytes for w in device),
        "high": sum(w.count * (w.cost_high or w.cost).bytes for w in device),
    }
    secs = {
        f"e={e}": {
            "low": sum(seconds(w, e, False, host_rate) for w in works),
            "high": sum(seconds(w, e, True, host_rate) for w in works),
        }
        for e in EFFICIENCIES
    }
    best, worst = secs[f"e={max(EFFICIENCIES)}"]["low"], secs[f"e={min(EFFICIENCIES)}"]["high"]
    return {"flops": flops, "bytes": byte_total, "seconds": secs, "range_s": [best, worst]}


def cpu_nominal() -> dict:
    """This CPU's nominal float32 peak: cores × clock × flops per cycle (from its flags)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    line = lambda key: next((ln.split(":", 1)[1].strip() for ln in info.splitlines()
                             if ln.startswith(key)), "")  # fmt: skip
    flags, mhz = line("flags").split(), float(line("cpu MHz") or 0.0)
    per_cycle = 64 if "avx512f" in flags else 32 if {"avx2", "fma"} <= set(flags) else 8
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "model": line("model name"),
        "cores": cores,
        "mhz": mhz,
        "float32_flops_per_cycle": per_cycle,
        "assumption": "two FMA units per core (AVX-512: 2 x 16 lanes x 2, AVX2: 2 x 8 x 2)",
        "float32_peak_flops": cores * mhz * 1e6 * per_cycle,
        "load_average": os.getloadavg(),
    }


def host_rate(n: int = 2560) -> dict:
    """NumPy ``eigvalsh`` of an ``n × n`` float64 matrix here (the optimization study's Gram)."""
    a = np.random.default_rng(0).normal(size=(n, n))
    a = a + a.T
    start = time.perf_counter()
    np.linalg.eigvalsh(a)
    secs = time.perf_counter() - start
    return {"n": n, "seconds": secs, "flops_per_s": (4 * n**3 / 3) / secs}


def _timed(study, spec) -> tuple[float, float]:

    with timing.compile_clock() as clock:
        start = time.perf_counter()
        study.execute(spec, lambda *a: None)
        wall = time.perf_counter() - start
    return wall, clock.seconds


def anchor(nominal: dict) -> list[dict]:
    """Real paper-profile runs timed here: teaser widths 1024 and 4096, kernels MLP 2048."""

    rows = []
    teaser, config = paper_programs.paper_config("teaser")
    specs = teaser.expand(config)
    teaser.execute(specs[0], lambda *a: None)  # the cached infinite reference, not timed
    picked = [(teaser, s, paper_programs.teaser_run(s).cost.flops) for s in specs[1:]
              if s.network.width in (1024, 4096)]  # fmt: skip
    study, config = paper_programs.paper_config("kernels")
    spec = next(s for s in study.expand(config)
                if s.network.kind == "mlp" and s.network.width == 2048
                and s.network.parameterization == "ntk")  # fmt: skip
    kernels.load_inputs(spec.inputs, spec.data_dir)  # data loading is not timed
    flops = sum(w.count * w.cost.flops for w in paper_programs.kernels_run(spec, set()))
    picked.append((study, spec, flops))
    for study, spec, flops in picked:
        wall, compiling = _timed(study, spec)
        run = wall - compiling
        rows.append({
            "run": f"{study.name}: {spec.network.name}, {len(spec.seeds)} seeds",
            "counted_flops": flops, "wall_s": wall, "compile_s": compiling, "run_s": run,
            "achieved_flops_per_s": flops / run if run > 0 else None,
            "predicted_s_at_nominal_peak": flops / nominal["float32_peak_flops"],
            "measured_over_predicted": run * nominal["float32_peak_flops"] / flops,
        })  # fmt: skip
        print(f"  anchor {rows[-1]['run']}: {run:.2f} s run ({compiling:.2f} s compiling), "
              f"{flops:.3g} flops, {flops / run / 1e9:.1f} GFLOP/s", flush=True)  # fmt: skip
    return rows


def _fmt_s(s: float) -> str:
    return f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min" if s >= 60 else f"{s:.0f} s"


def _span(flops: dict) -> str:
    low, high = flops["low"] / 1e15, flops["high"] / 1e15
    return f"{low:.3g}" if high == low else f"{low:.3g}-{high:.3g}"


def table(result: dict) -> str:
    """A short text table of the estimate."""
    lines = [f"{'study':<13}{'runs':>5}{'fp32 Pflop':>19}{'fp64 Pflop':>12}{'PB moved':>10}"
             f"   H200 time (e=0.5 low .. e=0.1 high)"]  # fmt: skip
    rows = [*result["studies"].items(), ("total", result["total"])]
    for name, s in rows:
        f32, f64 = s["flops"]["device_float32"], s["flops"]["device_float64"]
        best, worst = s["range_s"]
        moved = s["bytes"]["high"] / 1e15
        lines.append(f"{name:<13}{s.get('runs', ''):>5}{_span(f32):>19}{_span(f64):>12}"
                     f"{moved:>10.3g}   {_fmt_s(best)} .. {_fmt_s(worst)}")  # fmt: skip
    return "\n".join(lines)


def _work_row(w: Work) -> dict:
    row = {"study": w.study, "label": w.label, "count": w.count, "dtype": w.dtype,
           "where": w.where, "flops": w.cost.flops, "bytes": w.cost.bytes}  # fmt: skip
    if w.cost_high is not None:
        row |= {"flops_high": w.cost_high.flops, "bytes_high": w.cost_high.bytes}
    return row | ({"note": w.note} if w.note else {})


def estimate(studies: list[str], with_anchor: bool) -> dict:
    """The whole estimate as a JSON-ready dict (see the module docstring)."""
    nominal, rate = cpu_nominal(), host_rate()
    result = {"method": METHOD, "checks": {"loop_counted_once": loop_check()},
              "h200": {"peak_flops": PEAK_FLOPS, "hbm_bytes_per_s": HBM_BYTES_PER_S},
              "efficiencies": EFFICIENCIES, "host_eigvalsh": rate, "studies": {}}  # fmt: skip
    every = []
    for name in studies:
        start = time.perf_counter()
        works = STUDY_WORK[name]()
        every += works
        study, config = paper_programs.paper_config(name)
        result["studies"][name] = {"runs": len(study.expand(config)),
                                   **summarize(works, rate["flops_per_s"]),
                                   "counting_s": time.perf_counter() - start}  # fmt: skip
        print(f"  counted {name}: {len(works)} programs in "
              f"{result['studies'][name]['counting_s']:.0f} s", flush=True)  # fmt: skip
    result["total"] = summarize(every, rate["flops_per_s"])
    result["work"] = [_work_row(w) for w in every]
    result["cpu"] = nominal
    result["anchor"] = anchor(nominal) if with_anchor else []
    return result


def main(argv=None) -> int:
    """Parses flags, writes the JSON, prints the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="JSON file to write")
    parser.add_argument("--studies", default=",".join(STUDY_WORK), help="comma-separated")
    parser.add_argument("--no-anchor", action="store_true", help="skip the CPU measurement")
    args = parser.parse_args(argv)
    studies = [s for s in args.studies.split(",") if s]
    unknown = sorted(set(studies) - set(STUDY_WORK))
    if unknown:
        parser.error(f"unknown studies {unknown}; allowed: {', '.join(STUDY_WORK)}")
    result = estimate(studies, not args.no_anchor)
    out = store.write_json_atomic(args.out, result)  # nothing half-written
    print(table(result))
    for row in result["anchor"]:
        print(f"anchor {row['run']}: measured {row['run_s']:.2f} s, "
              f"{row['achieved_flops_per_s'] / 1e9:.1f} GFLOP/s achieved vs "
              f"{result['cpu']['float32_peak_flops'] / 1e9:.0f} nominal "
              f"({row['measured_over_predicted']:.1f}x the nominal-peak time)")  # fmt: skip
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
