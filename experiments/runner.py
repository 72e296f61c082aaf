"""Runs a study: resolve its config, execute every run once, store, summarise.

``run_study`` is the only entry point the CLI needs once a config is resolved::

    config = prepare_config(study, "smoke", ["mlp_widths=8,16"])
    records = run_study(study, config, "results", profile="smoke")

Each spec of ``study.expand(config)`` is executed at most once per workdir: finished runs
(``ok``, ``diverged``, ``failed``) are read back from the store, and only ``failed`` ones
are retried, when asked. A killed run leaves no run file, so rerunning resumes exactly
where the previous process stopped.
"""

import collections
import dataclasses
import datetime
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TextIO

from ntk_limits_experiments import config as cfg
from ntk_limits_experiments import memory, store, timing
from ntk_limits_experiments.config import Config
from ntk_limits_experiments.progress import Display, describe_runs
from ntk_limits_experiments.study import Diverged, Spec, Study, Summary

__all__ = [
    "Share",
    "check_data",
    "check_memory",
    "check_workdir",
    "is_data_unavailable",
    "prepare_config",
    "run_study",
    "stand_ins",
    "use_stand_ins",
]


class Share(NamedTuple):
    """This process's share of a study's runs when several processes run it together.

    Attributes:
      index: this process (0 … count − 1); process 0 prepares the study's folder and
        writes the tables and summary once every process is done.
      count: how many processes.
      barrier: ``name -> None``, returns once every process has called it with ``name``
        (e.g. ``jax.experimental.multihost_utils.sync_global_devices``).
    """

    index: int
    count: int
    barrier: Callable[[str], None]


def prepare_config(
    study: Study,
    profile: str,
    overrides: Sequence[str] = (),
    *,
    data_dir: str | os.PathLike | None = None,
    unknown_ok: bool = False,
) -> Config:
    """Resolves a study's config: its profile, the data folder, then the overrides.

    Writes nothing. The config checks itself when built, so the result is valid.

    Args:
      study: the study.
      profile: ``smoke``, ``embedded`` or ``paper``.
      overrides: ``key=value`` strings (see :func:`ntk_limits_experiments.config.apply_overrides`).
      data_dir: put into the config's ``data_dir`` field when it has one.
      unknown_ok: ignore override keys this study's config does not have.

    Returns:
      The config.

    Raises:
      ValueError: bad profile or override, or an invalid value (the message is prefixed
        with the study name).
    """
    if profile not in cfg.PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(cfg.PROFILES)}")
    config = study.get_config(profile)
    try:
        if data_dir is not None and "data_dir" in cfg.settable(config):
            config = dataclasses.replace(config, data_dir=str(data_dir))
        return cfg.apply_overrides(config, overrides, unknown_ok=unknown_ok)
    except ValueError as e:
        raise ValueError(f"{study.name}: {e}") from e


def _execute_all(study, specs, keys, records, todo, workdir, display, damaged) -> None:
    """Executes the runs ``todo``, each under its lock (:func:`store.run_lock`).

    Another ``ntk-limits run`` on the same workdir may hold a run's lock: that run is
    deferred, and once every other run is done this process waits for the lock. Whoever
    holds a lock first reads the run file again, so a run finished meanwhile by the other
    process is taken as it is (its display line says so) and never computed twice; a run
    whose holder died (its lock released by the kernel) is computed here.
    """
    pending, seen, block = list(todo), {i: records[i] for i in todo}, False
    while pending:
        deferred = []
        for i in pending:
            with store.run_lock(workdir, study.name, keys[i], wait=block) as held:
                block = False  # only the first lock of a pass is waited for
                if not held:
                    deferred.append(i)
                    continue
                stored = store.read_run(workdir, study.name, keys[i], on_damaged=damaged)
                if stored is not None and stored != seen[i]:  # done by another process
                    records[i] = stored
                    display.finished(stored, note="finished by another process")
                    continue
                records[i] = _execute(study, specs[i], display.progress)
                store.write_run(workdir, records[i])
                display.finished(records[i])
        block = deferred == pending  # no progress in this pass: wait for the first
        pending = deferred


def check_workdir(workdir: str | os.PathLike) -> Path:
    """Checks that ``workdir`` can be created (if missing) and written to; creates nothing.

    The test file goes into ``workdir`` if it exists, else into its nearest existing
    ancestor (which must be a folder), and is removed again: a command refused later
    (e.g. for missing data) leaves no trace.

    Raises:
      ValueError: the folder cannot be created or written to.
    """
    path = Path(workdir)
    try:
        existing = path.absolute()
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise NotADirectoryError(20, "Not a directory")
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ValueError(
            f"workdir {str(path)!r} is not writable ({reason}); allowed: a writable directory"
        ) from e
    return path


