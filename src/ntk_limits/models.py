"""Architectures: one definition gives the finite network and its infinite-width kernels.

Every constructor returns an :class:`Architecture`: ``init_fn``/``apply_fn`` of the finite
network at the requested width and ``kernel_fn``, the exact infinite-width NNGP and NTK of
the same architecture (from neural-tangents' ``stax``), in NTK or standard
parametrization.

Example:
  >>> arch = mlp(width=512, depth=2, out_dim=10)
  >>> _, params = arch.init_fn(jax.random.key(0), (-1, 784))
  >>> arch.apply_fn(params, x).shape          # x: (n, 784)
  (n, 10)
  >>> arch.kernel_fn(x, None, "ntk").shape     # infinite-width NTK, (n, n)
  (n, n)

For the network people actually train (BatchNorm, finite only) see
:mod:`ntk_limits.flax_models`.
"""

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ntk_limits.kernels._nt import stax

__all__ = ["Architecture", "mlp", "cnn", "wide_resnet", "num_params", "ACTIVATIONS"]

PARAMETERIZATIONS = ("ntk", "standard")
ACTIVATIONS = ("relu", "erf", "tanh")


class Architecture(NamedTuple):
    """A finite network and its infinite-width kernels, from one definition.

    Attributes:
      init_fn: ``(key, input_shape) -> (output_shape, params)``; ``input_shape`` has a
        leading batch dimension (use ``-1``).
      apply_fn: ``(params, x) -> f`` with ``x: (n, ...)`` and ``f: (n, out_dim)``.
      kernel_fn: ``(x1, x2, get) -> kernel``: the infinite-width ``"nngp"`` or ``"ntk"``,
        shape ``(n1, n2)`` (output dimensions are independent and identical).
      name: a short description, e.g. ``"mlp-d2-w512-relu-ntk"``.
      width: the hidden width (channels for convolutional networks).
      parameterization: ``"ntk"`` or ``"standard"``.
    """

    init_fn: Callable[..., tuple[Any, Any]]
    apply_fn: Callable[..., jax.Array]
    kernel_fn: Callable[..., Any]
    name: str
    width: int
    parameterization: str


def _check(width: int, depth: int, activation: str, parameterization: str) -> None:
    if not isinstance(width, int | np.integer) or width < 1:
        raise ValueError(f"width must be a positive integer, got {width!r}")
    if not isinstance(depth, int | np.integer) or depth < 1:
        raise ValueError(f"depth must be a positive integer, got {depth!r}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; allowed: {', '.join(ACTIVATIONS)}")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"unknown parameterization {parameterization!r}; allowed: ntk, standard")


def _activation(name: str):
    if name == "relu":
        return stax.Relu()
    if name == "erf":
        return stax.Erf()
    # tanh has no closed-form kernel: Gauss-Hermite quadrature of degree 32, accurate for
    # this smooth bounded function (checked against Monte-Carlo in the tests). stax warns
    # about every numerical layer; the degree is a deliberate choice, so that is silenced.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Numerical Activation Layer")
        return stax.ElementwiseNumerical(
            jax.numpy.tanh, deg=32, df=lambda x: 1 - jax.numpy.tanh(x) ** 2
        )


def _triple(layers):
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    return init_fn, apply_fn, kernel_fn


def mlp(
    width: int,
    depth: int = 1,
    out_dim: int = 1,
    *,
    activation: str = "relu",
    parameterization: str = "ntk",
    W_std: float = math.sqrt(2.0),  # noqa: N803 - the name used in the NTK literature
    b_std: float = 0.1,
) -> Architecture:
    """Fully connected network with ``depth`` hidden layers of ``width`` units.

    Layer ``l`` computes ``h = W_std / sqrt(fan_in) * W x + b_std * b`` (NTK
    parametrization, ``W, b ~ N(0, 1)``) or ``h = W x + b`` with
    ``W ~ N(0, W_std² / fan_in)``, ``b ~ N(0, b_std²)`` (standard parametrization).
    The readout layer has the same ``W_std``, ``b_std``.

    Args:
      width: hidden units per layer (positive).
      depth: number of hidden layers (positive).
      out_dim: outputs.
      activation: ``"relu"``, ``"erf"`` or ``"tanh"``.
      parameterization: ``"ntk"`` or ``"standard"``.
      W_std: weight standard deviation (times ``sqrt(fan_in)``).
      b_std: bias standard deviation.

    Returns:
      The :class:`Architecture`; ``apply_fn`` maps ``(n, d) -> (n, out_dim)``.
    """
    _check(width, depth, activation, parameterization)
    dense = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    layers = []
    for _ in range(depth):
        layers += [stax.Dense(width, **dense), _activation(activation)]
    layers.append(stax.Dense(out_dim, **dense))
    name = f"mlp-d{depth}-w{width}-{activation}-{parameterization}"
    return Architecture(*_triple(layers), name, int(width), parameterization)


