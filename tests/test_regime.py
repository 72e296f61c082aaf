"""regime.diagnose against closed forms, dense Jacobians and the two regimes of theory.

References: a linear model (its NTK is ``x xᵀ ⊗ I_k``, constant, so every change is 0
and trained outputs equal the kernel-regime closed forms), dense Jacobians
(``kernels.jacobian``) for ``C′``, the kernel change and the spectrum, and an explicit
iteration of the kernel-regime NGD recursion.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ntk_limits import kernels, models, regime


def _data(n, d, k=1, seed=0):
    x = jax.random.normal(jax.random.key(seed), (n, d))
    x_test = jax.random.normal(jax.random.key(seed + 1), (4, d))
    y = jnp.sin(x[:, :k])
    return x, y, x_test


def _linear(d, k, seed=0):
    w = jax.random.normal(jax.random.key(seed), (d, k)) / jnp.sqrt(d)
    apply_fn = lambda p, x: x @ p["w"]
    kernel_fn = lambda a, b, _: a @ (a if b is None else b).T
    return apply_fn, {"w": w}, kernel_fn


def _dense_gram(apply_fn, params, x):
    j = jax.jit(kernels.jacobian, static_argnums=0)(apply_fn, params, x)  # one program
    j = np.asarray(j, np.float64)
    j = j.reshape(-1, j.shape[-1])  # (n·k, P)
    return j @ j.T, j


# -------------------------------------------------------------------- the two regimes


def test_wide_ntk_mlp_with_a_small_step_is_in_the_kernel_regime():
    # Width 4096 in NTK parametrisation, 8 nearly orthogonal inputs (d = 64): λ_min(K₀) is
    # O(1) and ‖ΔJ‖₂ = O(‖Δθ‖/√width), so C′ stays below 1/2 (measured 0.35) while GD
    # fits the data (loss 0.84 → 1e-8). Thresholds: the defaults (C′ < 1/2 from theory,
    # kernel change and linearisation error < 10 %).
    x, y, x_test = _data(8, 64)
    arch = models.mlp(width=4096, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 64))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(1.0, 20), x_test=x_test)
    assert d.verdict == "kernel regime", d.summary
    assert all(d.checks.values())
    assert d.losses[-1] < 1e-3 * d.losses[0]  # it did train
    assert np.all(d.c_prime < 0.5) and np.all(d.inside_radius)
    assert d.summary.startswith("kernel regime: full rank")


def test_narrow_deep_mlp_with_a_large_step_is_outside_the_kernel_regime():
    # Width 16, depth 6, η = 0.5: the kernel moves by most of its norm (measured 93 %) and
    # C′ reaches ~50 inside the radius; the verdict must not call it kernel regime.
    x, y, x_test = _data(16, 8)
    arch = models.mlp(width=16, depth=6, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 8))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(0.5, 100), x_test=x_test)
    assert d.verdict == "outside the kernel regime", d.summary
    assert d.checks["stable_jacobian"] is False and d.checks["lazy_kernel"] is False
    assert d.kernel_change[-1] > 0.1 and np.max(d.c_prime[d.inside_radius]) >= 0.5


# ----------------------------------------------------------- a linear model: exact answers


@pytest.mark.parametrize(
    "train", [regime.gd(0.5, 30), regime.gd(None, 30), regime.ngd(0.5, 6, damping=1e-3)]
)
def test_linear_model_matches_every_closed_form(train):
    # f = x W is its own linearisation: J is constant, so C′, the kernel change and the
    # linearisation error are 0 up to float32 round-off of equal numbers (< 1e-5), and
    # training equals the kernel-regime closed form with Θ = x xᵀ (float32 training:
    # relative gap < 1e-4).
    x, y, x_test = _data(6, 12, k=2)
    apply_fn, params, kernel_fn = _linear(12, 2)
    d = regime.diagnose(apply_fn, params, x, y, train=train, x_test=x_test, kernel_fn=kernel_fn)
    assert d.verdict == "kernel regime", d.summary
    np.testing.assert_allclose(d.c_prime, 0.0, atol=1e-5)
    np.testing.assert_allclose(d.kernel_change, 0.0, atol=1e-5)
    np.testing.assert_allclose(d.linearization_error, 0.0, atol=1e-4)
    assert d.infinite_kernel_distance < 1e-12  # both float64, the same matrix
    assert d.infinite_prediction_gap < 1e-4
    # Spectrum: x xᵀ's eigenvalues, each k times (float64 against numpy: 1e-10).
    lam = np.linalg.eigvalsh(np.asarray(x, np.float64) @ np.asarray(x, np.float64).T)
    np.testing.assert_allclose(d.eigenvalues, np.repeat(lam, 2), rtol=1e-10)


def test_rank_deficient_gram_is_zero_by_rank_and_fails():
    # P = d·k = 4 parameters for n·k = 6 outputs: λ_min(K₀) = 0 exactly, not round-off.
    x, y, _ = _data(6, 4)
    apply_fn, params, _ = _linear(4, 1)
    d = regime.diagnose(apply_fn, params, x, y, train=regime.gd(0.5, 5))
    assert d.checks["full_rank"] is False and d.lambda_min_resolved
    assert d.verdict == "outside the kernel regime"
    assert "rank-deficient" in d.summary and d.evaluated_on == "training inputs"


def test_ngd_kernel_prediction_equals_the_explicit_recursion(x64):
    # Θ-regime NGD step by step in float64 numpy; the closed form sums the series (1e-10).
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    theta = a @ a.T + 1e-3 * np.eye(5)
    theta_te = rng.normal(size=(3, 5))
    y, f, f_te = rng.normal(size=(5, 2)), rng.normal(size=(5, 2)), rng.normal(size=(3, 2))
    lr, eps, steps = 0.7, 0.05, 9
    predict = regime.ngd_kernel_prediction(jnp.asarray(theta), jnp.asarray(y), lr, eps)
    got_train, got_test = predict(steps, jnp.asarray(f), jnp.asarray(f_te), jnp.asarray(theta_te))
    solve = np.linalg.inv(theta + eps * np.eye(5))
    for _ in range(steps):
        step = lr * solve @ (f - y)
        f, f_te = f - theta @ step, f_te - theta_te @ step
    np.testing.assert_allclose(got_train, f, rtol=1e-10)
    np.testing.assert_allclose(got_test, f_te, rtol=1e-10)


# ------------------------------------------------------------ dense-Jacobian references


def test_c_prime_kernel_change_and_spectrum_match_dense_jacobians():
    # n·k = 12 rows ≤ 20 Lanczos steps: Lanczos is exact, so C′ matches the dense ‖ΔJ‖₂
    # to float32 round-off of the Jacobians (1e-4 relative); the float64 spectrum matches
    # numpy on the float64 dense Gram (1e-9: different summation orders).
    x, y, _ = _data(6, 5, k=2)
    arch = models.mlp(width=24, depth=2, out_dim=2)
    _, params = arch.init_fn(jax.random.key(3), (-1, 5))
    d = regime.diagnose(arch.apply_fn, params, x, y, train=regime.gd(1.0, 40))
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        g0, _ = _dense_gram(arch.apply_fn, p64, jnp.asarray(x, jnp.float64))
    np.testing.assert_allclose(d.eigenvalues, np.linalg.eigvalsh(g0), rtol=1e-9, atol=1e-12)
    g0_32, j0 = _dense_gram(arch.apply_fn, params, x)
    gt, jt = _dense_gram(arch.apply_fn, d.final_params, x)
    dj = np.linalg.norm(jt - j0, 2)
    np.testing.assert_allclose(d.c_prime[-1], 3 * dj / np.sqrt(d.lambda_min), rtol=1e-4)
    change = np.linalg.norm(gt - g0_32) / np.linalg.norm(g0_32)
    np.testing.assert_allclose(d.kernel_change[-1], change, rtol=1e-4)
    np.testing.assert_allclose(d.jacobian_change[-1], dj / np.sqrt(d.lambda_max), rtol=1e-4)


def test_optax_training_runs_and_has_no_closed_form_prediction():
    x, y, x_test = _data(6, 5)
    arch = models.mlp(width=32, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    train = regime.optax_training(optax.adam(1e-2), 10)
    d = regime.diagnose(arch.apply_fn, params, x, y, train=train, x_test=x_test,
                        kernel_fn=arch.kernel_fn)  # fmt: skip
    assert d.infinite_prediction_gap is None and d.infinite_kernel_distance > 0
    assert d.losses[-1] < d.losses[0]
    assert "not part of the verdict" in d.summary


def test_programs_compile_once_for_estimate_then_diagnose_and_for_a_new_step():
    # regime caches its compiled programs by (apply_fn, options, shapes): estimate() then
    # diagnose() compiles none of them again, nor does a diagnosis with another learning
    # rate on other data values; the cached second diagnosis equals a fresh one (the same
    # programs: exact), and another apply_fn on the same shapes is not served a stale
    # program (2·f has the Gram 4·K₀: float64 round-off, 1e-12).
    compiles = []
    listen = lambda event, secs, **_: compiles.append(event)
    x, y, _ = _data(6, 5)
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

    x, y, _ = _data(6, 5, k=2)
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
        g0, _ = _dense_gram(apply_train, p64, jnp.asarray(x, jnp.float64))
    # The whole-batch Gram against the dense Jacobian of the whole batch (float64: 1e-8).
    np.testing.assert_allclose(d.eigenvalues, np.linalg.eigvalsh(g0), rtol=1e-8, atol=1e-10)


def test_nnx_adapter_gives_the_model_outputs():
    from flax import nnx

    model = nnx.Sequential(nnx.Linear(5, 16, rngs=nnx.Rngs(0)), nnx.relu,
                           nnx.Linear(16, 1, rngs=nnx.Rngs(1)))  # fmt: skip
    apply_fn, params = regime.from_nnx(model)
    x, y, _ = _data(6, 5)
    np.testing.assert_array_equal(apply_fn(params, x), model(x))
    d = regime.diagnose(apply_fn, params, x, y, train=regime.gd(0.5, 5))
    assert d.num_params == 5 * 16 + 16 + 16 + 1


# ------------------------------------------------------------------ memory and bad input


def test_refuses_before_running_and_proposes_fewer_inputs():
    x, y, _ = _data(8, 5)
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
    x, y, _ = _data(8, 5)
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
    x, y, _ = _data(6, 5)
    arch = models.mlp(width=8, depth=1, out_dim=1)
    _, params = arch.init_fn(jax.random.key(0), (-1, 5))
    with pytest.raises((ValueError, TypeError), match=message):
        call(arch.apply_fn, params, x, y)
