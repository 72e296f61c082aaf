"""Exploration scales and arm scoring: closed forms, hand-computed scores, traced modes."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import bandits as B

E = B.Exploration("zhou", nu=0.5, delta=0.05, norm_bound=2.0)
KERNEL_LIMIT = 0.5 * math.sqrt(3.0 - 2.0 * math.log(0.05)) + math.sqrt(0.25) * 2.0  # ν√(·) + √λS


def test_kernel_limit_gamma_closed_form():
    got = float(B.kernel_limit_gamma(jnp.float32(3.0), jnp.float32(0.25), E))
    assert got == pytest.approx(KERNEL_LIMIT, rel=1e-6)  # float32 rounding


def test_zhou_gamma_against_a_hand_computation():
    # m = 64, t = 64, λ = 1, L = 2 make every power exact: m^(-1/6) = 1/2, so
    # ε = √(log 64)/2; t^(7/6) = 128, t^(5/3) = 1024, √(t/λ) = 8; L⁴ = 16, L^(7/2) = 8√2.
    eps = math.sqrt(6.0 * math.log(2.0)) / 2.0
    first = math.sqrt(1.0 + 16 * 128 * eps)
    conf = 0.5 * math.sqrt(3.0 + 16 * 1024 * eps - 2.0 * math.log(0.05)) + 2.0
    second = (1.0 + 64 * 2) * (8.0 * math.sqrt(2.0) * 1024 * eps * (1.0 + 8.0))
    args = (jnp.float32(64.0), jnp.float32(3.0), jnp.float32(1.0), E)
    got = float(jax.jit(lambda *a: B.zhou_gamma(*a[:3], E, width=64, depth=2))(*args[:3]))
    assert got == pytest.approx(first * conf + second, rel=1e-5)  # float32 powers, ~1e6 value
    # The optimisation term (1 − ηmλ)^(J/2) √(t/λ) at ηmλ = 1/2, J = 4: 1/4 · 8 = 2.
    trained = float(B.zhou_gamma(*args, width=64, depth=2, learning_rate=1 / 128, steps=4))
    assert trained == pytest.approx(first * conf + 129 * (2.0 + second / 129), rel=1e-5)


def test_zhou_gamma_exceeds_its_kernel_limit_and_reaches_it_at_infinite_width():
    args = (jnp.float32(100.0), jnp.float32(3.0), jnp.float32(0.25), E)
    limit = float(B.zhou_gamma(*args, width=math.inf, depth=2))
    assert limit == pytest.approx(KERNEL_LIMIT, rel=1e-6)  # float32 rounding
    finite = [float(B.zhou_gamma(*args, width=m, depth=2)) for m in (64, 4096, 2**20)]
    assert finite[0] > finite[1] > finite[2] > limit  # every finite-width term is ≥ 0
    assert float(B.zhou_gamma(jnp.float32(0.0), *args[1:], width=64, depth=2)) == (
        pytest.approx(KERNEL_LIMIT, rel=1e-6)  # at t = 0 the finite-width terms vanish
    )


def _scales(exploration):
    """γ of every exploration at t = 64, log det ratio 3, λ = 0.25, m = 64, L = 2."""
    return B.exploration_scale(
        exploration, jnp.float32(3.0), jnp.float32(0.25), t=jnp.int32(64), width=64, depth=2
    )


def test_exploration_scale_of_each_mode_static_and_traced():
    zhou = float(B.zhou_gamma(jnp.float32(64.0), jnp.float32(3.0), jnp.float32(0.25), E,
                              width=64, depth=2))  # fmt: skip
    expected = {
        "zhou": zhou, "kernel-limit": KERNEL_LIMIT, "fixed": 0.3,
        "evidence": 1.0,  # γ = 1, the evidence sets λ and σ²
        "reference": math.sqrt(0.25 * 0.5),  # √(λν)
    }  # fmt: skip
    assert set(expected) == set(B.EXPLORATIONS)
    scale = jax.jit(_scales)  # one program for every mode: the mode is an array
    for mode, value in expected.items():
        static = E._replace(mode=mode, gamma=0.3)
        assert float(_scales(static)) == pytest.approx(value, rel=1e-6)  # float32
        traced = float(scale(static.as_arrays()))  # float32, one fused program vs eager ops
        assert traced == pytest.approx(float(_scales(static)), rel=1e-6)
    assert scale._cache_size() == 1


def test_zhou_constants_at_the_studied_scale():
    # ZHOU_CONSTANTS' docstring: at m = 100, t = 300, λ = 1, γ ≈ 10⁹, and > 10⁶ with Cᵢ = 1e-3.
    args = (300.0, 20.0, 1.0, B.Exploration(nu=1.0, delta=0.1, norm_bound=1.0))
    assert 1e9 < float(B.zhou_gamma(*args, width=100, depth=2)) < 1e10
    small = float(B.zhou_gamma(*args, width=100, depth=2, constants=(1e-3,) * 3))
    assert small > 1e6


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
