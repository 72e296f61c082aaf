"""An 8-seed ensemble trained as one vmapped program vs 8 sequential runs of the same
jitted ``make_train`` program (compiled once, called 8 times), on 1024 MNIST images.

Both variants are timed in alternation (warm-up excluded, median of 3) in one child
process. The vmapped and sequential losses are compared (they must agree to float32
rounding). With more than one device the seed-sharded ensemble
(:func:`ntk_limits.parallel.sharded_ensemble`) is timed too.
"""

from typing import Any

from benchmarks import common

SEEDS = 8
# (label, width, depth, batch size or None for full batch, steps)
FULL = (
    ("mlp 2x256, SGD batch 128, 200 steps", 256, 2, 128, 200),
    ("mlp 1x16, SGD batch 16, 300 steps (bandit-sized)", 16, 1, 16, 300),
)
QUICK = (("mlp 1x32, SGD batch 32, 20 steps", 32, 1, 32, 20),)


def _data(n: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    from ntk_limits import data

    try:
        ds = data.load("mnist5k", n=n, seed=0)
        x, labels = np.asarray(ds.x, np.float32).reshape(n, -1), np.asarray(ds.y)
    except Exception:  # noqa: BLE001 - any data problem: noise of the same shape
        rng = np.random.default_rng(0)
        x, labels = rng.standard_normal((n, 784)).astype(np.float32), rng.integers(0, 10, n)
    return jnp.asarray(x), jax.nn.one_hot(jnp.asarray(labels), 10)


def _one(x, y, width: int, depth: int, batch: int | None, steps: int, repeats: int):
    import jax
    import jax.numpy as jnp
    import optax

    from ntk_limits import models, parallel, training

    arch = models.mlp(width, depth, 10)
    train = training.make_train(arch.apply_fn, optax.sgd(0.5), steps, batch_size=batch)
    keys = jax.random.split(jax.random.key(0), SEEDS)
    stack = jax.vmap(lambda k: arch.init_fn(k, (-1, x.shape[1]))[1])(keys)
    singles = [jax.tree_util.tree_map(lambda a, i=i: a[i], stack) for i in range(SEEDS)]
    ensemble = jax.jit(jax.vmap(train, (0, None, None, 0)))
    calls = {
        "vmapped": lambda: ensemble(stack, x, y, keys),
        "sequential": lambda: [train(p, x, y, k) for p, k in zip(singles, keys, strict=True)],
    }
    if jax.device_count() > 1:
        calls["sharded"] = lambda: parallel.sharded_ensemble(train, stack, x, y, keys)
    times = common.time_interleaved(calls, repeats)
    losses_v = calls["vmapped"]()[1]
    losses_s = jnp.stack([r[1] for r in calls["sequential"]()])
    err = float(jnp.max(jnp.abs(losses_v - losses_s)) / jnp.max(jnp.abs(losses_s)))
    return {"times": times, "max_rel_loss_diff": err, "compiles": train._cache_size()}


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Child: times every configuration in ``cfg["configs"]``."""
    import jax

    x, y = _data(cfg["n"])
    out = {label: _one(x, y, *rest, cfg["repeats"]) for label, *rest in cfg["configs"]}
    return {"results": out, "devices": jax.device_count(), "backend": jax.default_backend()}


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Returns one row per configuration: vmapped time, sequential time, speed-up."""
    configs = QUICK if quick else FULL
    n = 256 if quick else 1024
    print(f"  ensemble: {len(configs)} configuration(s), {SEEDS} seeds, {n}x784", flush=True)
    res = common.run_child("ensemble", {"configs": configs, "n": n, "repeats": 3})
    goal = ">= 3x"
    if "error" in res:
        return [
            common.skipped(f"{SEEDS}-seed ensemble ({c[0]})", res["error"], goal) for c in configs
        ]
    rows = []
    for label, r in res["results"].items():
        t = {k: common.median(v) for k, v in r["times"].items()}
        ratio = t["sequential"] / t["vmapped"]
        rows.append(
            common.record(
                f"{SEEDS}-seed ensemble, vmapped vs sequential ({label}, {n}x784)",
                t["vmapped"],
                "s",
                baseline=t["sequential"],
                ratio=ratio,
                goal=goal,
                met=ratio >= 3.0,
                times_s=r["times"],
                sharded_s=t.get("sharded"),
                devices=res["devices"],
                backend=res["backend"],
                max_rel_loss_diff=r["max_rel_loss_diff"],
                train_compiles=r["compiles"],
            )
        )
    return rows


if __name__ == "__main__":
    common.child_main(measure)
