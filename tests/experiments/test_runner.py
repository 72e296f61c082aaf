import dataclasses
import io
import json
import re

import pandas as pd
import pytest

from ntk_limits_experiments import report, runner, store
from ntk_limits_experiments.config import Config
from tests.experiments.toy_study import STUDY


def data_module():
    """Returns ntk_limits.data, or skips the test while it is not written yet."""
    data = pytest.importorskip("ntk_limits.data", reason="ntk_limits.data not written yet")
    if not hasattr(data, "DataUnavailableError"):
        pytest.skip("ntk_limits.data has no DataUnavailableError yet")
    return data


_TIME_COLUMNS = ["wall_time_s", "compile_time_s", "finished_at"]


def _counting(study):
    calls = []

    def execute(spec, progress):
        calls.append(spec)
        return study.execute(spec, progress)

    return study._replace(execute=execute), calls


def _run(workdir, study=STUDY, **kwargs):
    config = runner.prepare_config(STUDY, "smoke")
    out = io.StringIO()
    return runner.run_study(study, config, workdir, profile="smoke", out=out, **kwargs), out


def test_end_to_end_store_summary_and_report(tmp_path):
    records, _ = _run(tmp_path)
    assert [r["status"] for r in records].count("ok") == 4
    assert {r["status"] for r in records} == {"ok", "diverged", "failed"}
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["message"] == "RuntimeError: toy failure"
    out = tmp_path / "toy"
    stored = [json.loads(p.read_text()) for p in (out / "runs").glob("*.json")]
    assert len(stored) == 6
    assert {
        "versions",
        "dtype",
        "device",
        "seed",
        "wall_time_s",
        "compile_time_s",
        "finished_at",
    } <= set(stored[0])
    runs = pd.read_csv(out / "runs.csv")
    assert list(runs.key) == [r["key"] for r in records]
    assert runs["metrics.final_loss"].notna().sum() == 4
    series = pd.read_csv(out / "series.csv")
    assert set(series.metric) == {"loss"} and len(series) == 4 * 30
    summary = json.loads((out / "summary.json").read_text())
    assert summary["figures"] == ["toy/final_loss.png"] and (out / "final_loss.png").exists()
    assert summary["status_counts"] == {"ok": 4, "diverged": 1, "failed": 1}
    assert json.loads((out / "config.json").read_text())["profile"] == "smoke"

    md_path, verdicts_path = report.write_report(tmp_path)
    md = md_path.read_text()
    assert "![final_loss](toy/final_loss.png)" in md and "RuntimeError: toy failure" in md
    verdicts = {v["claim"]: v for v in json.loads(verdicts_path.read_text())}
    assert list(verdicts) == ["C1", "C2", "C3", "C4", "C5", "T1"]
    assert verdicts["T1"]["verdict"] == "holds" and verdicts["T1"]["profile"] == "smoke"
    assert all(verdicts[c]["verdict"] == "not run" for c in ["C1", "C2", "C3", "C4", "C5"])
    assert verdicts["C5"]["statement"] == report.CLAIMS["C5"]


def test_rerun_does_no_repeated_work(tmp_path):
    _run(tmp_path)
    study, calls = _counting(STUDY)
    _, out = _run(tmp_path, study)
    assert calls == []
    assert "6 finished before, 0 to run" in out.getvalue()
    _run(tmp_path, study, retry_failed=True)
    assert [c["fail"] for c in calls] == [True]  # only the failed run is retried


def test_same_config_gives_identical_metrics(tmp_path):
    _run(tmp_path / "a")
    _run(tmp_path / "b")
    a, b = (store.load_runs(tmp_path / d, "toy").drop(columns=_TIME_COLUMNS) for d in "ab")
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        store.load_series(tmp_path / "a", "toy"), store.load_series(tmp_path / "b", "toy")
    )


