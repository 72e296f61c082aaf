"""Architectures: one definition gives the finite network and its infinite-width kernels.

A network is described by one frozen value, :class:`Network` (kind, width, depth, output
size, parametrization, activation, ``W_std``, ``b_std``), and :func:`build` is the one
function that turns it into an :class:`Architecture`: ``init_fn``/``apply_fn`` of the
finite network and ``kernel_fn``, the exact infinite-width NNGP and NTK of the same
architecture (from neural-tangents' ``stax``), in NTK or standard parametrization. The
architecture carries its ``network``. :func:`mlp`, :func:`cnn` and :func:`wide_resnet`
are keyword-friendly shortcuts for ``build(Network(...))``. Fan-in scales live here too
(:func:`fan_in_scales`, :func:`init_sampler`).

Example:
  >>> arch = build(Network("mlp", width=512, depth=2, out_dim=10))  # = mlp(512, 2, 10)
  >>> _, params = arch.init_fn(jax.random.key(0), (-1, 784))
  >>> arch.apply_fn(params, x).shape          # x: (n, 784)
  (n, 10)
  >>> arch.kernel_fn(x, None, "ntk").shape     # infinite-width NTK, (n, n)
  (n, n)

For the network people actually train (BatchNorm, finite only) see
:mod:`ntk_limits.flax_models`.
"""

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from ntk_limits.kernels._nt import stax

__all__ = [
    "ACTIVATIONS",
    "PARAMETERIZATIONS",
    "Architecture",
    "Network",
    "build",
    "cnn",
    "fan_in_scales",
    "init_sampler",
    "mlp",
    "num_params",
    "wide_resnet",
]

PARAMETERIZATIONS = ("ntk", "standard")
ACTIVATIONS = ("relu", "erf", "tanh")


_KINDS = ("mlp", "cnn", "wrn", "wrn_bn")
# (W_std, b_std) when a Network leaves them unset: He-style ReLU scaling for the plain
# networks, unit weights and no bias for the residual one (its sums double the variance).
_DEFAULT_STDS = {
    "mlp": (math.sqrt(2.0), 0.1),
    "cnn": (math.sqrt(2.0), 0.1),
    "wrn": (1.0, 0.0),
    "wrn_bn": (math.sqrt(2.0), 0.0),  # flax's He-normal convolutions (fixed, informational)
}


def _positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}; allowed: 1, 2, ...")


