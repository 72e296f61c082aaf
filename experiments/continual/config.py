"""Study 3 (issue 7): does width reduce forgetting only when networks are under-trained?

Wenger, Dangel & Kristiadi (2023, §3.3) revisit Mirzadeh et al. (2022), "wide neural
networks forget less catastrophically": wider networks forget less only when each task is
under-trained; trained to high accuracy per task, width no longer reduces forgetting (C4).

What is run: plain sequential fine-tuning (SGD, cross-entropy, no continual-learning
method) on task streams, for every width, in standard (SP) and NTK (NTP) parametrization,
``len(seeds)`` seeds vmapped in one compiled program, with ``epochs`` fixed epochs per task
(under-trained: 1) and, if ``train_until``, until ≥ ``target_accuracy`` training accuracy on
each task (at most ``max_epochs``). SP and NTP share one program per width: NTP SGD is
SGD on the standard network with per-layer learning rates ``lr_ntk·W_std²/fan_in``
(weights) and ``lr_ntk·b_std²`` (biases), exactly (tested). Kernel-regime counterparts on
the same stream: the linearised network at ``linearized_widths`` (same optimizer, same
settings) and the infinite-width NTK (NTP) trained sequentially by MSE on one-hot targets in
closed form, for training times ``kernel_times`` per task (and converged, if
``kernel_converged``). Kernel drift of the finite nets: empirical NTK on ``probe_size``
test inputs of task 0, before vs after each task.

Commands and expectations (2-core CPU unless stated)::

    ntk-limits run continual --profile smoke      # 4 runs, ~15 s CPU (~22 s wall, load 4)
    ntk-limits run continual --profile embedded   # 10 runs, ~100 s (load ~1.5)
    ntk-limits run continual --profile paper      # GPU, hours; needs --data-dir (tfds)

Smoke: split digits only (300 train / 100 test before splitting), widths 8 and 16, 2
seeds, 1 epoch vs until 99% (cap 3 epochs), linearised at width 8, the infinite-width
kernel on 20 examples per task at t=10 and ∞. Its programs are cheap, so they compile
without LLVM's optimisation (``common.compile_jit``); every embedded program is above
that threshold and compiles as before. Expected: every run ok, a C4 verdict of any kind.

Embedded (issue 14): RotatedMNIST-5k at full resolution (28x28, 5 rotations 0..90° in
steps of 22.5°, 500 class-balanced training images rotated per task, 1000 test per task)
and SplitMNIST-5k (5 two-class tasks, multi-head, 100 train / 200 test per task);
MLPs of the paper's depth 2 at widths 64, 256, 1024; SP lr 0.1, NTP lr 8.0, batch 64
(so 1 epoch is 8 steps per rotated task and 2 per split task: under-trained on both,
0 % of runs at the target); 1 epoch vs until 99 % train accuracy (cap 20 epochs,
reached on 100 %); 3 seeds; linearised NTP nets at width 64; infinite-width NTK (MSE,
closed form) at t = 10, 100, 1000, ∞ on the same streams. 10 runs, 8 compiled network
programs (one per benchmark × width × kind; seeds, SP/NTP and both settings share it).
Measured: 98.5 s summed run time, 49 s of it XLA compilation, in ``make reproduce-all``
on a fresh clone (load ~1.5); 192 s, 96 s compiling at load 3-4.7. Result: C4
fails: on rotated MNIST trained to 99 % forgetting still falls with width (SP slope
−0.029 [−0.038, −0.021] per doubling, F 0.34 → 0.22 from 64 to 1024; NTP −0.025
[−0.051, +0.001]); under-trained forgetting is lower (F 0.06-0.16) and falls less.
Split MNIST forgets little once trained (F ≤ 0.09 at 64, ≤ 0.007 from 256), its
verdicts inconclusive; the infinite-width NTK forgets 0.08 (t=10) to 0.23 (t=∞) on
rotated, nothing on split (independent heads). Cut for time: widths 2048 (rotated at
1024 is already half the budget), the split stream with a CNN / BatchNorm WRN, more
than one linearised width (so the linearised rows have no slope).

Before issue 14 the embedded profile ran UCI digits 8x8 with one-hidden-layer MLPs
(widths 32..1024, 14 runs, ~95 s, C4 fails, split digits inconclusive because 1 epoch
already reached the target on 42-52 % of its tasks).

Paper: RotatedMNIST (MLP depth 2, widths 2^5..2^13), SplitCIFAR10 (5×2), SplitCIFAR100
(20×5), SplitTinyImageNet (20×10) with stax WideResNets WRN-16-k (no BatchNorm),
multipliers 1..8; 5 seeds; infinite-width counterpart for the MLP stream on at most
``kernel_max_train`` training examples per task (WRN kernels on 32×32 images are far too
costly: ``kernel_wrn``). Needs the tfds data (``data_dir``) and a GPU; not run here.

Decision rule (C4, :data:`ntk_limits_experiments.continual.verdict.RULE`, fixed before the
data): per benchmark and parametrisation, the per-seed slopes of forgetting against
log2 width give a Student-t interval over seeds; the margin is
``δ = c4_margin_fraction · F_ref / D`` (``F_ref``: forgetting of the trained setting at the
narrowest width; ``D``: doublings in the sweep), i.e. a width effect smaller than a quarter
of the forgetting level over the whole sweep does not matter. Holds if the under-trained
slope is significantly negative (95 % interval below 0, not within ±δ) and the trained
slope is shown not to reduce forgetting (TOST, 90 % interval inside ±δ, or significantly
positive); fails if the trained slope is significantly negative or the under-trained one is
shown not to be; else inconclusive. The claim's conditions are checked: the trained setting
reached its target on ≥ ``c4_reached_fraction`` of (width, seed, task) runs and the
under-trained one on ≤ ``1 − c4_reached_fraction`` (else inconclusive, with the reason).
SP and NTP, and the benchmarks, combine alike: fails if any fails, holds if all hold.

This module holds the typed config (:class:`ContinualConfig`, its three profiles in
:data:`PROFILES`) and the typed run specs it expands into (:class:`NetworkRun`,
:class:`KernelRun`, with their :class:`Stream` and :class:`Setting`); every network of a
spec is a :class:`ntk_limits.models.Network`.
"""

