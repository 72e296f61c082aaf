"""The statistics behind the claim verdicts: intervals over seeds and the calls made on them.

Every comparison a verdict rests on is reduced to one number per seed (a paired
difference between two agents or settings run on the same seed, or a per-seed slope),
and those numbers to a Student-t interval of their mean (:func:`mean_interval`). A call
on an interval (:func:`call`) is one of:

* ``"equivalent"``: the ``1 − 2α`` interval lies inside ``(−margin, margin)``: the two
  one-sided tests (TOST) both reject at level ``α``, so the effect is shown to be smaller
  than the margin. This is the only way to conclude "no effect"; a non-significant
  difference is ``"undecided"``, never ``"equivalent"``.
* ``"negative"`` / ``"positive"``: the two-sided ``1 − α`` interval excludes 0 (and the
  effect is not shown to be within the margin).
* ``"undecided"``: neither, e.g. too few seeds or an interval that straddles the margin.

Pure numpy and ``scipy.stats`` (for the t quantile); no JAX.
"""

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from scipy import stats as _scipy_stats

__all__ = [
    "CALLS",
    "Interval",
    "call",
    "mean_interval",
    "paired_difference",
    "per_seed_slopes",
    "slope_interval",
]

CALLS = ("negative", "positive", "equivalent", "undecided")


class Interval(NamedTuple):
    """A two-sided confidence interval of a mean over seeds.

    Attributes:
      estimate: the mean.
      lo, hi: the interval's ends (``±inf`` with fewer than two finite values).
      n: the number of finite values it was computed from.
      level: the confidence level, e.g. 0.95.
    """

    estimate: float
    lo: float
    hi: float
    n: int
    level: float

    def as_dict(self) -> dict:
        """JSON-ready form (``inf`` kept as float; the store writes it as ``null``)."""
        return self._asdict()


def mean_interval(values: Sequence[float], level: float = 0.95) -> Interval:
    """Student-t interval of the mean of ``values`` (non-finite values are dropped).

    Args:
      values: one number per seed.
      level: two-sided confidence level in (0, 1).

    Returns:
      ``mean ± t_{level, n−1} · s/√n``; ``(mean, −inf, inf)`` for one value,
      ``(nan, −inf, inf)`` for none.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)]
    n = int(v.size)
    if n == 0:
        return Interval(math.nan, -math.inf, math.inf, 0, level)
    mean = float(v.mean())
    if n == 1:
        return Interval(mean, -math.inf, math.inf, 1, level)
    half = float(_scipy_stats.t.ppf(0.5 + level / 2, n - 1)) * float(v.std(ddof=1)) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, level)


def paired_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95) -> Interval:
    """Interval of the mean of ``a[s] − b[s]`` over seeds ``s`` (a paired comparison).

    ``a`` and ``b`` must be measured on the same seeds, in the same order (same data
    order and initialisation), so that the seed's own variation cancels.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(
            f"paired values need one per seed on both sides, got {a.shape} and {b.shape}"
        )
    return mean_interval(a - b, level)


def per_seed_slopes(x: Sequence[float], y: np.ndarray) -> np.ndarray:
    """Least-squares slope of ``y[s, :]`` on ``x`` for every seed ``s``: shape ``(S,)``.

    Args:
      x: ``(W,)`` abscissae (e.g. log2 width), at least two distinct values.
      y: ``(S, W)`` one row per seed.
    """
    x = np.asarray(x, np.float64)
    y = np.atleast_2d(np.asarray(y, np.float64))
    if y.shape[1] != x.size or np.unique(x).size < 2:
        raise ValueError(
            f"need y of shape (seeds, {x.size}) and at least two distinct x, got {y.shape}"
        )
    xc = x - x.mean()
    return (y - y.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def slope_interval(x: Sequence[float], y: np.ndarray, level: float = 0.95) -> Interval:
    """Interval of the mean over seeds of the per-seed slopes (:func:`per_seed_slopes`)."""
    return mean_interval(per_seed_slopes(x, y), level)


def call(values: Sequence[float], margin: float, alpha: float = 0.05) -> tuple[str, dict]:
    """The call on the mean of ``values`` (see the module doc) and the intervals behind it.

    Args:
      values: one number per seed (paired differences or per-seed slopes).
      margin: the equivalence margin ``δ > 0``: effects within ``±δ`` count as none.
      alpha: the test level; the significance interval has level ``1 − α``, the
        equivalence (TOST) interval ``1 − 2α``.

    Returns:
      ``(call, {"estimate", "ci", "equivalence_ci", "n", "margin", "alpha"})`` with the
      intervals as ``[lo, hi]``.
    """
    if not margin > 0:
        raise ValueError(f"the equivalence margin must be > 0, got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    sig = mean_interval(values, 1 - alpha)
    equiv = mean_interval(values, 1 - 2 * alpha)
    if -margin < equiv.lo and equiv.hi < margin:
        decision = "equivalent"
    elif sig.hi < 0:
        decision = "negative"
    elif sig.lo > 0:
        decision = "positive"
    else:
        decision = "undecided"
    info = {
        "estimate": sig.estimate,
        "ci": [sig.lo, sig.hi],
        "equivalence_ci": [equiv.lo, equiv.hi],
        "n": sig.n,
        "margin": margin,
        "alpha": alpha,
    }
    return decision, info
