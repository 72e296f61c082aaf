"""Study 2 (issue 6): uncertainty in neural contextual bandits — does NTK-theory γ_t work?

Wenger, Dangel & Kristiadi (2023, §3.2): NeuralUCB (Zhou et al., 2020) and NeuralTS (Zhang
et al., 2021) add to the network's prediction an exploration bonus ``γ_t σ_t(x)`` from the
empirical-NTK posterior (= linearised Laplace at the current parameters). Setting ``γ_t``
from kernel-regime theory explores far too much; a tuned constant, or the prior scale and
noise chosen online by the marginal likelihood, does better, in SP and NTP alike (C3).

What is run: UCI classification sets as K-armed contextual bandits (disjoint encoding,
unit-norm features, reward 1 for the true class, round order shuffled by seed). Agents:
uniform random; LinUCB (OFUL γ_t); the exact infinite-width NTK-GP of the same network
(UCB with theory γ_t, UCB and TS with evidence-tuned prior/noise); NeuralUCB and NeuralTS
with the full function-space LLA posterior (incremental Cholesky, refactored after every
retraining) and γ from (i) theory ``γ_t = ν√(log det(I + K/λ) − 2 log δ) + √λ S``,
also at each λ of ``theory_prior_precisions`` (the verdict takes the best theory variant),
(ii) each fixed γ of ``fixed_gammas`` (γ = 0 is the greedy network), (iii) online evidence
maximisation of λ and σ² (``γ = 1``); NeuralUCB with the diagonal posterior of the
reference code (uclaml/NeuralUCB) and theory γ_t. Network: 1 hidden ReLU layer, squared
loss, weight decay ``ρ/c`` towards θ₀, retrained every round for the first ``train_first``
rounds and every ``train_every`` rounds after, ``train_steps`` Nesterov-GD steps from the
current parameters. The width sweep (NTP ``widths``, SP ``standard_widths``, on
``sweep_datasets``) runs NeuralUCB with theory γ_t and with evidence tuning. Seeds run one
after another through one compiled program per (data set, width, parametrisation): on
this CPU, vmapping seeds triples XLA compile time, which is most of the budget.

Commands and expectations (2-core CPU unless stated)::

    ntk-limits run bandits --profile smoke      # ~30-60 s (mostly compilation)
    ntk-limits run bandits --profile embedded   # ~2.5 min: 162 s CPU, 37 runs
    ntk-limits run bandits --profile paper      # GPU; needs --data-dir with uci/*.csv

Embedded: iris and wine, T = 300 rounds (~2 shuffled passes), 3 seeds, width 100 (the
reference default) in NTP for every agent (the diagonal reference-code baseline on wine
only); width sweep NTP 32, 100, 256 and SP 100, 256 on wine. Sized to the 2.5-min share
of the 2-core budget: 37 runs, 12 compiled programs; XLA compilation (≈ 10 s CPU per
neural program) is about two thirds of it (measured: 162 s CPU, 5.5 min wall on the
shared machine at load ≈ 9). λ = 0.01: the weight decay ``ρ/c = λ`` must be small for
the network to fit (greedy regret on wine 15-24 of 300 at λ = 0.01, 67-108 at λ = 1; the
reference code uses 1e-3); theory agents also run at λ = 1, where γ_t is smaller.
Expected (measured): theory γ_T ≈ 19-22 (λ = 0.01) or 6-7 (λ = 1), bonuses γσ ≫ 1 (the
reward range), regret 170-200 of 300 (random: 200) except NeuralUCB at λ = 1 (85-110);
the best fixed γ (0 or 0.1) or the evidence-tuned posterior reaches 18-63, so C3 holds
with ratios 2.3-9.9; the same in SP and at every width; the evidence-tuned NTK-GP is
among the best agents (22-47).

Paper: covertype, magic, shuttle, mushroom, adult, letter (UCI csv files under
``data_dir``), T = 10 000, widths 32 … 4096, 5 seeds, retraining every round for the first
1000 rounds then every 100 (the reference protocol); needs a GPU (O(T³) refactorisations).
"""

import math

__all__ = ["PROFILES", "get_config", "sweep_widths", "validate"]

PROFILES = ("smoke", "embedded", "paper")
PARAMETERIZATIONS = ("ntk", "standard")
BASELINES = (
    "random",
    "linucb",
    "ntkgp-ucb-theory",
    "ntkgp-ucb-evidence",
    "ntkgp-ts-evidence",
    "neuralucb-diag-theory",
)
NEURAL = ("theory", "evidence")  # explorations of NeuralUCB / NeuralTS besides fixed γ

_BASE = {
    "datasets": ["iris", "wine"],
    "rounds": 300,
    "seeds": [0, 1, 2],
    "width": 100,  # base width: every agent runs here, in base_parameterization
    "base_parameterization": "ntk",
    "methods": ["ucb", "ts"],  # NeuralUCB, NeuralTS
    "fixed_gammas": [0.0, 0.1, 1.0],  # γ = 0 is the greedy network
    "fixed_methods": ["ucb"],  # methods that also run every fixed γ (greedy runs once)
    "baselines": list(BASELINES),
    "diag_datasets": ["wine"],  # where the diagonal (reference-code) baseline runs
    "sweep_datasets": ["wine"],
    "widths": [32, 100, 256],  # NTK-parametrisation sweep
    "standard_widths": [100, 256],  # standard-parametrisation sweep
    "prior_precision": 0.01,  # λ of theory/fixed agents (and start of evidence tuning)
    "theory_prior_precisions": [1.0],  # theory agents also run at these λ (C3 takes the best)
    "nu": 1.0,  # ν: sub-Gaussian scale of rewards in [0, 1]
    "delta": 0.1,
    "norm_bound": 1.0,  # S
    "train_first": 25,
    "train_every": 25,
    "train_steps": 30,
    "learning_rate": 1.0,  # relative to the curvature bound (safe in (0, 2))
    "momentum": 0.9,
    "tune_every": 50,
    "ridge_low": 1e-4,
    "ridge_high": 1e2,
    "ridge_num": 25,
    "curve_points": 100,  # cumulative regret stored at this many rounds
    "ratio_threshold": 1.25,  # C3: theory / best alternative must exceed this ...
    "sigmas": 2.0,  # ... and the gap must exceed this many combined seed SEs
    "data_dir": None,
}

