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
   ``η = lr_fraction · 2n / λ_max(Θ_inf)`` (``ntk_limits.training.make_train`` with
   ``optax.sgd``, full batch).
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

import dataclasses
import math
from typing import Literal

from ntk_limits_experiments.config import MAX_DEPTH, MAX_WIDTH, Config, field, profiles

__all__ = ["PROFILES", "Problem", "TeaserConfig"]

NUM_PATIENTS = 442  # the diabetes data set


@dataclasses.dataclass(frozen=True)
class Problem(Config):
    """The data and the training recipe every run of the teaser shares.

    Attributes:
      n_train: training patients, drawn at random.
      data_seed: seed of that draw.
      num_grid: prediction points.
      margin: how far the grid runs beyond the observed BMI (standard deviations).
      steps: full-batch gradient-descent steps.
      lr_fraction: learning rate as a fraction of the largest stable one, ``2n/λ_max(Θ_inf)``.
      noise_var: GP noise variance; ``None`` fits it by marginal likelihood on ``Θ_inf``.
    """

    n_train: int = field(64, ge=2, le=NUM_PATIENTS)
    data_seed: int = field(0, ge=0)
    num_grid: int = field(200, ge=2)
    margin: float = field(1.0, ge=0)
    steps: int = field(300, ge=1)
    lr_fraction: float = field(0.5, gt=0, lt=1)
    noise_var: float | None = field(None, gt=0)


@dataclasses.dataclass(frozen=True)
class TeaserConfig(Problem):
    """The teaser's configuration: the :class:`Problem` fields, the MLP, widths and seeds.

    Attributes:
      profile: the profile it came from.
      depth: hidden layers of the MLP (NTK parametrization).
      activation: its nonlinearity.
      W_std: weight standard deviation (times ``sqrt(fan_in)``).
      b_std: bias standard deviation (1: the ReLU kinks spread over the data).
      widths: hidden widths of the finite networks.
      seeds: seeds of each width, batched by ``vmap``.

    The fields it inherits from :class:`Problem` form :attr:`problem`.
    """

    profile: Literal["smoke", "embedded", "paper"] = "embedded"
    depth: int = field(1, ge=1, le=MAX_DEPTH)
    activation: Literal["relu", "erf", "tanh"] = "relu"
    W_std: float = field(math.sqrt(2.0), gt=0)  # noqa: N815 - the name used in the NTK literature
    b_std: float = field(1.0, ge=0)
    widths: tuple[int, ...] = field(
        (16, 64, 256, 1024, 4096), ge=1, le=MAX_WIDTH, nonempty=True, distinct=True
    )
    seeds: tuple[int, ...] = field(tuple(range(8)), ge=0, nonempty=True, distinct=True)

    @property
    def problem(self) -> Problem:
        """The shared data and training recipe of every run."""
        names = [f.name for f in dataclasses.fields(Problem)]
        return Problem(**{n: getattr(self, n) for n in names})


PROFILES = profiles(
    smoke=TeaserConfig(
        profile="smoke", widths=(16, 256), seeds=(0, 1), steps=100, num_grid=40, n_train=24
    ),
    embedded=TeaserConfig(profile="embedded"),
    paper=TeaserConfig(profile="paper", seeds=tuple(range(16))),
)
