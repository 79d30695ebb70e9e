"""SourceCoding: indicator layout, encoding of votes, decoding, Omega."""

from __future__ import annotations

import networkx as nx
import numpy as np

from metal.label_model.coding import SourceCoding
from metal.matrix import check_label_matrix


def test_singleton_layout_and_encoding() -> None:
    c = SourceCoding(3, 2)
    assert c.n_sources == 3 and c.n_groups == 3 and c.n_indicators == 6 and c.all_singletons
    np.testing.assert_array_equal(c.singleton_indicators, np.arange(6))
    L = check_label_matrix(np.array([[0, 1, -1], [-1, 0, 1]]))
    rows, ind = c.encode(L.votes_in(0, 2))
    pairs = sorted(zip(rows.tolist(), ind.tolist(), strict=True))
    assert pairs == [(0, 0), (0, 3), (1, 2), (1, 5)]  # indicator = source * k + value
    pos, src, val = c.member_values(np.array([0, 3, 5]))
    np.testing.assert_array_equal(src, [0, 1, 2])
    np.testing.assert_array_equal(val, [0, 1, 1])
    np.testing.assert_array_equal(c.indicator_group(np.array([0, 1, 2, 5])), [0, 0, 1, 2])


def test_omega_excludes_same_source_and_dependent_pairs() -> None:
    ind = np.arange(6)
    free = SourceCoding(3, 2).omega(ind)
    assert not free[0, 1] and free[0, 2] and free[1, 5] and not free[4, 5]
    dep = SourceCoding.from_dependencies(3, 2, nx.Graph([(0, 1)]))
    assert not dep.all_singletons
    om = dep.omega(dep.singleton_indicators)
    assert not om[0, 2]  # sources 0 and 1 are dependent
    assert om[0, 4] and om[2, 5]  # both are independent of source 2


def test_statistics_pass_counts_indicators() -> None:
    L = check_label_matrix(np.array([[0, 1, -1], [0, 0, 1], [1, -1, -1]]))
    s = SourceCoding(3, 2).statistics(L, chunk_rows=2)
    np.testing.assert_array_equal(s.counts, [2, 1, 1, 1, 0, 1])
    assert s.n_rows == 3
    assert s.cooccurrence[0, 2] == 1 and s.cooccurrence[0, 3] == 1 and s.cooccurrence[1, 2] == 0