def _data_names(config: Config) -> list[tuple[str, str]]:
    """``(field, data set)`` for every data set a config names, directly or by a stream."""
    from ntk_limits import data

    out = []

    def walk(field: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(k, v)
        elif isinstance(value, list | tuple):
            for v in value:
                walk(field, v)
        elif isinstance(value, str):
            if value in data.STREAMS:
                out.append((field, data.STREAMS[value][0]))
            elif value in data.SPECS:
                out.append((field, value))

    walk("", cfg.to_dict(config))
    return list(dict.fromkeys(out))


def _missing(config: Config) -> list[tuple[str, str, Any]]:
    """``(field, data set, catalogue row)`` of each data set the config needs and lacks."""
    from ntk_limits import data

    infos = {i.name: i for i in data.catalogue(getattr(config, "data_dir", None))}
    return [(f, name, infos[name]) for f, name in _data_names(config) if not infos[name].available]


def check_data(config: Config) -> None:
    """Raises ``DataUnavailableError`` (one line) for a data set the config needs and lacks.

    Looks for files only (reads nothing), in the config's ``data_dir``; writes nothing.
    """
    from ntk_limits import data

    missing = _missing(config)
    if missing:
        (field, name, info), data_dir = missing[0], getattr(config, "data_dir", None)
        where = f"under {data_dir!r}" if data_dir else "(no data folder given)"
        raise data.DataUnavailableError(
            f"{field}: {name} is not here {where}; allowed: the data set fetched "
            f"(`{info.fetch_command}` when online), or --stand-in for its "
            f"packaged stand-in at the same size (timing only)"
        )


def use_stand_ins(config: Config) -> tuple[Config, list[str]]:
    """The config with each absent paper data set replaced by its stand-in.

    A field naming a paper set (or a stream or bandit built on one) that is not in the
    config's ``data_dir`` names ``<name>_standin`` instead (:mod:`ntk_limits.data`'s
    stand-ins: the paper set's sizes from packaged data, for timing only). Sets that are
    here are kept.

    Returns:
      The new config (validated) and one ``field: old -> new`` line per replacement.
    """
    from ntk_limits import data

    known = set(data.SPECS) | set(data.STREAMS)
    absent = {name for _, name, _ in _missing(config)}
    changes, notes = {}, []

    def swap(field: str, value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(swap(field, v) for v in value)
        if not isinstance(value, str) or f"{value}_standin" not in known:
            return value
        dataset = data.STREAMS[value][0] if value in data.STREAMS else value
        if dataset not in absent:
            return value
        notes.append(f"{field}: {value} -> {value}_standin")
        return f"{value}_standin"

    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        new = swap(f.name, value)
        if new != value:
            changes[f.name] = new
    return (dataclasses.replace(config, **changes) if changes else config), notes


def stand_ins(config: Config) -> list[str]:
    """The stand-in data sets a config names (empty: real data throughout)."""
    return sorted({name for _, name in _data_names(config) if name.endswith("_standin")})


def check_memory(study: Study, specs: Sequence[Spec]) -> None:
    """Refuses (``ValueError``, one line) runs that need more memory than is available.

    Uses the study's bound (``Study.memory``; studies without one are not checked), see
    :func:`ntk_limits_experiments.memory.check`. Writes nothing.
    """
    names = describe_runs([store.to_jsonable(s) for s in specs])
    memory.check(study.name, specs, study.memory, names)


def is_data_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is ``ntk_limits.data.DataUnavailableError`` (without importing it)."""
    cls = getattr(sys.modules.get("ntk_limits.data"), "DataUnavailableError", None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _execute(study: Study, spec: Spec, progress) -> dict[str, Any]:
    """Executes one spec and returns its record; only KeyboardInterrupt-like errors escape."""
    start = time.perf_counter()
    status, metrics, message = "ok", {}, ""
    with timing.compile_clock() as compiling:
        try:
            metrics = study.execute(spec, progress)
            if not isinstance(metrics, dict):
                raise TypeError(f"execute returned {type(metrics).__name__}, expected a dict")
            metrics = store.to_jsonable(metrics)
            json.dumps(metrics)
        except Diverged as e:
            status, message = "diverged", str(e) or "loss became non-finite"
            metrics = store.to_jsonable(getattr(e, "metrics", None) or {})
        except Exception as e:
            if is_data_unavailable(e):
                raise
            status, metrics, message = "failed", {}, f"{type(e).__name__}: {e}"
    return store.make_record(
        study.name,
        store.to_jsonable(spec),
        status,
        metrics,
        message,
        time.perf_counter() - start,
        compile_time_s=compiling.seconds,
    )


def _relative_figure(path: str | os.PathLike, workdir: Path, outdir: Path) -> str:
    p = Path(path)
    if not p.is_absolute():
        p = Path.cwd() / p if (Path.cwd() / p).exists() else outdir.resolve() / p
    return Path(os.path.relpath(p.resolve(), workdir.resolve())).as_posix()


def _environments(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    counts = collections.Counter(
        store.canonical_json({k: r[k] for k in ("versions", "dtype", "device")}) for r in records
    )
    return [{**json.loads(env), "n_runs": n} for env, n in counts.items()]


def _summary_json(study, config, profile, records, summary: Summary, workdir) -> dict:
    outdir = store.study_dir(workdir, study.name)
    verdicts = [v._asdict() if hasattr(v, "_asdict") else dict(v) for v in summary.verdicts]
    standins, config = stand_ins(config), cfg.to_dict(config)
    failures = [
        {k: r[k] for k in ("key", "status", "message", "spec")}
        for r in records
        if r["status"] != "ok"
    ]
    return {
        "study": study.name,
        "claims": list(dict.fromkeys(v["claim"] for v in verdicts)),
        "profile": profile,
        "config": config,
        "n_runs": len(records),
        "status_counts": dict(collections.Counter(r["status"] for r in records)),
        "text": summary.text,
        "tables": dict(summary.tables),
        "figures": [_relative_figure(f, Path(workdir), outdir) for f in summary.figures],
        "verdicts": verdicts,
        "failures": failures,
        "wall_time_s": round(sum(r["wall_time_s"] for r in records), 3),
        "compile_time_s": round(sum(r.get("compile_time_s") or 0.0 for r in records), 3),
        "environments": _environments(records),
        "stand_ins": standins,
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def run_study(
    study: Study,
    config: Config,
    workdir: str | os.PathLike,
    *,
    profile: str | None = None,
    retry_failed: bool = False,
    out: TextIO | None = None,
    share: Share | None = None,
) -> list[dict[str, Any]]:
    """Executes every not-yet-finished run of a study, then stores tables and summary.

    Writes ``<workdir>/<study>/``: ``config.json``, ``runs/<key>.json`` per run,
    ``runs.csv``, ``series.csv``, whatever ``study.summarize`` writes, ``summary.json``.

    Args:
      study: the study.
      config: its resolved config (see :func:`prepare_config`).
      workdir: the results folder.
      profile: recorded in ``config.json`` and ``summary.json`` (default: the config's
        ``profile`` field, if it has one).
      retry_failed: execute runs stored as ``failed`` again.
      out: where progress goes (default ``sys.stderr``); tqdm bars if it is a
        terminal, else one line per finished run.
      share: run together with other processes on one (shared) workdir: this process
        executes the unfinished runs ``i`` with ``i % count == index`` (in the order of
        ``expand``); after a barrier every process reads all runs back, and process 0
        alone writes the tables and summary. The stored numbers are those of one process.

    Returns:
      The run records, in the order of ``study.expand(config)``.

    Raises:
      ValueError: ``expand`` returned duplicate specs, or a run needs more memory than
        is available (:func:`check_memory`); nothing is written then.
    """
    out = sys.stderr if out is None else out
    profile = getattr(config, "profile", None) if profile is None else profile
    specs = list(study.expand(config))
    keys = [store.run_key(study.name, store.to_jsonable(s)) for s in specs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{study.name}: expand() returned duplicate specs")
    check_memory(study, specs)
    outdir = store.study_dir(workdir, study.name)
    lead = share is None or share.index == 0
    if lead:
        (outdir / "runs").mkdir(parents=True, exist_ok=True)
        for folder in (outdir, outdir / "runs"):
            store.clean_stale_temp_files(folder)
        store.write_json_atomic(
            outdir / "config.json",
            {"study": study.name, "profile": profile, "config": cfg.to_dict(config)},
        )
    damaged = lambda message: print(f"[{study.name}] {message}", file=out)
    read = lambda: [store.read_run(workdir, study.name, k, on_damaged=damaged) for k in keys]
    records = read() if lead else None  # the lead alone sets damaged files aside
    if share is not None:  # the folder is ready before anyone writes into it
        share.barrier(f"{study.name}:start")
    if records is None:
        records = read()
    todo = [
        i for i, r in enumerate(records) if r is None or (retry_failed and r["status"] == "failed")
    ]
    if share is not None:
        todo = [i for i in todo if i % share.count == share.index]
    mine = range(len(specs)) if share is None else range(share.index, len(specs), share.count)
    display = Display(
        study.name, [store.to_jsonable(specs[i]) for i in mine], len(mine) - len(todo), out
    )
    try:
        _execute_all(study, specs, keys, records, todo, workdir, display, damaged)
    finally:
        display.close()
    if share is not None:
        share.barrier(f"{study.name}:done")
        records = read()
        if any(r is None for r in records):
            raise RuntimeError(f"{study.name}: a process passed its barrier with runs missing")
        if not lead:
            return records
    store.write_tables(workdir, study.name, records)
    summary = study.summarize(config, records, outdir)
    store.write_json_atomic(
        outdir / "summary.json", _summary_json(study, config, profile, records, summary, workdir)
    )
    return records
