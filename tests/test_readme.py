"""The README's Python snippets run as written, in order (one notebook session)."""

import re
from pathlib import Path

import jax

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    # A notebook user runs with JAX's default (standard) promotion, not the suite's strict one.
    with jax.numpy_dtype_promotion("standard"), jax.numpy_rank_promotion("allow"):
        for block in blocks:
            exec(compile(block, str(README), "exec"), namespace)  # noqa: S102
    # The snippet's own claims: the kernel is square, NGD (η = 1) drives the loss down
    # by orders of magnitude in 5 steps, and C′ is a finite non-negative number.
    assert namespace["k_emp"].shape == (128, 128)
    losses = namespace["traj"].losses
    assert float(losses[-1]) < 1e-3 * float(losses[0])
    ns = namespace
    c = float(ns["ngd_conditions"].c_prime(ns["change"].spectral, ns["lam_min"]))
    assert 0.0 <= c < float("inf")
