"""Fast-compiling helpers shared by the kernels and teaser studies.

On a CPU most of a small study's time is XLA compilation, not compute. Two helpers cut it:

* :func:`draw_params` draws a stax network's parameters with the distribution of its
  ``init_fn`` from one ``jax.random.normal`` call. stax's ``init_fn`` makes two random
  calls per layer and each compiles its own threefry program (about a second each on a
  shared 2-core machine); one flat draw compiles once. The per-leaf scales are checked
  to reproduce ``init_fn`` exactly in ``tests/experiments/test_kernels_smoke.py``.
* :func:`compile_jit` compiles small programs without LLVM's optimisation passes on a
  CPU, where those passes take seconds and save less than that.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["CHEAP_COST", "compile_jit", "draw_params", "leaf_scales"]

CHEAP_COST = 1e8  # multiply-adds below which an unoptimised CPU program is faster overall


def _is_leaf(s) -> bool:
    return s is None or hasattr(s, "shape")


def leaf_scales(shapes, parameterization: str, w_std: float, b_std: float) -> list[float]:
    """Per-leaf standard deviations of stax's init, in ``jax.tree_util.tree_leaves`` order.

    stax layers with parameters hold a pair ``(W, b)``. In NTK parametrization both are
    standard normal; in standard parametrization ``W ~ N(0, W_std² / fan_in)`` with
    ``fan_in = prod(W.shape[:-1])`` (dense: inputs; convolution: filter size × input
    channels) and ``b ~ N(0, b_std²)``.

    Args:
      shapes: the parameter pytree (arrays or ``ShapeDtypeStruct``; ``None`` biases).
      parameterization: ``"ntk"`` or ``"standard"``.
      w_std: ``W_std`` of every layer.
      b_std: ``b_std`` of every layer.

    Returns:
      One float per leaf.
    """
    if isinstance(shapes, tuple | list) and len(shapes) == 2 and all(map(_is_leaf, shapes)):
        w, b = shapes
        if parameterization == "ntk":
            return [1.0] * (1 + (b is not None))
        return [w_std / math.sqrt(math.prod(w.shape[:-1]))] + ([b_std] if b is not None else [])
    if isinstance(shapes, tuple | list):
        return [s for sub in shapes for s in leaf_scales(sub, parameterization, w_std, b_std)]
    raise ValueError(f"unexpected stax parameter leaf {shapes!r}")


def draw_params(arch, input_shape, w_std: float, b_std: float):
    """Returns ``draw(key) -> params`` with the distribution of ``arch.init_fn``.

    Args:
      arch: a stax :class:`ntk_limits.models.Architecture`.
      input_shape: ``(-1, ...)``.
      w_std: the ``W_std`` the architecture was built with (standard parametrization).
      b_std: its ``b_std``.

    Returns:
      ``draw(key)``: one ``jax.random.normal`` of all ``P`` parameters, split and scaled
      per leaf. Build it outside ``jit`` and call it inside.
    """
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, input_shape)[1], jax.random.key(0))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    scales = leaf_scales(shapes, arch.parameterization, w_std, b_std)
    sizes = [math.prod(s.shape) for s in leaves]
    splits = np.cumsum(sizes)[:-1].tolist()

    def draw(key):
        z = jax.random.normal(key, (sum(sizes),), leaves[0].dtype)
        parts = jnp.split(z, splits)
        return jax.tree_util.tree_unflatten(
            tree, [c * p.reshape(s.shape) for c, p, s in zip(scales, parts, leaves, strict=True)]
        )

    return draw


def compile_jit(fn, args, cost: float):
    """``jax.jit(fn)`` compiled for ``args``, skipping LLVM optimisation for small CPU programs.

    Args:
      fn: a traceable function.
      args: example arguments (arrays; shapes and dtypes are what matter).
      cost: rough number of multiply-adds of one call; below :data:`CHEAP_COST` on a CPU
        the program is compiled with ``xla_backend_optimization_level=0``.

    Returns:
      The compiled function (call it with arguments like ``args``).
    """
    lowered = jax.jit(fn).lower(*args)
    cheap = jax.default_backend() == "cpu" and cost < CHEAP_COST
    return lowered.compile({"xla_backend_optimization_level": 0} if cheap else None)
