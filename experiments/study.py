"""The contract between a study and the runner.

A study is a handful of pure-ish functions bundled in a :class:`Study`. The runner
(:mod:`ntk_limits_experiments.runner`) takes one of the study's profile configs (typed,
frozen values, see :mod:`ntk_limits_experiments.config`), expands it into run specs,
executes each spec at most once (results are keyed by a hash of the spec), and then asks
the study to summarise all records into figures, tables and claim verdicts.
"""

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ntk_limits_experiments.config import PROFILES, Config

Spec = Any  # one fully resolved run: a frozen dataclass (or a dict); its hash is its key
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
      robustness: the same rule under a reviewer's alternatives
        (:func:`ntk_limits_experiments.robustness.assess`); ``None`` if not assessed.
    """

    claim: str
    statement: str
    verdict: str
    rule: str
    evidence: dict[str, Any]
    robustness: dict[str, Any] | None = None


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
      profiles: ``{"smoke": config, "embedded": config, "paper": config}``, built by
        :func:`ntk_limits_experiments.config.profiles`; each config is a frozen, typed
        :class:`ntk_limits_experiments.config.Config`, valid by construction.
      expand: ``config -> [spec, ...]``; each spec is complete and hashable (a frozen
        dataclass; its JSON form is stored and hashed).
      execute: ``(spec, progress) -> metrics``; ``progress(done, total)`` may be called
        for long runs; raises :class:`Diverged` on a non-finite loss.
      summarize: ``(config, records, outdir) -> Summary``; ``records`` is a list of
        ``{"spec": spec as JSON, "metrics": metrics, "status": status}`` for every run.
      memory: ``spec -> bytes``, the least memory the run needs (its bound on the
        cheapest path it can take), from the spec alone; checked against the memory
        available before anything is written (:mod:`ntk_limits_experiments.memory`).
        ``None``: the study states no bound.
    """

    name: str
    profiles: Mapping[str, Config]
    expand: Callable[[Config], Sequence[Spec]]
    execute: Callable[[Spec, Callable[[int, int], None]], Metrics]
    summarize: Callable[[Config, list[dict[str, Any]], Path], Summary]
    memory: Callable[[Spec], int] | None = None

    def get_config(self, profile: str) -> Config:
        """The config of ``profile``; raises ``ValueError`` for an unknown profile."""
        if profile not in self.profiles:
            raise ValueError(f"unknown profile {profile!r}; allowed: {', '.join(PROFILES)}")
        return self.profiles[profile]
