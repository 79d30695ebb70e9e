"""One-pass statistics: exact counts, chunk invariance, mergeability."""

import numpy as np

from metal.label_model.label_model import label_statistics
from metal.matrix import to_sparse_labels


def test_counts_match_hand_computation():
    L = np.array([[0, 1], [0, -1], [1, 1], [-1, -1]])
    s = label_statistics(L, cardinality=2)
    # indicators: (src0, 0), (src0, 1), (src1, 0), (src1, 1)
    np.testing.assert_array_equal(s.counts, [2, 1, 0, 2])
    expected = np.array([[2, 0, 0, 1], [0, 1, 0, 1], [0, 0, 0, 0], [1, 1, 0, 2]])
    np.testing.assert_array_equal(s.cooccurrence.toarray(), expected)
    np.testing.assert_array_equal(s.emitted(), [0, 1, 3])
    means, second = s.moments()
    np.testing.assert_allclose(means, [0.5, 0.25, 0.5])
    np.testing.assert_allclose(second, expected[np.ix_([0, 1, 3], [0, 1, 3])] / 4)


def test_chunking_sparse_and_merge_give_identical_statistics():
    rng = np.random.default_rng(1)
    L = rng.integers(-1, 3, size=(1000, 6))
    full = label_statistics(L, 3)
    chunked = label_statistics(to_sparse_labels(L), 3, chunk_rows=37)
    merged = label_statistics(L[:400], 3).merge(label_statistics(L[400:], 3))
    for other in (chunked, merged):
        assert other.n_rows == full.n_rows
        np.testing.assert_array_equal(other.counts, full.counts)
        assert (other.cooccurrence != full.cooccurrence).nnz == 0


def test_third_moments_match_a_dense_computation():
    from metal.label_model.coding import SourceCoding
    from metal.label_model.statistics import third_moments
    from metal.matrix import check_label_matrix

    L = np.array([[0, 1, -1], [0, 0, 1], [1, -1, 1], [0, 1, 1], [-1, -1, -1]])
    coding = SourceCoding(3, 2)
    lm = check_label_matrix(L)
    onehot = np.zeros((5, 6))
    for r, c in zip(*np.nonzero(L >= 0), strict=True):
        onehot[r, c * 2 + L[r, c]] = 1
    for subset in (np.array([0, 1, 2, 3, 4, 5]), np.array([0, 3, 5]), np.array([1, 2])):
        blocks = [(c.stop - c.start, *coding.encode(c)) for c in lm.iter_votes(2)]
        got = third_moments(blocks, subset)
        X = onehot[:, subset]
        np.testing.assert_allclose(got, np.einsum("na,nb,nc->abc", X, X, X) / 5)


def test_one_code_groups_and_a_single_row():
    from metal.label_model.statistics import SourceStatistics, third_moments

    s = SourceStatistics(n_values=[1, 2])
    assert s.n_indicators == 3 and s.offsets.tolist() == [0, 1]
    s.update(1, np.array([0, 0]), np.array([0, 2]))
    np.testing.assert_array_equal(s.counts, [1, 0, 1])
    got = third_moments([(1, np.array([0, 0]), np.array([0, 2]))], np.array([0, 2]))
    np.testing.assert_allclose(got, np.ones((2, 2, 2)))  # one row, both fired: all ones
    try:
        SourceStatistics(n_values=[0, 2])
    except Exception as exc:  # a group must emit at least one code
        assert "positive" in str(exc)
    else:
        raise AssertionError("n_values=[0, 2] was accepted")


def test_single_votes_empty_input_and_mismatched_merges():
    import pytest

    from metal.errors import ConfigError
    from metal.label_model.statistics import SourceStatistics, third_moments

    s = SourceStatistics(n_values=[2, 2])
    s.update(3, np.array([1]), np.array([3]))  # a block with a single vote
    np.testing.assert_array_equal(s.counts, [0, 0, 0, 1])
    assert s.n_rows == 3 and s.cooccurrence[3, 3] == 1 and s.cooccurrence.nnz == 1
    s.update(2, np.array([], dtype=int), np.array([], dtype=int))  # rows without votes
    assert s.n_rows == 5 and s.counts.sum() == 1
    means, second = s.moments()
    np.testing.assert_allclose(means, [0.2])
    np.testing.assert_allclose(second, [[0.2]])
    with pytest.raises(ConfigError, match="no rows"):
        SourceStatistics(n_values=[2]).moments()
    with pytest.raises(ConfigError, match="different source codings"):
        s.merge(SourceStatistics(n_values=[2, 3]))
    with pytest.raises(ConfigError, match="1-D"):
        SourceStatistics(n_values=[[1, 2]])
    # no rows at all: third moments are zeros, not NaN
    np.testing.assert_array_equal(third_moments([], np.array([0, 1])), np.zeros((2, 2, 2)))