_SMOKE = {
    "datasets": ["iris"],
    "rounds": 40,
    "seeds": [0, 1],
    "width": 16,
    "methods": ["ucb", "ts"],
    "fixed_gammas": [0.0, 0.1],
    "baselines": ["random", "linucb", "ntkgp-ucb-evidence", "neuralucb-diag-theory"],
    "sweep_datasets": ["iris"],
    "diag_datasets": ["iris"],
    "widths": [16],
    "standard_widths": [],
    "train_first": 10,
    "train_every": 10,
    "train_steps": 5,
    "tune_every": 10,
    "curve_points": 20,
}

_PAPER = {
    "datasets": ["covertype", "magic", "shuttle", "mushroom", "adult", "letter"],
    "rounds": 10_000,
    "seeds": [0, 1, 2, 3, 4],
    "fixed_gammas": [0.0, 0.01, 0.1, 1.0],
    "fixed_methods": ["ucb", "ts"],
    "sweep_datasets": ["covertype", "magic", "shuttle", "mushroom", "adult", "letter"],
    "diag_datasets": ["covertype", "magic", "shuttle", "mushroom", "adult", "letter"],
    "widths": [32, 128, 512, 1024, 4096],
    "standard_widths": [32, 128, 512, 1024, 4096],
    "train_first": 1000,
    "train_every": 100,
    "train_steps": 100,
    "tune_every": 500,
    "curve_points": 200,
}


def get_config(profile: str) -> dict:
    """The flat config of ``profile`` (``smoke``, ``embedded`` or ``paper``)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    override = {"smoke": _SMOKE, "embedded": {}, "paper": _PAPER}[profile]
    return {**_BASE, **override}


def sweep_widths(config: dict) -> dict[str, list[int]]:
    """``{"ntk": widths, "standard": standard_widths}`` of the width sweep."""
    return {"ntk": list(config["widths"]), "standard": list(config["standard_widths"])}


def _positive_ints(config: dict, keys) -> None:
    for key in keys:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key} must be a positive integer, got {value!r}; allowed: >= 1")


def _finite(config: dict, key: str, low: float, high: float = math.inf) -> None:
    value = config[key]
    if not isinstance(value, int | float) or not math.isfinite(value) or not low < value < high:
        raise ValueError(f"{key} must be a finite number in ({low}, {high}), got {value!r}")


def validate(config: dict) -> None:
    """Raises ``ValueError("what was wrong; allowed: ...")`` for an unusable config."""
    from ntk_limits.data import BANDITS

    for key in ("datasets", "sweep_datasets", "diag_datasets"):
        unknown = [d for d in config[key] if d not in BANDITS]
        if unknown:
            raise ValueError(f"unknown {key} {unknown}; allowed: {', '.join(BANDITS)}")
    if not config["datasets"] or not config["seeds"]:
        raise ValueError("datasets and seeds must be non-empty; allowed: non-empty lists")
    _positive_ints(config, ["rounds", "width", "train_every", "tune_every", "ridge_num"])
    _positive_ints(config, ["curve_points"])
    for key in ("widths", "standard_widths"):
        if any(not isinstance(w, int) or isinstance(w, bool) or w < 1 for w in config[key]):
            raise ValueError(f"{key} must be positive integers, got {config[key]}; allowed: >= 1")
    for key in ("base_parameterization",):
        if config[key] not in PARAMETERIZATIONS:
            raise ValueError(f"{key} {config[key]!r}; allowed: {', '.join(PARAMETERIZATIONS)}")
    if any(m not in ("ucb", "ts") for m in config["methods"]) or not config["methods"]:
        raise ValueError(f"methods {config['methods']}; allowed: ucb, ts")
    if any(m not in config["methods"] for m in config["fixed_methods"]):
        raise ValueError(f"fixed_methods {config['fixed_methods']}; allowed: some of methods")
    if any(b not in BASELINES for b in config["baselines"]):
        raise ValueError(f"baselines {config['baselines']}; allowed: {', '.join(BASELINES)}")
    if any(not math.isfinite(g) or g < 0 for g in config["fixed_gammas"]):
        raise ValueError(f"fixed_gammas {config['fixed_gammas']}; allowed: finite, >= 0")
    _finite(config, "prior_precision", 0.0)
    if any(not math.isfinite(v) or v <= 0 for v in config["theory_prior_precisions"]):
        raise ValueError(
            f"theory_prior_precisions {config['theory_prior_precisions']}; allowed: finite, > 0"
        )
    _finite(config, "nu", -1e-300)
    _finite(config, "norm_bound", -1e-300)
    _finite(config, "delta", 0.0, 1.0)
    _finite(config, "learning_rate", 0.0, 2.0)
    _finite(config, "momentum", -1e-300, 1.0)
    _finite(config, "ridge_low", 0.0, config["ridge_high"])
    if config["tune_every"] % config["train_every"]:
        raise ValueError(
            f"tune_every {config['tune_every']} must be a multiple of train_every "
            f"{config['train_every']} (agents re-tune when retraining); allowed: k·train_every"
        )
    if config["train_first"] < 0 or config["train_steps"] < 0:
        raise ValueError("train_first and train_steps must be >= 0; allowed: integers >= 0")
