"""Flax (linen) networks: mirrors of the stax MLP/CNN and the practical WideResNet.

:func:`flax_mlp` and :func:`flax_cnn` compute exactly what :func:`ntk_limits.models.mlp`
and :func:`ntk_limits.models.cnn` compute, with the same parametrisations;
:func:`params_from_stax` converts stax parameters so both give identical outputs (tested).
:func:`flax_wide_resnet` is the network people actually train (BatchNorm, standard
parametrization, He initialisation): finite only, it has no infinite-width kernel.
"""

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

__all__ = ["flax_mlp", "flax_cnn", "flax_wide_resnet", "params_from_stax"]

_ACT = {"relu": jax.nn.relu, "erf": jax.scipy.special.erf, "tanh": jnp.tanh}


class _Linear(nn.Module):
    """Dense or convolution in NTK or standard parametrisation (stax's conventions)."""

    features: int
    parameterization: str
    W_std: float  # noqa: N815
    b_std: float
    kernel_size: tuple[int, ...] = ()

    @nn.compact
    def __call__(self, x):
        fan_in = x.shape[-1] * math.prod(self.kernel_size)
        scale = self.W_std / math.sqrt(fan_in)
        ntk = self.parameterization == "ntk"
        w_init = nn.initializers.normal(1.0 if ntk else scale)
        b_init = nn.initializers.normal(1.0 if ntk else self.b_std)
        shape = (*self.kernel_size, x.shape[-1], self.features)
        w = self.param("W", w_init, shape)
        b = self.param("b", b_init, (self.features,))
        if self.kernel_size:
            dims = ("NHWC", "HWIO", "NHWC")
            y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=dims)
        else:
            y = x @ w
        b = b.reshape((1,) * (y.ndim - 1) + b.shape)  # explicit: no implicit rank promotion
        return (scale * y + self.b_std * b) if ntk else (y + b)


class _Mirror(nn.Module):
    width: int
    depth: int
    out_dim: int
    activation: str
    parameterization: str
    W_std: float  # noqa: N815
    b_std: float
    kernel_size: tuple[int, ...]

    @nn.compact
    def __call__(self, x):
        kw = dict(parameterization=self.parameterization, W_std=self.W_std, b_std=self.b_std)
        for _ in range(self.depth):
            x = _ACT[self.activation](_Linear(self.width, kernel_size=self.kernel_size, **kw)(x))
        if self.kernel_size:
            x = x.mean(axis=(1, 2))
        return _Linear(self.out_dim, **kw)(x)


def flax_mlp(
    width: int,
    depth: int = 1,
    out_dim: int = 1,
    *,
    activation: str = "relu",
    parameterization: str = "ntk",
    W_std: float = math.sqrt(2.0),  # noqa: N803
    b_std: float = 0.1,
) -> nn.Module:
    """The flax twin of :func:`ntk_limits.models.mlp`: ``(n, d) -> (n, out_dim)``."""
    return _Mirror(width, depth, out_dim, activation, parameterization, W_std, b_std, ())


def flax_cnn(
    width: int,
    depth: int = 2,
    out_dim: int = 10,
    *,
    activation: str = "relu",
    parameterization: str = "ntk",
    W_std: float = math.sqrt(2.0),  # noqa: N803
    b_std: float = 0.1,
    kernel_size: int = 3,
) -> nn.Module:
    """The flax twin of :func:`ntk_limits.models.cnn`: ``(n, H, W, C) -> (n, out_dim)``."""
    ks = (kernel_size, kernel_size)
    return _Mirror(width, depth, out_dim, activation, parameterization, W_std, b_std, ks)


def params_from_stax(stax_params: Sequence[Any]) -> dict:
    """Converts parameters of a stax MLP/CNN into the matching flax mirror's variables.

    Args:
      stax_params: the list returned by ``Architecture.init_fn`` of ``mlp`` or ``cnn``.

    Returns:
      ``{"params": {"_Linear_0": {"W": ..., "b": ...}, ...}}`` for ``module.apply``.
    """
    layers = [p for p in stax_params if isinstance(p, tuple) and len(p) == 2]
    return {
        "params": {f"_Linear_{i}": {"W": w, "b": b.reshape(-1)} for i, (w, b) in enumerate(layers)}
    }


class _WRNBlock(nn.Module):
    channels: int
    strides: int

    @nn.compact
    def __call__(self, x, train: bool):
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)
        conv = lambda s: nn.Conv(
            self.channels, (3, 3), s, use_bias=False, kernel_init=nn.initializers.he_normal()
        )
        y = nn.relu(norm()(x))
        shortcut = (
            x if x.shape[-1] == self.channels and self.strides == 1 else conv(self.strides)(y)
        )
        y = conv(self.strides)(y)
        y = conv(1)(nn.relu(norm()(y)))
        return y + shortcut


class _WideResNet(nn.Module):
    depth: int
    k: int
    out_dim: int

    @nn.compact
    def __call__(self, x, train: bool = False):
        n = (self.depth - 4) // 6
        x = nn.Conv(16, (3, 3), use_bias=False, kernel_init=nn.initializers.he_normal())(x)
        for channels, stride in ((16 * self.k, 1), (32 * self.k, 2), (64 * self.k, 2)):
            for i in range(n):
                x = _WRNBlock(channels, stride if i == 0 else 1)(x, train)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        return nn.Dense(self.out_dim)(x.mean(axis=(1, 2)))


def flax_wide_resnet(depth: int = 16, k: int = 4, out_dim: int = 10) -> nn.Module:
    """Pre-activation WideResNet WRN-``depth``-``k`` with BatchNorm (finite only).

    Call as ``module.apply(variables, x, train=True, mutable=["batch_stats"])`` while
    training and ``module.apply(variables, x)`` for evaluation; ``x: (n, H, W, C)``,
    result ``(n, out_dim)``.
    """
    if depth < 10 or (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    if k < 1:
        raise ValueError(f"WRN width multiplier k must be a positive integer, got {k}")
    return _WideResNet(depth, k, out_dim)
