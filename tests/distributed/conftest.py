"""Shared helpers of the distributed tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from metal.label_model.statistics import SourceStatistics


def _assert_same(a: SourceStatistics, b: SourceStatistics) -> None:
    assert a.n_rows == b.n_rows
    np.testing.assert_array_equal(a.n_values, b.n_values)
    np.testing.assert_array_equal(a.counts, b.counts)
    assert a.cooccurrence.shape == b.cooccurrence.shape
    assert (a.cooccurrence != b.cooccurrence).nnz == 0


@pytest.fixture
def same_statistics() -> Callable[[SourceStatistics, SourceStatistics], None]:
    """Assert that two statistics are exactly equal (they are integer counts)."""
    return _assert_same
