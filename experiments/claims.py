"""The paper's claims: the one place that defines their ids, statements and studies.

A study decides a claim by returning :func:`verdict` (which fills in the statement); the
report lists every claim here, ``not run`` where no study decided it.
"""

from typing import Any, NamedTuple

from ntk_limits_experiments.study import Verdict

__all__ = ["CLAIMS", "Claim", "of_study", "verdict"]


class Claim(NamedTuple):
    """A claim of the paper.

    Attributes:
      id: ``"C1"`` ... ``"C5"``.
      statement: the claim in one sentence.
      study: the study that decides it.
    """

    id: str
    statement: str
    study: str


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        Claim(
            "C1",
            "The stable-Jacobian condition (C′ < 1/2) fails at practical widths.",
            "optimization",
        ),
        Claim(
            "C2",
            "NGD does not deliver its kernel-regime speed-up over GD in practice.",
            "optimization",
        ),
        Claim(
            "C3",
            "NTK-theory exploration (γ_t) over-explores; tuned or evidence-maximised "
            "exploration does better.",
            "bandits",
        ),
        Claim("C4", "Width reduces forgetting only when networks are under-trained.", "continual"),
        Claim(
            "C5",
            "The empirical NTK approaches the infinite-width NTK as width grows (sanity).",
            "kernels",
        ),
    )
}


def of_study(study: str) -> tuple[str, ...]:
    """The ids of the claims ``study`` decides, in order (``()`` for none)."""
    return tuple(c.id for c in CLAIMS.values() if c.study == study)


def verdict(
    claim: str,
    decision: str,
    rule: str,
    evidence: dict[str, Any],
    robustness: dict[str, Any] | None = None,
) -> Verdict:
    """A :class:`Verdict` on ``claim`` with its statement from :data:`CLAIMS`.

    Args:
      claim: a claim id of :data:`CLAIMS`.
      decision: ``"holds"``, ``"fails"``, ``"inconclusive"`` or ``"not run"``.
      rule: how the numbers were turned into the decision, in one sentence.
      evidence: the measured numbers the rule was applied to.
      robustness: the rule's decisions under alternatives, from
        :func:`ntk_limits_experiments.robustness.assess` (``None``: not assessed).

    Raises:
      KeyError: ``claim`` is not a claim of the paper.
    """
    return Verdict(claim, CLAIMS[claim].statement, decision, rule, evidence, robustness)
