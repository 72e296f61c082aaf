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

    ntk-limits run continual --profile smoke      # 4 runs, ~40 s idle (~2 min under load)
    ntk-limits run continual --profile embedded   # 14 runs, ~2.5 min CPU (see below)
    ntk-limits run continual --profile paper      # GPU, hours; needs --data-dir (tfds)

Embedded: rotated digits (UCI 8x8, 5 rotations 0..90°, 1000 train (class-balanced) / 359
test per task) and split digits (5 two-class tasks, multi-head, 200 / ~71 per task);
one-hidden-layer MLPs of widths 2^5, 2^7, 2^9, 2^10; SP lr 0.1 and NTP lr 8.0, batch 32;
1 epoch vs until 99% train accuracy (cap 30 epochs); 3 seeds; linearised NTP nets at 2^5
and 2^10; infinite-width times 10, 100, 1000, ∞. Sized for the ~2.5 min budget: 14 runs,
12 compiled programs (one per benchmark × width × network kind, ~5 s of XLA compilation
each, about half the time). Measured: 2 min 36 s of CPU (6 min 48 s wall with the 2
cores shared by five jobs, load 8-11). Expected: rotated digits forgets a lot
(F ≈ 0.3-0.6), more the longer each task is trained, in every regime (finite,
linearised, infinite width: F rises from 0.15 at t=10 to 0.46 at t=∞); forgetting falls
with width in both settings (C4 fails there: trained slope ≈ −0.036 per doubling in SP).
Split digits (task-incremental, separate heads) forgets little (F < 0.02 beyond width
32) and the infinite-width NTK not at all (its heads are independent).

Paper: RotatedMNIST (MLP depth 2, widths 2^5..2^13), SplitCIFAR10 (5×2), SplitCIFAR100
(20×5), SplitTinyImageNet (20×10) with stax WideResNets WRN-16-k (no BatchNorm),
multipliers 1..8; 5 seeds; infinite-width counterpart for the MLP stream on at most
``kernel_max_train`` training examples per task (WRN kernels on 32×32 images are far too
costly: ``kernel_wrn``). Needs the tfds data (``data_dir``) and a GPU; not run here.
"""

import math

__all__ = ["get_config", "validate", "PROFILES"]

PROFILES = ("smoke", "embedded", "paper")
PARAMETERIZATIONS = ("standard", "ntk")

_BASE = {
    "benchmarks": ["rotated_digits", "split_digits"],
    "wrn_benchmarks": [],  # benchmarks trained with stax WideResNets; the others use MLPs
    "widths": [32, 128, 512, 1024],  # MLP hidden width
    "wrn_multipliers": [1, 2, 4, 8],  # WRN widening factor k
    "depth": 1,  # MLP hidden layers
    "wrn_depth": 16,
    "parameterizations": ["standard", "ntk"],
    "lr_standard": 0.1,
    "lr_ntk": 8.0,
    "batch_size": 32,
    "epochs": [1],  # fixed epochs-per-task settings; the smallest is the under-trained one
    "train_until": True,  # add the setting "until target_accuracy (at most max_epochs)"
    "target_accuracy": 0.99,
    "max_epochs": 30,
    "seeds": [0, 1, 2],
    "linearized_widths": [32, 1024],
    "linearized_parameterizations": ["ntk"],  # the kernel regime is the NTP network's limit
    "probe_size": 32,
    "kernel_times": [10.0, 100.0, 1000.0],
    "kernel_converged": True,
    "kernel_lr": 1.0,
    "kernel_diag_reg": 0.0,
    "kernel_max_train": None,  # per task, for the infinite-width counterpart (None: all)
    "kernel_wrn": False,  # infinite-width WRN kernels on image streams (very costly)
    "kernel_block": 4096,  # tile size of the infinite-width kernel
    "class_incremental": False,  # split streams: one shared head with global labels
    "n_train": 1000,  # class-balanced subset of the train split before making tasks
    "n_test": None,
    "stream_seed": 0,
    "verdict_parameterization": "standard",
    "slope_sigmas": 2.0,  # a slope is significant when |mean| > slope_sigmas · seed SE
    "data_dir": None,
}

_SMOKE = {
    "benchmarks": ["split_digits"],
    "widths": [8, 16],
    "seeds": [0, 1],
    "n_train": 300,
    "n_test": 100,
    "max_epochs": 3,
    "linearized_widths": [8],
    "probe_size": 8,
    "kernel_times": [10.0],
}

_PAPER = {
    "benchmarks": ["rotated_mnist", "split_cifar10", "split_cifar100", "split_tiny_imagenet"],
    "wrn_benchmarks": ["split_cifar10", "split_cifar100", "split_tiny_imagenet"],
    "widths": [2**k for k in range(5, 14)],
    "depth": 2,
    "lr_standard": 0.01,
    "lr_ntk": 1.0,
    "batch_size": 64,
    "epochs": [1, 5],
    "max_epochs": 100,
    "seeds": [0, 1, 2, 3, 4],
    "linearized_widths": [32, 256, 2048],
    "probe_size": 64,
    "kernel_times": [10.0, 100.0, 1000.0, 10000.0],
    "kernel_max_train": 1000,
    "n_train": None,
}


def get_config(profile: str) -> dict:
    """Returns the flat config of ``profile`` (``smoke``, ``embedded`` or ``paper``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    override = {"smoke": _SMOKE, "embedded": {}, "paper": _PAPER}[profile]
    return {**_BASE, **override, "profile": profile}


def _require(ok: bool, what: str, allowed: str) -> None:
    if not ok:
        raise ValueError(f"{what}; allowed: {allowed}")


def _positive_ints(values) -> bool:
    return (
        isinstance(values, list)
        and bool(values)
        and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values)
    )


