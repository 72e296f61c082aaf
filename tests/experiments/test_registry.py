import pytest

from ntk_limits_experiments import claims, registry, report
from ntk_limits_experiments.config import PROFILES, Config
from ntk_limits_experiments.study import Study

TOY = "tests.experiments.toy_study:STUDY"


def test_names_and_extra_studies(monkeypatch):
    monkeypatch.delenv(registry.EXTRA_STUDIES_ENV, raising=False)
    assert registry.names() == list(registry.STUDIES)
    monkeypatch.setenv(registry.EXTRA_STUDIES_ENV, TOY)
    assert registry.names() == [*registry.STUDIES, "toy"]
    assert registry.load("toy").name == "toy"
    with pytest.raises(ValueError, match="unknown study 'nope'; allowed: kernels, .*toy"):
        registry.load("nope")


@pytest.mark.parametrize(
    "entry", ["tests.experiments.toy_study", "tests.experiments.toy_study:nope"]
)
def test_bad_extra_study_entries_are_rejected(monkeypatch, entry):
    monkeypatch.setenv(registry.EXTRA_STUDIES_ENV, entry)
    with pytest.raises(ValueError, match=registry.EXTRA_STUDIES_ENV):
        registry.names()


def test_a_study_without_module_is_not_built(monkeypatch):
    monkeypatch.setattr(registry, "STUDIES", (*registry.STUDIES, "no_such_study"))
    assert registry.load("no_such_study") is None
    assert not registry.is_built("no_such_study")


def test_every_claim_belongs_to_a_registered_study():
    assert {c.study for c in claims.CLAIMS.values()} <= set(registry.STUDIES)
    assert list(report.CLAIMS) == list(claims.CLAIMS) == ["C1", "C2", "C3", "C4", "C5"]
    assert claims.of_study("optimization") == ("C1", "C2") and claims.of_study("teaser") == ()


@pytest.mark.parametrize("name", registry.STUDIES)
def test_each_study_has_the_three_profiles_as_typed_configs(name):
    # Each study's own smoke test runs it end to end and checks the claims it decides.
    study = registry.load(name)
    assert isinstance(study, Study) and study.name == name
    assert tuple(study.profiles) == PROFILES
    assert all(isinstance(c, Config) and hash(c) is not None for c in study.profiles.values())