def cnn(
    width: int,
    depth: int = 2,
    out_dim: int = 10,
    *,
    activation: str = "relu",
    parameterization: str = "ntk",
    W_std: float = math.sqrt(2.0),  # noqa: N803
    b_std: float = 0.1,
    kernel_size: int = 3,
) -> Architecture:
    """Convolutional network: ``depth`` SAME 3×3 convolutions, global average pool, dense.

    Args:
      width: channels per convolution (positive).
      depth: number of convolution layers (positive).
      out_dim: outputs.
      activation: ``"relu"``, ``"erf"`` or ``"tanh"``.
      parameterization: ``"ntk"`` or ``"standard"``.
      W_std: weight standard deviation (times ``sqrt(fan_in)``).
      b_std: bias standard deviation.
      kernel_size: spatial size of the square filters.

    Returns:
      The :class:`Architecture`; ``apply_fn`` maps ``(n, H, W, C) -> (n, out_dim)``.
    """
    _check(width, depth, activation, parameterization)
    kw = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    layers = []
    for _ in range(depth):
        filters = (kernel_size, kernel_size)
        layers += [stax.Conv(width, filters, padding="SAME", **kw), _activation(activation)]
    layers += [stax.GlobalAvgPool(), stax.Dense(out_dim, **kw)]
    name = f"cnn-d{depth}-w{width}-{activation}-{parameterization}"
    return Architecture(*_triple(layers), name, int(width), parameterization)


def _wrn_block(channels: int, strides, mismatch: bool, kw):
    main = stax.serial(
        stax.Relu(),
        stax.Conv(channels, (3, 3), strides, padding="SAME", **kw),
        stax.Relu(),
        stax.Conv(channels, (3, 3), padding="SAME", **kw),
    )
    shortcut = (
        stax.Conv(channels, (3, 3), strides, padding="SAME", **kw) if mismatch else stax.Identity()
    )
    return stax.serial(stax.FanOut(2), stax.parallel(main, shortcut), stax.FanInSum())


def _wrn_group(n: int, channels: int, strides, kw):
    blocks = [_wrn_block(channels, strides, True, kw)]
    blocks += [_wrn_block(channels, (1, 1), False, kw) for _ in range(n - 1)]
    return stax.serial(*blocks)


def wide_resnet(
    depth: int = 10,
    k: int = 1,
    out_dim: int = 10,
    *,
    parameterization: str = "ntk",
    W_std: float = 1.0,  # noqa: N803
    b_std: float = 0.0,
) -> Architecture:
    """WideResNet WRN-``depth``-``k`` without BatchNorm (so it has an infinite-width limit).

    The layout of Zagoruyko & Komodakis (2016): a stem convolution, three groups of
    ``(depth - 4) / 6`` residual blocks with ``16k``, ``32k``, ``64k`` channels (strides
    1, 2, 2), global average pooling and a dense readout. BatchNorm is left out: it has
    no infinite-width kernel. Unlike the original 16-channel stem, the stem here has
    ``16k`` channels so that every hidden layer widens with ``k`` (the infinite-width
    limit takes all of them to infinity). For the BatchNorm network see
    :func:`ntk_limits.flax_models.flax_wide_resnet`.

    Args:
      depth: total depth; ``depth - 4`` must be a positive multiple of 6.
      k: width multiplier (positive).
      out_dim: outputs.
      parameterization: ``"ntk"`` or ``"standard"``.
      W_std: weight standard deviation (times ``sqrt(fan_in)``).
      b_std: bias standard deviation.

    Returns:
      The :class:`Architecture` with ``width = 16 * k``; ``(n, H, W, C) -> (n, out_dim)``.
    """
    if not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    _check(int(k), 1, "relu", parameterization)
    kw = dict(W_std=W_std, b_std=b_std, parameterization=parameterization)
    n = (depth - 4) // 6
    layers = [
        stax.Conv(16 * k, (3, 3), padding="SAME", **kw),
        _wrn_group(n, 16 * k, (1, 1), kw),
        _wrn_group(n, 32 * k, (2, 2), kw),
        _wrn_group(n, 64 * k, (2, 2), kw),
        stax.GlobalAvgPool(),
        stax.Dense(out_dim, **kw),
    ]
    name = f"wrn-{depth}-{k}-{parameterization}"
    init_fn, apply_fn, kernel_fn = _triple(layers)
    return Architecture(
        init_fn, apply_fn, _quiet_fan_in(kernel_fn), name, 16 * int(k), parameterization
    )


def _quiet_fan_in(kernel_fn):
    """Silences stax's FanIn warning for residual blocks, where it is a false alarm.

    stax warns that ``FanInSum`` assumes independent branches. In a residual block the
    main branch ends in a convolution with fresh zero-mean weights, so its output is
    uncorrelated with the identity branch and the sum's covariance is the sum of the
    two; the kernel is exact (checked against Monte-Carlo in the tests).
    """

    def quiet_kernel_fn(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="`FanIn` layers assume independent")
            return kernel_fn(*args, **kwargs)

    return quiet_kernel_fn


def num_params(params) -> int:
    """Number of scalar parameters in a pytree."""
    return int(sum(np.prod(np.shape(p)) for p in jax.tree_util.tree_leaves(params)))
