"""How much a verdict depends on choices a reviewer could have made differently.

A study decides a claim with a rule applied to stored numbers. Its robustness check
applies the *same* rule again under reasonable alternatives (each leave-one-seed-out
subset, the other parametrisation, each threshold or margin one step stricter and one
looser, the widest width dropped) and counts how many alternatives reach the same
decision. The verdict is **stable** when at least :data:`STABLE_FRACTION` of them agree
and none reaches the opposite decision (``holds`` against ``fails``), **fragile**
otherwise; with no alternative to try it is **not assessed**.

The rule of stability is fixed here, before any data, and is the same for every claim.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

__all__ = ["STABLE_FRACTION", "assess", "leave_one_out", "recompute"]

STABLE_FRACTION = 0.8
_OPPOSITE = {"holds": "fails", "fails": "holds"}


def assess(decision: str, alternatives: Mapping[str, str]) -> dict[str, Any]:
    """The robustness of ``decision`` given the decisions under ``alternatives``.

    Args:
      decision: the verdict under the stated rule.
      alternatives: alternative label (e.g. ``"without seed 2"``) -> the decision the same
        rule reaches under it.

    Returns:
      A JSON-ready dict: ``label`` (``"stable"``, ``"fragile"`` or ``"not assessed"``),
      ``agree``, ``total``, ``fraction`` (of alternatives agreeing), ``opposite`` (labels
      of alternatives reaching the opposite decision), ``disagreeing`` (label -> decision
      of every alternative that does not agree) and ``alternatives`` (all of them).
    """
    total = len(alternatives)
    agree = sum(d == decision for d in alternatives.values())
    opposite = [a for a, d in alternatives.items() if _OPPOSITE.get(decision) == d]
    if total == 0:
        label, fraction = "not assessed", None
    else:
        fraction = agree / total
        label = "stable" if fraction >= STABLE_FRACTION and not opposite else "fragile"
    return {
        "label": label,
        "agree": agree,
        "total": total,
        "fraction": fraction,
        "opposite": opposite,
        "disagreeing": {a: d for a, d in alternatives.items() if d != decision},
        "alternatives": dict(alternatives),
    }


def leave_one_out(seeds: Sequence[int]) -> list[tuple[str, tuple[int, ...]]]:
    """``[("without seed s", seeds minus s), ...]``: empty for fewer than two seeds."""
    seeds = tuple(seeds)
    if len(seeds) < 2:
        return []
    return [(f"without seed {s}", tuple(t for t in seeds if t != s)) for s in seeds]


def recompute(
    decide: Callable[..., str], base: Mapping[str, Any], variants: Iterable[tuple[str, dict]]
) -> dict[str, str]:
    """``{label: decide(**(base | change))}`` for every ``(label, change)`` in ``variants``.

    ``decide`` is the study's rule, taking its choices as keyword arguments and returning
    the decision only; ``base`` holds the stated choices. A variant identical to ``base``
    is skipped (it is not an alternative).
    """
    out = {}
    for label, change in variants:
        kwargs = {**base, **change}
        if kwargs != dict(base):
            out[label] = decide(**kwargs)
    return out
