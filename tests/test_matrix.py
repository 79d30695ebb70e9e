"""Label-matrix validation: every malformed input raises LabelMatrixError with a clear message."""

import numpy as np
import pytest
import scipy.sparse as sp

from metal.errors import LabelMatrixError
from metal.matrix import check_gold, check_label_matrix, to_dense_labels, to_sparse_labels


def test_dense_int8_is_not_copied():
    L = np.array([[0, -1], [1, 2]], dtype=np.int8)
    lm = check_label_matrix(L, cardinality=3)
    assert lm.data is L
    assert (lm.n_rows, lm.n_sources, lm.max_label, lm.n_votes) == (2, 2, 2, 3)


def test_sparse_round_trip_keeps_class_zero_votes():
    L = np.array([[0, -1, 1], [-1, -1, -1], [2, 0, -1]])
    S = to_sparse_labels(L)
    assert S.nnz == 4  # the two class-0 votes are stored explicitly
    np.testing.assert_array_equal(to_dense_labels(S), L)
    votes = list(check_label_matrix(S).iter_votes(chunk_rows=2))
    assert sum(v.rows.size for v in votes) == 4


def test_votes_identical_for_dense_and_sparse():
    rng = np.random.default_rng(0)
    L = rng.integers(-1, 3, size=(50, 4))
    a = [(c.rows, c.cols, c.values) for c in check_label_matrix(L).iter_votes(7)]
    b = [(c.rows, c.cols, c.values) for c in check_label_matrix(to_sparse_labels(L)).iter_votes(7)]
    for (r1, c1, v1), (r2, c2, v2) in zip(a, b, strict=True):
        o1, o2 = np.lexsort((c1, r1)), np.lexsort((c2, r2))
        np.testing.assert_array_equal(r1[o1], r2[o2])
        np.testing.assert_array_equal(c1[o1], c2[o2])
        np.testing.assert_array_equal(v1[o1], v2[o2])


@pytest.mark.parametrize(
    ("L", "match"),
    [
        (np.array([0, 1, -1]), "2-D"),
        (np.zeros((0, 3), dtype=int), "empty"),
        (np.zeros((3, 0), dtype=int), "empty"),
        (np.array([[0.0, np.nan]]), "NaN"),
        (np.array([[0.5, 1.0]]), "non-integral"),
        (np.array([[0, -2]]), "-2"),
        (np.array([[0, 3]]), "label 3"),
        (np.array([[True, False]]), "bool"),
        (np.array([["a", "b"]]), "dtype"),
        ("not a matrix", "numpy array"),
    ],
)
def test_bad_dense_inputs(L, match):
    with pytest.raises(LabelMatrixError, match=match):
        check_label_matrix(L, cardinality=3)


def test_sparse_with_stored_minus_one_is_rejected_with_advice():
    L = np.array([[0, -1], [1, 0]])
    with pytest.raises(LabelMatrixError, match="to_sparse_labels"):
        check_label_matrix(sp.csr_matrix(L))


def test_wrong_number_of_sources():
    with pytest.raises(LabelMatrixError, match="3 sources"):
        check_label_matrix(np.zeros((2, 3), dtype=int), n_sources=4)


def test_float_integral_matrix_is_accepted():
    lm = check_label_matrix(np.array([[0.0, -1.0], [1.0, 1.0]]))
    assert lm.data.dtype.kind == "i"


def test_check_gold():
    np.testing.assert_array_equal(check_gold([0, 1, -1], 3, 2), [0, 1, -1])
    with pytest.raises(LabelMatrixError, match="shape"):
        check_gold([0, 1], 3, 2)
    with pytest.raises(LabelMatrixError, match="labels in"):
        check_gold([0, 1, 2], 3, 2)
