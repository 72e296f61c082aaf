"""Small problems shared by several test modules (plain functions, no fixtures)."""

import jax


def linear(params, x):
    """A linear model ``x @ w``: its own linearisation, with a constant Jacobian."""
    return x @ params["w"]


def linear_problem(n=4, d=7, k=3, seed=0):
    """``x (n, d)``, params ``{"w": (d, k)}`` and targets ``y (n, k)``, standard normal."""
    kx, kw, ky = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, d))
    return x, {"w": jax.random.normal(kw, (d, k))}, jax.random.normal(ky, (n, k))
