"""Helpers every study shares: Markdown tables, figure files, CPU compile options.

Nothing here knows a study; each function is small and has one job. JAX is imported by
the two compile helpers when called, so the report and the command line start without it.
"""

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CHEAP_COST",
    "compile_jit",
    "cpu_compile_options",
    "markdown_cell",
    "markdown_table",
    "save_figure",
]

CHEAP_COST = 1e8  # multiply-adds below which an unoptimised CPU program is faster overall


def markdown_cell(value: Any, limit: int = 300) -> str:
    """``value`` as one line of Markdown table text: ``|`` escaped, cut at ``limit``."""
    text = " ".join(str(value).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def markdown_table(header: Sequence[Any], rows: Sequence[Sequence[Any]], limit: int = 300) -> str:
    """A GitHub Markdown table; cells are one line, ``|`` escaped, cut at ``limit`` characters.

    Args:
      header: column titles.
      rows: one sequence of cells per row (already formatted, or anything ``str`` takes).
      limit: longest cell text kept.

    Returns:
      The table, ending in a newline.
    """
    lines = ["| " + " | ".join(markdown_cell(h, limit) for h in header) + " |"]
    lines.append("|" + "---|" * len(header))
    lines += ["| " + " | ".join(markdown_cell(c, limit) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: str | os.PathLike, dpi: int = 120) -> Path:
    """Writes a matplotlib ``Figure`` to ``path`` (its folder is created) and returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def cpu_compile_options(level: int = 0) -> dict[str, int]:
    """XLA options that skip LLVM's optimisation passes on a CPU (``{}`` elsewhere).

    On a CPU most of a small study's time is compilation; level 0 compiles several times
    faster and runs small programs about as fast.
    """
    import jax

    return {"xla_backend_optimization_level": level} if jax.default_backend() == "cpu" else {}


def compile_jit(fn, args, cost: float):
    """``jax.jit(fn)`` compiled for ``args``, unoptimised on a CPU for small programs.

    Args:
      fn: a traceable function.
      args: example arguments (arrays; shapes and dtypes are what matter).
      cost: rough multiply-adds of one call; below :data:`CHEAP_COST` the program is
        compiled with :func:`cpu_compile_options`.

    Returns:
      The compiled function (call it with arguments like ``args``).
    """
    import jax

    lowered = jax.jit(fn).lower(*args)
    return lowered.compile(cpu_compile_options() if cost < CHEAP_COST else None)
