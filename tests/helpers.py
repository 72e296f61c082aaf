"""Small problems shared by several test modules (plain functions, no fixtures)."""

import jax


def linear(params, x):
    """A linear model ``x @ w``: its own linearisation, with a constant Jacobian."""
    return x @ params["w"]


def linear_problem(n=4, d=7, k=3, seed=0):
    """``x (n, d)``, params ``{"w": (d, k)}`` and targets ``y (n, k)``, standard normal."""
    kx, kw, ky = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, d))
    return x, {"w": jax.random.normal(kw, (d, k))}, jax.random.normal(ky, (n, k))


# Prepended to every peak-memory script: ``rss(field)`` reads /proc/self/status in bytes,
# ``reset_peak()`` sets VmHWM to the current RSS, so ``rss("VmHWM") - before`` after the
# work is its peak growth.
PEAK_RSS = """
import json, sys

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
"""


def measure_in_fresh_processes(jobs, root):
    """``{name: json of the last stdout line}`` of ``{name: (script, args)}``, all at once.

    Each script runs after :data:`PEAK_RSS` in its own fresh process (peak RSS is per
    process, so running them together does not mix them up), on the CPU, with the
    checkout at ``root`` on the path.
    """
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root}"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", PEAK_RSS + script, *map(str, args)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for name, (script, args) in jobs.items()
    }
    out = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        assert proc.returncode == 0, stderr
        out[name] = json.loads(stdout.strip().splitlines()[-1])
    return out


def one_line_error(code, err):
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]
