"""The compile clock counts JAX compilations, and only them."""

import time

import jax
import jax.numpy as jnp

from ntk_limits_experiments import timing


def test_compile_clock_counts_a_compilation_and_not_a_cached_call():
    f = jax.jit(lambda x: jnp.tanh(x) @ x.T + 3.0)
    x = jnp.ones((17, 13))
    with timing.compile_clock() as first:
        f(x).block_until_ready()
    with timing.compile_clock() as cached:
        f(x).block_until_ready()
        time.sleep(0.05)  # time outside compilation is not counted
    assert first.seconds > 0
    assert cached.seconds == 0.0


def test_compile_clock_stops_listening_when_closed():
    with timing.compile_clock() as clock:
        pass
    jax.jit(lambda x: x * 7.0 - 1.0)(jnp.ones(5)).block_until_ready()
    assert clock.seconds == 0.0
