import io

import pytest

from ntk_limits_experiments import registry, report, runner
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


def test_every_claim_belongs_to_one_study():
    owned = [c for claims in registry.CLAIMS.values() for c in claims]
    assert sorted(owned) == sorted(report.CLAIMS) and set(registry.CLAIMS) == set(registry.STUDIES)


@pytest.mark.parametrize("name", registry.STUDIES)
def test_smoke_profile_of_each_built_study(name, tmp_path):
    study = registry.load(name)
    if study is None:
        pytest.skip(f"{registry.module_name(name)} not built yet")
    assert isinstance(study, Study) and study.claims == registry.CLAIMS[name]
    config = runner.prepare_config(study, "smoke")
    records = runner.run_study(study, config, tmp_path, profile="smoke", out=io.StringIO())
    assert any(r["status"] == "ok" for r in records)
    _, verdicts_path = report.write_report(tmp_path)
    decided = {
        v["claim"]
        for v in report.collect_verdicts(report.load_summaries(tmp_path))
        if v["verdict"] != "not run"
    }
    assert decided == set(study.claims)