import dataclasses
from typing import Literal

from ntk_limits import data, models
from ntk_limits_experiments.config import MAX_DEPTH, MAX_WIDTH, Config, field, profiles

__all__ = [
    "PROFILES",
    "ContinualConfig",
    "KernelRun",
    "NetworkRun",
    "Setting",
    "Stream",
]

Parameterization = Literal["standard", "ntk"]
NEVER = 2.0  # a target accuracy above 1: train for exactly max_epochs


def _require(ok: bool, what: str, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{what}; allowed: {allowed}")


@dataclasses.dataclass(frozen=True)
class ContinualConfig(Config):
    """The continual study's config; see the module docstring for what each part runs."""

    profile: Literal["smoke", "embedded", "paper"] = "embedded"
    benchmarks: tuple[str, ...] = field(("rotated_digits", "split_digits"), nonempty=True)
    wrn_benchmarks: tuple[str, ...] = field((), doc="trained with stax WideResNets, not MLPs")
    widths: tuple[int, ...] = field(
        (32, 128, 512, 1024), ge=1, le=MAX_WIDTH, nonempty=True, doc="MLP"
    )
    wrn_multipliers: tuple[int, ...] = field(
        (1, 2, 4, 8), ge=1, le=MAX_WIDTH, nonempty=True, doc="WRN k"
    )
    depth: int = field(1, ge=1, le=MAX_DEPTH, doc="MLP hidden layers")
    wrn_depth: int = field(16, ge=10, le=MAX_DEPTH, doc="WRN total depth, 6n+4")
    parameterizations: tuple[Parameterization, ...] = field(
        ("standard", "ntk"), nonempty=True, distinct=True
    )
    lr_standard: float = field(0.1, gt=0)
    lr_ntk: float = field(8.0, gt=0)
    batch_size: int = field(32, ge=1)
    epochs: tuple[int, ...] = field(
        (1,), ge=1, nonempty=True, doc="fixed epochs per task; the smallest is under-trained"
    )
    train_until: bool = field(True, doc="add the setting: until target_accuracy, <= max_epochs")
    target_accuracy: float = field(0.99, gt=0, le=1)
    max_epochs: int = field(30, ge=1)
    seeds: tuple[int, ...] = field((0, 1, 2), distinct=True)
    linearized_widths: tuple[int, ...] = field((32, 1024), doc="a subset of widths")
    linearized_parameterizations: tuple[Parameterization, ...] = field(
        ("ntk",), distinct=True, doc="the kernel regime is the NTP network's limit"
    )
    probe_size: int = field(32, ge=1)
    kernel_times: tuple[float, ...] = field((10.0, 100.0, 1000.0), gt=0)
    kernel_converged: bool = True
    kernel_lr: float = field(1.0, gt=0)
    kernel_diag_reg: float = field(0.0, ge=0)
    kernel_max_train: int | None = field(None, ge=1, doc="per task, infinite width (None: all)")
    kernel_wrn: bool = field(False, doc="infinite-width WRN kernels on images (very costly)")
    kernel_block: int = field(4096, ge=1, doc="tile size of the infinite-width kernel")
    class_incremental: bool = field(False, doc="split streams: one shared head, global labels")
    n_train: int | None = field(1000, ge=1, doc="class-balanced train subset before tasks")
    n_test: int | None = field(None, ge=1)
    stream_seed: int = field(0, ge=0, doc="seed of the train/test split and subsets")
    c4_margin_fraction: float = field(
        0.25, gt=0, doc="C4 margin: this fraction of the forgetting level over the sweep"
    )
    c4_reached_fraction: float = field(
        0.9, gt=0.5, le=1, doc="C4: trained reached its target on >= this, under-trained <= 1-this"
    )
    c4_alpha: float = field(0.05, gt=0, lt=0.5, doc="C4 test level (TOST at 1 - 2 alpha)")
    data_dir: str | None = None

    def check(self) -> None:
        """Rules between fields (one-line ``ValueError``s)."""
        streams = ", ".join(data.STREAMS)
        _require(
            set(self.benchmarks) <= set(data.STREAMS),
            f"benchmarks {list(self.benchmarks)} unknown or empty",
            streams,
        )
        _require(
            set(self.wrn_benchmarks) <= set(data.STREAMS),
            f"wrn_benchmarks {list(self.wrn_benchmarks)}",
            streams,
        )
        uses_wrn = [b in self.wrn_benchmarks for b in self.benchmarks]
        for key, used in (("widths", not all(uses_wrn)), ("wrn_multipliers", any(uses_wrn))):
            values = getattr(self, key)
            _require(
                not used or len(set(values)) >= 2,
                f"{key}={list(values)}",
                "two or more distinct values",
            )
        _require(
            set(self.linearized_widths) <= set(self.widths),
            f"linearized_widths={list(self.linearized_widths)}",
            "a subset of widths",
        )
        _require((self.wrn_depth - 4) % 6 == 0, f"wrn_depth={self.wrn_depth}", "6n+4 with n >= 1")
        _require(
            len(self.seeds) >= 2,
            f"seeds={list(self.seeds)}",
            "at least two distinct ints (seed spread)",
        )
        _require(
            bool(self.kernel_times) or self.kernel_converged,
            "no kernel training time",
            "kernel_times or kernel_converged=true",
        )

    @property
    def settings(self) -> tuple["Setting", ...]:
        """Fixed epochs per task (ascending), then train-until if asked."""
        fixed = tuple(Setting(e, NEVER) for e in sorted(set(self.epochs)))
        until = (Setting(self.max_epochs, self.target_accuracy),) if self.train_until else ()
        return fixed + until

    def uses_wrn(self, benchmark: str) -> bool:
        """Whether ``benchmark`` is trained with WideResNets (else MLPs)."""
        return benchmark in self.wrn_benchmarks


PROFILES = profiles(
    smoke=ContinualConfig(
        profile="smoke",
        benchmarks=("split_digits",),
        widths=(8, 16),
        seeds=(0, 1),
        n_train=300,
        n_test=100,
        max_epochs=3,
        linearized_widths=(8,),
        probe_size=8,
        kernel_times=(10.0,),
        kernel_max_train=20,
    ),
    embedded=ContinualConfig(
        benchmarks=("rotated_mnist5k", "split_mnist5k"),
        widths=(64, 256, 1024),
        depth=2,
        batch_size=64,
        max_epochs=20,
        n_train=500,
        linearized_widths=(64,),
    ),
    paper=ContinualConfig(
        profile="paper",
        benchmarks=("rotated_mnist", "split_cifar10", "split_cifar100", "split_tiny_imagenet"),
        wrn_benchmarks=("split_cifar10", "split_cifar100", "split_tiny_imagenet"),
        widths=tuple(2**k for k in range(5, 14)),
        depth=2,
        lr_standard=0.01,
        lr_ntk=1.0,
        batch_size=64,
        epochs=(1, 5),
        max_epochs=100,
        seeds=(0, 1, 2, 3, 4),
        linearized_widths=(32, 256, 2048),
        probe_size=64,
        kernel_times=(10.0, 100.0, 1000.0, 10000.0),
        kernel_max_train=1000,
        n_train=None,
    ),
)


@dataclasses.dataclass(frozen=True)
class Setting(Config):
    """How long each task is trained: until ``target_accuracy`` or ``max_epochs`` epochs.

    A target above 1 (:data:`NEVER`) is never reached: exactly ``max_epochs`` epochs.
    """

    max_epochs: int = field(1, ge=1)
    target_accuracy: float = field(NEVER, gt=0)


@dataclasses.dataclass(frozen=True)
class Stream(Config):
    """A task stream of :func:`ntk_limits.data.make_stream`, as the study uses it."""

    benchmark: str
    seed: int = field(0, ge=0)
    n_train: int | None = field(None, ge=1)
    n_test: int | None = field(None, ge=1)
    class_incremental: bool = False

    @property
    def split(self) -> bool:
        """A split stream (tasks are groups of classes), by its builder in ``data.STREAMS``."""
        return data.STREAMS[self.benchmark][1] is data.split_stream

    @property
    def multi_head(self) -> bool:
        """One head per task: split streams unless class-incremental."""
        return self.split and not self.class_incremental


@dataclasses.dataclass(frozen=True)
class NetworkRun(Config):
    """One run of finite (or linearised) networks: every parametrisation × seed vmapped.

    Attributes:
      kind: ``"finite"`` or ``"linearized"`` (trained linearised at initialisation).
      stream: the task stream.
      network: the network every member trains, in standard parametrisation (an NTP
        member is this network with per-layer learning rates, see ``networks``).
      parameterizations: the members' parametrisations, in member-major order.
      lr_standard: SGD learning rate of standard-parametrisation members.
      lr_ntk: SGD learning rate of NTK-parametrisation members (in NTK coordinates).
      batch_size: minibatch size.
      seeds: one member per seed and parametrisation (init and data order).
      settings: how long each task is trained; one pass over the stream each.
      probe_size: test inputs of task 0 on which the empirical NTK's drift is measured
        (0: not measured).
      data_dir: where the paper data sets are (not part of the run key).
    """

    kind: Literal["finite", "linearized"]
    stream: Stream
    network: models.Network
    parameterizations: tuple[Parameterization, ...]
    lr_standard: float
    lr_ntk: float
    batch_size: int
    seeds: tuple[int, ...]
    settings: tuple[Setting, ...]
    probe_size: int
    data_dir: str | None = None

    def check(self) -> None:
        """The trained network is the standard-parametrisation one."""
        _require(
            self.network.parameterization == "standard",
            f"network parameterization {self.network.parameterization!r}",
            "standard (NTP members are learning rates)",
        )

    def learning_rate(self, parameterization: str) -> float:
        """The SGD learning rate of members of ``parameterization``."""
        return self.lr_ntk if parameterization == "ntk" else self.lr_standard


@dataclasses.dataclass(frozen=True)
class KernelRun(Config):
    """One infinite-width NTK run: sequential kernel regression for every training time.

    Attributes:
      kind: ``"infinite"``.
      stream: the task stream (at most ``max_train`` training examples per task).
      network: the NTK-parametrised network whose infinite-width NTK is used (its width
        does not enter the kernel).
      times: training times per task; ``converged`` adds ``t = ∞``.
      converged: add the converged (interpolating) run.
      lr: kernel gradient-flow learning rate.
      diag_reg: ridge, relative to the mean diagonal of each task's kernel.
      max_train: training examples per task (None: all).
      block: tile size of the kernel computation.
      data_dir: where the paper data sets are (not part of the run key).
    """

    kind: Literal["infinite"]
    stream: Stream
    network: models.Network
    times: tuple[float, ...]
    converged: bool
    lr: float
    diag_reg: float
    max_train: int | None
    block: int
    data_dir: str | None = None

    @property
    def all_times(self) -> tuple[float, ...]:
        """``times``, then ``inf`` if ``converged``."""
        return (*self.times, *((float("inf"),) if self.converged else ()))