def _finite_positive(x) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def validate(config: dict) -> None:
    """Raises ``ValueError("what was wrong; allowed: ...")`` for an unusable config."""
    from ntk_limits.data import STREAMS

    c = config
    _require(
        bool(c["benchmarks"]) and all(b in STREAMS for b in c["benchmarks"]),
        f"benchmarks {c['benchmarks']} unknown or empty",
        ", ".join(STREAMS),
    )
    _require(
        set(c["wrn_benchmarks"]) <= set(STREAMS),
        f"wrn_benchmarks {c['wrn_benchmarks']}",
        "stream names",
    )
    for key in ("widths", "wrn_multipliers", "epochs"):
        _require(_positive_ints(c[key]), f"{key}={c[key]}", "a non-empty list of positive ints")
    uses_wrn = [b in c["wrn_benchmarks"] for b in c["benchmarks"]]
    for key, used in (("widths", not all(uses_wrn)), ("wrn_multipliers", any(uses_wrn))):
        _require(
            not used or len(set(c[key])) >= 2, f"{key}={c[key]}", "two or more distinct values"
        )
    _require(
        isinstance(c["linearized_widths"], list)
        and all(w in c["widths"] for w in c["linearized_widths"]),
        f"linearized_widths={c['linearized_widths']}",
        "a subset of widths",
    )
    _require(
        bool(c["parameterizations"]) and set(c["parameterizations"]) <= set(PARAMETERIZATIONS),
        f"parameterizations={c['parameterizations']}",
        "standard, ntk",
    )
    _require(
        set(c["linearized_parameterizations"]) <= set(PARAMETERIZATIONS),
        f"linearized_parameterizations={c['linearized_parameterizations']}",
        "standard, ntk",
    )
    _require(
        c["verdict_parameterization"] in c["parameterizations"],
        f"verdict_parameterization={c['verdict_parameterization']!r}",
        "one of parameterizations",
    )
    for key in ("lr_standard", "lr_ntk", "kernel_lr", "slope_sigmas"):
        _require(_finite_positive(c[key]), f"{key}={c[key]!r}", "a finite positive number")
    for key in ("depth", "batch_size", "max_epochs", "probe_size", "kernel_block"):
        _require(_positive_ints([c[key]]), f"{key}={c[key]!r}", "a positive int")
    _require(
        c["wrn_depth"] >= 10 and (c["wrn_depth"] - 4) % 6 == 0,
        f"wrn_depth={c['wrn_depth']}",
        "6n+4 with n >= 1",
    )
    _require(0 < c["target_accuracy"] <= 1, f"target_accuracy={c['target_accuracy']}", "(0, 1]")
    _require(
        isinstance(c["seeds"], list) and len(set(c["seeds"])) >= 2,
        f"seeds={c['seeds']}",
        "at least two distinct ints (seed spread)",
    )
    _require(
        all(_finite_positive(t) for t in c["kernel_times"]),
        f"kernel_times={c['kernel_times']}",
        "finite positive numbers (∞: kernel_converged)",
    )
    _require(
        bool(c["kernel_times"]) or c["kernel_converged"],
        "no kernel training time",
        "kernel_times or kernel_converged=true",
    )
    _require(
        isinstance(c["kernel_diag_reg"], int | float) and c["kernel_diag_reg"] >= 0,
        f"kernel_diag_reg={c['kernel_diag_reg']!r}",
        "a number >= 0",
    )
    for key in ("kernel_max_train", "n_train", "n_test"):
        _require(c[key] is None or _positive_ints([c[key]]), f"{key}={c[key]!r}", "null or int > 0")
