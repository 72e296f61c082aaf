"""Empirical NTK: neural-tangents' algorithms through our wrapper, nt directly, the pure-JAX
reference, and torch.func, on a 3-hidden-layer width-512 MLP (standard parametrization, so
that the PyTorch twin with the same weights computes the same kernel), 256 MNIST inputs,
10 outputs. The dense reference runs on 64 of the inputs (at 256 it needs ~19 GB and more
than 15 minutes here), beside our structured algorithm on the same 64.

Each algorithm runs in its own child process (peak memory is its own; the Jacobian-based
ones need ~10 GB). Times exclude compilation (ahead-of-time ``lower().compile()``) and use
``block_until_ready``: the fast algorithms report the median of 50 calls, the minute-long
ones one call (jacobian, ntvp) or the faster of two (reference; torch, whose first call
warms its allocator). Our wrapper and nt's own function are timed in alternation in one
process, so load drift hits both. Every kernel is saved and compared with the reference of
the same size (the Jacobian contraction at full size): max relative difference.
"""

import os
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks import common

FULL = {"width": 512, "depth": 3, "n": 256, "out": 10}
QUICK = {"width": 64, "depth": 3, "n": 32, "out": 10}
# The pure-JAX reference materialises the dense Jacobian, (n·k) x P floats: 11 GB at n = 256
# (it peaked at 19 GB and did not finish in 900 s on this 2-core machine), 2.7 GB at n = 64.
# It runs at this n, beside our structured algorithm at the same n, in the default run.
REFERENCE_N = 64
JAX_ALGOS = ("structured", "jacobian", "ntvp")
# Algorithm -> (timed calls, GiB of free memory it needs at full size, measured earlier).
# Compilation is excluded ahead of time, so one call of a ~1-minute algorithm is a fair
# measurement; torch gets two (its first call warms the allocator) and reports the faster.
HEAVY = {"jacobian": (1, 12.0), "ntvp": (1, 9.0), "reference": (2, 4.0), "torch": (2, 12.0)}
CHILD_TIMEOUT_S = 1200
FAST_REPEATS = 50


def _inputs(n: int) -> np.ndarray:
    try:
        from ntk_limits import data

        x = data.load("mnist5k", n=n, seed=0).x
        return np.asarray(x, np.float32).reshape(n, -1)
    except Exception:  # noqa: BLE001 - any data problem: fall back to noise of the same shape
        return np.random.default_rng(0).standard_normal((n, 784)).astype(np.float32)


def _jax_kernels(cfg: dict[str, Any], algos: list[str]) -> dict[str, Any]:
    import jax

    from ntk_limits import kernels, models
    from ntk_limits.kernels import _nt

    arch = models.mlp(cfg["width"], cfg["depth"], cfg["out"], parameterization="standard")
    x = jax.numpy.asarray(_inputs(cfg["n"]))
    _, params = arch.init_fn(jax.random.key(0), (-1, x.shape[1]))
    if cfg.get("save_dir"):  # the torch twin loads the same weights
        leaves = [np.asarray(a) for a in jax.tree_util.tree_leaves(params)]
        np.savez(os.path.join(cfg["save_dir"], "params.npz"), *leaves)
    fns = {a: kernels.empirical_ntk_fn(arch.apply_fn, algorithm=a) for a in algos}
    if "structured" in algos:
        impl = _nt.NtkImplementation.STRUCTURED_DERIVATIVES
        fns["nt-structured"] = _nt.empirical_ntk_fn(
            arch.apply_fn, trace_axes=(-1,), vmap_axes=0, implementation=impl
        )
    compiled, compile_s, programs = {}, {}, {}
    for name, fn in fns.items():
        start = time.perf_counter()
        lowered = jax.jit(fn).lower(x, None, params)
        compiled[name] = lowered.compile()
        compile_s[name] = time.perf_counter() - start
        programs[name] = lowered.as_text(debug_info=False)
    same = "nt-structured" in programs and programs["structured"] == programs["nt-structured"]
    calls = {name: (lambda c=c: c(x, None, params)) for name, c in compiled.items()}
    fast = [a for a in calls if a not in HEAVY]
    times = common.time_interleaved({a: calls[a] for a in fast}, cfg["fast_repeats"])
    for a in calls:
        if a in HEAVY:
            times[a] = common.time_calls(calls[a], HEAVY[a][0], warmup=0)
    if cfg.get("save_dir"):
        for name, call in calls.items():
            np.save(os.path.join(cfg["save_dir"], f"{name}.npy"), np.asarray(call()))
    return {"times": times, "compile_s": compile_s, "same_program": same}


