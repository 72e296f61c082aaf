"""Typed configs: checks at construction, overrides coerced by the declared field type."""

import dataclasses
import re
from typing import Literal

import pytest

from ntk_limits_experiments import store
from ntk_limits_experiments.config import (
    PROFILES,
    Config,
    apply_overrides,
    field,
    profiles,
    settable,
    to_dict,
)
from tests.experiments.toy_study import STUDY


@dataclasses.dataclass(frozen=True)
class Example(Config):
    widths: tuple[int, ...] = field((8, 16), ge=1, nonempty=True, distinct=True)
    lr: float = field(0.1, gt=0)
    solver: Literal["cg", "cholesky"] = "cg"
    pars: tuple[Literal["ntk", "standard"], ...] = ("ntk",)
    data_dir: str | None = None
    flag: bool = False
    tag: str = "t"

    def check(self):
        if self.solver == "cg" and self.lr > 1:
            raise ValueError("lr > 1 needs solver=cholesky; allowed: lr <= 1 with cg")


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["lr=1e-2", "tag=x=y"], {"lr": 0.01, "tag": "x=y"}),
        (["widths=3, 5", "flag=True"], {"widths": (3, 5), "flag": True}),
        (["lr=1"], {"lr": 1.0}),
        (["data_dir=/d", "pars=standard,ntk"], {"data_dir": "/d", "pars": ("standard", "ntk")}),
        (["data_dir=null"], {"data_dir": None}),
    ],
)
def test_overrides_are_coerced_by_the_declared_type(overrides, expected):
    config = apply_overrides(Example(), overrides)
    assert {k: getattr(config, k) for k in expected} == expected
    assert all(type(getattr(config, k)) is type(v) for k, v in expected.items())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("nope=1", "unknown key 'nope'; allowed: data_dir, flag, lr, pars, solver, tag, widths"),
        ("widths=2.5", "value '2.5' for key 'widths' is not an integer"),
        ("lr=inf", "is not finite; allowed: a finite number"),
        ("lr=0", "lr must be a finite number > 0, got 0.0; allowed: a finite number > 0"),
        ("flag=yes", "true or false"),
        ("widths=1,x", "is not an integer"),
        ("widths=0,4", "widths must be a list of integers, each >= 1, got [0, 4]"),
        ("widths=", "widths is empty"),
        ("widths=4,4", "widths repeats a value in [4, 4]; allowed: distinct values"),
        ("solver=lu", "solver is 'lu'; allowed: cg, cholesky"),
        ("pars=ntk,mup", "pars must be a list of ntk, standard, got ['ntk', 'mup']"),
        ("lr=2", "lr > 1 needs solver=cholesky"),
        ("steps", "is not key=value"),
    ],
)
def test_bad_overrides_get_one_line_naming_the_key_and_what_is_allowed(override, message):
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        apply_overrides(Example(), [override])
    assert "\n" not in str(info.value) and "allowed:" in str(info.value)


def test_direct_construction_is_checked_and_canonical():
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        Example(lr=-1.0)
    with pytest.raises(ValueError, match="flag must be a boolean"):
        Example(flag=1)
    config = Example(widths=[4, 8], lr=1)  # lists become tuples, ints floats
    assert config.widths == (4, 8) and type(config.lr) is float
    assert hash(config) == hash(Example(widths=(4, 8), lr=1.0))  # usable as a cache key
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.lr = 2.0


def test_json_form_round_trips():
    config = apply_overrides(Example(), ["widths=3,5", "data_dir=/d"])
    as_json = to_dict(config)
    assert as_json["widths"] == [3, 5] and store.to_jsonable(config) == as_json
    assert Example(**as_json) == config


def test_profile_is_chosen_by_the_profile_flag_not_set():
    with pytest.raises(ValueError, match="key 'profile' is set by --profile"):
        apply_overrides(STUDY.get_config("smoke"), ["profile=paper"])
    assert "profile" not in settable(STUDY.get_config("smoke"))


def test_unknown_keys_can_be_skipped_for_run_all():
    assert apply_overrides(Example(), ["nope=1", "lr=0.5"], unknown_ok=True) == Example(lr=0.5)


def test_profiles_need_exactly_the_three_names():
    assert tuple(STUDY.profiles) == PROFILES
    with pytest.raises(ValueError, match="allowed: exactly smoke, embedded, paper"):
        profiles(smoke=Example(), embedded=Example())
    with pytest.raises(ValueError, match="unknown profile 'big'"):
        STUDY.get_config("big")
