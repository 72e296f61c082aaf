"""Test configuration: strict promotion everywhere, x64 where a test asks for it.

The test programs are tiny, so almost all of a test's time is XLA compilation. Unless the
caller set a level in ``XLA_FLAGS``, they are compiled without LLVM's optimisation passes
(as the studies compile small programs, ``common.cpu_compile_options``): measured 1.7x
faster on ``tests/kernels/test_empirical.py``, 5x on its CNN case. The level changes the
machine code, not the HLO: results may differ in the last bits (a float32 sum in another
order; measured 1.7e-7 relative), within every float32 tolerance here. JAX reads the
variable when it starts its CPU backend, after this file; subprocesses inherit it.
"""

import os
from collections.abc import Callable
from typing import Any, NamedTuple

_OPT_LEVEL = "--xla_backend_optimization_level"
if _OPT_LEVEL not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_OPT_LEVEL}=0".strip()

# The command line keeps JAX's persistent compilation cache in ~/.cache by default; tests
# that run it (in-process or as subprocesses) leave the user's cache alone.
os.environ.setdefault("NTK_LIMITS_COMPILE_CACHE", "none")

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from ntk_limits import kernels, models  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")


@pytest.fixture
def x64():
    """Runs one test in float64 (tolerances near machine precision need it)."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


class TinyNet(NamedTuple):
    """A 1-hidden-layer tanh MLP (width 6, 3 → 2) on 5 inputs, in float64."""

    apply_fn: Callable
    x: jax.Array  # (5, 3)
    y: jax.Array  # (5, 2)
    params0: Any
    params1: Any  # params0 + 0.3 sin(3 params0 + 1): a generic nearby point
    j0: np.ndarray  # dense Jacobian at params0, flattened to (n·k, P)
    j1: np.ndarray  # the same at params1


@pytest.fixture(scope="session")
def tiny_net() -> TinyNet:
    """Shared by the NGD and NGD-condition tests (dense references computed once).

    The Jacobians come from ``kernels.jacobian`` (``jax.jacrev`` of the flattened
    parameters): an explicit matrix, independent of the structured NTK code under test.
    """
    with jax.enable_x64(True):
        arch = models.mlp(6, depth=1, out_dim=2, activation="tanh")
        kx, ki, ky = jax.random.split(jax.random.key(0), 3)
        x = jax.random.normal(kx, (5, 3))
        _, params0 = arch.init_fn(ki, (-1, 3))
        params1 = jax.tree_util.tree_map(lambda a: a + 0.3 * jnp.sin(3.0 * a + 1.0), params0)
        dense = jax.jit(lambda p: kernels.jacobian(arch.apply_fn, p, x))
        flat = lambda p: np.asarray(dense(p)).reshape(x.shape[0] * 2, -1)
        y = jax.random.normal(ky, (5, 2))
        return TinyNet(arch.apply_fn, x, y, params0, params1, flat(params0), flat(params1))
