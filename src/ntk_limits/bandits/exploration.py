"""Exploration scales: kernel-regime theory, fixed, or evidence-maximised.

NeuralUCB (Zhou et al., 2020) scores arm ``a`` by ``f(x_a) + γ_t σ_t(x_a)`` and NeuralTS
(Zhang et al., 2021) samples ``f(x_a) + γ_t σ_t(x_a) ε_a`` with ``ε_a ~ N(0, 1)``, where
``σ_t²(x) = gᵀ Z_t⁻¹ g`` and ``Z_t = λI + Σ_s g_s g_sᵀ`` (gradients normalised, see
:mod:`ntk_limits.bandits.neural`). The three ways to set ``γ_t`` compared here:

* ``"theory"``: the kernel-regime (OFUL-type) confidence width
  ``γ_t = ν √(log(det Z_t / det λI) − 2 log δ) + √λ S`` (:func:`theory_gamma`);
* ``"fixed"``: a constant ``γ`` (the practitioner's grid search);
* ``"evidence"``: ``γ = 1`` with the posterior's prior precision ``λ`` and noise ``σ²``
  set by maximising the marginal likelihood online (:mod:`ntk_limits.bandits.evidence`).

:func:`zhou_gamma` is the full finite-width expression of Zhou et al. (2020), kept for the
record (its constants are unspecified there; we set them to 1).
"""

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "EXPLORATIONS",
    "Exploration",
    "check_exploration",
    "exploration_scale",
    "is_mode",
    "may_tune",
    "score_arms",
    "theory_gamma",
    "zhou_gamma",
]

EXPLORATIONS = ("theory", "fixed", "evidence")


class Exploration(NamedTuple):
    """How an agent scales (and samples) its exploration bonus.

    Fields are Python values (static: the program is specialised to them) or, after
    :meth:`as_arrays`, arrays (traced: one compiled program serves every exploration
    kind, ``γ``, UCB and TS, and may be ``vmap``-ed over them).

    Attributes:
      mode: ``"theory"``, ``"fixed"`` or ``"evidence"`` (:data:`EXPLORATIONS`); its
        traced form is an internal code made by :meth:`as_arrays`.
      gamma: the constant ``γ`` of ``"fixed"`` (``0`` is greedy).
      thompson: ``False`` for UCB (``mean + γ sd``), ``True`` for Thompson sampling
        (``mean + γ sd ε``, NeuralTS).
      nu: sub-Gaussian noise scale ``ν`` of the theory.
      delta: failure probability ``δ`` of the theory.
      norm_bound: RKHS-norm bound ``S`` of the reward function.
    """

    mode: Any = "theory"
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


def theory_gamma(
    log_det_ratio: jax.Array, prior_precision: jax.Array, exploration: Exploration
) -> jax.Array:
    """Kernel-regime confidence width ``ν √(log det(Z_t)/det(λI) − 2 log δ) + √λ S``.

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


def exploration_scale(
    exploration: Exploration, log_det_ratio: jax.Array, prior_precision: jax.Array
) -> jax.Array:
    """``γ`` of the round: :func:`theory_gamma`, the fixed ``γ``, or ``1`` (evidence).

    Args:
      exploration: the configuration (static or traced).
      log_det_ratio: ``()`` ``log det(I + K_t/λ)`` (used by ``"theory"`` only).
      prior_precision: ``()`` ``λ``.

    Returns:
      ``()`` in the dtype of ``prior_precision``.
    """
    dtype = prior_precision.dtype
    theory = theory_gamma(log_det_ratio, prior_precision, exploration).astype(dtype)
    fixed = jnp.asarray(exploration.gamma, dtype)
    is_theory, is_fixed = is_mode(exploration, "theory"), is_mode(exploration, "fixed")
    return jnp.where(is_theory, theory, jnp.where(is_fixed, fixed, jnp.ones((), dtype)))


def zhou_gamma(
    t: float,
    log_det_ratio: float,
    *,
    width: int,
    depth: int,
    prior_precision: float,
    learning_rate: float,
    steps: int,
    exploration: Exploration,
    constants: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> float:
    """Zhou et al. (2020, Algorithm 1) finite-width ``γ_t``, constants ``C1..C3`` set to 1.

    ``γ_t = √(1 + C1 m^{-1/6} √log m L⁴ t^{7/6} λ^{-7/6})
    · (ν √(log det Z_t/det λI + C2 m^{-1/6} √log m L⁴ t^{5/3} λ^{-1/6} − 2 log δ) + √λ S)
    + (λ + C3 t L) [ (1 − ηmλ)^{J/2} √(t/λ) + m^{-1/6} √log m L^{7/2} t^{5/3} λ^{-5/3}
    (1 + √(t/λ)) ]``, with ``m`` the width, ``L`` the depth (layers), ``η`` the step size,
    ``J`` the gradient steps. ``|1 − ηmλ|`` is used where the base is negative.

    Args:
      t: round.
      log_det_ratio: ``log det Z_t − log det λI``.
      width: ``m``.
      depth: ``L`` (number of weight layers).
      prior_precision: ``λ``.
      learning_rate: ``η``.
      steps: ``J``.
      exploration: supplies ``ν``, ``δ``, ``S``.
      constants: ``(C1, C2, C3)``.

    Returns:
      ``γ_t`` as a float.
    """
    c1, c2, c3 = constants
    m, lam, e = float(width), float(prior_precision), exploration
    eps = m ** (-1.0 / 6.0) * math.sqrt(math.log(m))
    first = math.sqrt(1.0 + c1 * eps * depth**4 * t ** (7 / 6) * lam ** (-7 / 6))
    inside = log_det_ratio + c2 * eps * depth**4 * t ** (5 / 3) * lam ** (-1 / 6)
    conf = e.nu * math.sqrt(max(inside - 2.0 * math.log(e.delta), 0.0))
    conf += math.sqrt(lam) * e.norm_bound
    decay = abs(1.0 - learning_rate * m * lam) ** (steps / 2) * math.sqrt(t / lam)
    approx = eps * depth**3.5 * t ** (5 / 3) * lam ** (-5 / 3) * (1.0 + math.sqrt(t / lam))
    return first * conf + (lam + c3 * t * depth) * (decay + approx)
