import json
import os

import numpy as np
import pytest

from ntk_limits_experiments import store


def test_run_key_is_canonical_and_ignores_data_dir():
    a = store.run_key("toy", {"width": 4, "seed": 0})
    assert a == store.run_key("toy", {"seed": 0, "width": 4})  # key order does not matter
    assert a == store.run_key("toy", {"seed": np.int64(0), "width": 4, "data_dir": "/x"})
    assert a != store.run_key("other", {"width": 4, "seed": 0})  # the study is part of the key
    assert a != store.run_key("toy", {"width": 4, "seed": 1})
    assert len(a) == 16


def test_write_json_atomic_leaves_only_the_file(tmp_path):
    path = store.write_json_atomic(tmp_path / "sub" / "x.json", {"a": np.float32(1.5)})
    assert json.loads(path.read_text()) == {"a": 1.5}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_clean_stale_temp_files_keeps_live_writers(tmp_path):
    dead = tmp_path / ".k.json.999999999.abc.tmp"  # no such process
    live = tmp_path / f".k.json.{os.getpid()}.abc.tmp"
    dead.write_text("{")
    live.write_text("{")
    assert store.clean_stale_temp_files(tmp_path) == [dead]
    assert live.exists()


def test_tables_split_scalars_and_series(tmp_path):
    record = {
        "study": "s",
        "key": "k1",
        "spec": {"width": 4, "opt": {"lr": 0.1}, "ws": [1, 2]},
        "status": "ok",
        "message": "",
        "seed": None,
        "wall_time_s": 0.1,
        "finished_at": "t",
        "metrics": {"loss": 0.5, "curve": [3.0, 2.0], "acc": [[1.0, 0.5], [0.9]]},
    }
    store.write_tables(tmp_path, "s", [record])
    runs = store.load_runs(tmp_path, "s")
    assert runs.loc[0, "spec.opt.lr"] == pytest.approx(0.1)
    assert json.loads(runs.loc[0, "spec.ws"]) == [1, 2]
    assert runs.loc[0, "metrics.loss"] == 0.5
    assert "metrics.curve" not in runs
    series = store.load_series(tmp_path, "s")
    got = {(m, i): v for m, i, v in zip(series.metric, series["index"], series.value, strict=True)}
    assert got == {
        ("curve", 0): 3.0,
        ("curve", 1): 2.0,
        ("acc[0]", 0): 1.0,
        ("acc[0]", 1): 0.5,
        ("acc[1]", 0): 0.9,
    }
