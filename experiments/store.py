"""The results store: one JSON file per finished run, plus tidy tables per study.

Layout under a workdir::

    <workdir>/<study>/runs/<key>.json   one finished run (ok, diverged or failed)
    <workdir>/<study>/runs.csv          one row per run: key, status, spec.*, metrics.*
    <workdir>/<study>/series.csv        list-valued metrics, long form: key, metric, index, value

A run file exists if and only if the run finished: every file is written to a temporary
file in the same folder, flushed to disk and renamed into place (:func:`write_json_atomic`),
so a process killed at any moment leaves either no file or a complete one.

The run key is the first 16 hex digits of the sha256 of the study name and the canonical
JSON of the spec (sorted keys, compact separators). Keys listed in
:data:`UNHASHED_SPEC_KEYS` (locations such as ``data_dir``, not experimental parameters)
are left out of the key, so moving the data does not invalidate finished runs.
"""

import contextlib
import dataclasses
import datetime
import functools
import hashlib
import importlib.metadata
import json
import os
import platform
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = [
    "UNHASHED_SPEC_KEYS",
    "DamagedFile",
    "canonical_json",
    "clean_stale_temp_files",
    "environment",
    "list_runs",
    "load_runs",
    "load_series",
    "make_record",
    "read_json",
    "read_run",
    "run_key",
    "run_lock",
    "run_path",
    "set_aside",
    "study_dir",
    "to_jsonable",
    "write_json_atomic",
    "write_run",
    "write_tables",
    "write_text_atomic",
]

UNHASHED_SPEC_KEYS = ("data_dir",)
_PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "neural_tangents")
_TMP_SUFFIX = ".tmp"


def to_jsonable(obj: Any) -> Any:
    """Converts numpy/JAX scalars and arrays (recursively) to plain JSON types.

    Args:
      obj: a nest of dicts, dataclasses (typed configs and specs), lists, tuples,
        numbers, strings, numpy or JAX values.

    Returns:
      The same nest built from ``dict``, ``list``, ``int``, ``float``, ``bool``, ``str``
      and ``None``; arrays of any shape become (nested) lists.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy and JAX arrays and scalars
        return to_jsonable(obj.tolist())
    return obj


def canonical_json(obj: Any) -> str:
    """Returns the canonical JSON text of ``obj``: sorted keys, no spaces."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"))


def run_key(study: str, spec: dict[str, Any]) -> str:
    """Returns the run key: 16 hex digits of sha256(study name, canonical spec).

    Args:
      study: the study name.
      spec: the run's spec; keys in :data:`UNHASHED_SPEC_KEYS` are ignored.
    """
    hashed = {k: v for k, v in spec.items() if k not in UNHASHED_SPEC_KEYS}
    text = study + "\n" + canonical_json(hashed)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def study_dir(workdir: str | os.PathLike, study: str) -> Path:
    """Returns ``<workdir>/<study>``, the study's output folder."""
    return Path(workdir) / study


