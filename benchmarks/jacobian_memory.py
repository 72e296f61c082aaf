"""Peak memory of the Jacobian-drift diagnostic (``ntk_limits.kernels.jacobian_change``).

Each size runs in its own child process, which reports its peak resident set size
(VmHWM: everything the process ever held, JAX runtime included) and its resident size
just before the diagnostic (inputs, both parameter sets, JAX loaded). The network is a
2-hidden-layer MLP on MNIST-shaped inputs (784 dims) with 10 outputs, sized to 10^6 and
10^7 parameters; ``n`` inputs, ``num_iters`` power iterations, the exact Frobenius norm
by structured derivatives (the default) and, at 10^6 only, by ``n·k`` VJPs batched ``chunk``
at a time (~100x slower; at 10^7 it took 180 s). The baseline is the size of the dense
Jacobian ``n·k·P`` float32 that a non-matrix-free implementation would hold (computed,
not run).
"""

import functools
import time
from typing import Any

from benchmarks import common

# (label, width giving ~P parameters for depth 2, 784 inputs, 10 outputs, Frobenius method)
FULL = (("1e6", 680, "structured"), ("1e7", 2800, "structured"), ("1e6", 680, "vjp"))
QUICK = (("1e4", 12, "structured"), ("1e5", 100, "structured"), ("1e4", 12, "vjp"))
N_INPUTS, OUTPUTS, NUM_ITERS, CHUNK = 64, 10, 10, 16
GOAL_GIB = 4.0


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Child: one ``jacobian_change`` at width ``cfg["width"]``; peak RSS and time."""
    import jax

    from ntk_limits import kernels, models

    arch = models.mlp(cfg["width"], 2, OUTPUTS)
    k0, k1, k2, k3 = jax.random.split(jax.random.key(0), 4)
    _, params0 = arch.init_fn(k0, (-1, 784))
    leaves, tree = jax.tree_util.tree_flatten(params0)
    noise = jax.random.split(k1, len(leaves))
    moved = [
        a + 0.01 * jax.random.normal(k, a.shape, a.dtype)
        for a, k in zip(leaves, noise, strict=True)
    ]
    params = jax.tree_util.tree_unflatten(tree, moved)
    x = jax.random.normal(k2, (cfg["n"], 784))
    # Called eagerly, as a notebook user would (it also works under jax.jit).
    fn = functools.partial(
        kernels.jacobian_change,
        arch.apply_fn,
        num_iters=cfg["num_iters"],
        frobenius=cfg["frobenius"],
        chunk=cfg["chunk"],
    )
    jax.block_until_ready((params0, params, x))
    before = common.current_rss_bytes()
    start = time.perf_counter()
    out = jax.block_until_ready(fn(params0, params, x, key=k3))
    stats = jax.devices()[0].memory_stats() or {}  # accelerators: device memory (CPU: none)
    return {
        "backend": jax.default_backend(),
        "device_peak": stats.get("peak_bytes_in_use"),
        "seconds": time.perf_counter() - start,  # includes compilation (eager call)
        "peak_rss": common.peak_rss_bytes(),
        "rss_before": before,
        "num_params": models.num_params(params0),
        "frobenius_relative": float(out.frobenius_relative),
        "spectral_relative": float(out.spectral_relative),
    }


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Returns one row per size: peak memory (GiB) vs the dense Jacobian's size.

    Peak memory is the process's peak RSS on CPU and the device's ``peak_bytes_in_use``
    on an accelerator (the host RSS is kept as an extra key).
    """
    rows, seconds = [], {}
    for label, width, method in QUICK if quick else FULL:
        cfg = {"width": width, "n": N_INPUTS, "num_iters": NUM_ITERS, "chunk": CHUNK,
               "frobenius": method}  # fmt: skip
        print(f"  jacobian_change memory: ~{label} parameters, {method}", flush=True)
        res = common.run_child("jacobian_memory", cfg)
        knobs = f"chunk={CHUNK}" if method == "vjp" else "structured"
        name = (
            f"jacobian_change peak memory, {label} params "
            f"(n={N_INPUTS}, k={OUTPUTS}, iters={NUM_ITERS}, Frobenius {knobs})"
        )
        goal = f"< {GOAL_GIB:g} GiB" if label == "1e7" else ""
        if "error" in res:
            rows.append(common.skipped(name, res["error"], goal))
            continue
        seconds[label, method] = res["seconds"]
        peak = res["peak_rss"] / common.GIB
        on_device = res.get("backend", "cpu") != "cpu" and res.get("device_peak") is not None
        if on_device:  # on an accelerator the goal is about device memory
            peak = res["device_peak"] / common.GIB
        dense = N_INPUTS * OUTPUTS * res["num_params"] * 4 / common.GIB
        rows.append(
            common.record(
                name,
                peak,
                "GiB",
                baseline=dense,
                ratio=dense / peak,
                goal=goal,
                met=(peak < GOAL_GIB) if goal else None,
                measured="device peak_bytes_in_use" if on_device else "process peak RSS",
                host_peak_rss_gib=res["peak_rss"] / common.GIB,
                num_params=res["num_params"],
                rss_before_gib=res["rss_before"] / common.GIB,
                seconds_incl_compile=res["seconds"],
                frobenius_relative=res["frobenius_relative"],
                baseline_is="dense Jacobian n*k*P float32 (computed)",
            )
        )
    small = (QUICK if quick else FULL)[0][0]
    if (small, "vjp") in seconds and (small, "structured") in seconds:
        fast, slow = seconds[small, "structured"], seconds[small, "vjp"]
        rows.append(
            common.record(
                f"jacobian_change time incl. compile, {small} params: structured vs VJP Frobenius",
                fast,
                "s",
                baseline=slow,
                ratio=slow / fast,
                goal="(no goal)",
            )  # fmt: skip
        )
    return rows


if __name__ == "__main__":
    common.child_main(measure)
