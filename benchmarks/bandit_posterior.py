"""Bandit GP posterior: cost of one round at round ``t`` (incremental update vs fresh solve).

Uses the bandits package's own linear algebra (``ntk_limits.bandits.posterior``): the
posterior is the inverse Cholesky factor of ``K_t + ρI`` in a ``(T, T)`` buffer. Here the
buffer is ``T = t`` (a bandit at the last round of a ``t``-round horizon), so the cost per
round is measured as a function of ``t``:

* incremental: :func:`incremental_posterior_update`, ``O(t²)``; timed as 16 consecutive
  rounds in one ``lax.scan`` (the way the bandit loop runs it, buffer donated so the row
  writes are in place), divided by 16;
* dense: :func:`dense_posterior`, a fresh Cholesky and triangular inverse, ``O(t³)``.

Both are medians of 3 calls after a warm-up, in one child process. The incremental factor
after the 16 rounds is compared with the dense one (max relative difference).
"""

import math
from typing import Any

from benchmarks import common

FULL = (500, 1000, 2000, 5000)
QUICK = (100, 200)
ROUNDS = 16
RIDGE = 1.0


def _gram(t: int):
    import jax
    import jax.numpy as jnp

    z = jax.random.normal(jax.random.key(t), (t, 16))
    sq = jnp.sum(z**2, 1)
    return jnp.exp(-(sq[:, None] + sq[None, :] - 2.0 * z @ z.T) / 32.0)


def _one(t: int) -> dict[str, Any]:
    import functools

    import jax
    import jax.numpy as jnp

    from ntk_limits.bandits import posterior as post

    gram = _gram(t)
    ridge = jnp.asarray(RIDGE, gram.dtype)

    @functools.partial(jax.jit, donate_argnums=0)
    def rounds(factor, gram):
        def step(f, i):
            return post.incremental_posterior_update(f, gram[i], gram[i, i]), None

        return jax.lax.scan(step, factor, jnp.arange(t - ROUNDS, t))[0]

    count = jnp.asarray(t, jnp.int32)
    dense = jax.jit(post.dense_posterior).lower(gram, count, ridge).compile()
    start = post.dense_posterior(gram, jnp.asarray(t - ROUNDS, jnp.int32), ridge)
    fresh = lambda: rounds(jax.tree_util.tree_map(jnp.copy, start), gram)
    inc = common.time_calls(fresh, 3)  # includes one (t, t) copy per call: an upper bound
    # Compiled ahead of time, so no warm-up call is needed (each call is O(t³)).
    den = common.time_calls(lambda: dense(gram, count, ridge), 3, warmup=0)
    a, b = fresh().winv, dense(gram, count, ridge).winv
    err = float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    return {"incremental": [s / ROUNDS for s in inc], "dense": den, "rel_diff": err}


def measure(cfg: dict[str, Any]) -> dict[str, Any]:
    """Child: per-round times for every ``t`` in ``cfg["ts"]``."""
    return {str(t): _one(t) for t in cfg["ts"]}


def _slope(ts: list[int], times: list[float]) -> float:
    xs, ys = [math.log(t) for t in ts], [math.log(s) for s in times]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    num = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    return num / sum((a - mx) ** 2 for a in xs)


def run(quick: bool = False) -> list[dict[str, Any]]:
    """Returns one row per ``t`` (incremental ms per round vs dense ms) plus the slopes."""
    ts = QUICK if quick else FULL
    print(f"  bandit posterior: t = {', '.join(map(str, ts))}", flush=True)
    res = common.run_child("bandit_posterior", {"ts": list(ts)})
    goal = "incremental faster than dense"
    if "error" in res:
        return [common.skipped("bandit posterior per round", res["error"], goal)]
    rows, inc_t, den_t = [], [], []
    for t in ts:
        r = res[str(t)]
        inc, den = common.median(r["incremental"]), common.median(r["dense"])
        inc_t.append(inc)
        den_t.append(den)
        rows.append(
            common.record(
                f"bandit posterior, one round at t={t}: incremental vs dense solve",
                inc * 1e3,
                "ms",
                baseline=den * 1e3,
                ratio=den / inc,
                goal=goal,
                met=inc < den,
                max_rel_diff_incremental_vs_dense=r["rel_diff"],
            )
        )
    rows.append(
        common.record(
            "bandit posterior: log-log slope of cost vs t, incremental (dense as baseline)",
            _slope(list(ts), inc_t),
            "exponent",
            baseline=_slope(list(ts), den_t),
            goal="~2 (incremental) vs ~3 (dense) at large t",
            met=None,
        )
    )
    return rows


if __name__ == "__main__":
    common.child_main(measure)
