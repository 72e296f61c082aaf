"""Data set operations (ntk_limits.data._dataset): balanced, seeded, checked subsets."""

import numpy as np
import pytest

from ntk_limits import data


def test_subset_is_balanced_deterministic_and_checked():
    ds = data.load("digits", split="all")
    a, b = data.subset(ds, 95, seed=4), data.subset(ds, 95, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    counts = np.bincount(a.y, minlength=10)
    assert counts.sum() == 95 and counts.max() - counts.min() <= 1
    assert not np.array_equal(data.subset(ds, 95, seed=5).y, a.y)
    assert len(data.subset(ds, 95, seed=4, balanced=False).y) == 95
    assert np.array_equal(np.bincount(data.load("iris", n=30).y), [10, 10, 10])
    with pytest.raises(ValueError, match="needs"):
        data.subset(data.load("wine", split="test"), 33, seed=0)  # classes 12, 14, 10; 11 each
    with pytest.raises(ValueError):
        data.subset(ds, 5000)
