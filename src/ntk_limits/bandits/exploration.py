"""Exploration scales: Zhou et al.'s γ_t, its kernel limit, fixed, evidence, reference.

NeuralUCB (Zhou et al., 2020) scores arm ``a`` by ``f(x_a) + γ_t σ_t(x_a)`` and NeuralTS
(Zhang et al., 2021) samples ``f(x_a) + γ_t σ_t(x_a) ε_a`` with ``ε_a ~ N(0, 1)``, where
``σ_t²(x) = gᵀ Z_t⁻¹ g`` and ``Z_t = λI + Σ_s g_s g_sᵀ`` (gradients normalised, see
:mod:`ntk_limits.bandits.neural`). The ways to set ``γ_t`` compared here
(:data:`EXPLORATIONS`):

* ``"zhou"``: the finite-width confidence width of Zhou et al. (2020, Theorem 4.5 and
  Algorithm 1), :func:`zhou_gamma`, at the agent's width ``m`` and depth ``L``: the
  exploration the theory prescribes for a network of that size;
* ``"kernel-limit"``: its ``m → ∞`` limit (with the optimisation term dropped), the
  kernel-regime (OFUL-type) width ``γ_t = ν √(log(det Z_t / det λI) − 2 log δ) + √λ S``
  (:func:`kernel_limit_gamma`); always smaller than ``"zhou"`` (every finite-width term is
  non-negative); LinUCB and the infinite-width NTK-GP use it;
* ``"fixed"``: a constant ``γ`` (the practitioner's grid search);
* ``"evidence"``: ``γ = 1`` with the posterior's prior precision ``λ`` and noise ``σ²``
  set by maximising the marginal likelihood online (:mod:`ntk_limits.bandits.evidence`);
* ``"reference"``: ``γ = √(λν)``, the scale the reference code (uclaml/NeuralUCB,
  ``learner_diag.py``) puts on its diagonal-posterior bonus ``√(λν Σ g²/U)``.
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "EXPLORATIONS",
    "ZHOU_CONSTANTS",
    "Exploration",
    "check_exploration",
    "exploration_scale",
    "is_mode",
    "may_tune",
    "score_arms",
    "kernel_limit_gamma",
    "zhou_gamma",
]

EXPLORATIONS = ("zhou", "kernel-limit", "fixed", "evidence", "reference")

ZHOU_CONSTANTS = (1.0, 1.0, 1.0)
"""``(C₁, C₂, C₃)`` of :func:`zhou_gamma`: all 1.

