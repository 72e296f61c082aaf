"""``regime.diagnose`` of a 1-million-parameter MLP on 256 MNIST images over 100 GD steps,
against the same quantities assembled by hand from neural-tangents in the same child.

Ours: one call (three compiled programs: the float64 Gram, the training ``lax.scan`` with
checkpoints, and a ``lax.map`` over checkpoints of Lanczos ``‖ΔJ‖₂``, the Gram, the kernel
change and the linearisation error). The baseline is what a user writes with
neural-tangents alone: ``nt.empirical_ntk_fn`` (structured derivatives, the leanest: the
default Jacobian contraction would hold ``J`` of 2560 × 1M numbers, 20 GB in float64) for
``K₀`` in float64 and ``K_t`` at each checkpoint, a jitted GD step in a Python loop, and
``‖ΔJ‖₂`` from the formed ``ΔJ ΔJᵀ`` (the NTK of ``f(θ_t + δ) − f(θ₀ + δ)``) by a dense
eigensolver, plus a JVP for the linearisation error. Both are timed from a cold start
(compilation included, as a user meets it), in alternation, and their ``C′``, kernel
change and ``λ_min`` are compared (they compute the same quantities two ways).
"""

import time
from typing import Any

from benchmarks import common

FULL = {"width": 680, "depth": 2, "n": 256, "n_test": 64, "steps": 100, "checkpoints": 5}
QUICK = {"width": 64, "depth": 1, "n": 32, "n_test": 8, "steps": 10, "checkpoints": 2}
GOAL_S = 60.0


def _problem(cfg):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ntk_limits import data, models

    n, nt = cfg["n"], cfg["n_test"]
    train = data.load("mnist5k", n=n, seed=0)
    test = data.load("mnist5k", split="test", n=nt, seed=0)
    x = jnp.asarray(np.asarray(train.x).reshape(n, -1))
    xt = jnp.asarray(np.asarray(test.x).reshape(nt, -1))
    y = jax.nn.one_hot(jnp.asarray(train.y), 10)
    arch = models.mlp(width=cfg["width"], depth=cfg["depth"], out_dim=10)
    _, params = arch.init_fn(jax.random.key(0), (-1, x.shape[1]))
    return arch.apply_fn, params, x, y, xt


def _ours(cfg):
    from ntk_limits import regime

    apply_fn, params, x, y, xt = _problem(cfg)
    train = regime.gd(None, cfg["steps"])
    d = regime.diagnose(apply_fn, params, x, y, train=train, x_test=xt,
                        checkpoints=cfg["checkpoints"])  # fmt: skip
    return {"c_prime": d.c_prime.tolist(), "kernel_change": d.kernel_change.tolist(),
            "lambda_min": d.lambda_min, "lr": float(len(y.reshape(-1)) / d.lambda_max),
            "num_params": d.num_params}  # fmt: skip


def _by_hand(cfg, lr: float):
    """The baseline: neural-tangents' empirical NTK, a Python loop, dense eigensolvers."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ntk_limits.kernels import _nt as nt  # neural-tangents, patched for current JAX

    apply_fn, params, x, y, xt = _problem(cfg)
    structured = nt.NtkImplementation.STRUCTURED_DERIVATIVES
    ntk_fn = nt.empirical_ntk_fn(apply_fn, trace_axes=(), vmap_axes=0, implementation=structured)
    ntk = jax.jit(ntk_fn)

    def full(k4):  # (n, n, k, k) -> (n·k, n·k), float64 numpy
        n, _, k, _ = k4.shape
        return np.asarray(k4, np.float64).transpose(0, 2, 1, 3).reshape(n * k, n * k)

    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        k0_64 = full(jax.jit(ntk_fn)(jnp.asarray(x, jnp.float64), None, p64))
    eig = np.linalg.eigvalsh(k0_64)
    loss = lambda p: 0.5 * jnp.mean((apply_fn(p, x) - y) ** 2)
    step = jax.jit(lambda p: jax.tree_util.tree_map(lambda a, g: a - lr * g, p, jax.grad(loss)(p)))
    every = cfg["steps"] // cfg["checkpoints"]
    snaps, p = [], params
    for t in range(1, cfg["steps"] + 1):
        p = step(p)
        if t % every == 0:
            snaps.append(p)
    k0 = full(ntk(x, None, params))

    def diff_ntk(p0, pt):
        shift = lambda q, d: jax.tree_util.tree_map(jnp.add, q, d)
        h = lambda d, a: apply_fn(shift(pt, d), a) - apply_fn(shift(p0, d), a)
        fn = nt.empirical_ntk_fn(h, trace_axes=(), vmap_axes=0, implementation=structured)
        return full(jax.jit(fn)(x, None, jax.tree_util.tree_map(jnp.zeros_like, p0)))

    c_primes, changes = [], []
    for pt in snaps:
        dj = np.sqrt(max(np.linalg.eigvalsh(diff_ntk(params, pt))[-1], 0.0))
        c_primes.append(3 * dj / np.sqrt(eig[0]))
        kt = full(ntk(x, None, pt))
        changes.append(float(np.linalg.norm(kt - k0) / np.linalg.norm(k0)))
        delta = jax.tree_util.tree_map(jnp.subtract, pt, params)
        f0, df = jax.jvp(lambda q: apply_fn(q, xt), (params,), (delta,))
        float(jnp.linalg.norm(apply_fn(pt, xt) - f0 - df))  # the linearisation error
    return {"c_prime": c_primes, "kernel_change": changes, "lambda_min": float(eig[0])}


def _measure(args: dict[str, Any]) -> dict[str, Any]:
    cfg = QUICK if args["quick"] else FULL
    start = time.perf_counter()
    ours = _ours(cfg)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    hand = _by_hand(cfg, ours["lr"])
    hand_s = time.perf_counter() - start
    peak = common.peak_rss_bytes()
    return {"ours_s": ours_s, "hand_s": hand_s, "ours": ours, "hand": hand, "peak": peak,
            "cfg": cfg}  # fmt: skip


def run(quick: bool = False) -> list[dict[str, Any]]:
    """The ``diagnose`` row: our time, the by-hand time as baseline, and their agreement."""
    import numpy as np

    out = common.run_child("diagnose", {"quick": quick}, timeout=1200)
    if "error" in out:
        return [common.skipped("diagnose 1M-param MLP", out["error"], goal=f"<= {GOAL_S:.0f} s")]
    cfg, ours, hand = out["cfg"], out["ours"], out["hand"]
    rel = lambda a, b: float(np.max(np.abs(np.subtract(a, b)) / np.abs(b)))
    label = (f"diagnose {ours['num_params'] / 1e6:.2f}M-param MLP, n={cfg['n']}, "
             f"{cfg['steps']} GD steps (cold, compile included)")  # fmt: skip
    return [
        common.record(
            label, out["ours_s"], "s", baseline=out["hand_s"],
            ratio=out["hand_s"] / out["ours_s"], goal=f"<= {GOAL_S:.0f} s, faster than by hand",
            met=out["ours_s"] <= GOAL_S and out["hand_s"] > out["ours_s"],
            agreement={"c_prime_rel": rel(ours["c_prime"], hand["c_prime"]),
                       "kernel_change_rel": rel(ours["kernel_change"], hand["kernel_change"]),
                       "lambda_min_rel": rel([ours["lambda_min"]], [hand["lambda_min"]])},
            peak_rss_gib=out["peak"] / common.GIB,
        )
    ]  # fmt: skip


if __name__ == "__main__":
    common.child_main(_measure)
