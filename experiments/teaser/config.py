"""Teaser — finite networks' linearised-Laplace predictive against the infinite-width NTK-GP.

Command (each profile)::

    ntk-limits run teaser --profile smoke       # 3 runs, ~10 s on 2 idle CPU cores
    ntk-limits run teaser --profile embedded    # 6 runs, ~30 s of CPU time (measured: 71 s
                                                # wall on 2 cores shared 5 ways)
    ntk-limits run teaser --profile paper       # the embedded run with 16 seeds (CPU is fine)

Data: scikit-learn's packaged copy of the diabetes data (Efron et al. 2004, 442 patients,
offline): body-mass index (``bmi``) → disease progression after one year, both
standardised over all 442 patients; ``n_train`` of them drawn at random (``data_seed``)
as the training set, predictions on a grid that runs ``margin`` standard deviations
beyond the observed BMI range. There is no larger "paper" version of this figure: the
paper profile is the embedded one with more seeds.

What runs, per width (seeds batched by ``vmap``):

1. An MLP in NTK parametrization (``depth`` hidden layers, default one ReLU layer with
   ``b_std = 1`` so that the kinks spread over the data), *centred*:
   ``g(θ, x) = f(θ, x) − f(θ₀, x)`` (zero at initialisation, as in Lee et al. 2019), so
   that its infinite-width limit is deterministic.
2. ``steps`` steps of full-batch gradient descent on ``‖g − y‖² / (2n)`` with
   ``η = lr_fraction · 2n / λ_max(Θ_inf)`` (``teaser.study.gradient_descent``:
   the steps of ``ntk_limits.training.make_train`` with ``optax.sgd``, without its
   minibatch permutations, which only cost compile time for full batches).
3. Linearised Laplace (empirical-NTK GP): prior covariance ``K* = Θ̂(θ*)``, the empirical
   NTK at the trained parameters, Gaussian noise ``noise_var`` (``None``: fitted by
   maximum marginal likelihood of ``y`` under ``GP(0, Θ_inf)`` on a log grid), GP
   regression of the residuals ``y − g(θ*, X)``: mean ``g(θ*, x) + posterior mean``,
   variance the posterior variance of the latent function.

The infinite-width counterpart is the same recipe with ``Θ_inf``: the closed-form
gradient-descent outputs of the linearised infinite network
(``ntk_limits.linearize.gradient_descent_mse``, ``discrete=True``, ``steps`` steps), plus
the NTK-GP correction of their residuals (``ntk_limits.linearize.gp_regression``).
Distances on the grid: ``RMS(μ_w − μ_∞)`` and ``RMS(σ_w − σ_∞)`` (in target standard
deviations) and ``‖σ²_w − σ²_∞‖ / ‖σ²_∞‖``.

Expected result (embedded, 8 seeds, measured): noise variance 0.56 (fitted); every
finite width's band has the shape of the infinite one. Mean over seeds of
``RMS(σ_w − σ_∞)``: 0.45 (width 16), 0.23, 0.11, 0.059, 0.032 (width 4096), log-log
slope −0.48; of ``RMS(μ_w − μ_∞)``: 0.20, 0.18, 0.13, 0.084, 0.055, slope −0.24. The
mean's slope is flattened by the two smallest widths, which are pre-asymptotic: a side
check (8 seeds, widths 256-16384, not part of this study) gave −0.34 for the mean, −0.42
for the trained networks' own outputs ``g(θ*)`` and −0.31 for the GP correction.
No paper claim is decided here.
"""

import math

__all__ = ["PROFILES", "get_config", "validate"]

PROFILES = ("smoke", "embedded", "paper")
ACTIVATIONS = ("relu", "erf", "tanh")

_BASE = {
    "n_train": 64,
    "data_seed": 0,
    "num_grid": 200,
    "margin": 1.0,
    "depth": 1,
    "activation": "relu",
    "W_std": math.sqrt(2.0),
    "b_std": 1.0,
    "steps": 300,
    "lr_fraction": 0.5,
    "noise_var": None,
}

_PROFILES = {
    "smoke": {"widths": [16, 256], "seeds": [0, 1], "steps": 100, "num_grid": 40, "n_train": 24},
    "embedded": {"widths": [16, 64, 256, 1024, 4096], "seeds": list(range(8))},
    "paper": {"widths": [16, 64, 256, 1024, 4096], "seeds": list(range(16))},
}


def get_config(profile: str) -> dict:
    """The config of a profile: ``"smoke"``, ``"embedded"`` or ``"paper"`` (a flat dict)."""
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    return {"profile": profile, **_BASE, **_PROFILES[profile]}


def _int(config: dict, key: str, lo: int) -> None:
    v = config[key]
    if not isinstance(v, int) or isinstance(v, bool) or v < lo:
        raise ValueError(f"{key} must be an int >= {lo}, got {v!r}; allowed: >= {lo}")


def _number(config: dict, key: str, lo: float, hi: float = math.inf) -> None:
    v = config[key]
    bad = isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v)
    if bad or not lo < v < hi:
        raise ValueError(f"{key} must be a finite number in ({lo}, {hi}), got {v!r}")


def validate(config: dict) -> None:
    """Raises ``ValueError("what was wrong; allowed: ...")`` for an invalid config."""
    for key, lo in (("widths", 1), ("seeds", 0)):
        v = config[key]
        bad = not isinstance(v, list) or not v
        if bad or any(not isinstance(i, int) or isinstance(i, bool) or i < lo for i in v):
            raise ValueError(f"{key} must be a non-empty list of ints >= {lo}, got {v!r}")
        if len(set(v)) < len(v):
            raise ValueError(f"{key} must be distinct, got {v!r}; allowed: e.g. [0, 1, 2]")
    _int(config, "n_train", 2)
    if config["n_train"] > 442:
        raise ValueError(f"n_train is {config['n_train']}; allowed: 2..442 (diabetes patients)")
    for key, lo in (("data_seed", 0), ("num_grid", 2), ("depth", 1), ("steps", 1)):
        _int(config, key, lo)
    if config["activation"] not in ACTIVATIONS:
        raise ValueError(f"activation is {config['activation']!r}; allowed: relu, erf, tanh")
    _number(config, "margin", -1e-12)
    _number(config, "W_std", 0.0)
    _number(config, "b_std", -1e-12)
    _number(config, "lr_fraction", 0.0, 1.0)
    if config["noise_var"] is not None:
        _number(config, "noise_var", 0.0)
