"""Property-based tests of the command line and the configs (hypothesis).

Generated ``--set key=value`` overrides of every settable key of every study and profile,
with values of the wrong type, out of range, empty, huge, non-finite, unicode or long,
go through the real entry point (``ntk-limits run ... --dry-run``: everything is checked,
nothing runs). Each must either be accepted (exit 0; the study expands the config) or be
refused with one line and exit status 2; never a traceback, never a file written.
"""

import dataclasses
import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ntk_limits_experiments import config as cfg
from ntk_limits_experiments import registry
from ntk_limits_experiments.cli import main

STUDIES = {name: registry.load(name) for name in registry.names()}
KEYS = [
    (name, key)
    for name, study in STUDIES.items()
    for key in cfg.settable(study.get_config("smoke"))
    if key != "data_dir"  # a path: tested by the data-availability tests
]
CASES = {"count": 0}  # generated cases run (reported by the last test)

_NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "-1", "1", "2", "3", "1e400", "-1e400", "nan", "inf", "-inf",
                     "1e-320", "0.5", "1.5", "1e9", "1e18", "2e19", str(2**63), "-0"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)  # fmt: skip
_WORDS = st.one_of(
    st.sampled_from(["", " ", "none", "null", "true", "false", "True", "ntk", "standard",
                     "relu", "mnist", "cifar10", "iris", "ucb", "zhou", "évidence", "∞",
                     "🙂", "a" * 300, "\t", "1,,2", ",", "1,1", "2,1"]),
    st.text(max_size=12),
)  # fmt: skip
_VALUES = st.one_of(
    _NUMBERS, _WORDS, st.lists(st.one_of(_NUMBERS, _WORDS), max_size=4).map(",".join)
)


def _check(capsys, tmp_path, study: str, profile: str, override: str) -> None:
    CASES["count"] += 1
    workdir = tmp_path / f"w{CASES['count']}"
    args = ["run", study, "--profile", profile, "--set", override, "--dry-run"]
    code = main([*args, "--workdir", str(workdir)])
    err = capsys.readouterr().err
    assert not workdir.exists(), override
    assert "Traceback" not in err, err
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1, (override, err)
        assert lines[0].startswith("ntk-limits: error: ") and "allowed:" in lines[0], err
    else:
        assert code == 0, (override, err)
        assert f"[{study}] " in err and "dry run" in err


_SETTINGS = settings(
    max_examples=10, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip


@pytest.mark.parametrize(("study", "key"), KEYS, ids=[f"{s}.{k}" for s, k in KEYS])
@_SETTINGS
@given(value=_VALUES)
def test_any_override_is_accepted_or_refused_in_one_line(study, key, value, capsys, tmp_path):
    _check(capsys, tmp_path, study, "smoke", f"{key}={value}")


@pytest.mark.parametrize("study", list(STUDIES))
@settings(_SETTINGS, max_examples=20)
@given(key=st.text(max_size=10), value=_VALUES, profile=st.sampled_from(cfg.PROFILES))
def test_unknown_keys_and_every_profile(study, key, value, profile, capsys, tmp_path):
    _check(capsys, tmp_path, study, profile, f"{key}={value}")


def test_each_study_accepts_its_own_values_back(capsys, tmp_path):
    """Every field of every profile, written as the CLI text of its current value, is
    accepted (the parser reads what the configs hold)."""
    for (name, study), profile in itertools.product(STUDIES.items(), ("smoke", "embedded")):
        config = study.get_config(profile)
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            if f.name in ("profile", "data_dir") or value is None or value == ():
                continue
            text = ",".join(map(str, value)) if isinstance(value, tuple) else str(value)
            _check(capsys, tmp_path, name, profile, f"{f.name}={text}")
            assert "allowed" not in capsys.readouterr().err


def test_zz_generated_case_count():
    """Reports how many generated cases ran in this process (visible with -rA/-s)."""
    print(f"generated CLI cases run: {CASES['count']}")  # noqa: T201
    assert CASES["count"] > 0


@pytest.mark.parametrize(
    ("study", "override", "accepted"),
    [
        ("bandits", "passes=1.7e308", True),  # passes·n overflowed to inf before the cap
        ("kernels", "mlp_depth=5000", False),  # checking its memory built 5000 layers
        ("kernels", f"seeds={2**63}", False),  # a C long overflow inside the run
        ("continual", "stream_seed=-1", False),  # NumPy's "expected non-negative integer"
        ("continual", "n_test=352", False),  # a balanced subset needed 36 of a class of 35
    ],
)
def test_regressions_found_by_the_generator(study, override, accepted, capsys, tmp_path):
    code = main(["run", study, "--profile", "smoke", "--set", override, "--dry-run",
                 "--workdir", str(tmp_path / "w")])  # fmt: skip
    err = capsys.readouterr().err
    assert code == (0 if accepted else 2), err
    assert accepted or "allowed:" in err