def _torch_kernel(cfg: dict[str, Any]) -> dict[str, Any]:
    """The NTK as a PyTorch user writes it (torch.func tutorial: jacrev + vmap + einsum)."""
    import torch
    from torch.func import functional_call, jacrev, vmap

    torch.manual_seed(0)
    layers, fan_in = [], 784
    for _ in range(cfg["depth"]):
        layers += [torch.nn.Linear(fan_in, cfg["width"]), torch.nn.ReLU()]
        fan_in = cfg["width"]
    net = torch.nn.Sequential(*layers, torch.nn.Linear(fan_in, cfg["out"]))
    params = {k: v.detach() for k, v in net.named_parameters()}
    saved = os.path.join(cfg.get("save_dir") or "", "params.npz")
    if os.path.exists(saved):  # the JAX network's weights: W (in, out) -> weight (out, in)
        with np.load(saved) as z:
            arrays = [z[f"arr_{i}"] for i in range(len(z.files))]
        for (name, _), a in zip(params.items(), arrays, strict=True):
            params[name] = torch.from_numpy(a.T.copy() if name.endswith("weight") else a.ravel())
    x = torch.from_numpy(_inputs(cfg["n"]))

    def f_single(p, xi):
        return functional_call(net, p, (xi.unsqueeze(0),)).squeeze(0)

    def ntk(x1):
        jac = vmap(jacrev(f_single), (None, 0))(params, x1)
        jac = [j.flatten(2) for j in jac.values()]
        return sum(torch.einsum("Naf,Maf->NM", j, j) for j in jac) / cfg["out"]

    with torch.no_grad():
        # No compilation to exclude; a slow first call (allocator warm-up) is absorbed by
        # the median of the 3 calls.
        times = common.time_calls(lambda: ntk(x), HEAVY["torch"][0], warmup=0)
        if cfg.get("save_dir"):
            np.save(os.path.join(cfg["save_dir"], "torch.npy"), ntk(x).numpy())
    return {"times": {"torch": times}, "compile_s": {}, "threads": torch.get_num_threads()}


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Child: times the algorithms in ``cfg["algos"]`` and reports this process's peak RSS."""
    out: dict[str, Any] = {"times": {}, "compile_s": {}}
    jax_algos = [a for a in cfg["algos"] if a != "torch"]
    if jax_algos:
        out = _jax_kernels(cfg, jax_algos)
    if "torch" in cfg["algos"]:
        r = _torch_kernel(cfg)
        out["times"].update(r["times"])
        out["torch_threads"] = r["threads"]
    out["peak_rss"] = common.peak_rss_bytes()
    return out


def _groups(quick: bool, have_torch: bool) -> list[tuple[list[str], dict[str, Any], str]]:
    """``(algorithms, shape, suffix)`` per child process; ``suffix`` tags a reduced shape."""
    algos = list(JAX_ALGOS) + (["torch"] if have_torch else [])
    if quick:
        return [([*algos, "reference"], QUICK, "")]
    small = {**FULL, "n": REFERENCE_N}
    return [([a], FULL, "") for a in algos] + [
        (["reference", "structured"], small, f"@n={REFERENCE_N}")
    ]


def _rel_diff(save_dir: str, name: str) -> tuple[float | None, str | None]:
    """Max relative difference to the reference kernel saved in ``save_dir`` (the Jacobian
    contraction where the reference did not run), and the name of what it was compared with."""
    path = lambda n: os.path.join(save_dir, f"{n}.npy")
    against = next((a for a in ("reference", "jacobian") if os.path.exists(path(a))), None)
    if against is None or against == name or not os.path.exists(path(name)):
        return (0.0 if against == name else None), against
    r, g = np.load(path(against)), np.load(path(name))
    return float(np.max(np.abs(g - r)) / np.max(np.abs(r))), against


