"""The flop counting behind the H200 estimate, against closed forms.

XLA's HLO cost analysis counts a loop body once; :func:`benchmarks.flops.program_cost`
multiplies it by the trip count. Each program here is a plain matmul ``(m, k) @ (k, n)``
(``2mnk`` flops) or a Cholesky (``n³/3``) repeated a known number of times. The loop's
own counter and the Cholesky's input symmetrisation add a few element-wise flops; the
tolerances allow for those and nothing more.
"""

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.flops import program_cost

M, K, N, T = 24, 16, 8, 12
MATMUL = 2 * M * N * K
A = jax.ShapeDtypeStruct((T, M, K), jnp.float32)
B = jax.ShapeDtypeStruct((K, N), jnp.float32)


def _scanned(a, b):
    return jax.lax.scan(lambda c, x: (c, x @ b), 0.0, a)[1]


def test_matmul_in_scan_counts_length_times_2mnk():
    report = program_cost(_scanned, A, B)
    # a few flops of loop bookkeeping per trip beside 2mnk = 6144
    np.testing.assert_allclose(report.cost.flops, MATMUL * T, rtol=1e-3)
    assert report.loops == [("scan", T)]


def test_xla_alone_counts_the_scan_body_once():
    np.testing.assert_allclose(program_cost(_scanned, A, B).xla.flops, MATMUL, rtol=1e-2)


def test_nested_loops_and_a_data_dependent_while_multiply():
    def nested(a, b, trips):
        def body(i, acc):
            return acc + jax.lax.map(lambda x: x @ b, a).sum()  # T matmuls per trip

        return jax.lax.fori_loop(0, trips, body, jnp.zeros((), a.dtype))

    report = program_cost(nested, A, B, jax.ShapeDtypeStruct((), jnp.int32), while_trips=5)
    # per trip: T matmuls, the (T, M, N) sum (T·M·N adds) and a few loop counters
    np.testing.assert_allclose(report.cost.flops, 5 * T * (MATMUL + M * N), rtol=1e-3)


def test_cholesky_in_scan_is_counted_at_n_cubed_over_3():
    n = 256
    mats = jax.ShapeDtypeStruct((T, n, n), jnp.float32)
    report = program_cost(
        lambda m: jax.lax.scan(lambda c, x: (c, jnp.linalg.cholesky(x)), 0, m), mats
    )
    # XLA counts the LAPACK/cuSOLVER call as 0; jnp's symmetrising (a + aᵀ)/2 and lower
    # mask add 4n² element-wise flops per matrix, 12/n = 4.7 % of n³/3
    np.testing.assert_allclose(report.cost.flops, T * (n**3 / 3 + 4 * n**2), rtol=1e-3)
    assert report.linalg == [("cholesky", n**3 / 3)]


def test_teaser_paper_runs_are_counted_one_program_each():
    from benchmarks import paper_programs

    works = paper_programs.teaser_work()
    # the infinite reference, then widths 16 ... 4096: work grows with the width
    assert [w.count for w in works] == [1] * 6
    flops = [w.cost.flops for w in works[1:]]
    assert all(0 < a < b for a, b in zip(flops, flops[1:], strict=False))