def run_path(workdir: str | os.PathLike, study: str, key: str) -> Path:
    """Returns ``<workdir>/<study>/runs/<key>.json``."""
    return study_dir(workdir, study) / "runs" / f"{key}.json"


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Writes ``text`` to ``path`` atomically (temp file in the same folder, fsync, rename).

    Args:
      path: the destination; its folder is created if needed.
      text: the content.

    Returns:
      ``path`` as a :class:`Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_TMP_SUFFIX
    )
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Writes ``obj`` as indented JSON to ``path`` atomically (see write_text_atomic).

    Keys keep their insertion order, so a record read back equals the one written.
    """
    return write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2) + "\n")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not supported on every platform
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def clean_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Removes temp files left in ``folder`` by writers that no longer run (e.g. killed).

    Temp files carry the writer's process id; those of live processes are kept.

    Returns:
      The removed paths.
    """
    removed = []
    for tmp in Path(folder).glob(f".*{_TMP_SUFFIX}"):
        parts = tmp.name.split(".")
        pid = int(parts[-3]) if len(parts) >= 4 and parts[-3].isdigit() else None
        if pid is None or not _pid_alive(pid):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@functools.cache
def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """Returns the provenance of a run: package versions, float dtype and device.

    Imports JAX. ``dtype`` is ``"float64"`` when ``jax_enable_x64`` is on, else
    ``"float32"``; ``device`` is ``{"platform", "kind"}`` of ``jax.devices()[0]``.
    """
    import jax

    device = jax.devices()[0]
    return {
        "versions": dict(_versions()),
        "dtype": "float64" if jax.config.jax_enable_x64 else "float32",
        "device": {"platform": device.platform, "kind": device.device_kind},
    }


def make_record(
    study: str,
    spec: dict[str, Any],
    status: str,
    metrics: dict[str, Any],
    message: str,
    wall_time_s: float,
    compile_time_s: float | None = None,
) -> dict[str, Any]:
    """Builds the run record stored in a run file (see the module docstring).

    Args:
      study: the study name.
      spec: the run's spec.
      status: ``"ok"``, ``"diverged"`` or ``"failed"``.
      metrics: what ``execute`` returned (empty unless ok).
      message: empty when ok, else the reason.
      wall_time_s: seconds spent in ``execute``.
      compile_time_s: of those, seconds JAX spent compiling (``None``: not measured).

    Returns:
      ``{study, key, spec, status, metrics, message, seed, versions, dtype, device,
      wall_time_s, compile_time_s, finished_at}``, JSON-serialisable.
    """
    return {
        "study": study,
        "key": run_key(study, spec),
        "spec": to_jsonable(spec),
        "status": status,
        "metrics": to_jsonable(metrics),
        "message": message,
        "seed": to_jsonable(spec.get("seed")),
        **environment(),
        "wall_time_s": round(wall_time_s, 6),
        "compile_time_s": None if compile_time_s is None else round(compile_time_s, 6),
        "finished_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def write_run(workdir: str | os.PathLike, record: dict[str, Any]) -> Path:
    """Writes one run record to its run file, atomically; returns the path."""
    return write_json_atomic(run_path(workdir, record["study"], record["key"]), record)


@contextlib.contextmanager
def run_lock(workdir: str | os.PathLike, study: str, key: str, *, wait: bool = False):
    """Holds the lock of one run while its body computes it; yields whether it is held.

    An exclusive ``flock`` on ``<study>/runs/.locks/<key>.lock``: the kernel releases it
    when its process ends in any way (SIGKILL included), so a killed run never leaves a
    stale lock. With ``wait=False`` a lock held by another process yields ``False`` at
    once; with ``wait=True`` it blocks until that process releases it. The lock files
    stay (empty; removing one while another process waits on it would break the lock).
    """
    import fcntl  # POSIX; imported here so that reading results works everywhere

    folder = study_dir(workdir, study) / "runs" / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{key}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


class DamagedFile(ValueError):
    """A results file that cannot be read back; the message names it and what is wrong."""


_ADVICE = "allowed: a file written by ntk-limits (move it away and run again)"


def read_json(path: str | os.PathLike, required: Iterable[str] = (), kind: type = dict) -> Any:
    """Reads a JSON value of type ``kind`` (an object by default) from ``path``.

    Args:
      path: the file.
      required: keys an object must have.
      kind: ``dict`` (a JSON object) or ``list`` (an array).

    Raises:
      DamagedFile: the file is not UTF-8, not valid JSON (e.g. truncated), not of
        ``kind``, or lacks a required key.
    """
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise DamagedFile(f"{path} is not UTF-8 text ({e.reason}); {_ADVICE}") from None
    except json.JSONDecodeError as e:
        where = f"{e.msg}: line {e.lineno} column {e.colno}"
        raise DamagedFile(f"{path} is not valid JSON ({where}); {_ADVICE}") from None
    if not isinstance(value, kind):
        names = {dict: "an object", list: "an array"}
        found = type(value).__name__
        raise DamagedFile(f"{path} holds a JSON {found}, not {names[kind]}; {_ADVICE}")
    missing = [k for k in required if k not in value]
    if missing:
        raise DamagedFile(f"{path} lacks {', '.join(map(repr, missing))}; {_ADVICE}")
    return value


def set_aside(path: str | os.PathLike) -> Path:
    """Renames ``path`` to ``<name>.damaged`` (``.damaged-2``, ... if taken); never deletes."""
    path = Path(path)
    target, n = path.with_name(path.name + ".damaged"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.damaged-{n}")
    return path.rename(target)


_RUN_KEYS = ("study", "key", "spec", "status", "metrics")


def read_run(
    workdir: str | os.PathLike, study: str, key: str, on_damaged=None
) -> dict[str, Any] | None:
    """Returns the stored record of a run, or None if the run has not finished.

    A run file that cannot be read back (truncated, not a run record, another run's
    record) is set aside (:func:`set_aside`) and treated as not finished, so the run is
    executed again; ``on_damaged(message)`` is told once.
    """
    path = run_path(workdir, study, key)
    if not path.exists():
        return None
    try:
        record = read_json(path, _RUN_KEYS)
        if record["key"] != key or record["status"] not in ("ok", "diverged", "failed"):
            raise DamagedFile(f"{path} is not the record of run {key}; {_ADVICE}")
    except DamagedFile as e:
        moved = set_aside(path)
        if on_damaged is not None:
            on_damaged(f"{e}: set aside as {moved.name}; the run is executed again")
        return None
    return record


def list_runs(workdir: str | os.PathLike, study: str) -> list[dict[str, Any]]:
    """Returns every stored record of a study (any config), sorted by key.

    Raises:
      DamagedFile: a run file cannot be read back (``ntk-limits run`` sets it aside).
    """
    folder = study_dir(workdir, study) / "runs"
    return [read_json(p, _RUN_KEYS) for p in sorted(folder.glob("*.json"))]


def _flatten(prefix: str, value: Any, scalars: dict, series: list, key: str) -> None:
    """Splits a value into scalar columns and long-form series rows."""
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, scalars, series, key)
    elif isinstance(value, list) and prefix.startswith("metrics."):
        name = prefix.removeprefix("metrics.")
        for i, v in enumerate(value):
            if isinstance(v, list | dict):
                _flatten(f"{prefix}[{i}]", v, scalars, series, key)
            else:
                series.append({"key": key, "metric": name, "index": i, "value": v})
    elif isinstance(value, list):  # a list-valued spec field: keep it in one cell
        scalars[prefix] = json.dumps(value)
    else:
        scalars[prefix] = value


def _table_rows(records: Iterable[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    rows, series = [], []
    for r in records:
        columns = ("key", "status", "message", "seed", "wall_time_s", "compile_time_s")
        row = {k: r.get(k) for k in columns}
        row["finished_at"] = r.get("finished_at")
        _flatten("spec", r["spec"], row, series, r["key"])
        _flatten("metrics", r.get("metrics") or {}, row, series, r["key"])
        rows.append(row)
    return rows, series


def write_tables(
    workdir: str | os.PathLike, study: str, records: list[dict[str, Any]]
) -> tuple[Path, Path]:
    """Writes ``runs.csv`` and ``series.csv`` for the given records, atomically.

    ``runs.csv`` has one row per record (in the given order) with columns ``key, status,
    message, seed, wall_time_s, compile_time_s, finished_at``, then ``spec.<field>`` (nested dicts
    flattened with dots, list-valued fields as JSON text) and ``metrics.<name>`` for
    scalar metrics. List-valued metrics go to ``series.csv`` with columns ``key, metric,
    index, value`` (a list of lists ``m`` becomes metrics ``m[0]``, ``m[1]``, ...).

    Returns:
      The paths of ``runs.csv`` and ``series.csv``.
    """
    import pandas as pd

    rows, series = _table_rows(records)
    out = study_dir(workdir, study)
    runs_csv = write_text_atomic(out / "runs.csv", pd.DataFrame(rows).to_csv(index=False))
    long = pd.DataFrame(series, columns=["key", "metric", "index", "value"])
    series_csv = write_text_atomic(out / "series.csv", long.to_csv(index=False))
    return runs_csv, series_csv


def load_runs(workdir: str | os.PathLike, study: str):
    """Loads ``<workdir>/<study>/runs.csv`` as a ``pandas.DataFrame`` (one row per run)."""
    import pandas as pd

    return pd.read_csv(study_dir(workdir, study) / "runs.csv")


def load_series(workdir: str | os.PathLike, study: str):
    """Loads ``<workdir>/<study>/series.csv`` as a long ``pandas.DataFrame``."""
    import pandas as pd

    return pd.read_csv(study_dir(workdir, study) / "series.csv")