@dataclasses.dataclass(frozen=True)
class Network:
    """The one description of a network: everything :func:`build` needs, nothing else.

    A frozen, hashable value: it can key a cache, travel in a config and name a run.

    Attributes:
      kind: ``"mlp"`` (dense), ``"cnn"`` (SAME 3×3 convolutions, global average pool,
        dense readout), ``"wrn"`` (WideResNet without BatchNorm, see
        :func:`wide_resnet`) or ``"wrn_bn"`` (the practical WideResNet with BatchNorm,
        :func:`ntk_limits.flax_models.flax_wide_resnet`; finite only, standard
        parametrisation, see :func:`build` for its BatchNorm mode).
      width: hidden units (mlp), channels (cnn), or the WRN width multiplier ``k``
        (groups of ``16k``, ``32k``, ``64k`` channels); see :attr:`hidden_width`.
      depth: hidden layers (mlp), convolutions (cnn), total depth ``6n + 4`` (wrn).
      out_dim: outputs.
      parameterization: ``"ntk"`` or ``"standard"``.
      activation: ``"relu"``, ``"erf"`` or ``"tanh"`` (wrn: ``"relu"`` only).
      W_std: weight standard deviation (times ``sqrt(fan_in)``); ``None`` takes the
        kind's default (mlp, cnn: ``sqrt(2)``; wrn: ``1``).
      b_std: bias standard deviation; ``None`` takes the kind's default (mlp, cnn:
        ``0.1``; wrn: ``0``).

    Raises:
      ValueError: a field out of range (one line: what, and what is allowed).
    """

    kind: str
    width: int
    depth: int
    out_dim: int = 1
    parameterization: str = "ntk"
    activation: str = "relu"
    W_std: float | None = None  # noqa: N815 - the name used in the NTK literature
    b_std: float | None = None

    def __post_init__(self):
        if self.kind not in _KINDS:
            raise ValueError(f"unknown network kind {self.kind!r}; allowed: {', '.join(_KINDS)}")
        for name in ("width", "depth", "out_dim"):
            _positive_int(name, getattr(self, name))
        if self.kind == "wrn_bn" and self.parameterization != "standard":
            raise ValueError(
                f"wrn_bn is trained as people train it, in the standard parameterization; "
                f"got {self.parameterization!r}; allowed: standard"
            )
        if self.kind in ("wrn", "wrn_bn") and (self.depth < 10 or (self.depth - 4) % 6):
            raise ValueError(
                f"WRN depth must be 6n+4 with n >= 1, got {self.depth}; allowed: 10, 16, 22, 28"
            )
        residual = self.kind in ("wrn", "wrn_bn")
        if self.activation not in ACTIVATIONS or (residual and self.activation != "relu"):
            allowed = "relu" if residual else ", ".join(ACTIVATIONS)
            raise ValueError(f"unknown activation {self.activation!r}; allowed: {allowed}")
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"unknown parameterization {self.parameterization!r}; allowed: ntk, standard"
            )
        w_default, b_default = _DEFAULT_STDS[self.kind]
        w_std = w_default if self.W_std is None else self.W_std
        b_std = b_default if self.b_std is None else self.b_std
        if not (math.isfinite(w_std) and math.isfinite(b_std) and w_std > 0 and b_std >= 0):
            raise ValueError(
                f"W_std must be > 0 and b_std >= 0, got {w_std!r}, {b_std!r}; "
                "allowed: finite numbers, e.g. W_std=1.414, b_std=0.1"
            )
        object.__setattr__(self, "W_std", float(w_std))
        object.__setattr__(self, "b_std", float(b_std))
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "depth", int(self.depth))
        object.__setattr__(self, "out_dim", int(self.out_dim))

    @property
    def hidden_width(self) -> int:
        """Units (mlp) or channels (cnn) per hidden layer; the narrowest group ``16k`` (wrn)."""
        return 16 * self.width if self.kind in ("wrn", "wrn_bn") else self.width

    @property
    def name(self) -> str:
        """A short description, e.g. ``"mlp-d2-w512-relu-ntk"`` or ``"wrn-16-4-ntk"``."""
        if self.kind == "wrn":
            return f"wrn-{self.depth}-{self.width}-{self.parameterization}"
        if self.kind == "wrn_bn":
            return f"wrn-bn-{self.depth}-{self.width}"
        return f"{self.kind}-d{self.depth}-w{self.width}-{self.activation}-{self.parameterization}"


class Architecture(NamedTuple):
    """A finite network and its infinite-width kernels, from one :class:`Network`.

    Attributes:
      init_fn: ``(key, input_shape) -> (output_shape, params)``; ``input_shape`` has a
        leading batch dimension (use ``-1``).
      apply_fn: ``(params, x) -> f`` with ``x: (n, ...)`` and ``f: (n, out_dim)``.
      kernel_fn: ``(x1, x2, get) -> kernel``: the infinite-width ``"nngp"`` or ``"ntk"``,
        shape ``(n1, n2)`` (output dimensions are independent and identical); ``None``
        for a network without an infinite-width limit (``"wrn_bn"``).
      network: the description it was built from (:func:`build`).
    """

    init_fn: Callable[..., tuple[Any, Any]]
    apply_fn: Callable[..., jax.Array]
    kernel_fn: Callable[..., Any]
    network: Network

    @property
    def name(self) -> str:
        """``network.name``."""
        return self.network.name

    @property
    def parameterization(self) -> str:
        """``"ntk"`` or ``"standard"``."""
        return self.network.parameterization


def build(network: Network) -> Architecture:
    """The finite network and its infinite-width kernels described by ``network``.

    Args:
      network: the description (kind, width, depth, parametrisation, ...).

    Returns:
      The :class:`Architecture`; its ``apply_fn`` maps ``(n, d)`` (mlp) or
      ``(n, H, W, C)`` (cnn, wrn) to ``(n, network.out_dim)``, and it carries ``network``.

    Example:
      >>> arch = build(Network("mlp", width=512, depth=2, out_dim=10))
      >>> arch.network.W_std                       # the mlp default, sqrt(2)
      1.4142135623730951
    """
    if network.kind == "wrn_bn":
        return _batchnorm_wrn(network)
    kw = dict(W_std=network.W_std, b_std=network.b_std, parameterization=network.parameterization)
    if network.kind == "mlp":
        layers = []
        for _ in range(network.depth):
            layers += [stax.Dense(network.width, **kw), _activation(network.activation)]
        layers.append(stax.Dense(network.out_dim, **kw))
        return _with_exact_diagonal(layers, network)
    if network.kind == "cnn":
        layers = []
        for _ in range(network.depth):
            conv = stax.Conv(network.width, (3, 3), padding="SAME", **kw)
            layers += [conv, _activation(network.activation)]
        layers += [stax.GlobalAvgPool(), stax.Dense(network.out_dim, **kw)]
        return Architecture(*stax.serial(*layers), network)
    k, n = network.width, (network.depth - 4) // 6
    layers = [
        stax.Conv(16 * k, (3, 3), padding="SAME", **kw),
        _wrn_group(n, 16 * k, (1, 1), kw),
        _wrn_group(n, 32 * k, (2, 2), kw),
        _wrn_group(n, 64 * k, (2, 2), kw),
        stax.GlobalAvgPool(),
        stax.Dense(network.out_dim, **kw),
    ]
    init_fn, apply_fn, kernel_fn = stax.serial(*layers)
    return Architecture(init_fn, apply_fn, _quiet_fan_in(kernel_fn), network)


