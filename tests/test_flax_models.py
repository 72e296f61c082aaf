"""flax twins of the stax networks (identical outputs and init), and the BatchNorm WRN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_limits import flax_models, models


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_flax_mlp_twin_gives_identical_outputs(parameterization, activation):
    x = jax.random.normal(jax.random.key(0), (5, 6))
    arch = models.mlp(32, 2, 3, activation=activation, parameterization=parameterization)
    _, params = arch.init_fn(jax.random.key(1), x.shape)
    twin = flax_models.flax_mlp(32, 2, 3, activation=activation, parameterization=parameterization)
    ours = twin.apply(flax_models.params_from_stax(params), x)
    # Same float32 operations in a different order: a few ulps of outputs of size ~1.
    np.testing.assert_allclose(ours, arch.apply_fn(params, x), atol=1e-5)


def test_flax_cnn_twin_gives_identical_outputs():
    x = jax.random.normal(jax.random.key(0), (3, 8, 8, 2))
    arch = models.cnn(16, 2, 4, parameterization="standard")
    _, params = arch.init_fn(jax.random.key(1), x.shape)
    twin = flax_models.flax_cnn(16, 2, 4, parameterization="standard")
    # float32 convolutions summed in a different order: a few ulps.
    np.testing.assert_allclose(
        twin.apply(flax_models.params_from_stax(params), x), arch.apply_fn(params, x), atol=1e-5
    )


def test_flax_twin_initialisation_has_the_stax_distribution():
    twin = flax_models.flax_mlp(256, 1, 1, parameterization="standard", W_std=2.0, b_std=0.5)
    v = twin.init(jax.random.key(0), jnp.zeros((1, 100)))["params"]
    # 25600 N(0, 4/100) samples: std estimate within 1% (≈ 4.5 standard errors).
    assert abs(float(jnp.std(v["_Linear_0"]["W"])) - 0.2) < 0.002
    assert abs(float(jnp.std(v["_Linear_0"]["b"])) - 0.5) < 0.1  # 256 samples: ±4.5 s.e.


def test_practical_wide_resnet_trains_mode_and_eval_mode():
    x = jax.random.normal(jax.random.key(0), (2, 4, 4, 3))
    net = flax_models.flax_wide_resnet(10, 1, 5)
    variables = net.init(jax.random.key(1), x, train=True)
    out, state = net.apply(variables, x, train=True, mutable=["batch_stats"])
    assert out.shape == (2, 5) and "batch_stats" in state
    assert net.apply(variables, x).shape == (2, 5)
