"""Shared by the tests of ntk_limits.continual: small streams, models and compiled runs."""

import functools

import jax
import numpy as np
import optax

from ntk_limits import continual, models
from ntk_limits.continual import TaskArrays
from ntk_limits_experiments.common import cpu_compile_options

# Unoptimised CPU programs: these tests are mostly XLA compilation, and LLVM's optimisation
# passes more than double it (the tolerances are float32 ones either way).
jit = functools.partial(jax.jit, compiler_options=cpu_compile_options())


def linear_apply(params, x):
    """``x @ W + b``: a model whose NTK is ``x·x' + 1`` for every output."""
    w, b = params
    return x @ w + b[None]


def random_stream(seed, t=3, n=20, m=10, d=5, c=2, multi_head=True) -> TaskArrays:
    """``t`` tasks of ``n`` train / ``m`` test Gaussian inputs in ``d`` dims, ``c`` classes.

    Drawn by numpy: eager ``jax.random`` compiles a program per call shape (seconds here).
    """
    rng = np.random.default_rng(seed)
    offsets = np.arange(t) * c if multi_head else np.zeros(t)
    return TaskArrays(
        rng.normal(size=(t, n, d)).astype(np.float32),
        rng.integers(0, c, (t, n)).astype(np.int32),
        rng.normal(size=(t, m, d)).astype(np.float32),
        rng.integers(0, c, (t, m)).astype(np.int32),
        offsets.astype(np.int32),
    )


def normal(seed, shape, scale=1.0):
    """``scale · N(0, 1)`` float32 numpy array of ``shape``."""
    return (scale * np.random.default_rng(seed).normal(size=shape)).astype(np.float32)


MLP = models.mlp(16, depth=1, out_dim=6)
_init_mlp = jit(lambda k: MLP.init_fn(k, (-1, 5))[1])


def mlp_params(key):
    """Parameters of :data:`MLP` (width 16, 5 inputs, 6 outputs)."""
    return _init_mlp(key)


@functools.cache
def compiled_run(model, loss="xent", batch_size=None, linearized=False):
    """One jitted ``run(lr, params, stream, key, epochs, target)`` per setting, shared by tests."""
    apply_fn = MLP.apply_fn if model == "mlp" else linear_apply

    def run(lr, params, stream, key, max_epochs, target):
        train = continual.sequential_train(
            apply_fn, optax.sgd(lr), head_size=2, batch_size=batch_size, loss=loss,
            linearized=linearized,
        )  # fmt: skip
        return train(params, stream, key, max_epochs, target)

    return jit(run)


@functools.cache
def compiled_update(batch_size=None):
    """Jitted ``update(lr, state, x, y, offset, key, max_epochs, target)`` of fine-tuning
    :data:`MLP` (6 outputs, one head), shared by tests."""

    def update(lr, *args):
        learner = continual.fine_tuning(
            MLP.apply_fn, optax.sgd(lr), head_size=6, batch_size=batch_size
        )
        return learner.update(*args)

    return jit(update)