def test_plain_progress_is_one_line_per_run(tmp_path):
    _, out = _run(tmp_path)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[toy] 6 runs: 0 finished before, 6 to run"
    pattern = r"\[toy (\d)/6\] (ok|diverged|failed)  .*width=\d+ seed=\d .*\d+\.\ds"
    assert [
        int(re.fullmatch(pattern, ln.split("  loss")[0].split("  Runtime")[0]).group(1))
        for ln in lines[1:]
    ] == [1, 2, 3, 4, 5, 6]
    assert lines[-1].endswith("RuntimeError: toy failure")


def test_tty_progress_uses_bars(tmp_path):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    config = runner.prepare_config(STUDY, "smoke")
    out = Tty()
    runner.run_study(STUDY, config, tmp_path, out=out)
    assert "toy: 100%" in out.getvalue() and "6/6" in out.getvalue()


def test_prepare_config_reports_errors_and_sets_data_dir():
    with pytest.raises(
        ValueError, match=re.escape("toy: widths must be a list of integers, each >= 1")
    ):
        runner.prepare_config(STUDY, "smoke", ["widths=0,4"])
    with pytest.raises(ValueError, match="unknown profile 'big'; allowed: smoke, embedded"):
        runner.prepare_config(STUDY, "big")
    assert runner.prepare_config(STUDY, "smoke", data_dir="/d").data_dir == "/d"
    no_dir = STUDY._replace(profiles={p: NoDataDir() for p in STUDY.profiles})
    assert runner.prepare_config(no_dir, "smoke", data_dir="/d") == NoDataDir()


@dataclasses.dataclass(frozen=True)
class NoDataDir(Config):
    steps: int = 3


def test_data_unavailable_in_execute_stops_the_run(tmp_path):
    data = data_module()

    def execute(spec, progress):
        raise data.DataUnavailableError("no data")

    with pytest.raises(data.DataUnavailableError):
        _run(tmp_path, STUDY._replace(execute=execute))
    assert list((tmp_path / "toy" / "runs").glob("*.json")) == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda text: text[: len(text) // 2].encode(),  # truncated mid-write by another tool
        lambda text: b"[1, 2]",  # valid JSON, not a record
        lambda text: text.replace('"status": "ok"', '"status": "half"').encode(),
        lambda text: b"\xff\xfe{",  # not UTF-8
    ],
    ids=["truncated", "not-an-object", "bad-status", "not-utf8"],
)
def test_damaged_run_file_is_set_aside_once_and_run_again(tmp_path, damage):
    first, _ = _run(tmp_path)
    ok = next(r for r in first if r["status"] == "ok")
    path = store.run_path(tmp_path, "toy", ok["key"])
    path.write_bytes(damage(path.read_text(encoding="utf-8")))
    damaged_bytes = path.read_bytes()
    study, calls = _counting(STUDY)
    records, out = _run(tmp_path, study)
    assert [c["width"] for c in calls] == [ok["spec"]["width"]]  # only that run, again
    assert [r["metrics"] for r in records] == [r["metrics"] for r in first]
    messages = [line for line in out.getvalue().splitlines() if "set aside" in line]
    assert len(messages) == 1 and str(path) in messages[0], out.getvalue()
    aside = path.with_name(path.name + ".damaged")
    assert aside.read_bytes() == damaged_bytes  # kept, never deleted
    assert store.read_run(tmp_path, "toy", ok["key"])["metrics"] == ok["metrics"]
    _, again = _run(tmp_path, study)  # nothing left to repair or repeat
    assert "set aside" not in again.getvalue() and len(calls) == 1


def test_set_aside_never_overwrites(tmp_path):
    for i in range(3):
        (tmp_path / "r.json").write_text(str(i))
        store.set_aside(tmp_path / "r.json")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["r.json.damaged", "r.json.damaged-2", "r.json.damaged-3"]
    assert [(tmp_path / n).read_text() for n in names] == ["0", "1", "2"]
