"""Tests of ntk_limits.continual._metrics: against hand-computed values and explicit loops."""

import jax
import jax.numpy as jnp
import numpy as np

from ntk_limits import continual


def _loop_forgetting(acc):
    """Average forgetting by explicit loops (reference for the vectorised metric)."""
    last = acc.shape[0] - 1
    drops = [max(acc[k, j] for k in range(last)) - acc[last, j] for j in range(last)]
    return float(np.mean(drops))


def test_metrics_on_hand_written_matrix():
    acc = jnp.array([[0.9, 0.1, 0.2], [0.6, 0.95, 0.3], [0.5, 0.7, 0.9]])
    m = continual.continual_metrics(acc)
    # exact by hand: A = (0.5+0.7+0.9)/3; F = ((0.9-0.5) + (0.95-0.7))/2; LA = (0.9+0.95+0.9)/3
    np.testing.assert_allclose(m.average_accuracy, 0.7, atol=1e-6)  # float32 rounding
    np.testing.assert_allclose(m.forgetting, 0.325, atol=1e-6)
    np.testing.assert_allclose(m.learning_accuracy, 2.75 / 3, atol=1e-6)


def test_metrics_match_loops_batched_and_jitted():
    acc = np.random.default_rng(0).uniform(size=(4, 5, 5)).astype(np.float32)
    m = jax.jit(continual.continual_metrics)(jnp.asarray(acc))
    assert m.forgetting.shape == m.average_accuracy.shape == m.learning_accuracy.shape == (4,)
    # float32 sums of at most 5 terms
    np.testing.assert_allclose(m.forgetting, [_loop_forgetting(a) for a in acc], atol=1e-6)
    np.testing.assert_allclose(m.average_accuracy, acc[:, -1].mean(-1), atol=1e-6)
    np.testing.assert_allclose(m.learning_accuracy, [np.trace(a) / 5 for a in acc], atol=1e-6)
    np.testing.assert_allclose(continual.average_forgetting(acc[0]), m.forgetting[0], atol=1e-7)
