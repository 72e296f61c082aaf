"""The README's Python snippets run as written, in order (one notebook session)."""

import re
from pathlib import Path

import jax
import pytest

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
    # by orders of magnitude in 5 steps, and C′ is "≈ 20".
    assert namespace["k_emp"].shape == (128, 128)
    losses = namespace["traj"].losses
    assert float(losses[-1]) < 1e-3 * float(losses[0])
    ns = namespace
    change, lam_min = ns["change"], float(ns["lam_min"])
    c = float(ns["ngd_conditions"].c_prime(change.spectral, lam_min))
    assert c == pytest.approx(3 * float(change.spectral) / lam_min**0.5, rel=1e-5)  # float32
    # ‖ΔJ‖₂ ≤ ‖ΔJ‖_F ≤ √rank·‖ΔJ‖₂ with rank ≤ n·k = 1280: the norms are consistent.
    spectral, frobenius = float(change.spectral), float(change.frobenius)
    assert spectral <= frobenius * (1 + 1e-5) and frobenius <= 1280**0.5 * spectral
    assert 10 < c < 40, f"README says C′ ≈ 20, measured {c:.3g}"
    # The diagnosis snippet's claim: a small BatchNorm ResNet trained at half GD's stability
    # limit is outside the kernel regime, and the summary states the numbers behind it.
    diagnosis = ns["diagnosis"]
    assert diagnosis.verdict == "outside the kernel regime", diagnosis.summary
    assert diagnosis.checks["lazy_kernel"] is False or diagnosis.checks["stable_jacobian"] is False
