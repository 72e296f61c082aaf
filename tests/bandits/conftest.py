"""Shared by the bandit tests: a quick-compiling ``jit`` and float64 for a whole module."""

import functools

import jax
import pytest


@pytest.fixture(scope="session")
def jit():
    """``jax.jit`` without LLVM's optimisation passes on a CPU.

    These tests check values, not speed: the agents' programs compile ~2× faster
    (tests/bandits: 45 s -> 26 s CPU measured with the flag set globally) and run
    for a few rounds only.
    """
    cpu = jax.default_backend() == "cpu"
    options = {"xla_backend_optimization_level": 0} if cpu else None
    return functools.partial(jax.jit, compiler_options=options)


@pytest.fixture(scope="module")
def x64_module():
    """Float64 for every test of a module (``pytestmark = usefixtures("x64_module")``)."""
    with jax.enable_x64(True):
        yield