Zhou et al. (2020, Theorem 4.5) prove that absolute constants ``C₁, C₂, C₃ > 0``
(independent of ``m``, ``t``, ``λ``, ``L``) exist and give no values; neither does the
paper tested here. 1 is the one value not chosen toward an answer. It hardly matters:
at width 100, ``t = 300``, ``λ = 1`` the ``C₃`` term alone is ``≈ 10⁹`` with ``C₃ = 1``
and still ``> 10⁶`` with every ``Cᵢ = 10⁻³`` (both ≫ the reward range 1), so the agent
ranks arms by ``σ`` alone for any constants within three orders of magnitude of 1.
"""


class Exploration(NamedTuple):
    """How an agent scales (and samples) its exploration bonus.

    Fields are Python values (static: the program is specialised to them) or, after
    :meth:`as_arrays`, arrays (traced: one compiled program serves every exploration
    kind, ``γ``, UCB and TS, and may be ``vmap``-ed over them).

    Attributes:
      mode: one of :data:`EXPLORATIONS`; its traced form is an internal code made by
        :meth:`as_arrays`.
      gamma: the constant ``γ`` of ``"fixed"`` (``0`` is greedy).
      thompson: ``False`` for UCB (``mean + γ sd``), ``True`` for Thompson sampling
        (``mean + γ sd ε``, NeuralTS).
      nu: sub-Gaussian noise scale ``ν`` of the theory.
      delta: failure probability ``δ`` of the theory.
      norm_bound: RKHS-norm bound ``S`` of the reward function.
    """

    mode: Any = "zhou"
    gamma: Any = 1.0
    thompson: Any = False
    nu: Any = 1.0
    delta: Any = 0.1
    norm_bound: Any = 1.0

    def as_arrays(self) -> "Exploration":
        """The same exploration with every field an array, to pass into a jitted program.

        ``mode`` becomes an ``() int32`` code (internal to this module), ``thompson`` an
        ``() bool``, the numbers ``()`` arrays (weakly typed, so they follow the agent's
        dtype). Checked first (:func:`check_exploration`).

        Returns:
          An :class:`Exploration` of arrays; agents built from it inside the program
          behave as the static one (tested: the same arms, γ and σ to 1e-12 in float64).
        """
        check_exploration(self)
        numbers = [jnp.asarray(v) for v in (self.gamma, self.nu, self.delta, self.norm_bound)]
        gamma, nu, delta, norm_bound = numbers
        mode = jnp.asarray(_mode_code(self), jnp.int32)
        return Exploration(mode, gamma, jnp.asarray(self.thompson, bool), nu, delta, norm_bound)


def _mode_code(exploration: Exploration):
    """The index of ``exploration.mode`` in :data:`EXPLORATIONS` (an array if traced)."""
    mode = exploration.mode
    return EXPLORATIONS.index(mode) if isinstance(mode, str) else mode


def is_mode(exploration: Exploration, mode: str):
    """Whether ``exploration`` is of kind ``mode``: a bool, or ``() bool`` when traced."""
    return _mode_code(exploration) == EXPLORATIONS.index(mode)


def may_tune(exploration: Exploration) -> bool:
    """Whether evidence tuning must be compiled in (static ``"evidence"`` or traced mode)."""
    return not isinstance(exploration.mode, str) or exploration.mode == "evidence"


def check_exploration(exploration: Exploration) -> None:
    """Validates the static fields; raises ``ValueError`` (traced fields are skipped)."""
    e = exploration
    if isinstance(e.mode, str) and e.mode not in EXPLORATIONS:
        raise ValueError(f"unknown exploration {e.mode!r}; allowed: {', '.join(EXPLORATIONS)}")
    static = [v for v in (e.gamma, e.nu, e.norm_bound) if isinstance(v, int | float)]
    if any(v < 0.0 for v in static):
        raise ValueError(f"gamma, nu and norm_bound must be non-negative, got {e}")
    if isinstance(e.delta, int | float) and not 0.0 < e.delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {e.delta}")


def score_arms(
    mean: jax.Array, sd: jax.Array, gamma: jax.Array, thompson, key: jax.Array
) -> jax.Array:
    """Picks an arm: UCB ``argmax mean + γ sd`` or TS ``argmax mean + γ sd ε``.

    Args:
      mean: ``(K,)`` predicted rewards.
      sd: ``(K,)`` posterior standard deviations.
      gamma: ``()`` exploration scale.
      thompson: ``()`` bool; Thompson sampling with independent ``ε_a ~ N(0, 1)``.
      key: PRNG key (used when ``thompson``).

    Returns:
      ``()`` int32 arm.
    """
    eps = jnp.where(thompson, jax.random.normal(key, sd.shape, sd.dtype), 1.0)
    return jnp.argmax(mean + gamma * sd * eps).astype(jnp.int32)


def kernel_limit_gamma(
    log_det_ratio: jax.Array, prior_precision: jax.Array, exploration: Exploration
) -> jax.Array:
    """Kernel-limit confidence width ``ν √(log det(Z_t)/det(λI) − 2 log δ) + √λ S``.

    :func:`zhou_gamma` at infinite width without its optimisation term (tested).

    Args:
      log_det_ratio: ``()`` ``log det(I + K_t/λ)`` (``= log det Z_t − log det λI``).
      prior_precision: ``()`` ``λ``.
      exploration: supplies ``ν``, ``δ``, ``S``.

    Returns:
      ``()`` ``γ_t``.
    """
    e = exploration
    inside = jnp.maximum(log_det_ratio - 2.0 * jnp.log(e.delta), 0.0)
    return e.nu * jnp.sqrt(inside) + jnp.sqrt(prior_precision) * e.norm_bound


def zhou_gamma(
    t: jax.Array,
    log_det_ratio: jax.Array,
    prior_precision: jax.Array,
    exploration: Exploration,
    *,
    width: float,
    depth: int,
    constants: tuple[float, float, float] = ZHOU_CONSTANTS,
    learning_rate: float | None = None,
    steps: int = 0,
) -> jax.Array:
    """Zhou et al. (2020, Theorem 4.5, Algorithm 1) finite-width ``γ_t`` (traceable).

    With ``ε_m = m^{-1/6} √log m``::

        γ_t = √(1 + C₁ ε_m L⁴ t^{7/6} λ^{-7/6})
              · (ν √(log det Z_t/det λI + C₂ ε_m L⁴ t^{5/3} λ^{-1/6} − 2 log δ) + √λ S)
              + (λ + C₃ t L) [ (1 − ηmλ)^{J/2} √(t/λ)
                               + ε_m L^{7/2} t^{5/3} λ^{-5/3} (1 + √(t/λ)) ]

    ``m`` the width, ``L`` the number of weight layers, ``η`` the step size, ``J`` the
    gradient steps. ``learning_rate=None`` drops the optimisation term ``(1 − ηmλ)^{J/2}``
    (``ηmλ = 1``, training converged): the smallest ``γ_t`` the formula gives for any
    training, which favours the theory; otherwise ``|1 − ηmλ|`` is used. At
    ``width=math.inf`` (``ε_m = 0``) and ``learning_rate=None`` it equals
    :func:`kernel_limit_gamma`.

    Args:
      t: ``()`` round (observations so far: Algorithm 1 plays round ``t + 1`` with
        ``γ_t`` and ``Z_t``).
      log_det_ratio: ``()`` ``log det Z_t − log det λI``.
      prior_precision: ``()`` ``λ``.
      exploration: supplies ``ν``, ``δ``, ``S``.
      width: ``m`` (static; ``math.inf`` for the kernel limit).
      depth: ``L ≥ 1``, weight layers (static; a one-hidden-layer MLP has ``L = 2``).
      constants: ``(C₁, C₂, C₃)``, see :data:`ZHOU_CONSTANTS`.
      learning_rate: ``η`` (static), or ``None`` to drop the optimisation term.
      steps: ``J`` (static).

    Returns:
      ``()`` ``γ_t`` in the dtype of ``prior_precision`` (float32 holds it: ``≤ 10¹⁵``
      for ``m ≥ 16``, ``t ≤ 10⁴``, ``λ ≥ 10⁻²``).
    """
    c1, c2, c3 = constants
    lam = jnp.asarray(prior_precision)
    t = jnp.asarray(t, lam.dtype)
    eps = 0.0 if math.isinf(width) else float(width) ** (-1 / 6) * math.sqrt(math.log(width))
    big_l = float(depth)
    first = jnp.sqrt(1.0 + c1 * eps * big_l**4 * t ** (7 / 6) * lam ** (-7 / 6))
    inside = log_det_ratio + c2 * eps * big_l**4 * t ** (5 / 3) * lam ** (-1 / 6)
    e = exploration
    conf = e.nu * jnp.sqrt(jnp.maximum(inside - 2.0 * jnp.log(e.delta), 0.0))
    conf = conf + jnp.sqrt(lam) * e.norm_bound
    approx = eps * big_l**3.5 * t ** (5 / 3) * lam ** (-5 / 3) * (1.0 + jnp.sqrt(t / lam))
    decay = 0.0
    if learning_rate is not None:
        decay = jnp.abs(1.0 - learning_rate * width * lam) ** (steps / 2) * jnp.sqrt(t / lam)
    return first * conf + (lam + c3 * t * big_l) * (decay + approx)


def exploration_scale(
    exploration: Exploration,
    log_det_ratio: jax.Array,
    prior_precision: jax.Array,
    *,
    t: jax.Array = 0,
    width: float = math.inf,
    depth: int = 1,
) -> jax.Array:
    """``γ`` of the round: Zhou's, its kernel limit, fixed, ``1`` (evidence) or ``√(λν)``.

    Args:
      exploration: the configuration (static or traced).
      log_det_ratio: ``()`` ``log det(I + K_t/λ)`` (used by ``"zhou"``, ``"kernel-limit"``).
      prior_precision: ``()`` ``λ``.
      t: ``()`` observations so far (``"zhou"`` only).
      width: the network's width ``m`` (static; ``math.inf`` for kernel agents, where
        ``"zhou"`` equals ``"kernel-limit"``).
      depth: the network's weight layers ``L`` (static).

    Returns:
      ``()`` in the dtype of ``prior_precision``.
    """
    dtype = prior_precision.dtype
    e = exploration
    zhou = zhou_gamma(t, log_det_ratio, prior_precision, e, width=width, depth=depth)
    candidates = {
        "zhou": zhou,
        "kernel-limit": kernel_limit_gamma(log_det_ratio, prior_precision, e),
        "fixed": e.gamma,
        "evidence": 1.0,
        "reference": jnp.sqrt(prior_precision * e.nu),
    }
    out = jnp.ones((), dtype)
    for mode, value in candidates.items():
        out = jnp.where(is_mode(e, mode), jnp.asarray(value, dtype), out)
    return out
