"""The benchmark output format (what ``ntk-limits report`` renders) and a quick end-to-end run.

The end-to-end ``--quick`` run starts several child processes and takes about a minute on
an idle 2-core machine (much longer under load), so it is marked slow.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import bandit_posterior, common, run
from ntk_limits_experiments import report

_KEYS = ("name", "value", "unit", "baseline", "ratio", "goal", "met")


def test_record_has_the_report_keys_and_renders():
    rows = [
        common.record("a", 1.5, "s", baseline=3.0, ratio=2.0, goal=">= 2x", met=True, extra=1),
        common.skipped("b", "torch not installed", goal=">= 2x"),
    ]
    for row in rows:
        assert tuple(row)[: len(_KEYS)] == _KEYS
    text = report.render_report({}, [], json.loads(json.dumps(rows)), date="2026-01-01")
    section = text.split("## Benchmarks")[1]
    assert "| a |" in section and "| b |" in section


def test_write_is_a_json_list(tmp_path):
    path = tmp_path / "sub" / "bench.json"
    run._write(path, [common.record("a", 1.0, "s")])
    assert json.loads(path.read_text())[0]["name"] == "a"


def test_log_log_slope_recovers_exponents():
    ts = [100, 200, 400, 800]
    # Exact power laws: the least-squares slope is the exponent up to float rounding.
    assert bandit_posterior._slope(ts, [t**2 * 1e-9 for t in ts]) == pytest.approx(2.0, abs=1e-9)
    assert bandit_posterior._slope(ts, [t**3 * 1e-9 for t in ts]) == pytest.approx(3.0, abs=1e-9)


def test_unknown_benchmark_is_rejected(capsys):
    with pytest.raises(SystemExit):
        run.main(["--only", "nope", "--out", "unused.json"])
    assert "allowed" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_writes_the_report_format(tmp_path):
    out = tmp_path / "bench.json"
    # Benchmarks time the code as users compile it: without the suite's unoptimised
    # compilation (tests/conftest.py), which would distort the measured speeds.
    flags = os.environ.get("XLA_FLAGS", "").replace("--xla_backend_optimization_level=0", "")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=Path(__file__).resolve().parents[1],
        env=dict(os.environ, XLA_FLAGS=flags.strip()),
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(out.read_text())
    assert isinstance(rows, list) and rows
    for row in rows:
        assert set(_KEYS) <= set(row), row
    names = " ".join(r["name"] for r in rows)
    for part in ("empirical NTK", "ensemble", "bandit posterior", "jacobian_change"):
        assert part in names
    # Every JAX kernel is compared with the dense reference of the same run (float32: equal
    # algorithms up to summation order, ~1e-6; 1e-4 leaves room for a flipped ReLU unit's
    # rounding, which torch's different kernels can cause but JAX's do not).
    for row in rows:
        if row["name"].startswith("empirical NTK [") and "[torch]" not in row["name"]:
            if row["value"] is not None:
                assert row["max_rel_diff_against"] == "reference", row["name"]
                assert row["max_rel_diff"] < 1e-4, row
