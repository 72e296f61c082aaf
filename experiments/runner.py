"""Runs a study: resolve its config, execute every run once, store, summarise.

``run_study`` is the only entry point the CLI needs once a config is resolved::

    config = prepare_config(study, "smoke", ["widths=8,16"])
    records = run_study(study, config, "results", profile="smoke")

Each spec of ``study.expand(config)`` is executed at most once per workdir: finished runs
(``ok``, ``diverged``, ``failed``) are read back from the store, and only ``failed`` ones
are retried, when asked. A killed run leaves no run file, so rerunning resumes exactly
where the previous process stopped.
"""

import collections
import datetime
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ntk_limits_experiments import store
from ntk_limits_experiments.study import Config, Diverged, Spec, Study, Summary

__all__ = [
    "PROFILES",
    "apply_overrides",
    "check_workdir",
    "is_data_unavailable",
    "prepare_config",
    "run_study",
]

PROFILES = ("smoke", "embedded", "paper")


def _type_error(key: str, text: str, kind: str, current: Any) -> ValueError:
    return ValueError(
        f"value {text!r} for key {key!r} is not {kind}; allowed: {kind} (current: {current!r})"
    )


def _parse_scalar(key: str, text: str, current: Any) -> Any:
    """Parses ``text`` with the type of ``current`` (bool, int, float, str or None)."""
    text = text.strip() if not isinstance(current, str) else text
    if isinstance(current, bool):
        low = text.lower()
        if low not in ("true", "false"):
            raise _type_error(key, text, "a boolean (true or false)", current)
        return low == "true"
    if isinstance(current, int):
        try:
            return int(text)
        except ValueError:
            raise _type_error(key, text, "an integer", current) from None
    if isinstance(current, float):
        try:
            value = float(text)
        except ValueError:
            raise _type_error(key, text, "a number", current) from None
        if not math.isfinite(value):
            raise ValueError(
                f"value {text!r} for key {key!r} is not finite; allowed: a finite number"
            )
        return value
    if current is None:  # untyped: null, an int, a finite float, else the string
        if text.lower() in ("none", "null"):
            return None
        for kind in (int, float):
            try:
                return _parse_scalar(key, text, kind(0))
            except ValueError:
                continue
        return text
    return text


def _parse_value(key: str, text: str, current: Any) -> Any:
    if isinstance(current, dict):
        raise ValueError(
            f"key {key!r} holds a nested dict; allowed: keys with scalar or list values"
        )
    if not isinstance(current, list | tuple):
        return _parse_scalar(key, text, current)
    items = [t for t in (s.strip() for s in text.split(",")) if t]
    kinds = {type(v) for v in current}
    if kinds == {int}:
        template = 0
    elif kinds <= {int, float} and kinds:
        template = 0.0
    elif kinds in ({bool}, {str}):
        template = kinds.pop()()
    else:  # empty or mixed: infer each element
        template = None
    try:
        return [_parse_scalar(key, t, template) for t in items]
    except ValueError as e:
        raise ValueError(f"{e} (in list {text!r}, given as comma-separated a,b,c)") from None