def _collect(quick: bool, have_torch: bool, save_dir: str) -> dict[str, dict[str, Any]]:
    """Runs every group in a child; keys are algorithm names with the group's size suffix."""
    found: dict[str, dict[str, Any]] = {}
    for group, shape, suffix in _groups(quick, have_torch):
        need = max(HEAVY.get(a, (0, 1.0))[1] for a in group)
        free = common.available_memory_bytes() / common.GIB
        if not quick and free < need:
            for a in group:
                found[a + suffix] = {"skipped": f"needs ~{need:.0f} GiB free, {free:.1f} GiB"}
            continue
        print(f"  ntk: {', '.join(group)} (n={shape['n']})", flush=True)
        where = os.path.join(save_dir, suffix.strip("@=") or "full")
        os.makedirs(where, exist_ok=True)
        cfg = {**shape, "algos": group, "fast_repeats": FAST_REPEATS, "save_dir": where}
        res = common.run_child("ntk", cfg, timeout=CHILD_TIMEOUT_S)
        if "error" in res:
            found.update({a + suffix: {"error": res["error"]} for a in group})
            continue
        for name, times in res["times"].items():
            # Heavy algorithms: the fastest of their few calls; fast ones: the median.
            best = min(times) if name in HEAVY else common.median(times)
            found[name + suffix] = {
                "time": best,
                "times": times,
                "compile_s": res["compile_s"].get(name),
                "peak_rss_gib": res["peak_rss"] / common.GIB,
                "same_program": res.get("same_program"),
                "n": shape["n"],
                "save_dir": where,
            }
    for name, r in found.items():  # after every group: the reference may run last
        if "save_dir" in r:
            r["rel_diff"] = _rel_diff(r.pop("save_dir"), name.split("@")[0])
    return found


def _size(shape: dict[str, Any], n: int | None = None) -> str:
    n = shape["n"] if n is None else n
    return f"{shape['depth']}x{shape['width']} MLP, {n}x784, {shape['out']} outputs"


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Returns the NTK benchmark rows (one per algorithm plus the goal ratios)."""
    try:
        import torch  # noqa: F401

        have_torch = True
    except ImportError:
        print("  skip torch.func: PyTorch is not installed (make bench-deps)", flush=True)
        have_torch = False
    shape = QUICK if quick else FULL
    size = _size(shape)
    with tempfile.TemporaryDirectory() as save_dir:
        found = _collect(quick, have_torch, save_dir)
    rows = []
    for name, r in found.items():
        label = f"empirical NTK [{name.split('@')[0]}] ({_size(shape, r.get('n'))})"
        if "time" not in r:
            rows.append(common.skipped(label, r.get("skipped") or r.get("error", "?")))
            continue
        rows.append(
            common.record(
                label,
                r["time"],
                "s",
                times_s=r["times"],
                compile_s=r["compile_s"],
                peak_rss_gib=r["peak_rss_gib"],
                max_rel_diff=r["rel_diff"][0],
                max_rel_diff_against=r["rel_diff"][1],
            )
        )
    rows += _goal_rows(found, have_torch, size)
    small = f"@n={REFERENCE_N}"
    ref, ours = _time(found, "reference" + small), _time(found, "structured" + small)
    if ref is not None and ours is not None:
        rows.append(
            common.record(
                f"empirical NTK: pure-JAX dense reference / ours (structured) "
                f"({_size(shape, REFERENCE_N)})",
                ours,
                "s",
                baseline=ref,
                ratio=ref / ours,
                goal="(no goal)",
            )  # fmt: skip
        )
    return rows


def _time(found: dict[str, dict[str, Any]], name: str) -> float | None:
    return found.get(name, {}).get("time")


def _goal_rows(found, have_torch: bool, size: str) -> list[dict[str, Any]]:
    ours = _time(found, "structured")
    rows = []
    torch_t = _time(found, "torch")
    name = f"empirical NTK: torch.func time / ours (structured) ({size})"
    if ours is None or torch_t is None:
        why = "torch not installed" if not have_torch else "a measurement is missing"
        rows.append(common.skipped(name, why, goal=">= 2x"))
    else:
        ratio = torch_t / ours
        rows.append(
            common.record(
                name, ours, "s", baseline=torch_t, ratio=ratio, goal=">= 2x", met=ratio >= 2.0
            )
        )
    nt_times = {a: _time(found, a) for a in ("nt-structured", "jacobian", "ntvp")}
    nt_times = {a: t for a, t in nt_times.items() if t is not None}
    name = f"empirical NTK: ours (structured) / best nt algorithm ({size})"
    if ours is None or not nt_times:
        rows.append(common.skipped(name, "a measurement is missing", goal="<= 1.1"))
    else:
        best = min(nt_times, key=nt_times.get)
        ratio = ours / nt_times[best]
        if best == "nt-structured":  # timed in alternation: median of the paired ratios
            pairs = zip(found["structured"]["times"], found[best]["times"], strict=True)
            ratio = common.median([a / b for a, b in pairs])
        rows.append(
            common.record(
                name,
                ours,
                "s",
                baseline=nt_times[best],
                ratio=ratio,
                goal="<= 1.1",
                met=ratio <= 1.1,
                best_nt_algorithm=best,
                identical_compiled_program=found["structured"].get("same_program"),
            )
        )
    return rows


if __name__ == "__main__":
    common.child_main(measure)