def _batchnorm_wrn(network: Network) -> Architecture:
    """The BatchNorm WideResNet as a pure ``apply_fn(params, x)``, in training mode.

    BatchNorm mode: **batch statistics of the inputs of the call** (flax ``train=True``);
    the running averages are neither read nor returned. Full-batch GD, NGD and Adam on a
    training set differentiate exactly this function of ``(params, x_train)``, so its
    Jacobian, empirical NTK, ``λ_min(K₀)`` and ``C′`` are those of the trained map.
    Examples are coupled through the statistics: ``f(x)[i]`` depends on every row of
    ``x``, so kernels must be taken on the whole training batch at once (never in
    blocks), and there is no infinite-width kernel (``kernel_fn`` is ``None``).
    """
    import jax.numpy as jnp

    from ntk_limits import flax_models
    from ntk_limits.kernels import couple_examples

    module = flax_models.flax_wide_resnet(network.depth, network.width, network.out_dim)
    # BatchNorm statistics have one entry per channel: their shapes do not depend on x.
    stats = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["batch_stats"]

    def init_fn(key, input_shape):
        params = module.init(key, jnp.zeros((1, *input_shape[1:]), jnp.float32))["params"]
        return (input_shape[0], network.out_dim), params

    def apply_fn(params, x):
        # Running averages: unused in training mode; zeros in the inputs' dtype (float64 too).
        stats0 = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, x.dtype), stats)
        variables = {"params": params, "batch_stats": stats0}
        return module.apply(variables, x, train=True, mutable=["batch_stats"])[0]

    return Architecture(init_fn, couple_examples(apply_fn), None, network)


def _with_exact_diagonal(layers: list, network: Network) -> Architecture:
    """``stax.serial(*layers)`` whose kernel keeps the exact diagonal at every layer.

    The kernel comes from a second serial with :func:`_exact_diagonal` between the
    layers, so the finite network's init (its PRNG splits) is that of ``layers`` alone.
    Used for MLPs: a CNN's remaining float32 error (1.6e-6 of its largest entry on its
    diagonal, measured against float64) sits inside the spatial covariance, which this
    batch-diagonal copy does not reach.
    """
    init_fn, apply_fn, _ = stax.serial(*layers)
    exact = [_exact_diagonal()]
    for layer in layers:
        exact += [layer, _exact_diagonal()]
    return Architecture(init_fn, apply_fn, stax.serial(*exact)[2], network)


@stax.layer
def _exact_diagonal():
    """A no-op layer whose kernel puts the exact variances on the kernel's diagonal.

    For ``kernel_fn(x, None)``, neural-tangents carries the variances ``cov1`` (sums of
    squares) beside the Gram ``nngp`` (a matmul); the two round differently, so a
    diagonal entry's cosine ``nngp_ii / cov1_i`` comes out one ulp *below* 1. The ReLU
    kernel's angle ``arccos`` then becomes ``√(2·ulp)`` ≈ 3e-4 instead of 0, and the NTK's
    derivative factor ``(π − θ)/2π`` is off by ``θ/π`` ≈ 1e-4 relative: of the order of
    ``λ_min/λ_max`` of the Grams the studies measure. Copying ``cov1`` onto the diagonal
    makes the cosine exactly 1 there; later layers keep the two in step (the same
    elementwise operations act on both). Off-diagonal entries and ``x2 is not None``
    calls are untouched.
    """

    def init_fn(rng, input_shape):
        return input_shape, ()

    def apply_fn(params, inputs, **kwargs):
        return inputs

    def kernel_fn(k, **kwargs):
        if k.cov2 is not None or not k.diagonal_batch or k.nngp is None or k.cov1 is None:
            return k
        n = k.cov1.shape[0]
        if k.nngp.shape[:2] != (n, n) or k.nngp.shape[2:] != k.cov1.shape[1:]:
            return k
        i = jax.numpy.arange(n)
        return k.replace(nngp=k.nngp.at[i, i].set(k.cov1))

    return init_fn, apply_fn, kernel_fn


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
    return build(Network("mlp", width, depth, out_dim, parameterization, activation, W_std, b_std))


