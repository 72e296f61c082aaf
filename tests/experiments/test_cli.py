import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from ntk_limits_experiments import runner, store
from ntk_limits_experiments.cli import main
from tests.experiments.test_runner import data_module
from tests.experiments.toy_study import STUDY

ROOT = Path(__file__).resolve().parents[2]
ENV = {
    **os.environ,
    "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    "NTK_LIMITS_EXTRA_STUDIES": "tests.experiments.toy_study:STUDY",
    "JAX_PLATFORMS": "cpu",
}


def cli(*args, **kwargs):
    cmd = [sys.executable, "-m", "ntk_limits_experiments", *map(str, args)]
    return subprocess.run(
        cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120, **kwargs
    )


def _run_files(workdir):
    return list(Path(workdir).glob("*/runs/*.json"))


BAD_INPUTS = {
    "unknown study": (["run", "nosuch"], "unknown study 'nosuch'; allowed: kernels"),
    "unknown profile": (["run", "toy", "--profile", "huge"], "unknown profile 'huge'"),
    "unknown key": (["run", "toy", "--set", "nosuch=1"], "unknown key 'nosuch'; allowed: "),
    "unknown key in all": (["run", "all", "--set", "nosuch=1"], "unknown key 'nosuch' (in no"),
    "not key=value": (["run", "toy", "--set", "steps"], "is not key=value"),
    "wrong type": (["run", "toy", "--set", "steps=abc"], "'abc' for key 'steps' is not an int"),
    "non-finite": (["run", "toy", "--set", "lr=nan"], "'nan' for key 'lr' is not finite"),
    "zero width": (
        ["run", "toy", "--set", "widths=0,4"],
        "toy: widths must be a list of integers, each >= 1",
    ),
    "missing argument": (["run"], "required: STUDY"),
    "a lone distributed flag": (
        ["run", "toy", "--num-processes", "2"],
        "--coordinator, --num-processes and --process-id go together",
    ),
    "process id out of range": (
        ["run", "toy", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
        "--process-id '2'; allowed: 0 … 1",
    ),
    "bad coordinator": (
        ["run", "toy", "--coordinator", "h", "--num-processes", "2", "--process-id", "0"],
        "--coordinator 'h'; allowed: HOST:PORT",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NTK_LIMITS_EXTRA_STUDIES", ENV["NTK_LIMITS_EXTRA_STUDIES"])
    args, message = BAD_INPUTS[case]
    code = main([*args, "--workdir", str(tmp_path / "w")] if args != ["run"] else args)
    _assert_one_line_error(code, capsys.readouterr().err, message)
    assert _run_files(tmp_path / "w") == []


def _assert_one_line_error(code, stderr, message):
    assert code == 2, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("ntk-limits: error: ") and "; allowed: " in lines[0]
    assert message in lines[0]


@pytest.mark.parametrize("case", ["unknown study", "zero width"])
def test_bad_input_in_a_subprocess(case, tmp_path):
    args, message = BAD_INPUTS[case]
    result = cli(*args, "--workdir", tmp_path)
    _assert_one_line_error(result.returncode, result.stderr, message)
    assert _run_files(tmp_path) == []


def test_unwritable_workdir_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = cli("run", "toy", "--profile", "smoke", "--workdir", tmp_path / "file" / "sub")
    _assert_one_line_error(result.returncode, result.stderr, "is not writable")


def test_missing_data_is_one_line(tmp_path, monkeypatch, capsys):
    data_module()
    monkeypatch.setenv("NTK_LIMITS_EXTRA_STUDIES", ENV["NTK_LIMITS_EXTRA_STUDIES"])
    workdir = tmp_path / "new" / "results"
    code = main(["run", "toy", "--set", "require_data=true", "--workdir", str(workdir)])
    _assert_one_line_error(code, capsys.readouterr().err, "toy data not found")
    assert list(tmp_path.iterdir()) == []  # not even the workdir was created


def test_unknown_data_set_is_one_line(tmp_path, capsys):
    data = data_module()
    if not hasattr(data, "catalogue"):
        pytest.skip("ntk_limits.data has no catalogue yet")
    code = main(["datasets", "--data-dir", str(tmp_path), "--fetch", "nosuch"])
    _assert_one_line_error(code, capsys.readouterr().err, "unknown data set 'nosuch'")


def test_cli_module_does_not_import_jax_or_studies_for_help():
    code = (
        "import sys, ntk_limits_experiments; before = set(sys.modules); "
        "from ntk_limits_experiments import cli; "
        "cli.build_parser().format_help(); print(sorted(set(sys.modules) - before))"
    )
    new = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True
    ).stdout
    assert "'ntk_limits_experiments.cli'" in new  # the check sees the modules it imports
    assert "'jax'" not in new and "numpy" not in new and ".study" not in new


def test_resume_after_sigkill_matches_uninterrupted_run(tmp_path):
    args = ["run", "toy", "--profile", "smoke", "--set", "sleep=0.3", "--workdir"]
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntk_limits_experiments", *args, str(killed)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while not _run_files(killed) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(_run_files(killed))
    assert 1 <= n_before < 6

    result = cli(*args, killed)
    assert result.returncode == 0, result.stderr
    assert f"6 runs: {n_before} finished before, {6 - n_before} to run" in result.stderr
    assert "[toy 6/6] failed" in result.stderr

    config = runner.prepare_config(STUDY, "smoke", ["sleep=0.3"])
    runner.run_study(STUDY, config, tmp_path / "clean", out=io.StringIO())
    drop = ["wall_time_s", "compile_time_s", "finished_at"]
    a, b = (store.load_runs(tmp_path / d, "toy").drop(columns=drop) for d in ("killed", "clean"))
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(
        store.load_series(killed, "toy"), store.load_series(tmp_path / "clean", "toy")
    )
    assert [p for p in killed.rglob("*") if p.name.endswith(".tmp")] == []
    assert len([json.loads(p.read_text()) for p in _run_files(killed)]) == 6


_CACHED_PROGRAM = """
import sys, jax, jax.numpy as jnp
from ntk_limits_experiments.cli import _compile_cache_dir, _enable_compile_cache
hits = []
jax.monitoring.register_event_listener(lambda name, **kw: hits.append(name))
_enable_compile_cache(_compile_cache_dir(sys.argv[1]))
print(float(jax.jit(lambda x: jnp.sin(x) @ x)(jnp.ones((8, 8))).sum()))
print(sum(h == "/jax/compilation_cache/cache_hits" for h in hits))
"""


def test_compile_cache_is_reused_by_a_second_process(tmp_path):
    cache = tmp_path / "cache" / "xla"  # created on first use, parents included
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-c", _CACHED_PROGRAM, str(cache)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120, check=True,
    ).stdout.split()  # fmt: skip
    first, second = run(), run()
    assert any(cache.iterdir())  # the first process wrote its programs
    assert first[0] == second[0]  # same result from the cached program
    assert (int(first[1]), int(second[1]) > 0) == (0, True)


def test_compile_cache_none_and_unwritable(tmp_path, capsys):
    from ntk_limits_experiments.cli import _compile_cache_dir

    assert _compile_cache_dir("none") is None
    (tmp_path / "file").write_text("")
    code = main(["run", "kernels", "--compile-cache", str(tmp_path / "file" / "x"),
                 "--workdir", str(tmp_path / "w")])  # fmt: skip
    _assert_one_line_error(code, capsys.readouterr().err, "cannot be created")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s[:100], "is not valid JSON (Unterminated"),
        (lambda s: s.replace('"study": "toy"', '"study": "other"'), "is not the summary of"),
        (lambda s: "{}", "lacks 'study', 'verdicts'"),
    ],
    ids=["truncated", "another-study", "foreign"],
)
def test_report_on_a_damaged_summary_is_one_line(tmp_path, capsys, damage, message):
    config = runner.prepare_config(STUDY, "smoke")
    runner.run_study(STUDY, config, tmp_path, profile="smoke", out=io.StringIO())
    summary = tmp_path / "toy" / "summary.json"
    summary.write_text(damage(summary.read_text()))
    code = main(["report", "--workdir", str(tmp_path)])
    err = capsys.readouterr().err
    _assert_one_line_error(code, err, message)
    assert str(summary) in err  # the line names the file
    assert not (tmp_path / "REPORT.md").exists()


