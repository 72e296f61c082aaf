"""regime's adapters (flax Linen with BatchNorm, NNX), program cache, memory plan
(blocking, refusal) and errors; ``tests/test_regime.py`` has the closed forms and the two
regimes (split in two files so that pytest's workers share them).
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models, regime
from tests.test_regime import dense_gram, toy_data


def test_programs_compile_once_for_estimate_then_diagnose_and_for_a_new_step():
    # regime caches its compiled programs by (apply_fn, options, shapes): estimate() then
    # diagnose() compiles none of them again, nor does a diagnosis with another learning
    # rate on other data values; the cached second diagnosis equals a fresh one (the same
    # programs: exact), and another apply_fn on the same shapes is not served a stale
    # program (2·f has the Gram 4·K₀: float64 round-off, 1e-12).
    compiles = []
    listen = lambda event, secs, **_: compiles.append(event)
    x, y, _ = toy_data(6, 5)
    x2 = 2 * x
    arch = models.mlp(width=16, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    jax.block_until_ready(params)
    regime.estimate(arch.apply_fn, params, x, y, train=regime.gd(0.5, 3))  # fills the cache
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        first = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(0.5, 3))
        before = len(compiles)
        d = regime.diagnose(arch.apply_fn, params, x2, y, train=regime.gd(0.25, 3))
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    again = [e for e in compiles[before:] if e == "/jax/core/compile/backend_compile_duration"]
    assert not again, f"{len(again)} programs compiled again"
    regime._COMPILED.clear()
    fresh = regime.diagnose(arch.apply_fn, params, x2, y, train=regime.gd(0.25, 3))
    np.testing.assert_array_equal(d.c_prime, fresh.c_prime)
    np.testing.assert_array_equal(d.losses, fresh.losses)
    doubled = regime.diagnose(lambda p, a: 2 * arch.apply_fn(p, a), params, x, y,
                              train=regime.gd(0.5, 3))  # fmt: skip
    np.testing.assert_allclose(doubled.eigenvalues, 4 * first.eigenvalues, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- adapters


def test_linen_batchnorm_adapter_states_its_mode_and_couples_examples():
    import flax.linen as nn

    # flax's BatchNorm promotes its statistics with float32 internally, which strict
    # promotion rejects for a float64 diagnosis; users run with standard promotion.
    with jax.numpy_dtype_promotion("standard"):
        _check_linen_batchnorm(nn)


def _check_linen_batchnorm(nn):
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x, train: bool):
            x = nn.Dense(16)(x)
            x = nn.BatchNorm(use_running_average=not train)(x)
            return nn.Dense(2)(nn.relu(x))

    x, y, _ = toy_data(6, 5, k=2)
    net = Net()
    variables = net.init(jax.random.key(0), x, train=False)
    apply_train, params = regime.from_linen(net, variables, train=True)
    apply_eval, _ = regime.from_linen(net, variables, train=False)
    assert kernels.examples_coupled(apply_train) and not kernels.examples_coupled(apply_eval)
    # Batch statistics: one example's output depends on the others.
    f = apply_train(params, x)
    assert not np.allclose(f[:3], apply_train(params, x[:3]), atol=1e-3)
    d = regime.diagnose(apply_train, params, x, y, train=regime.gd(0.5, 5))
    assert any("examples coupled" in note for note in d.notes)
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        g0, _ = dense_gram(apply_train, p64, jnp.asarray(x, jnp.float64))
    # The whole-batch Gram against the dense Jacobian of the whole batch (float64: 1e-8).
    np.testing.assert_allclose(d.eigenvalues, np.linalg.eigvalsh(g0), rtol=1e-8, atol=1e-10)


def test_nnx_adapter_gives_the_model_outputs():
    from flax import nnx

    model = nnx.Sequential(nnx.Linear(5, 16, rngs=nnx.Rngs(0)), nnx.relu,
                           nnx.Linear(16, 1, rngs=nnx.Rngs(1)))  # fmt: skip
    apply_fn, params = regime.from_nnx(model)
    x, y, _ = toy_data(6, 5)
    np.testing.assert_array_equal(apply_fn(params, x), model(x))
    d = regime.diagnose(apply_fn, params, x, y, train=regime.gd(0.5, 5))
    assert d.num_params == 5 * 16 + 16 + 16 + 1


# ------------------------------------------------------------------ memory and bad input


def test_refuses_before_running_and_proposes_fewer_inputs():
    x, y, _ = toy_data(8, 5)
    arch = models.mlp(width=32, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    train = regime.gd(0.5, 5)
    est = regime.estimate(arch.apply_fn, params, x, y, train=train)
    assert est.gram_bytes == 8 * 8 * 8 and est.peak_bytes >= max(est.programs.values())
    half = regime.estimate(arch.apply_fn, params, x[:4], y[:4], train=train).peak_bytes
    assert half < est.peak_bytes
    # A budget that n = 4 fits and n = 8 does not: the proposal is XLA's, n <= 4.
    with pytest.raises(regime.DiagnosisTooLarge, match=r"budget .* try n <= 4 inputs"):
        regime.diagnose(arch.apply_fn, params, x, y, train=train, max_bytes=half)


@pytest.mark.slow
def test_refuses_when_not_even_one_input_fits():
    x, y, _ = toy_data(8, 5)
    arch = models.mlp(width=32, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    with pytest.raises(regime.DiagnosisTooLarge, match="does not fit even for one input"):
        regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(0.5, 5), max_bytes=100)


def test_a_gram_too_large_to_form_whole_is_blocked_over_inputs():
    # Budget between the whole Gram program (2.3 MB here) and a tile's: K₀ and every K_t
    # are formed in tiles of inputs; the numbers equal the unblocked diagnosis (float64
    # spectrum: 1e-10; float32 kernel changes: 1e-5; the same Lanczos program: exact).
    x = jax.random.normal(jax.random.key(0), (64, 64))
    y = jnp.zeros((64, 3))
    arch = models.mlp(width=32, depth=2, out_dim=3)
    _, params = arch.init_fn(jax.random.key(0), (-1, 64))
    train = regime.gd(0.1, 4)
    whole = regime.diagnose(arch.apply_fn, params, x, y, train=train, checkpoints=2)
    est = regime.estimate(arch.apply_fn, params, x, y, train=train, checkpoints=2)
    budget = est.programs["gram"] - 1
    blocked = regime.diagnose(arch.apply_fn, params, x, y, train=train, checkpoints=2,
                              max_bytes=budget)  # fmt: skip
    assert any("tiles" in note for note in blocked.notes)
    np.testing.assert_allclose(blocked.eigenvalues, whole.eigenvalues, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(blocked.kernel_change, whole.kernel_change, rtol=1e-5)
    np.testing.assert_allclose(blocked.c_prime, whole.c_prime, rtol=1e-6)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda f, p, x, y: regime.diagnose(f, p, x, y[:3], train=regime.gd(1.0, 2)),
         r"y must be \(n, k\) = \(6, 1\)"),
        (lambda f, p, x, y: regime.diagnose(f, p, x, y, train=optax.sgd(1.0)),
         "train must be a regime.Training"),
        (lambda f, p, x, y: regime.diagnose(lambda q, a: f(q, a)[:, 0], p, x, y,
                                            train=regime.gd(1.0, 2)), r"must return \(n, k\)"),
        (lambda f, p, x, y: regime.gd(-1.0, 2), "learning_rate must be a positive number"),
        (lambda f, p, x, y: regime.ngd(1.0, 0), "num_steps must be a positive integer"),
        (lambda f, p, x, y: regime.diagnose(f, p, x, y, train=regime.gd(1.0, 2),
                                            precision="half"), "unknown precision"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_error(call, message):
    x, y, _ = toy_data(6, 5)
    arch = models.mlp(width=8, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    with pytest.raises((ValueError, TypeError), match=message):
        call(arch.apply_fn, params, x, y)
