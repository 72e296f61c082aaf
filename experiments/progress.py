"""Progress of a study run: tqdm bars on a terminal, one plain line per run otherwise."""

from collections.abc import Sequence
from typing import Any, TextIO

from ntk_limits_experiments import store

__all__ = ["Display", "describe_runs"]


def _flat(spec: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested spec fields as dotted keys: ``{"network.width": 64, ...}``."""
    out = {}
    for k, v in spec.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _describe(spec: dict[str, Any], keys: Sequence[str]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:g}" if isinstance(v, float) else str(v)

    flat = _flat(spec)
    return " ".join(f"{k.rpartition('.')[2]}={fmt(flat[k])}" for k in keys if k in flat)


def _varying_keys(specs: Sequence[dict[str, Any]]) -> list[str]:
    flats = [_flat(s) for s in specs]
    keys = dict.fromkeys(k for f in flats for k in f)
    return [k for k in keys if len({store.canonical_json(f.get(k)) for f in flats}) > 1]


def describe_runs(specs: Sequence[dict[str, Any]]) -> list[str]:
    """Each run named by the spec fields that vary across ``specs`` (JSON forms)."""
    keys = _varying_keys(specs)
    return [_describe(s, keys) for s in specs]


class Display:
    """Progress: tqdm bars on a terminal, one plain line per finished run otherwise.

    Args:
      name: the study name.
      specs: every run's spec (JSON form); the fields that vary name each run.
      n_done: runs finished before.
      out: the stream (a terminal gets bars).
    """

    def __init__(self, name: str, specs: Sequence[dict[str, Any]], n_done: int, out: TextIO):
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
        """Shows ``done`` of ``total`` steps of the current run (terminals only)."""
        if not self.tty:
            return
        if self.inner is None:
            self.inner = self._tqdm(total=total, desc="run", position=1, leave=False, file=self.out)
        self.inner.total = total
        self.inner.update(done - self.inner.n)  # redraws at most every 0.1 s

    def finished(self, record: dict[str, Any], note: str = "") -> None:
        """Reports one finished run (its status, varying spec fields and time).

        ``note`` (e.g. "finished by another process") replaces the time.
        """
        self.done += 1
        line = (
            f"[{self.name} {self.done}/{self.total}] {record['status']}  "
            f"{_describe(record['spec'], self.keys)}  "
            + (f"({note})" if note else f"{record['wall_time_s']:.1f}s")
        )
        if record.get("compile_time_s") and not note:
            line += f" ({record['compile_time_s']:.1f}s compiling)"
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
        """Closes the bars."""
        self._close_inner()
        if self.bar is not None:
            self.bar.close()