def _popen(*args):
    cmd = [sys.executable, "-m", "ntk_limits_experiments", *map(str, args)]
    return subprocess.Popen(
        cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


_EXECUTED = re.compile(r"^\[toy \d/6\] (ok|diverged|failed)  .*\d\.\ds")  # not "(finished by ...)"


def test_two_processes_on_one_workdir_never_compute_a_run_twice(tmp_path):
    args = ["run", "toy", "--profile", "smoke", "--set", "sleep=0.4", "--workdir", tmp_path / "w"]
    procs = [_popen(*args) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    executed = [line for _, err in outs for line in err.splitlines() if _EXECUTED.match(line)]
    assert len(executed) == 6, outs  # each run computed by exactly one of the two
    assert all(err.count("[toy] 6 runs: ") == 2 for _, err in outs)  # both report all six
    config = runner.prepare_config(STUDY, "smoke", ["sleep=0.4"])
    runner.run_study(STUDY, config, tmp_path / "clean", out=io.StringIO())
    drop = ["wall_time_s", "compile_time_s", "finished_at"]
    a, b = (store.load_runs(tmp_path / d, "toy").drop(columns=drop) for d in ("w", "clean"))
    pd.testing.assert_frame_equal(a, b)  # no file corrupted or half-written


def test_a_killed_process_leaves_no_stuck_lock(tmp_path):
    workdir = tmp_path / "w"
    args = ["run", "toy", "--profile", "smoke", "--set", "sleep=0.5", "--workdir", workdir]
    holder = _popen(*args)
    locks = workdir / "toy" / "runs" / ".locks"
    deadline = time.monotonic() + 60
    while not (locks.exists() and any(locks.iterdir())) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert holder.poll() is None, holder.communicate()
    waiter = _popen(*args)  # defers the held run, computes the others, then waits for it
    time.sleep(0.5)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    by_holder = len(_run_files(workdir))  # it may have finished its run before it died
    _, err = waiter.communicate(timeout=120)
    assert waiter.returncode == 0, err
    assert len(_run_files(workdir)) == 6
    # Every run the killed holder left, its locked one included, is computed by the waiter.
    executed = [line for line in err.splitlines() if _EXECUTED.match(line)]
    assert by_holder < 6 and len(executed) == 6 - by_holder, err


# Kills its own process with SIGKILL when it is about to rename its second run file into
# place (the temp file written and synced, the rename not done): a crash while writing.
_KILL_WHILE_WRITING = """
import os, signal, sys
renames = []
real_replace = os.replace
def replace(src, dst):
    if str(dst).endswith(".json") and os.sep + "runs" + os.sep in str(dst):
        renames.append(dst)
        if len(renames) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(src, dst)
os.replace = replace
from ntk_limits_experiments.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_real_study_killed_at_several_points_resumes_to_identical_results(tmp_path):
    """The teaser study (smoke) killed while compiling, between runs and while writing a
    run file, resumed each time: every stored number is bit-identical to an uninterrupted
    run's (which also shows that two runs of one config and seed agree bit for bit)."""
    workdir = tmp_path / "killed"
    args = ["run", "teaser", "--profile", "smoke", "--compile-cache", "none", "--workdir", workdir]
    # 1. While compiling: killed as soon as the study's folder exists, before any run file.
    proc = _popen(*args)
    deadline = time.monotonic() + 120
    while not (workdir / "teaser").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert _run_files(workdir) == []
    # 2. Between runs: killed once a first run file exists.
    proc = _popen(*args)
    while not _run_files(workdir) and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    n_between = len(_run_files(workdir))
    # 3. While writing: the next process dies with its second run file half-placed.
    writer = subprocess.run(
        [sys.executable, "-c", _KILL_WHILE_WRITING, *map(str, args)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert writer.returncode == -signal.SIGKILL, writer.stderr
    assert len(_run_files(workdir)) == n_between + 1
    # Resumed to the end, against an uninterrupted run.
    result = cli(*args)
    assert result.returncode == 0, result.stderr
    clean = cli(*args[:-1], tmp_path / "clean")
    assert clean.returncode == 0, clean.stderr
    drop = ["wall_time_s", "compile_time_s", "finished_at"]
    a, b = (store.load_runs(tmp_path / d, "teaser").drop(columns=drop) for d in ("killed", "clean"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    pd.testing.assert_frame_equal(
        store.load_series(workdir, "teaser"),
        store.load_series(tmp_path / "clean", "teaser"),
        check_exact=True,
    )
    assert [p for p in workdir.rglob("*") if p.name.endswith(".tmp")] == []


def test_two_processes_through_jax_distributed_share_the_runs_and_agree_with_one(tmp_path):
    with socket.socket() as s:  # a free port for the coordinator
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    args = ["run", "toy", "--profile", "smoke", "--workdir", tmp_path / "two"]
    where = ["--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id"]
    procs = [_popen(*args, *where, i) for i in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    executed = [
        [line.split("]", 1)[1] for line in err.splitlines() if re.match(r"^\[toy \d/3\] ", line)]
        for _, err in outs
    ]
    # A disjoint share each (runs 0, 2, 4 and 1, 3, 5 of the six), all of them together.
    assert [len(e) for e in executed] == [3, 3] and not set(executed[0]) & set(executed[1])
    assert ("next: ntk-limits report" in outs[0][1], "next:" in outs[1][1]) == (True, False)
    one = cli("run", "toy", "--profile", "smoke", "--workdir", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    drop = ["wall_time_s", "compile_time_s", "finished_at"]
    a, b = (store.load_runs(tmp_path / d, "toy").drop(columns=drop) for d in ("two", "one"))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    verdicts = [
        json.loads((tmp_path / d / "toy" / "summary.json").read_text())["verdicts"]
        for d in ("two", "one")
    ]
    assert verdicts[0] == verdicts[1]


def test_a_missing_paper_set_is_refused_before_anything_is_written(tmp_path, capsys):
    args = ["run", "kernels", "--profile", "smoke", "--set", "mlp_dataset=mnist"]
    code = main([*args, "--data-dir", str(tmp_path / "none"), "--workdir", str(tmp_path / "w")])
    _assert_one_line_error(code, capsys.readouterr().err, "kernels: mlp_dataset: mnist is not here")
    assert not (tmp_path / "w").exists()


def test_stand_ins_run_at_the_paper_sets_size_and_the_report_marks_them(tmp_path, capsys):
    workdir = tmp_path / "w"
    args = ["run", "kernels", "--profile", "smoke", "--set", "mlp_dataset=mnist", "--stand-in"]
    args += ["--set", "cnn_widths=4", "--data-dir", str(tmp_path / "none")]
    assert main([*args, "--workdir", str(workdir)]) == 0
    err = capsys.readouterr().err
    assert "[kernels] stand-in data (timing only): mlp_dataset: mnist -> mnist_standin" in err
    runs = store.load_runs(workdir, "kernels")
    mlp = runs[runs["spec.network.kind"] == "mlp"]
    assert set(mlp["spec.inputs.dataset"]) == {"mnist_standin"}
    assert mlp["metrics.data"].str.startswith("stand-in for MNIST").all()
    assert main(["report", "--workdir", str(workdir)]) == 0
    report = (workdir / "REPORT.md").read_text()
    assert "**Stand-in data:** this study ran on mnist_standin" in report
    c5 = next(v for v in json.loads((workdir / "verdicts.json").read_text()) if v["claim"] == "C5")
    assert c5["data"] == "stand-in (mnist_standin)"