def apply_overrides(
    config: Config, overrides: Iterable[str], *, unknown_ok: bool = False
) -> Config:
    """Returns a copy of ``config`` with ``key=value`` overrides applied.

    Each value is parsed with the type of the existing value: int, float (finite only),
    bool (``true``/``false``), str, None (null, number or string), or a list of those
    given as comma-separated ``a,b,c``.

    Args:
      config: the study's config.
      overrides: strings ``"key=value"``.
      unknown_ok: skip keys the config does not have instead of raising (``run all``).

    Returns:
      The new config.

    Raises:
      ValueError: malformed override, unknown key, wrong type or non-finite number.
    """
    config = dict(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(f"override {item!r} is not key=value; allowed: key=value")
        if key not in config:
            if unknown_ok:
                continue
            raise ValueError(f"unknown key {key!r}; allowed: {', '.join(sorted(config))}")
        config[key] = _parse_value(key, text, config[key])
    return config


def prepare_config(
    study: Study,
    profile: str,
    overrides: Sequence[str] = (),
    *,
    data_dir: str | os.PathLike | None = None,
    unknown_ok: bool = False,
) -> Config:
    """Resolves and validates a study's config; writes nothing.

    Args:
      study: the study.
      profile: ``smoke``, ``embedded`` or ``paper``.
      overrides: ``key=value`` strings (see :func:`apply_overrides`).
      data_dir: put into the config as ``data_dir`` when the config has that key.
      unknown_ok: ignore override keys this study's config does not have.

    Returns:
      The config, validated by ``study.validate``.

    Raises:
      ValueError: bad profile or override, or ``study.validate`` rejected the config
        (its message is prefixed with the study name).
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
    config = dict(study.get_config(profile))
    if data_dir is not None and "data_dir" in config:
        config["data_dir"] = str(data_dir)
    try:
        config = apply_overrides(config, overrides, unknown_ok=unknown_ok)
        study.validate(config)
    except ValueError as e:
        raise ValueError(f"{study.name}: {e}") from e
    return config


def check_workdir(workdir: str | os.PathLike) -> Path:
    """Creates ``workdir`` if needed and checks a file can be written there.

    Raises:
      ValueError: the folder cannot be created or written to.
    """
    path = Path(workdir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".write-test.", suffix=".tmp")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise ValueError(
            f"workdir {str(path)!r} is not writable ({reason}); allowed: a writable directory"
        ) from e
    return path


def is_data_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` is ``ntk_limits.data.DataUnavailableError`` (without importing it)."""
    cls = getattr(sys.modules.get("ntk_limits.data"), "DataUnavailableError", None)
    return isinstance(cls, type) and isinstance(exc, cls)


def _describe(spec: Spec, keys: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    return " ".join(f"{k}={fmt(spec[k])}" for k in keys if k in spec)


def _varying_keys(specs: Sequence[Spec]) -> list[str]:
    keys = dict.fromkeys(k for s in specs for k in s)
    return [k for k in keys if len({store.canonical_json(s.get(k)) for s in specs}) > 1]


class _Display:
    """Progress: tqdm bars on a terminal, one plain line per finished run otherwise."""

    def __init__(self, name: str, specs: Sequence[Spec], n_done: int, out: TextIO):
        self.name, self.out, self.done, self.total = name, out, n_done, len(specs)
        self.keys = _varying_keys(specs)
        self.tty = bool(getattr(out, "isatty", lambda: False)())
        self.bar = self.inner = None
        if self.tty:
            from tqdm.std import tqdm

            self._tqdm = tqdm
            self.bar = tqdm(total=self.total - n_done, desc=name, unit="run", file=out)
        else:
            print(
                f"[{name}] {self.total} runs: {n_done} finished before, "
                f"{self.total - n_done} to run",
                file=out,
                flush=True,
            )

    def progress(self, done: int, total: int) -> None:
        if not self.tty:
            return
        if self.inner is None:
            self.inner = self._tqdm(total=total, desc="run", position=1, leave=False, file=self.out)
        self.inner.total = total
        self.inner.update(done - self.inner.n)  # redraws at most every 0.1 s

    def finished(self, record: dict[str, Any]) -> None:
        self.done += 1
        line = (
            f"[{self.name} {self.done}/{self.total}] {record['status']}  "
            f"{_describe(record['spec'], self.keys)}  {record['wall_time_s']:.1f}s"
        )
        if record["message"]:
            line += "  " + record["message"].strip().split("\n")[0][:200]
        if not self.tty:
            print(line, file=self.out, flush=True)
            return
        self._close_inner()
        if record["status"] != "ok":
            self.bar.write(line, file=self.out)
        self.bar.update(1)

    def _close_inner(self) -> None:
        if self.inner is not None:
            self.inner.close()
            self.inner = None

    def close(self) -> None:
        self._close_inner()
        if self.bar is not None:
            self.bar.close()


def _execute(study: Study, spec: Spec, progress) -> dict[str, Any]:
    """Executes one spec and returns its record; only KeyboardInterrupt-like errors escape."""
    start = time.perf_counter()
    status, metrics, message = "ok", {}, ""
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
        study.name, spec, status, metrics, message, time.perf_counter() - start
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
    failures = [
        {k: r[k] for k in ("key", "status", "message", "spec")}
        for r in records
        if r["status"] != "ok"
    ]
    return {
        "study": study.name,
        "claims": list(study.claims),
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
        "environments": _environments(records),
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
) -> list[dict[str, Any]]:
    """Executes every not-yet-finished run of a study, then stores tables and summary.

    Writes ``<workdir>/<study>/``: ``config.json``, ``runs/<key>.json`` per run,
    ``runs.csv``, ``series.csv``, whatever ``study.summarize`` writes, ``summary.json``.

    Args:
      study: the study.
      config: its resolved config (see :func:`prepare_config`); validated again here.
      workdir: the results folder.
      profile: recorded in ``config.json`` and ``summary.json`` (default
        ``config.get("profile")``).
      retry_failed: execute runs stored as ``failed`` again.
      out: where progress goes (default ``sys.stderr``); tqdm bars if it is a
        terminal, else one line per finished run.

    Returns:
      The run records, in the order of ``study.expand(config)``.

    Raises:
      ValueError: the config is invalid or ``expand`` returned duplicate specs.
    """
    out = sys.stderr if out is None else out
    profile = config.get("profile") if profile is None else profile
    study.validate(config)
    specs = study.expand(config)
    keys = [store.run_key(study.name, s) for s in specs]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{study.name}: expand() returned duplicate specs")
    outdir = store.study_dir(workdir, study.name)
    (outdir / "runs").mkdir(parents=True, exist_ok=True)
    for folder in (outdir, outdir / "runs"):
        store.clean_stale_temp_files(folder)
    store.write_json_atomic(
        outdir / "config.json", {"study": study.name, "profile": profile, "config": config}
    )
    records = [store.read_run(workdir, study.name, k) for k in keys]
    todo = [
        i for i, r in enumerate(records) if r is None or (retry_failed and r["status"] == "failed")
    ]
    display = _Display(study.name, specs, len(specs) - len(todo), out)
    try:
        for i in todo:
            records[i] = _execute(study, specs[i], display.progress)
            store.write_run(workdir, records[i])
            display.finished(records[i])
    finally:
        display.close()
    store.write_tables(workdir, study.name, records)
    summary = study.summarize(config, records, outdir)
    store.write_json_atomic(
        outdir / "summary.json", _summary_json(study, config, profile, records, summary, workdir)
    )
    return records