def cnn(
    width: int,
    depth: int = 2,
    out_dim: int = 10,
    *,
    activation: str = "relu",
    parameterization: str = "ntk",
    W_std: float = math.sqrt(2.0),  # noqa: N803
    b_std: float = 0.1,
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

    Returns:
      The :class:`Architecture`; ``apply_fn`` maps ``(n, H, W, C) -> (n, out_dim)``.
    """
    return build(Network("cnn", width, depth, out_dim, parameterization, activation, W_std, b_std))


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
      The :class:`Architecture` (``network.width = k``, ``network.hidden_width = 16k``);
      ``apply_fn`` maps ``(n, H, W, C) -> (n, out_dim)``.
    """
    return build(Network("wrn", k, depth, out_dim, parameterization, "relu", W_std, b_std))


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


def _is_layer(node) -> bool:
    """A stax ``(W, b)`` pair (arrays or shapes; ``b`` may be ``None``)."""
    return (
        isinstance(node, tuple | list)
        and len(node) == 2
        and hasattr(node[0], "shape")
        and (node[1] is None or hasattr(node[1], "shape"))
    )


def fan_in_scales(params, W_std: float, b_std: float):  # noqa: N803
    """Per-layer ``(W_std / sqrt(fan_in), b_std)``: standard params = scale · NTK params.

    In NTK parametrization a layer computes ``h = a·W x + β·b`` with ``W, b ~ N(0, 1)``;
    the standard network ``h = W' x + b'`` with ``W' = a·W``, ``b' = β·b`` has the same
    initial distribution. ``fan_in = prod(W.shape[:-1])`` (dense: inputs; HWIO
    convolution: filter size × input channels).

    Args:
      params: stax parameters or their shapes: nested tuples/lists with ``(W, b)`` per
        layer with parameters (``b`` may be ``None``).
      W_std: the layers' ``W_std``.
      b_std: the layers' ``b_std``.

    Returns:
      The same tree with Python floats ``a`` in place of ``W`` and ``β`` in place of ``b``
      (``None`` biases stay ``None``).
    """
    if _is_layer(params):
        w, b = params
        a = W_std / math.sqrt(math.prod(w.shape[:-1]))
        return type(params)((a, None if b is None else b_std))
    if isinstance(params, tuple | list):
        return type(params)(fan_in_scales(p, W_std, b_std) for p in params)
    raise ValueError(f"unexpected stax parameter node {params!r}; allowed: (W, b) pairs")


def init_sampler(arch: Architecture, input_shape: tuple[int, ...]):
    """Returns ``draw(key) -> params`` with the distribution of ``arch.init_fn``.

    stax's ``init_fn`` makes two random calls per layer, and on a CPU each compiles its
    own threefry program (about a second each); ``draw`` makes one
    ``jax.random.normal`` call for all ``P`` parameters and scales each leaf: by 1 in NTK
    parametrization, by :func:`fan_in_scales` in standard parametrization. Build it
    outside ``jit`` and call it inside.

    Args:
      arch: a stax :class:`Architecture` (its ``network`` gives ``W_std``, ``b_std``).
      input_shape: ``(-1, ...)``.

    Returns:
      ``draw(key)``: a parameter pytree like ``arch.init_fn(key, input_shape)[1]``.
    """
    shapes = jax.eval_shape(lambda k: arch.init_fn(k, input_shape)[1], jax.random.key(0))
    leaves, tree = jax.tree_util.tree_flatten(shapes)
    net = arch.network
    scales = fan_in_scales(shapes, net.W_std, net.b_std)
    scales = jax.tree_util.tree_leaves(scales)
    if net.parameterization == "ntk":
        scales = [1.0] * len(scales)
    sizes = [math.prod(s.shape) for s in leaves]
    splits = np.cumsum(sizes)[:-1].tolist()

    def draw(key):
        z = jax.random.normal(key, (sum(sizes),), leaves[0].dtype)
        parts = jax.numpy.split(z, splits)
        return jax.tree_util.tree_unflatten(
            tree, [c * p.reshape(s.shape) for c, p, s in zip(scales, parts, leaves, strict=True)]
        )

    return draw
