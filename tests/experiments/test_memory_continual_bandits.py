"""Memory checked before a run: the continual and bandits studies' bounds against peak RSS."""

import dataclasses
import os
from pathlib import Path

import pytest

from ntk_limits_experiments import memory, runner
from ntk_limits_experiments.bandits import study as bandits
from ntk_limits_experiments.cli import main
from ntk_limits_experiments.continual import study as continual
from tests.helpers import measure_in_fresh_processes, one_line_error

ROOT = Path(__file__).resolve().parents[2]

# One run in a fresh process, as the runner does it (expand the config, then execute one
# spec): the peak-RSS growth (VmHWM after, reset before, minus VmRSS before) of execute.
_MEASURE = """
from ntk_limits_experiments import registry, runner

name, index, *overrides = sys.argv[1:]
study = registry.load(name)
spec = study.expand(runner.prepare_config(study, "smoke", overrides))[int(index)]
reset_peak()
before = rss("VmRSS")
study.execute(spec, lambda done, total: None)
print(json.dumps({"growth": rss("VmHWM") - before, "bound": study.memory(spec)}))
"""

# (study, spec index in the smoke profile with these overrides, overrides); sizes chosen
# to run in seconds: compilation dominates them, as it does the embedded runs.
SIZES = {
    # the finite network run of width 16 (4 members) and the infinite-width kernel run
    "continual-finite": ("continual", 1, ()),
    "continual-kernel": ("continual", 3, ()),
    # the random agent (a trivial program) and NeuralUCB (full posterior) at width 16
    "bandits-random": ("bandits", 0, ("seeds=0",)),
    "bandits-neural": ("bandits", 4, ("seeds=0",)),
}


@pytest.fixture(scope="module")
def measured():
    """Every size measured at once, each in its own process (RSS is per process)."""
    jobs = {
        key: (_MEASURE, (name, index, *overrides))
        for key, (name, index, overrides) in SIZES.items()
    }
    return measure_in_fresh_processes(jobs, ROOT)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
@pytest.mark.parametrize("key", list(SIZES))
def test_the_bound_is_above_the_measured_peak_and_within_three_times_it(measured, key):
    got = measured[key]
    # An upper bound must hold; 3x: looser would refuse runs that fit (measured 1.3-1.6x).
    assert got["growth"] <= got["bound"] <= 3 * got["growth"], got


@pytest.mark.parametrize(
    ("study", "override"),
    [(continual, "widths=8,1000000"), (bandits, "width=1000000")],
    ids=["continual", "bandits"],
)
def test_a_run_that_cannot_fit_is_refused_up_front(study, override, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(memory.ENV, "2e9")
    workdir = tmp_path / "w"
    args = ["run", study.STUDY.name, "--profile", "smoke", "--set", override]
    line = one_line_error(main([*args, "--workdir", str(workdir)]), capsys.readouterr().err)
    assert "needs at least" in line and "width <= " in line, line
    assert not workdir.exists()
    # The width the line proposes fits the same memory for the refused run; one more does not.
    fits = int(line.rpartition("width <= ")[2].split()[0])
    config = runner.prepare_config(study.STUDY, "smoke", [override])
    refused = next(s for s in study.expand(config) if study.memory_bytes(s) > 2e9)
    at = lambda w: study.memory_bytes(
        dataclasses.replace(refused, network=dataclasses.replace(refused.network, width=w))
    )
    assert at(fits) <= 2e9 < at(fits + 1)


@pytest.mark.parametrize("study", [continual, bandits], ids=["continual", "bandits"])
@pytest.mark.parametrize("profile", ["smoke", "embedded"])
def test_the_default_profiles_fit_a_small_machine(study, profile):
    # 2 GiB: far below any machine the embedded profile is meant for (measured <= 1 GB).
    bounds = [study.memory_bytes(s) for s in study.expand(study.STUDY.get_config(profile))]
    assert max(bounds) <= 2 * 2**30, max(bounds)
