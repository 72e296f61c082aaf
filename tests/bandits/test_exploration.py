"""Exploration scales and arm scoring: closed forms, hand-computed scores, traced modes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import bandits as B

E = B.Exploration("theory", nu=0.5, delta=0.05, norm_bound=2.0)


def test_theory_gamma_closed_form_and_zhou_is_larger():
    got = float(B.theory_gamma(jnp.float32(3.0), jnp.float32(0.25), E))
    ref = 0.5 * math.sqrt(3.0 - 2.0 * math.log(0.05)) + math.sqrt(0.25) * 2.0
    assert got == pytest.approx(ref, rel=1e-6)  # float32 rounding
    full = B.zhou_gamma(
        100.0, 3.0, width=100, depth=2, prior_precision=0.25, learning_rate=1e-3, steps=50,
        exploration=E,
    )  # fmt: skip
    assert full > ref  # every finite-width correction term is non-negative


def _scales(exploration):
    """γ of the three explorations at log det ratio 3, λ = 0.25."""
    return B.exploration_scale(exploration, jnp.float32(3.0), jnp.float32(0.25))


def test_exploration_scale_of_each_mode_static_and_traced():
    theory = 0.5 * math.sqrt(3.0 - 2.0 * math.log(0.05)) + math.sqrt(0.25) * 2.0
    expected = {"theory": theory, "fixed": 0.3, "evidence": 1.0}  # evidence: γ = 1
    scale = jax.jit(_scales)  # one program for every mode: the mode is an array
    for mode, value in expected.items():
        static = E._replace(mode=mode, gamma=0.3)
        assert float(_scales(static)) == pytest.approx(value, rel=1e-6)  # float32
        traced = float(scale(static.as_arrays()))  # float32, one fused program vs eager ops
        assert traced == pytest.approx(float(_scales(static)), rel=1e-6)
    assert scale._cache_size() == 1


def test_as_arrays_and_is_mode():
    arrays = B.Exploration("evidence", 0.3, True).as_arrays()
    assert all(isinstance(v, jax.Array) and v.shape == () for v in arrays)
    assert arrays.thompson.dtype == jnp.bool_ and bool(arrays.thompson)
    assert float(arrays.gamma) == pytest.approx(0.3)
    for mode in B.EXPLORATIONS:  # the traced code answers is_mode as the name does
        traced = B.Exploration(mode).as_arrays()
        assert [bool(B.is_mode(traced, m)) for m in B.EXPLORATIONS] == [
            B.is_mode(B.Exploration(mode), m) for m in B.EXPLORATIONS
        ]
    assert B.may_tune(arrays) and B.may_tune(B.Exploration("evidence"))
    assert not B.may_tune(B.Exploration("fixed"))
    with pytest.raises(ValueError, match="allowed"):
        B.Exploration("optimism").as_arrays()  # checked before it is encoded


def test_exploration_validation():
    with pytest.raises(ValueError, match="allowed"):
        B.check_exploration(B.Exploration("optimism"))
    with pytest.raises(ValueError, match="delta"):
        B.check_exploration(B.Exploration(delta=1.5))
    with pytest.raises(ValueError, match="non-negative"):
        B.check_exploration(B.Exploration(gamma=-1.0))
    B.check_exploration(B.Exploration("fixed").as_arrays())  # traced fields are skipped


def test_score_arms_ucb_and_thompson():
    mean, sd = jnp.array([0.5, 0.45, 0.0]), jnp.array([0.0, 0.2, 1.0])
    key = jax.random.key(0)
    # Scores mean + γ sd by hand: γ=0.1 -> (.5, .47, .1); γ=.4 -> (.5, .53, .4); γ=.7 ->
    # (.5, .59, .7).
    assert int(B.score_arms(mean, sd, jnp.float32(0.1), False, key)) == 0
    assert int(B.score_arms(mean, sd, jnp.float32(0.4), False, key)) == 1
    assert int(B.score_arms(mean, sd, jnp.float32(0.7), False, key)) == 2
    assert int(B.score_arms(mean, sd, jnp.float32(0.0), True, key)) == 0  # TS with γ=0 is greedy
    draws = jax.vmap(lambda k: B.score_arms(mean, sd, jnp.float32(1.0), True, k))(
        jax.random.split(key, 4000)
    )
    # Under TS each arm wins with probability > 0.2 here (arm 0 ~0.41, arm 1 ~0.28, arm 2
    # ~0.31 from the Gaussian scores), so > 100 wins of 4000 is a > 10-sd margin.
    counts = np.bincount(np.asarray(draws), minlength=3)
    assert counts.min() > 100
