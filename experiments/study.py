"""The contract between a study and the runner.

A study is a handful of pure-ish functions bundled in a :class:`Study`. The runner
(`experiments/runner.py`) expands the study's config into run specs, executes each spec
at most once (results are keyed by a hash of the spec), and then asks the study to
summarise all records into figures, tables and claim verdicts for the report.
"""

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

Config = dict[str, Any]  # JSON-serialisable, flat where possible
Spec = dict[str, Any]  # one fully resolved run; its hash is the run's key
Metrics = dict[str, Any]  # JSON-serialisable: numbers, strings, lists of numbers


class Diverged(Exception):  # noqa: N818 - a status, not an error class
    """Raised by ``Study.execute`` when a run's loss becomes non-finite."""


class Verdict(NamedTuple):
    """A decision on one paper claim.

    Attributes:
      claim: claim id, e.g. ``"C1"``.
      statement: the claim in one sentence.
      verdict: ``"holds"``, ``"fails"``, ``"inconclusive"`` or ``"not run"``.
      rule: how the numbers were turned into the verdict, in one sentence.
      evidence: the measured numbers the rule was applied to.
    """

    claim: str
    statement: str
    verdict: str
    rule: str
    evidence: dict[str, Any]


class Summary(NamedTuple):
    """What a study contributes to the report.

    Attributes:
      figures: PNG files written under the study's output folder.
      tables: name -> markdown table (already formatted) for the report.
      verdicts: the claim verdicts this study decides.
      text: a short markdown paragraph: what was run and what was seen.
    """

    figures: Sequence[Path]
    tables: dict[str, str]
    verdicts: Sequence[Verdict]
    text: str


class Study(NamedTuple):
    """A study as the runner sees it.

    Attributes:
      name: the CLI name (``ntk-limits run NAME``).
      claims: ids of the claims it decides (``("C1", "C2")``).
      get_config: ``profile -> config``; profiles are ``smoke``, ``embedded``, ``paper``.
      validate: ``config -> None``; raises ``ValueError("one line: what, allowed")``.
      expand: ``config -> [spec, ...]``; each spec is JSON-serialisable and complete.
      execute: ``(spec, progress) -> metrics``; ``progress(done, total)`` may be called
        for long runs; raises :class:`Diverged` on a non-finite loss.
      summarize: ``(config, records, outdir) -> Summary``; ``records`` is a list of
        ``{"spec": spec, "metrics": metrics, "status": status}`` for every run.
    """

    name: str
    claims: tuple[str, ...]
    get_config: Callable[[str], Config]
    validate: Callable[[Config], None]
    expand: Callable[[Config], list[Spec]]
    execute: Callable[[Spec, Callable[[int, int], None]], Metrics]
    summarize: Callable[[Config, list[dict[str, Any]], Path], Summary]
